//! Complete vCPU and VM state as plain serde structs (for migration and
//! snapshots), and the KVM ioctls that read and write them.
//!
//! The KVM structures themselves (`kvm_regs`, `kvm_sregs`, `kvm_lapic_state`,
//! ...) are serialisable through `kvm-bindings`' `serde` feature (as their
//! raw bytes, the layout KVM defines); MSRs are a plain `(index, value)` list.
//! Restore order follows what KVM needs: MP state and sregs before regs,
//! LAPIC before vcpu events, MSRs after sregs (EFER) — see [`set_vcpu_state`].

use kvm_bindings::{
    kvm_clock_data, kvm_fpu, kvm_irqchip, kvm_lapic_state, kvm_mp_state, kvm_msr_entry,
    kvm_pit_state2, kvm_regs, kvm_sregs, kvm_vcpu_events, kvm_xcrs, kvm_xsave, Msrs,
    KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE,
};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use serde::{Deserialize, Serialize};

/// Errors getting or setting state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A KVM ioctl failed.
    #[error("{what}: {err}")]
    Kvm {
        /// Which ioctl.
        what: &'static str,
        /// The error.
        err: kvm_ioctls::Error,
    },
    /// KVM accepted only part of the MSR list.
    #[error("KVM accepted {done} of {total} MSRs (first refused: {first_bad:#x})")]
    Msrs {
        /// How many were set.
        done: usize,
        /// How many were given.
        total: usize,
        /// Index of the first refused MSR.
        first_bad: u32,
    },
    /// The saved state does not match this VM (vCPU count, ...).
    #[error("state does not match this VM: {0}")]
    Mismatch(String),
}

fn kvm<T>(what: &'static str, r: Result<T, kvm_ioctls::Error>) -> Result<T, StateError> {
    r.map_err(|err| StateError::Kvm { what, err })
}

/// One MSR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsrValue {
    /// MSR index.
    pub index: u32,
    /// Value.
    pub data: u64,
}

/// `kvm_fpu` as a plain struct.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FpuState {
    /// x87 registers (16 bytes each, 10 used).
    pub fpr: Vec<[u8; 16]>,
    /// Control word.
    pub fcw: u16,
    /// Status word.
    pub fsw: u16,
    /// Abridged tag word.
    pub ftwx: u8,
    /// Last opcode.
    pub last_opcode: u16,
    /// Last instruction pointer.
    pub last_ip: u64,
    /// Last data pointer.
    pub last_dp: u64,
    /// XMM0-15.
    pub xmm: Vec<[u8; 16]>,
    /// SSE control/status.
    pub mxcsr: u32,
}

impl From<&kvm_fpu> for FpuState {
    fn from(f: &kvm_fpu) -> Self {
        Self {
            fpr: f.fpr.to_vec(),
            fcw: f.fcw,
            fsw: f.fsw,
            ftwx: f.ftwx,
            last_opcode: f.last_opcode,
            last_ip: f.last_ip,
            last_dp: f.last_dp,
            xmm: f.xmm.to_vec(),
            mxcsr: f.mxcsr,
        }
    }
}

impl FpuState {
    fn to_kvm(&self) -> Result<kvm_fpu, StateError> {
        let mut f = kvm_fpu {
            fcw: self.fcw,
            fsw: self.fsw,
            ftwx: self.ftwx,
            last_opcode: self.last_opcode,
            last_ip: self.last_ip,
            last_dp: self.last_dp,
            mxcsr: self.mxcsr,
            ..Default::default()
        };
        if self.fpr.len() != f.fpr.len() || self.xmm.len() != f.xmm.len() {
            return Err(StateError::Mismatch("FPU register count".into()));
        }
        f.fpr.copy_from_slice(&self.fpr);
        f.xmm.copy_from_slice(&self.xmm);
        Ok(f)
    }
}

/// Everything KVM keeps for one vCPU.
#[derive(Clone, Serialize, Deserialize)]
pub struct VcpuState {
    /// vCPU index.
    pub id: u32,
    /// General purpose registers, RIP, RFLAGS.
    pub regs: kvm_regs,
    /// Segment, control and descriptor-table registers, EFER, APIC base.
    pub sregs: kvm_sregs,
    /// Legacy FPU/SSE view (kept for hosts without XSAVE support in KVM).
    pub fpu: FpuState,
    /// XSAVE area (x87, SSE, AVX, ...) as the 1024 words of `kvm_xsave`.
    pub xsave: Option<Vec<u32>>,
    /// Extended control registers (XCR0).
    pub xcrs: Option<kvm_xcrs>,
    /// MSRs from the list KVM reports as saveable (those it accepts on this host).
    pub msrs: Vec<MsrValue>,
    /// Local APIC registers.
    pub lapic: kvm_lapic_state,
    /// Pending exceptions, interrupts, NMIs, SMM state.
    pub events: kvm_vcpu_events,
    /// Runnable / halted / waiting for SIPI.
    pub mp_state: kvm_mp_state,
}

