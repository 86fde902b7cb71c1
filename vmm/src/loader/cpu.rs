//! Boot-time CPU state for the Linux boot protocols, as plain data the core
//! applies to vCPU 0 (`KVM_SET_REGS`/`KVM_SET_SREGS`), plus the GDT and
//! identity page tables those registers point at.
//!
//! ```text
//!  0x0500  GDT: null, code64 (0x08), data (0x10), tss (0x18)   [64-bit]
//!               null, code32 (0x08), data32 (0x10), tss (0x18) [PVH]
//!  0x8ff0  boot stack top (rsp)
//!  0x9000  PML4 ─▶ 0xa000 PDPT ─▶ 0xb000 PD: 512 x 2 MiB = first 1 GiB
//! ```

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Guest-physical address of the boot GDT.
pub const BOOT_GDT: u64 = 0x500;
/// Guest-physical address of the (empty) boot IDT.
pub const BOOT_IDT: u64 = 0x520;
/// Top of the boot stack.
pub const BOOT_STACK: u64 = 0x8ff0;
/// PML4 of the identity map.
pub const PML4: u64 = 0x9000;
/// PDPT of the identity map.
pub const PDPT: u64 = 0xa000;
/// PD of the identity map (2 MiB pages).
pub const PD: u64 = 0xb000;

/// CR0.PE.
pub const X86_CR0_PE: u64 = 0x1;
/// CR0.ET.
pub const X86_CR0_ET: u64 = 0x10;
/// CR0.PG.
pub const X86_CR0_PG: u64 = 0x8000_0000;
/// CR4.PAE.
pub const X86_CR4_PAE: u64 = 0x20;
/// EFER.LME.
pub const EFER_LME: u64 = 0x100;
/// EFER.LMA.
pub const EFER_LMA: u64 = 0x400;

/// A segment register as KVM's `kvm_segment` describes it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    /// Base address.
    pub base: u64,
    /// Limit (bytes, already scaled by granularity).
    pub limit: u32,
    /// Selector.
    pub selector: u16,
    /// Type field (e.g. 0xb code execute/read accessed).
    pub type_: u8,
    /// Present.
    pub present: u8,
    /// Descriptor privilege level.
    pub dpl: u8,
    /// Default operation size (1 = 32-bit).
    pub db: u8,
    /// Code/data (1) or system (0).
    pub s: u8,
    /// 64-bit code.
    pub l: u8,
    /// Granularity (4 KiB).
    pub g: u8,
}

impl Segment {
    /// Decode a GDT entry (as the CPU would load it) for `selector`.
    pub fn from_gdt(entry: u64, selector: u16) -> Self {
        let base = ((entry >> 16) & 0xff_ffff) | (((entry >> 56) & 0xff) << 24);
        let raw_limit = ((entry & 0xffff) | (((entry >> 48) & 0xf) << 16)) as u32;
        let g = ((entry >> 55) & 1) as u8;
        let limit = if g == 1 {
            (raw_limit << 12) | 0xfff
        } else {
            raw_limit
        };
        Self {
            base,
            limit,
            selector,
            type_: ((entry >> 40) & 0xf) as u8,
            present: ((entry >> 47) & 1) as u8,
            dpl: ((entry >> 45) & 3) as u8,
            db: ((entry >> 54) & 1) as u8,
            s: ((entry >> 44) & 1) as u8,
            l: ((entry >> 53) & 1) as u8,
            g,
        }
    }
}

/// GDT entry from flags (in the 0xTFFF "access|flags" packing), base, limit.
pub const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    ((base as u64 & 0xff00_0000) << (56 - 24))
        | ((flags as u64 & 0x0000_f0ff) << 40)
        | ((limit as u64 & 0x000f_0000) << (48 - 16))
        | ((base as u64 & 0x00ff_ffff) << 16)
        | (limit as u64 & 0x0000_ffff)
}

