//! The VM: KVM VM fd, guest RAM memslots, in-kernel irqchip and PIT, vCPU
//! threads, COM1 and the debug-exit port, and the control API (start, pause,
//! resume, reset, shutdown, state save/restore, dirty logging) that `main.rs`,
//! QMP/HMP and the services use.
//!
//! ```text
//!  Vm (handle) ──Arc──> VmInner ──> vCPU threads (vcpu::run)
//!                         ^  requests (reset, shutdown, guest exit, error)
//!                         └── manager thread <── vCPU threads, devices (VmControl)
//!  events: every state change is broadcast to all `subscribe()` receivers.
//! ```
//! All state-changing operations are serialised by one lock, so `pause()`,
//! `resume()` and `reset()` from QMP, HMP and the guest never interleave.
//!
//! ```no_run
//! use vmm::chardev::stdio::StdioBackend;
//! use vmm::vm::{Vm, VmConfig, VmEvent};
//!
//! let vm = Vm::new(VmConfig::builtin(256 << 20, Box::new(StdioBackend::new()?)))?;
//! let events = vm.subscribe();
//! vm.start()?; // not with -S; QMP `cont` is vm.resume()
//! while let Ok(ev) = events.recv() {
//!     match ev {
//!         VmEvent::GuestExit(code) => std::process::exit(code as i32),
//!         VmEvent::Shutdown { .. } => break,
//!         _ => {}
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::os::unix::thread::JoinHandleExt;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use kvm_bindings::{
    kvm_pit_config, kvm_userspace_memory_region, KVM_MEM_LOG_DIRTY_PAGES, KVM_PIT_SPEAKER_DUMMY,
};
use kvm_ioctls::{Cap, Kvm, VcpuFd, VmFd};
use vm_memory::{GuestMemoryMmap, MmapRegion};
use vmm_sys_util::eventfd::EventFd;

use crate::boot::{self, BootError};
use crate::chardev::CharBackend;
use crate::devices::bus::{Bus, BusError, SharedDevice};
use crate::devices::debug_exit::DebugExit;
use crate::devices::power_button::PowerButton;
use crate::devices::serial::{SerialDevice, SerialInput, SerialMigration, SharedBackend};
use crate::layout;
use crate::memory::{GuestRam, MemoryConfig, MemoryError};
use crate::state::{self, DeviceBlob, DeviceState, MachineState, StateError};
use crate::vcpu::{self, Request, RunControl, VcpuContext};

/// The built-in test guest (ELF), built from `guest/` by `build.rs`.
pub static BUILTIN_GUEST: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/bulkhead-guest.elf"));

/// Errors from the VM.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// Opening /dev/kvm or a KVM ioctl failed.
    #[error("{what}: {err}")]
    Kvm {
        /// What was being done.
        what: &'static str,
        /// The error.
        err: kvm_ioctls::Error,
    },
    /// Guest RAM.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// Loading the boot image.
    #[error(transparent)]
    Boot(#[from] BootError),
    /// State get/set.
    #[error(transparent)]
    State(#[from] StateError),
    /// Device mapping.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// Host I/O (threads, eventfds).
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The request does not fit the VM's current state or configuration.
    #[error("{0}")]
    Invalid(String),
}

fn kvm<T>(what: &'static str, r: Result<T, kvm_ioctls::Error>) -> Result<T, VmError> {
    r.map_err(|err| VmError::Kvm { what, err })
}

/// Entry state produced by a custom loader (e.g. Linux direct boot).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CustomEntry {
    /// Entry point (64-bit long mode, ring 0, identity-mapped like the
    /// built-in boot protocol).
    pub rip: u64,
    /// Value for `rsi` (Linux: boot_params address).
    pub rsi: u64,
    /// Value for `rdi` (0 keeps the boot-info pointer).
    pub rdi: u64,
}

/// A loader run at creation and at every reset; it writes the image into
/// guest memory and returns the entry state.
pub type CustomLoader = Arc<dyn Fn(&GuestMemoryMmap) -> Result<CustomEntry, String> + Send + Sync>;

/// What the boot vCPU runs.
#[derive(Clone)]
pub enum Boot {
    /// The embedded test guest (no `-kernel`).
    Builtin,
    /// Another ELF following the same boot protocol (see `boot`).
    Elf(Arc<Vec<u8>>),
    /// Raw bytes at `gpa` (>= 1 MiB), entered at `entry` in long mode ring 0.
    Raw {
        /// Load address.
        gpa: u64,
        /// Code and data.
        bytes: Arc<Vec<u8>>,
        /// Entry point.
        entry: u64,
    },
    /// A loader callback.
    Custom(CustomLoader),
}

impl std::fmt::Debug for Boot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Boot::Builtin => f.write_str("Builtin"),
            Boot::Elf(b) => write!(f, "Elf({} bytes)", b.len()),
            Boot::Raw { gpa, bytes, entry } => {
                write!(f, "Raw({gpa:#x}, {} bytes, entry {entry:#x})", bytes.len())
            }
            Boot::Custom(_) => f.write_str("Custom"),
        }
    }
}

/// What a guest-initiated reset does (`-no-reboot` turns it into shutdown).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum GuestResetAction {
    /// Reset the machine (QEMU's default).
    #[default]
    Reset,
    /// Shut down instead.
    Shutdown,
}