impl std::fmt::Debug for VcpuState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VcpuState")
            .field("id", &self.id)
            .field("rip", &format_args!("{:#x}", self.regs.rip))
            .field("msrs", &self.msrs.len())
            .field("mp_state", &self.mp_state.mp_state)
            .finish_non_exhaustive()
    }
}

/// VM-wide KVM state (everything but RAM and device models).
#[derive(Clone, Serialize, Deserialize)]
pub struct VmState {
    /// PIC master.
    pub pic_master: kvm_irqchip,
    /// PIC slave.
    pub pic_slave: kvm_irqchip,
    /// IOAPIC.
    pub ioapic: kvm_irqchip,
    /// i8254 PIT.
    pub pit: kvm_pit_state2,
    /// kvmclock.
    pub clock: kvm_clock_data,
}

impl std::fmt::Debug for VmState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VmState")
            .field("clock", &self.clock.clock)
            .finish_non_exhaustive()
    }
}

/// Full machine state: VM plus every vCPU, in vCPU index order, plus the
/// device models registered with `Vm::register_device_state`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MachineState {
    /// VM-wide state.
    pub vm: VmState,
    /// Per-vCPU state.
    pub vcpus: Vec<VcpuState>,
    /// Device model states, in registration order.
    #[serde(default)]
    pub devices: Vec<DeviceBlob>,
}

/// One device model's saved state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceBlob {
    /// Registration id (e.g. `serial0`).
    pub id: String,
    /// The device's own encoding of its state.
    pub data: Vec<u8>,
}

/// A device model whose state travels with the VM (migration, snapshots).
/// `restore` gets bytes from an untrusted stream: validate everything.
pub trait DeviceState: Send + Sync {
    /// Encode the current state (called with vCPUs stopped).
    fn save(&self) -> Result<Vec<u8>, String>;
    /// Replace the state with a decoded `data` (called with vCPUs stopped).
    fn restore(&self, data: &[u8]) -> Result<(), String>;
}

/// The MSR indices that can be read on this host: KVM's saveable list,
/// filtered by trying each one on `vcpu` (some listed MSRs are refused, e.g.
/// under nested "PVM" KVM).
pub fn probe_msr_list(kvm_sys: &Kvm, vcpu: &VcpuFd) -> Result<Vec<u32>, StateError> {
    let list = kvm("KVM_GET_MSR_INDEX_LIST", kvm_sys.get_msr_index_list())?;
    let mut ok = Vec::new();
    for &index in list.as_slice() {
        let mut msrs = Msrs::from_entries(&[kvm_msr_entry {
            index,
            ..Default::default()
        }])
        .map_err(|e| StateError::Mismatch(format!("msr list: {e:?}")))?;
        if matches!(vcpu.get_msrs(&mut msrs), Ok(1)) {
            ok.push(index);
        }
    }
    Ok(ok)
}

/// Read MSRs in chunks (KVM caps one call at KVM_MAX_MSR_ENTRIES).
fn get_msrs(vcpu: &VcpuFd, list: &[u32]) -> Result<Vec<MsrValue>, StateError> {
    let mut out = Vec::with_capacity(list.len());
    for chunk in list.chunks(200) {
        let entries: Vec<kvm_msr_entry> = chunk
            .iter()
            .map(|&index| kvm_msr_entry {
                index,
                ..Default::default()
            })
            .collect();
        let mut msrs = Msrs::from_entries(&entries)
            .map_err(|e| StateError::Mismatch(format!("msrs: {e:?}")))?;
        let n = kvm("KVM_GET_MSRS", vcpu.get_msrs(&mut msrs))?;
        if n != chunk.len() {
            return Err(StateError::Msrs {
                done: out.len() + n,
                total: list.len(),
                first_bad: chunk[n],
            });
        }
        out.extend(msrs.as_slice().iter().map(|e| MsrValue {
            index: e.index,
            data: e.data,
        }));
    }
    Ok(out)
}

fn set_msrs(vcpu: &VcpuFd, values: &[MsrValue]) -> Result<(), StateError> {
    let mut done = 0;
    for chunk in values.chunks(200) {
        let entries: Vec<kvm_msr_entry> = chunk
            .iter()
            .map(|m| kvm_msr_entry {
                index: m.index,
                data: m.data,
                ..Default::default()
            })
            .collect();
        let msrs = Msrs::from_entries(&entries)
            .map_err(|e| StateError::Mismatch(format!("msrs: {e:?}")))?;
        let n = kvm("KVM_SET_MSRS", vcpu.set_msrs(&msrs))?;
        if n != chunk.len() {
            return Err(StateError::Msrs {
                done: done + n,
                total: values.len(),
                first_bad: chunk[n].index,
            });
        }
        done += n;
    }
    Ok(())
}