/// Register state for vCPU 0 at kernel entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BootCpuState {
    /// Entry point.
    pub rip: u64,
    /// Stack pointer (also rbp).
    pub rsp: u64,
    /// Linux 64-bit protocol: zero page address.
    pub rsi: u64,
    /// PVH: `hvm_start_info` address.
    pub rbx: u64,
    /// Flags (bit 1 always set).
    pub rflags: u64,
    /// CR0.
    pub cr0: u64,
    /// CR3 (page-table root; 0 for PVH).
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// EFER.
    pub efer: u64,
    /// Code segment.
    pub cs: Segment,
    /// DS, ES, FS, GS, SS.
    pub data: Segment,
    /// Task register.
    pub tr: Segment,
    /// GDT base and limit.
    pub gdt: (u64, u16),
    /// IDT base and limit.
    pub idt: (u64, u16),
}

fn write_gdt(mem: &GuestMemoryMmap, gdt: &[u64; 4]) -> Result<(), vm_memory::GuestMemoryError> {
    for (i, e) in gdt.iter().enumerate() {
        mem.write_obj(*e, GuestAddress(BOOT_GDT + 8 * i as u64))?;
    }
    mem.write_obj(0u64, GuestAddress(BOOT_IDT))
}

/// 64-bit Linux boot protocol: long mode, paging with a 1 GiB identity map,
/// flat segments, `rsi` = zero page.
pub fn long_mode(
    mem: &GuestMemoryMmap,
    entry: u64,
    zero_page: u64,
) -> Result<BootCpuState, vm_memory::GuestMemoryError> {
    let gdt = [
        gdt_entry(0, 0, 0),
        gdt_entry(0xa09b, 0, 0xfffff),
        gdt_entry(0xc093, 0, 0xfffff),
        gdt_entry(0x808b, 0, 0xfffff),
    ];
    write_gdt(mem, &gdt)?;
    mem.write_obj(PDPT | 0x03, GuestAddress(PML4))?;
    mem.write_obj(PD | 0x03, GuestAddress(PDPT))?;
    for i in 0..512u64 {
        mem.write_obj((i << 21) | 0x83, GuestAddress(PD + i * 8))?;
    }
    Ok(BootCpuState {
        rip: entry,
        rsp: BOOT_STACK,
        rsi: zero_page,
        rbx: 0,
        rflags: 0x2,
        cr0: X86_CR0_PE | X86_CR0_ET | X86_CR0_PG,
        cr3: PML4,
        cr4: X86_CR4_PAE,
        efer: EFER_LME | EFER_LMA,
        cs: Segment::from_gdt(gdt[1], 0x08),
        data: Segment::from_gdt(gdt[2], 0x10),
        tr: Segment::from_gdt(gdt[3], 0x18),
        gdt: (BOOT_GDT, (gdt.len() * 8 - 1) as u16),
        idt: (BOOT_IDT, 7),
    })
}

/// PVH boot: 32-bit protected mode, paging off, flat 4 GiB segments,
/// `rbx` = `hvm_start_info`.
pub fn pvh(
    mem: &GuestMemoryMmap,
    entry: u64,
    start_info: u64,
) -> Result<BootCpuState, vm_memory::GuestMemoryError> {
    let gdt = [
        gdt_entry(0, 0, 0),
        gdt_entry(0xc09b, 0, 0xfffff),
        gdt_entry(0xc093, 0, 0xfffff),
        gdt_entry(0x008b, 0, 0x67),
    ];
    write_gdt(mem, &gdt)?;
    Ok(BootCpuState {
        rip: entry,
        rsp: 0,
        rsi: 0,
        rbx: start_info,
        rflags: 0x2,
        cr0: X86_CR0_PE | X86_CR0_ET,
        cr3: 0,
        cr4: 0,
        efer: 0,
        cs: Segment::from_gdt(gdt[1], 0x08),
        data: Segment::from_gdt(gdt[2], 0x10),
        tr: Segment::from_gdt(gdt[3], 0x18),
        gdt: (BOOT_GDT, (gdt.len() * 8 - 1) as u16),
        idt: (BOOT_IDT, 7),
    })
}