/// VM configuration.
pub struct VmConfig {
    /// Guest RAM.
    pub mem: MemoryConfig,
    /// Number of vCPUs (1..=255).
    pub smp: u8,
    /// Boot image.
    pub boot: Boot,
    /// COM1 backend (`None`: no COM1, like `-serial none`).
    pub serial: Option<Box<dyn CharBackend>>,
    /// Guest reset behaviour.
    pub guest_reset: GuestResetAction,
}

impl std::fmt::Debug for VmConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VmConfig")
            .field("mem", &self.mem)
            .field("smp", &self.smp)
            .field("boot", &self.boot)
            .field("serial", &self.serial.as_ref().map(|s| s.describe()))
            .finish()
    }
}

impl VmConfig {
    /// `mem_size` bytes of memfd RAM, one vCPU, the built-in guest, serial to `serial`.
    pub fn builtin(mem_size: u64, serial: Box<dyn CharBackend>) -> Self {
        Self {
            mem: MemoryConfig::memfd(mem_size),
            smp: 1,
            boot: Boot::Builtin,
            serial: Some(serial),
            guest_reset: GuestResetAction::Reset,
        }
    }
}

/// QEMU run states (as `query-status` names them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RunState {
    /// Created, not started yet (`-S`) or reset while stopped.
    Prelaunch,
    /// vCPUs running.
    Running,
    /// Stopped by the user (`stop`).
    Paused,
    /// Stopped for outgoing migration's final phase.
    FinishMigrate,
    /// Migration completed on the source.
    PostMigrate,
    /// Waiting for an incoming migration.
    InMigrate,
    /// The guest shut down or exited.
    Shutdown,
    /// KVM reported an unrecoverable error.
    InternalError,
}

impl RunState {
    /// QMP `query-status` `status` string.
    pub fn as_qmp_str(self) -> &'static str {
        match self {
            RunState::Prelaunch => "prelaunch",
            RunState::Running => "running",
            RunState::Paused => "paused",
            RunState::FinishMigrate => "finish-migrate",
            RunState::PostMigrate => "postmigrate",
            RunState::InMigrate => "inmigrate",
            RunState::Shutdown => "shutdown",
            RunState::InternalError => "internal-error",
        }
    }
}

/// State changes, broadcast to subscribers (QMP turns them into events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmEvent {
    /// vCPUs stopped (QMP `STOP`).
    Stop,
    /// vCPUs running again (QMP `RESUME`).
    Resume,
    /// Machine reset; `reason` uses QEMU's names (`guest-reset`,
    /// `host-qmp-system-reset`, ...).
    Reset {
        /// Why.
        reason: String,
    },
    /// Power button pressed (QMP `POWERDOWN`).
    Powerdown,
    /// Machine off; `reason` uses QEMU's names (`guest-shutdown`,
    /// `host-qmp-quit`, ...).
    Shutdown {
        /// Why.
        reason: String,
    },
    /// The guest wrote this status to the debug-exit port.
    GuestExit(u32),
    /// KVM error; the VM is stopped in `internal-error`.
    InternalError(String),
}

/// A cloneable handle for devices and threads to ask the VM for a reset,
/// shutdown or exit (handled asynchronously by the VM's manager thread).
#[derive(Clone, Debug)]
pub struct VmControl(Sender<Request>);

impl VmControl {
    /// Guest-initiated reset (i8042 0xFE, triple fault).
    pub fn request_reset(&self) {
        let _ = self.0.send(Request::Reset("guest-reset".into()));
    }
    /// Guest-initiated power off.
    pub fn request_shutdown(&self) {
        let _ = self.0.send(Request::Shutdown("guest-shutdown".into()));
    }
    /// Debug-exit status.
    pub fn guest_exit(&self, code: u32) {
        let _ = self.0.send(Request::GuestExit(code));
    }
}

/// A KVM memory slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MemSlot {
    /// KVM slot number.
    pub slot: u32,
    /// Guest-physical base.
    pub gpa: u64,
    /// Size in bytes.
    pub size: u64,
    /// Host virtual address of the mapping.
    pub host_addr: u64,
    /// Dirty logging on.
    pub dirty_log: bool,
    /// Guest RAM (true) or an extra slot such as VRAM (false).
    pub is_ram: bool,
}

struct VcpuSlot {
    fd: Arc<Mutex<VcpuFd>>,
    tid: Arc<std::sync::atomic::AtomicI32>,
    thread: Option<JoinHandle<()>>,
}

struct VmInner {
    kvm: Kvm,
    vm_fd: VmFd,
    ram: GuestRam,
    nr_vcpus: u32,
    vcpus: Mutex<Vec<VcpuSlot>>,
    pthreads: Vec<libc::pthread_t>,
    control: Arc<RunControl>,
    pio: Arc<RwLock<Bus>>,
    mmio: Arc<RwLock<Bus>>,
    state: Mutex<RunState>,
    subscribers: Mutex<Vec<Sender<VmEvent>>>,
    ops: Mutex<()>,
    requests: Sender<Request>,
    boot: Boot,
    initial: MachineState,
    msr_list: Vec<u32>,
    xsave: bool,
    tsc_khz: u64,
    slots: Mutex<Vec<MemSlot>>,
    vmm_dirty: Mutex<std::collections::HashMap<u32, Vec<u64>>>,
    extra_maps: Mutex<Vec<Arc<MmapRegion>>>,
    irqfds: Mutex<Vec<EventFd>>,
    reset_hooks: Mutex<Vec<Box<dyn FnMut() + Send>>>,
    device_states: Mutex<Vec<(String, Arc<dyn DeviceState>)>>,
    serial: Option<Arc<Mutex<SerialDevice>>>,
    power: Arc<Mutex<PowerButton>>,
    serial_backend: Option<SharedBackend>,
    serial_input: Mutex<Option<SerialInput>>,
    guest_reset: GuestResetAction,
}