/// Read the full state of a (stopped) vCPU.
pub fn get_vcpu_state(
    id: u32,
    vcpu: &VcpuFd,
    msr_list: &[u32],
    xsave: bool,
) -> Result<VcpuState, StateError> {
    // MP state first: it may flush pending events into the APIC.
    let mp_state = kvm("KVM_GET_MP_STATE", vcpu.get_mp_state())?;
    let regs = kvm("KVM_GET_REGS", vcpu.get_regs())?;
    let sregs = kvm("KVM_GET_SREGS", vcpu.get_sregs())?;
    let fpu = FpuState::from(&kvm("KVM_GET_FPU", vcpu.get_fpu())?);
    let xsave = if xsave {
        Some(kvm("KVM_GET_XSAVE", vcpu.get_xsave())?.region.to_vec())
    } else {
        None
    };
    let xcrs = if xsave.is_some() {
        vcpu.get_xcrs().ok()
    } else {
        None
    };
    let lapic = kvm("KVM_GET_LAPIC", vcpu.get_lapic())?;
    let events = kvm("KVM_GET_VCPU_EVENTS", vcpu.get_vcpu_events())?;
    let msrs = get_msrs(vcpu, msr_list)?;
    Ok(VcpuState {
        id,
        regs,
        sregs,
        fpu,
        xsave,
        xcrs,
        msrs,
        lapic,
        events,
        mp_state,
    })
}

/// Write the full state of a (stopped) vCPU.
pub fn set_vcpu_state(vcpu: &VcpuFd, s: &VcpuState) -> Result<(), StateError> {
    kvm("KVM_SET_SREGS", vcpu.set_sregs(&s.sregs))?;
    set_msrs(vcpu, &s.msrs)?;
    kvm("KVM_SET_REGS", vcpu.set_regs(&s.regs))?;
    kvm("KVM_SET_FPU", vcpu.set_fpu(&s.fpu.to_kvm()?))?;
    if let Some(xcrs) = &s.xcrs {
        kvm("KVM_SET_XCRS", vcpu.set_xcrs(xcrs))?;
    }
    if let Some(words) = &s.xsave {
        let mut x = kvm_xsave::default();
        if words.len() != x.region.len() {
            return Err(StateError::Mismatch(format!(
                "xsave area of {} words",
                words.len()
            )));
        }
        x.region.copy_from_slice(words);
        // SAFETY: `x` is a complete legacy 4 KiB kvm_xsave (no trailing
        // dynamic area is read by KVM_SET_XSAVE); KVM validates its contents.
        kvm("KVM_SET_XSAVE", unsafe { vcpu.set_xsave(&x) })?;
    }
    kvm("KVM_SET_LAPIC", vcpu.set_lapic(&s.lapic))?;
    kvm("KVM_SET_MP_STATE", vcpu.set_mp_state(s.mp_state))?;
    kvm("KVM_SET_VCPU_EVENTS", vcpu.set_vcpu_events(&s.events))?;
    Ok(())
}

fn get_chip(vm: &VmFd, chip_id: u32) -> Result<kvm_irqchip, StateError> {
    let mut c = kvm_irqchip {
        chip_id,
        ..Default::default()
    };
    kvm("KVM_GET_IRQCHIP", vm.get_irqchip(&mut c))?;
    Ok(c)
}

/// Read the VM-wide state.
pub fn get_vm_state(vm: &VmFd) -> Result<VmState, StateError> {
    Ok(VmState {
        pic_master: get_chip(vm, KVM_IRQCHIP_PIC_MASTER)?,
        pic_slave: get_chip(vm, KVM_IRQCHIP_PIC_SLAVE)?,
        ioapic: get_chip(vm, KVM_IRQCHIP_IOAPIC)?,
        pit: kvm("KVM_GET_PIT2", vm.get_pit2())?,
        clock: kvm("KVM_GET_CLOCK", vm.get_clock())?,
    })
}

/// Write the VM-wide state. `with_clock`: also set kvmclock (migration
/// does; a reset does not move the clock).
pub fn set_vm_state(vm: &VmFd, s: &VmState, with_clock: bool) -> Result<(), StateError> {
    kvm("KVM_SET_IRQCHIP(pic master)", vm.set_irqchip(&s.pic_master))?;
    kvm("KVM_SET_IRQCHIP(pic slave)", vm.set_irqchip(&s.pic_slave))?;
    kvm("KVM_SET_IRQCHIP(ioapic)", vm.set_irqchip(&s.ioapic))?;
    kvm("KVM_SET_PIT2", vm.set_pit2(&s.pit))?;
    if with_clock {
        // Only the clock value may be set (flags must be 0 except the ones
        // KVM documents as input).
        let clock = kvm_clock_data {
            clock: s.clock.clock,
            ..Default::default()
        };
        kvm("KVM_SET_CLOCK", vm.set_clock(&clock))?;
    }
    Ok(())
}