/// A running (or runnable) virtual machine.
pub struct Vm {
    inner: Arc<VmInner>,
    manager: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Vm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vm")
            .field("state", &self.run_state())
            .field("vcpus", &self.inner.nr_vcpus)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Load the boot image, write the boot area and return the boot vCPU's
/// (regs, cr3).
fn load_boot(
    boot: &Boot,
    ram: &GuestRam,
    nr_cpus: u32,
    tsc_khz: u64,
) -> Result<(kvm_bindings::kvm_regs, u64), VmError> {
    let mem = ram.memory();
    let (entry, end, rsi, rdi) = match boot {
        Boot::Builtin => {
            let l = boot::load_elf(mem, BUILTIN_GUEST)?;
            (l.entry, l.end, 0, 0)
        }
        Boot::Elf(bytes) => {
            let l = boot::load_elf(mem, bytes)?;
            (l.entry, l.end, 0, 0)
        }
        Boot::Raw { gpa, bytes, entry } => {
            use vm_memory::{Bytes, GuestAddress};
            if *gpa < boot::IMAGE_MIN_GPA {
                return Err(VmError::Invalid(format!(
                    "raw image at {gpa:#x} overlaps the boot area"
                )));
            }
            mem.write_slice(bytes, GuestAddress(*gpa))
                .map_err(|e| VmError::Invalid(format!("raw image does not fit: {e}")))?;
            (*entry, gpa.saturating_add(bytes.len() as u64), 0, 0)
        }
        Boot::Custom(f) => {
            let e = f(mem).map_err(VmError::Invalid)?;
            (e.rip, boot::IMAGE_MIN_GPA, e.rsi, e.rdi)
        }
    };
    let free_start = end.div_ceil(2 << 20) * (2 << 20);
    let info = boot::boot_info(ram.size(), nr_cpus, free_start, tsc_khz, true);
    let cr3 = boot::write_boot_area(mem, ram.top().max(layout::RAM_HIGH_START), &info)?;
    let mut regs = boot::entry_regs(entry);
    regs.rsi = rsi;
    if rdi != 0 {
        regs.rdi = rdi;
    }
    Ok((regs, cr3))
}

fn setup_cpuid(kvm_sys: &Kvm, vcpu: &VcpuFd, id: u32) -> Result<(), VmError> {
    let mut cpuid = kvm(
        "KVM_GET_SUPPORTED_CPUID",
        kvm_sys.get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES),
    )?;
    for e in cpuid.as_mut_slice() {
        match e.function {
            1 => {
                e.ebx = (e.ebx & 0x00ff_ffff) | (id << 24);
                e.ecx |= 1 << 31; // hypervisor present
            }
            0xb | 0x1f => e.edx = id,
            _ => {}
        }
    }
    kvm("KVM_SET_CPUID2", vcpu.set_cpuid2(&cpuid))
}

fn set_lint(vcpu: &VcpuFd) -> Result<(), VmError> {
    let mut lapic = kvm("KVM_GET_LAPIC", vcpu.get_lapic())?;
    let put = |regs: &mut [std::os::raw::c_char; 1024], off: usize, v: u32| {
        for (i, b) in v.to_le_bytes().iter().enumerate() {
            regs[off + i] = *b as std::os::raw::c_char;
        }
    };
    put(&mut lapic.regs, 0x350, 0x700); // LVT0: ExtINT (PIC)
    put(&mut lapic.regs, 0x360, 0x400); // LVT1: NMI
    kvm("KVM_SET_LAPIC", vcpu.set_lapic(&lapic))
}

/// MSRs KVM lists that this host lets us both read and write back.
fn usable_msrs(kvm_sys: &Kvm, vcpu: &VcpuFd) -> Result<Vec<u32>, VmError> {
    use kvm_bindings::{kvm_msr_entry, Msrs};
    let readable = state::probe_msr_list(kvm_sys, vcpu)?;
    let mut ok = Vec::new();
    for index in readable {
        let mut m = Msrs::from_entries(&[kvm_msr_entry {
            index,
            ..Default::default()
        }])
        .map_err(|e| VmError::Invalid(format!("{e:?}")))?;
        if !matches!(vcpu.get_msrs(&mut m), Ok(1)) {
            continue;
        }
        if matches!(vcpu.set_msrs(&m), Ok(1)) {
            ok.push(index);
        } else {
            tracing::debug!("MSR {index:#x} readable but not writable; not saved");
        }
    }
    Ok(ok)
}

impl Vm {
    /// Create the VM: RAM, irqchip, PIT, vCPUs (parked), COM1, debug-exit,
    /// boot image loaded. The VM is in `prelaunch` until [`Vm::start`].
    pub fn new(cfg: VmConfig) -> Result<Self, VmError> {
        if cfg.smp == 0 {
            return Err(VmError::Invalid("smp must be at least 1".into()));
        }
        vcpu::install_kick_handler()?;
        let kvm_sys = kvm("open /dev/kvm", Kvm::new())?;
        let vm_fd = kvm("KVM_CREATE_VM", kvm_sys.create_vm())?;
        if let Err(e) = vm_fd.set_tss_address(0xfffb_d000) {
            tracing::debug!("KVM_SET_TSS_ADDR: {e}");
        }
        kvm("KVM_CREATE_IRQCHIP", vm_fd.create_irq_chip())?;
        kvm(
            "KVM_CREATE_PIT2",
            vm_fd.create_pit2(kvm_pit_config {
                flags: KVM_PIT_SPEAKER_DUMMY,
                ..Default::default()
            }),
        )?;

        let ram = GuestRam::new(&cfg.mem)?;
        let mut slots = Vec::new();
        for (i, r) in ram.regions().iter().enumerate() {
            let host_addr = ram
                .host_addr(i)
                .ok_or_else(|| VmError::Invalid("unmapped RAM region".into()))?;
            let slot = MemSlot {
                slot: i as u32,
                gpa: r.gpa,
                size: r.size,
                host_addr,
                dirty_log: false,
                is_ram: true,
            };
            set_slot(&vm_fd, &slot)?;
            slots.push(slot);
        }

        let nr_vcpus = u32::from(cfg.smp);
        let mut fds = Vec::new();
        for id in 0..nr_vcpus {
            let fd = kvm("KVM_CREATE_VCPU", vm_fd.create_vcpu(u64::from(id)))?;
            setup_cpuid(&kvm_sys, &fd, id)?;
            fds.push(fd);
        }
        set_lint(&fds[0])?;
        let tsc_khz = fds[0].get_tsc_khz().map(u64::from).unwrap_or(0);
        let xsave = kvm_sys.check_extension(Cap::Xsave);
        let msr_list = usable_msrs(&kvm_sys, &fds[0])?;

        let (regs, cr3) = load_boot(&cfg.boot, &ram, nr_vcpus, tsc_khz)?;
        {
            let bsp = &fds[0];
            let mut sregs = kvm("KVM_GET_SREGS", bsp.get_sregs())?;
            boot::long_mode_sregs(&mut sregs, cr3);
            kvm("KVM_SET_SREGS", bsp.set_sregs(&sregs))?;
            kvm("KVM_SET_REGS", bsp.set_regs(&regs))?;
            kvm("KVM_SET_FPU", bsp.set_fpu(&boot::initial_fpu()))?;
        }
        let mut vcpu_states = Vec::new();
        for (id, fd) in fds.iter().enumerate() {
            vcpu_states.push(state::get_vcpu_state(id as u32, fd, &msr_list, xsave)?);
        }
        let initial = MachineState {
            vm: state::get_vm_state(&vm_fd)?,
            vcpus: vcpu_states,
            devices: Vec::new(),
        };

        let (req_tx, req_rx) = channel();
        let control = Arc::new(RunControl::new_paused());
        let pio = Arc::new(RwLock::new(Bus::new()));
        let mmio = Arc::new(RwLock::new(Bus::new()));

        let vm_control = VmControl(req_tx.clone());
        let dbg: SharedDevice = Arc::new(Mutex::new(DebugExit::new(move |c| {
            vm_control.guest_exit(c)
        })));
        lock_w(&pio).insert(u64::from(layout::DEBUG_EXIT_PORT), 4, dbg)?;

        let mut irqfds = Vec::new();
        let power_evt = EventFd::new(libc::EFD_NONBLOCK)?;
        kvm(
            "KVM_IRQFD(power button)",
            vm_fd.register_irqfd(&power_evt, layout::POWER_IRQ),
        )?;
        let vm_control = VmControl(req_tx.clone());
        let power = Arc::new(Mutex::new(PowerButton::new(
            power_evt.try_clone()?,
            move || vm_control.request_shutdown(),
        )));
        irqfds.push(power_evt);
        let shared: SharedDevice = power.clone();
        lock_w(&pio).insert(u64::from(layout::POWER_PORT), 1, shared)?;

        let (serial, serial_backend) = match cfg.serial {
            Some(backend) => {
                let evt = EventFd::new(libc::EFD_NONBLOCK)?;
                kvm(
                    "KVM_IRQFD(COM1)",
                    vm_fd.register_irqfd(&evt, layout::COM1_IRQ),
                )?;
                let backend: SharedBackend = Arc::new(Mutex::new(backend));
                let dev = Arc::new(Mutex::new(SerialDevice::new(
                    evt.try_clone()?,
                    backend.clone(),
                )?));
                irqfds.push(evt);
                let shared: SharedDevice = dev.clone();
                lock_w(&pio).insert(u64::from(layout::COM1_PORT), 8, shared)?;
                (Some(dev), Some(backend))
            }
            None => (None, None),
        };

        let mut vcpus = Vec::new();
        let mut pthreads = Vec::new();
        for (id, fd) in fds.into_iter().enumerate() {
            let fd = Arc::new(Mutex::new(fd));
            let tid = Arc::new(std::sync::atomic::AtomicI32::new(0));
            let ctx = VcpuContext {
                tid: tid.clone(),
                id: id as u32,
                fd: fd.clone(),
                pio: pio.clone(),
                mmio: mmio.clone(),
                control: control.clone(),
                requests: req_tx.clone(),
            };
            vcpu::register(&control);
            let t = std::thread::Builder::new()
                .name(format!("vcpu{id}"))
                .spawn(move || vcpu::run(ctx))?;
            pthreads.push(t.as_pthread_t());
            vcpus.push(VcpuSlot {
                fd,
                tid,
                thread: Some(t),
            });
        }
        // Every vCPU thread records its Linux tid first thing; wait for that
        // so `query-cpus-fast` never reports thread-id 0 for a live vCPU.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while vcpus
            .iter()
            .any(|v| v.tid.load(std::sync::atomic::Ordering::SeqCst) == 0)
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_micros(200));
        }

        let inner = Arc::new(VmInner {
            kvm: kvm_sys,
            vm_fd,
            ram,
            nr_vcpus,
            vcpus: Mutex::new(vcpus),
            pthreads,
            control,
            pio,
            mmio,
            state: Mutex::new(RunState::Prelaunch),
            subscribers: Mutex::new(Vec::new()),
            ops: Mutex::new(()),
            requests: req_tx,
            boot: cfg.boot,
            initial,
            msr_list,
            xsave,
            tsc_khz,
            slots: Mutex::new(slots),
            vmm_dirty: Mutex::new(std::collections::HashMap::new()),
            extra_maps: Mutex::new(Vec::new()),
            irqfds: Mutex::new(irqfds),
            reset_hooks: Mutex::new(Vec::new()),
            device_states: Mutex::new(Vec::new()),
            serial,
            power,
            serial_backend,
            serial_input: Mutex::new(None),
            guest_reset: cfg.guest_reset,
        });
        if let Some(dev) = &inner.serial {
            inner.register_device_state("serial0", Arc::new(SerialMigration(dev.clone())))?;
        }
        if let (Some(dev), Some(b)) = (&inner.serial, &inner.serial_backend) {
            *lock(&inner.serial_input) = SerialInput::start(dev.clone(), b.clone())?;
        }
        let mi = inner.clone();
        let manager = std::thread::Builder::new()
            .name("vm-manager".into())
            .spawn(move || manage(mi, req_rx))?;
        Ok(Self {
            inner,
            manager: Some(manager),
        })
    }

    /// Start the vCPUs (from `prelaunch`); same as [`Vm::resume`].
    pub fn start(&self) -> Result<(), VmError> {
        self.resume()
    }

    /// Stop all vCPUs; returns once every one is parked. Emits `Stop` if
    /// the VM was running.
    pub fn pause(&self) {
        self.inner.pause_as(RunState::Paused);
    }

    /// Stop all vCPUs and enter `state` (e.g. `FinishMigrate`).
    pub fn pause_as(&self, state: RunState) {
        self.inner.pause_as(state);
    }

    /// Run the vCPUs again. Fails after a shutdown or internal error until
    /// the VM is reset (as QEMU's `cont`).
    pub fn resume(&self) -> Result<(), VmError> {
        let _g = lock(&self.inner.ops);
        let st = *lock(&self.inner.state);
        match st {
            RunState::Running => Ok(()),
            RunState::Shutdown | RunState::InternalError => Err(VmError::Invalid(
                "Resetting the Virtual Machine is required".into(),
            )),
            RunState::InMigrate => Err(VmError::Invalid(
                "Guest is waiting for an incoming migration".into(),
            )),
            _ => {
                *lock(&self.inner.state) = RunState::Running;
                self.inner.control.resume();
                self.inner.emit(VmEvent::Resume);
                Ok(())
            }
        }
    }

    /// An incoming migration has restored RAM and state: leave `inmigrate`
    /// and run (`autostart`) or stay stopped (`paused`).
    pub fn complete_incoming(&self, autostart: bool) {
        let _g = lock(&self.inner.ops);
        let mut st = lock(&self.inner.state);
        if autostart {
            *st = RunState::Running;
            drop(st);
            self.inner.control.resume();
            self.inner.emit(VmEvent::Resume);
        } else {
            *st = RunState::Paused;
        }
    }

    /// Host-initiated reset (`system_reset`).
    pub fn reset(&self) -> Result<(), VmError> {
        self.inner.reset("host-qmp-system-reset")
    }

    /// Press the power button (`system_powerdown`): emits `Powerdown` and
    /// interrupts the guest (see `devices::power_button`). A guest that
    /// acts on it powers off (`Shutdown { reason: "guest-shutdown" }`); one
    /// that ignores it keeps running, as in QEMU.
    pub fn request_powerdown(&self) {
        self.inner.emit(VmEvent::Powerdown);
        lock(&self.inner.power).press();
    }

    /// Stop the machine for good (`quit`: reason `host-qmp-quit`).
    pub fn shutdown(&self, reason: &str) {
        self.inner.shutdown(reason);
    }

    /// Current run state.
    pub fn run_state(&self) -> RunState {
        *lock(&self.inner.state)
    }

    /// A new receiver of all future events.
    pub fn subscribe(&self) -> Receiver<VmEvent> {
        let (tx, rx) = channel();
        lock(&self.inner.subscribers).push(tx);
        rx
    }

    /// Handle for devices to request reset/shutdown/exit.
    pub fn control(&self) -> VmControl {
        VmControl(self.inner.requests.clone())
    }

    /// Guest RAM as mapped in this process.
    pub fn memory(&self) -> &GuestMemoryMmap {
        self.inner.ram.memory()
    }

    /// Guest RAM object: `ram_fd()` and `regions()` for services.
    pub fn ram(&self) -> &GuestRam {
        &self.inner.ram
    }

    /// Number of vCPUs.
    pub fn nr_vcpus(&self) -> u32 {
        self.inner.nr_vcpus
    }

    /// Linux thread id of each vCPU thread (`query-cpus-fast` `thread-id`;
    /// [`Vm::new`] returns only once every thread has recorded it).
    pub fn vcpu_thread_ids(&self) -> Vec<i32> {
        lock(&self.inner.vcpus)
            .iter()
            .map(|v| v.tid.load(std::sync::atomic::Ordering::SeqCst))
            .collect()
    }

    /// TSC frequency in kHz reported by KVM (0 if unknown).
    pub fn tsc_khz(&self) -> u64 {
        self.inner.tsc_khz
    }

    /// Map a port-I/O device at `[base, base+len)`.
    pub fn add_pio_device(&self, base: u16, len: u16, dev: SharedDevice) -> Result<(), VmError> {
        Ok(lock_w(&self.inner.pio).insert(u64::from(base), u64::from(len), dev)?)
    }

    /// Map an MMIO device at `[base, base+len)`.
    pub fn add_mmio_device(&self, base: u64, len: u64, dev: SharedDevice) -> Result<(), VmError> {
        Ok(lock_w(&self.inner.mmio).insert(base, len, dev)?)
    }

    /// An eventfd that raises `gsi` on the in-kernel irqchip when written
    /// (edge: each write is one interrupt).
    pub fn register_irqfd(&self, gsi: u32) -> Result<EventFd, VmError> {
        let evt = EventFd::new(libc::EFD_NONBLOCK)?;
        kvm("KVM_IRQFD", self.inner.vm_fd.register_irqfd(&evt, gsi))?;
        let ret = evt.try_clone()?;
        lock(&self.inner.irqfds).push(evt);
        Ok(ret)
    }

    /// Run `hook` on every reset (while vCPUs are stopped), to put a device
    /// back to its power-on state.
    pub fn add_reset_hook(&self, hook: impl FnMut() + Send + 'static) {
        lock(&self.inner.reset_hooks).push(Box::new(hook));
    }

    /// Add a RAM-like memslot (e.g. framebuffer VRAM) at `gpa`, backed by
    /// `mapping` (kept alive by the VM). Returns the KVM slot number.
    pub fn add_memslot(
        &self,
        gpa: u64,
        mapping: Arc<MmapRegion>,
        dirty_log: bool,
    ) -> Result<u32, VmError> {
        let size = mapping.size() as u64;
        if gpa % 4096 != 0 || size == 0 || size % 4096 != 0 {
            return Err(VmError::Invalid("memslot must be page aligned".into()));
        }
        let mut slots = lock(&self.inner.slots);
        let end = gpa
            .checked_add(size)
            .ok_or_else(|| VmError::Invalid("memslot overflows".into()))?;
        if slots.iter().any(|s| gpa < s.gpa + s.size && s.gpa < end) {
            return Err(VmError::Invalid(format!(
                "memslot {gpa:#x}+{size:#x} overlaps another"
            )));
        }
        let slot = MemSlot {
            slot: slots.iter().map(|s| s.slot + 1).max().unwrap_or(0),
            gpa,
            size,
            host_addr: mapping.as_ptr() as u64,
            dirty_log,
            is_ram: false,
        };
        set_slot(&self.inner.vm_fd, &slot)?;
        slots.push(slot);
        lock(&self.inner.extra_maps).push(mapping);
        Ok(slot.slot)
    }

    /// All memslots.
    pub fn memslots(&self) -> Vec<MemSlot> {
        lock(&self.inner.slots).clone()
    }

    /// Turn dirty-page logging on or off for `slot`.
    pub fn set_dirty_logging(&self, slot: u32, on: bool) -> Result<(), VmError> {
        let mut slots = lock(&self.inner.slots);
        let s = slots
            .iter_mut()
            .find(|s| s.slot == slot)
            .ok_or_else(|| VmError::Invalid(format!("no memslot {slot}")))?;
        s.dirty_log = on;
        if !on {
            lock(&self.inner.vmm_dirty).remove(&slot);
        }
        set_slot(&self.inner.vm_fd, s)
    }

    /// Get and clear `slot`'s dirty bitmap: bit `n` of word `n / 64` set
    /// means 4 KiB page `n` of the slot was written since the last call.
    pub fn dirty_bitmap(&self, slot: u32) -> Result<Vec<u64>, VmError> {
        let s = lock(&self.inner.slots)
            .iter()
            .find(|s| s.slot == slot)
            .copied()
            .ok_or_else(|| VmError::Invalid(format!("no memslot {slot}")))?;
        if !s.dirty_log {
            return Err(VmError::Invalid(format!(
                "dirty logging is off for memslot {slot}"
            )));
        }
        let mut bits = kvm(
            "KVM_GET_DIRTY_LOG",
            self.inner.vm_fd.get_dirty_log(slot, s.size as usize),
        )?;
        if let Some(vmm_bits) = lock(&self.inner.vmm_dirty).get_mut(&slot) {
            for (b, v) in bits.iter_mut().zip(vmm_bits.iter_mut()) {
                *b |= std::mem::take(v);
            }
        }
        Ok(bits)
    }

    /// Record that the VMM itself (a device doing DMA, not a vCPU) wrote
    /// `[gpa, gpa+len)`: KVM's log does not see such writes, so devices call
    /// this and [`Vm::dirty_bitmap`] reports the pages too. Ignored for
    /// slots without dirty logging.
    pub fn mark_dirty(&self, gpa: u64, len: u64) {
        if len == 0 {
            return;
        }
        let slots = lock(&self.inner.slots);
        let mut vmm_dirty = lock(&self.inner.vmm_dirty);
        let end = gpa.saturating_add(len);
        for s in slots.iter().filter(|s| s.dirty_log) {
            let (lo, hi) = (gpa.max(s.gpa), end.min(s.gpa + s.size));
            if lo >= hi {
                continue;
            }
            let words = (s.size / 4096).div_ceil(64) as usize;
            let map = vmm_dirty.entry(s.slot).or_insert_with(|| vec![0; words]);
            for page in (lo - s.gpa) / 4096..=(hi - 1 - s.gpa) / 4096 {
                map[(page / 64) as usize] |= 1 << (page % 64);
            }
        }
    }

    /// Full state of the machine: KVM (VM, vCPUs) and every registered
    /// device model. The VM must be stopped.
    pub fn save_state(&self) -> Result<MachineState, VmError> {
        let _g = lock(&self.inner.ops);
        self.inner.require_stopped()?;
        let mut s = self.inner.get_machine_state()?;
        for (id, dev) in lock(&self.inner.device_states).iter() {
            let data = dev
                .save()
                .map_err(|e| VmError::Invalid(format!("saving {id}: {e}")))?;
            s.devices.push(DeviceBlob {
                id: id.clone(),
                data,
            });
        }
        Ok(s)
    }

    /// Restore everything [`Vm::save_state`] returns (including kvmclock).
    /// The VM must be stopped; the input is validated (vCPU count, MSR
    /// list, exactly the registered devices) before anything is written.
    pub fn restore_state(&self, s: &MachineState) -> Result<(), VmError> {
        let _g = lock(&self.inner.ops);
        self.inner.require_stopped()?;
        let devs = lock(&self.inner.device_states).clone();
        let mut ids: Vec<&str> = s.devices.iter().map(|d| d.id.as_str()).collect();
        let mut want: Vec<&str> = devs.iter().map(|(id, _)| id.as_str()).collect();
        ids.sort_unstable();
        want.sort_unstable();
        if ids != want {
            return Err(StateError::Mismatch(format!(
                "device states {ids:?}, this VM has {want:?}"
            ))
            .into());
        }
        self.inner.set_machine_state(s, true)?;
        for blob in &s.devices {
            if let Some((_, dev)) = devs.iter().find(|(id, _)| *id == blob.id) {
                dev.restore(&blob.data)
                    .map_err(|e| VmError::Invalid(format!("restoring {}: {e}", blob.id)))?;
            }
        }
        Ok(())
    }

    /// Make `dev`'s state part of [`Vm::save_state`]/[`Vm::restore_state`]
    /// under `id` (unique). COM1 is registered as `serial0`.
    pub fn register_device_state(
        &self,
        id: &str,
        dev: Arc<dyn DeviceState>,
    ) -> Result<(), VmError> {
        self.inner.register_device_state(id, dev)
    }

    /// COM1, for snapshotting its registers.
    pub fn serial(&self) -> Option<Arc<Mutex<SerialDevice>>> {
        self.inner.serial.clone()
    }
}

fn lock_w(b: &RwLock<Bus>) -> std::sync::RwLockWriteGuard<'_, Bus> {
    b.write().unwrap_or_else(|p| p.into_inner())
}

fn set_slot(vm_fd: &VmFd, s: &MemSlot) -> Result<(), VmError> {
    let region = kvm_userspace_memory_region {
        slot: s.slot,
        flags: if s.dirty_log {
            KVM_MEM_LOG_DIRTY_PAGES
        } else {
            0
        },
        guest_phys_addr: s.gpa,
        memory_size: s.size,
        userspace_addr: s.host_addr,
    };
    // SAFETY: host_addr..+size is a live mapping owned by the VM (guest RAM
    // or a mapping kept in `extra_maps`) for as long as the VM fd exists.
    kvm("KVM_SET_USER_MEMORY_REGION", unsafe {
        vm_fd.set_user_memory_region(region)
    })
}

impl VmInner {
    fn register_device_state(&self, id: &str, dev: Arc<dyn DeviceState>) -> Result<(), VmError> {
        let mut d = lock(&self.device_states);
        if id.is_empty() || d.iter().any(|(i, _)| i == id) {
            return Err(VmError::Invalid(format!(
                "device state id {id:?} is empty or taken"
            )));
        }
        d.push((id.to_string(), dev));
        Ok(())
    }

    fn emit(&self, ev: VmEvent) {
        tracing::debug!(?ev, "vm event");
        lock(&self.subscribers).retain(|s| s.send(ev.clone()).is_ok());
    }

    fn kick(&self) {
        for &t in &self.pthreads {
            // SAFETY: pthread ids of our vCPU threads, which are joined only
            // in Vm::drop after the last kick; the signal has a handler.
            unsafe { libc::pthread_kill(t, vcpu::kick_signal()) };
        }
    }

    fn pause_as(&self, new: RunState) {
        let _g = lock(&self.ops);
        self.stop_vcpus(new, true);
    }

    /// Park vCPUs and move to `new`; emits `Stop` when leaving `running`.
    fn stop_vcpus(&self, new: RunState, emit_stop: bool) {
        self.control.pause(&|| self.kick());
        let mut st = lock(&self.state);
        let was = *st;
        match (was, new) {
            // A stopped-for-good machine stays so; a plain pause of a
            // prelaunch VM stays prelaunch (as QEMU).
            (RunState::Shutdown | RunState::InternalError, _) => {}
            (RunState::Prelaunch, RunState::Paused) => {}
            _ => *st = new,
        }
        drop(st);
        if was == RunState::Running && emit_stop {
            self.emit(VmEvent::Stop);
        }
    }

    fn require_stopped(&self) -> Result<(), VmError> {
        if *lock(&self.state) == RunState::Running || !self.control.is_paused() {
            return Err(VmError::Invalid("the VM must be stopped".into()));
        }
        Ok(())
    }

    fn get_machine_state(&self) -> Result<MachineState, VmError> {
        let vcpus = lock(&self.vcpus);
        let mut out = Vec::new();
        for (id, v) in vcpus.iter().enumerate() {
            let fd = lock(&v.fd);
            out.push(state::get_vcpu_state(
                id as u32,
                &fd,
                &self.msr_list,
                self.xsave,
            )?);
        }
        Ok(MachineState {
            vm: state::get_vm_state(&self.vm_fd)?,
            vcpus: out,
            devices: Vec::new(),
        })
    }

    fn set_machine_state(&self, s: &MachineState, with_clock: bool) -> Result<(), VmError> {
        let vcpus = lock(&self.vcpus);
        if s.vcpus.len() != vcpus.len() {
            return Err(StateError::Mismatch(format!(
                "{} vCPUs saved, {} here",
                s.vcpus.len(),
                vcpus.len()
            ))
            .into());
        }
        // A migration stream is untrusted: only MSRs this VM saves itself
        // (KVM's saveable list, as probed here) are accepted.
        for st in &s.vcpus {
            if st.msrs.len() > self.msr_list.len() {
                return Err(
                    StateError::Mismatch(format!("{} MSRs in saved state", st.msrs.len())).into(),
                );
            }
            if let Some(m) = st.msrs.iter().find(|m| !self.msr_list.contains(&m.index)) {
                return Err(StateError::Mismatch(format!(
                    "MSR {:#x} is not saveable here",
                    m.index
                ))
                .into());
            }
        }
        state::set_vm_state(&self.vm_fd, &s.vm, with_clock)?;
        for (v, st) in vcpus.iter().zip(&s.vcpus) {
            state::set_vcpu_state(&lock(&v.fd), st)?;
        }
        Ok(())
    }

    fn reset(&self, reason: &str) -> Result<(), VmError> {
        let _g = lock(&self.ops);
        let was = *lock(&self.state);
        self.stop_vcpus(was, false);
        self.set_machine_state(&self.initial, false)?;
        let (regs, cr3) = load_boot(&self.boot, &self.ram, self.nr_vcpus, self.tsc_khz)?;
        {
            let vcpus = lock(&self.vcpus);
            let bsp = lock(&vcpus[0].fd);
            let mut sregs = kvm("KVM_GET_SREGS", bsp.get_sregs())?;
            boot::long_mode_sregs(&mut sregs, cr3);
            kvm("KVM_SET_SREGS", bsp.set_sregs(&sregs))?;
            kvm("KVM_SET_REGS", bsp.set_regs(&regs))?;
        }
        if let Some(s) = &self.serial {
            lock(s).reset()?;
        }
        lock(&self.power).reset();
        for h in lock(&self.reset_hooks).iter_mut() {
            h();
        }
        self.emit(VmEvent::Reset {
            reason: reason.to_string(),
        });
        if was == RunState::Running {
            self.control.resume();
        } else {
            *lock(&self.state) = RunState::Prelaunch;
        }
        Ok(())
    }

    fn shutdown(&self, reason: &str) {
        let _g = lock(&self.ops);
        // QEMU sends SHUTDOWN without a STOP before it.
        self.stop_vcpus(RunState::Shutdown, false);
        *lock(&self.state) = RunState::Shutdown;
        self.emit(VmEvent::Shutdown {
            reason: reason.to_string(),
        });
    }
}

fn manage(inner: Arc<VmInner>, rx: Receiver<Request>) {
    while let Ok(req) = rx.recv() {
        match req {
            Request::Quit => break,
            Request::Reset(reason) => {
                if inner.guest_reset == GuestResetAction::Shutdown {
                    inner.shutdown(&reason);
                } else if let Err(e) = inner.reset(&reason) {
                    tracing::error!("reset failed: {e}");
                    let _g = lock(&inner.ops);
                    inner.stop_vcpus(RunState::InternalError, true);
                    *lock(&inner.state) = RunState::InternalError;
                    inner.emit(VmEvent::InternalError(format!("reset failed: {e}")));
                }
            }
            Request::Shutdown(reason) => inner.shutdown(&reason),
            Request::GuestExit(code) => {
                let _g = lock(&inner.ops);
                inner.stop_vcpus(RunState::Shutdown, false);
                *lock(&inner.state) = RunState::Shutdown;
                inner.emit(VmEvent::GuestExit(code));
            }
            Request::InternalError(desc) => {
                tracing::error!("{desc}");
                let _g = lock(&inner.ops);
                inner.stop_vcpus(RunState::InternalError, true);
                *lock(&inner.state) = RunState::InternalError;
                inner.emit(VmEvent::InternalError(desc));
            }
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.inner.requests.send(Request::Quit);
        if let Some(m) = self.manager.take() {
            let _ = m.join();
        }
        self.inner.control.exit(&|| self.inner.kick());
        let threads: Vec<_> = lock(&self.inner.vcpus)
            .iter_mut()
            .filter_map(|v| v.thread.take())
            .collect();
        for t in threads {
            let _ = t.join();
        }
        lock(&self.inner.serial_input).take();
        let _ = &self.inner.kvm;
        let _ = &self.inner.mmio;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send_sync<T: Send + Sync>() {}

    #[test]
    fn handles_are_shareable_between_threads() {
        send_sync::<Vm>();
        send_sync::<VmControl>();
        send_sync::<MachineState>();
    }

    #[test]
    fn run_state_names_match_qmp() {
        assert_eq!(RunState::Prelaunch.as_qmp_str(), "prelaunch");
        assert_eq!(RunState::InternalError.as_qmp_str(), "internal-error");
        assert_eq!(RunState::FinishMigrate.as_qmp_str(), "finish-migrate");
    }
}
