//! Bulkhead's direct 64-bit boot protocol (used by the built-in guest and by
//! any ELF passed as an image): the VMM loads the ELF's `PT_LOAD` segments,
//! writes identity page tables and a boot-info page, and starts the boot vCPU
//! in long mode, ring 0, at the ELF entry with `rdi` = boot-info address.
//!
//! ```text
//!  0x0000_1000  BootInfo (read it, don't write it)          BOOT_INFO_GPA
//!  0x0000_2000  guest status page (guest-owned, tests read) STATUS_PAGE_GPA
//!  0x0000_3000  initial GDT (null, code64 0x08, data 0x10)  GDT_GPA
//!  0x0001_0000  PML4, PDPT; PDs at 0x3_0000.. (2 MiB pages)   PML4_GPA
//!  0x0008_0000  initial stack top (rsp)                     BOOT_STACK_TOP
//!  0x0020_0000  image (the built-in guest links here)
//! ```
//!
//! The identity map covers `0 .. max(4 GiB, top of RAM)` (RAM, the MMIO
//! hole and the framebuffer), user-accessible, with accessed/dirty bits
//! preset so the CPU never writes page tables (clean dirty logs).
//! Paging state: CR0 = PE|MP|ET|NE|WP|PG, CR4 = PAE|OSFXSR|OSXMMEXCPT, EFER =
//! LME|LMA|SCE, so SSE works in the guest and no XSAVE/AVX state is enabled.

use kvm_bindings::{kvm_fpu, kvm_regs, kvm_segment, kvm_sregs};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use crate::layout;

/// Boot-info page.
pub const BOOT_INFO_GPA: u64 = 0x1000;
/// Guest-owned status page (the built-in guest keeps counters here).
pub const STATUS_PAGE_GPA: u64 = 0x2000;
/// Initial GDT.
pub const GDT_GPA: u64 = 0x3000;
/// Top-level page table; PDPT and PDs follow it.
pub const PML4_GPA: u64 = 0x1_0000;
/// First PD; PD `n` maps GiB `n`. It starts above 0x2_0000..0x2_1000, where
/// Linux loaders put the kernel command line (custom boots write their data
/// before the boot area is written).
const PD_GPA: u64 = 0x3_0000;
/// Page tables end before this address (limits the identity map to 64 GiB).
const PT_END: u64 = 0x7_0000;
/// Initial stack pointer.
pub const BOOT_STACK_TOP: u64 = 0x8_0000;
/// Lowest address an image may load at.
pub const IMAGE_MIN_GPA: u64 = 0x10_0000;

#[path = "../../guest/abi/bootinfo.rs"]
mod bootinfo_abi;
pub use bootinfo_abi::{BootInfo, BOOT_INFO_MAGIC, BOOT_INFO_VERSION};

impl BootInfo {
    fn to_bytes(self) -> Vec<u8> {
        let words = [
            self.magic,
            u64::from(self.version) | (u64::from(self.nr_cpus) << 32),
            self.ram_size,
            self.ram_low_end,
            self.ram_high_start,
            self.ram_high_size,
            self.free_start,
            self.tsc_khz,
            self.fb_base,
            self.fb_size,
            self.fb_regs,
            self.pointer_regs,
            self.virtio_base,
            self.virtio_size,
            self.virtio_slots,
            self.virtio_irq_base,
            self.com1_port,
            self.debug_exit_port,
            self.status_page,
        ];
        words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }
}

/// Errors loading an image.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// Malformed or unsupported ELF.
    #[error("bad ELF image: {0}")]
    BadElf(&'static str),
    /// A segment does not fit in guest RAM (or overlaps the boot area).
    #[error("segment {gpa:#x}+{len:#x} does not fit in guest RAM above {min:#x}", min = IMAGE_MIN_GPA)]
    OutOfRange {
        /// Load address.
        gpa: u64,
        /// Size in memory.
        len: u64,
    },
    /// Guest memory write failed.
    #[error("writing guest memory: {0}")]
    Memory(String),
}

/// A loaded image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadedImage {
    /// Entry point.
    pub entry: u64,
    /// End of the highest loaded byte.
    pub end: u64,
}

fn rd<const N: usize>(b: &[u8], off: usize) -> Result<[u8; N], BootError> {
    b.get(
        off..off
            .checked_add(N)
            .ok_or(BootError::BadElf("offset overflow"))?,
    )
    .and_then(|s| s.try_into().ok())
    .ok_or(BootError::BadElf("truncated"))
}
fn u16_at(b: &[u8], off: usize) -> Result<u16, BootError> {
    Ok(u16::from_le_bytes(rd(b, off)?))
}
fn u32_at(b: &[u8], off: usize) -> Result<u32, BootError> {
    Ok(u32::from_le_bytes(rd(b, off)?))
}
fn u64_at(b: &[u8], off: usize) -> Result<u64, BootError> {
    Ok(u64::from_le_bytes(rd(b, off)?))
}

fn in_ram(mem: &GuestMemoryMmap, gpa: u64, len: u64) -> bool {
    if len == 0 {
        return true;
    }
    match gpa.checked_add(len - 1) {
        Some(last) => {
            mem.address_in_range(GuestAddress(gpa)) && mem.address_in_range(GuestAddress(last))
        }
        None => false,
    }
}

/// Load an ELF64 x86-64 executable's `PT_LOAD` segments at their physical
/// addresses (bss zeroed). Every offset and size is bounds-checked.
pub fn load_elf(mem: &GuestMemoryMmap, elf: &[u8]) -> Result<LoadedImage, BootError> {
    if elf.get(0..4) != Some(b"\x7fELF") {
        return Err(BootError::BadElf("no ELF magic"));
    }
    if elf.get(4) != Some(&2) || elf.get(5) != Some(&1) {
        return Err(BootError::BadElf("not ELF64 little-endian"));
    }
    if u16_at(elf, 18)? != 62 {
        return Err(BootError::BadElf("not x86-64"));
    }
    let entry = u64_at(elf, 24)?;
    let phoff = usize::try_from(u64_at(elf, 32)?).map_err(|_| BootError::BadElf("phoff"))?;
    let phentsize = usize::from(u16_at(elf, 54)?);
    let phnum = usize::from(u16_at(elf, 56)?);
    if phentsize < 56 {
        return Err(BootError::BadElf("phentsize"));
    }
    let mut end = 0u64;
    let mut loaded = 0;
    for i in 0..phnum {
        let ph = phoff
            .checked_add(i * phentsize)
            .ok_or(BootError::BadElf("phdr overflow"))?;
        if u32_at(elf, ph)? != 1 {
            continue; // not PT_LOAD
        }
        let off =
            usize::try_from(u64_at(elf, ph + 8)?).map_err(|_| BootError::BadElf("p_offset"))?;
        let paddr = u64_at(elf, ph + 24)?;
        let filesz = u64_at(elf, ph + 32)?;
        let memsz = u64_at(elf, ph + 40)?;
        if filesz > memsz {
            return Err(BootError::BadElf("filesz > memsz"));
        }
        if paddr < IMAGE_MIN_GPA || !in_ram(mem, paddr, memsz) {
            return Err(BootError::OutOfRange {
                gpa: paddr,
                len: memsz,
            });
        }
        let fsz = usize::try_from(filesz).map_err(|_| BootError::BadElf("filesz"))?;
        let data = elf
            .get(
                off..off
                    .checked_add(fsz)
                    .ok_or(BootError::BadElf("segment overflow"))?,
            )
            .ok_or(BootError::BadElf("segment outside file"))?;
        mem.write_slice(data, GuestAddress(paddr))
            .map_err(|e| BootError::Memory(e.to_string()))?;
        // Zero the bss in bounded chunks (it may be as large as guest RAM).
        let zeros = [0u8; 64 * 1024];
        let mut at = paddr + filesz;
        while at < paddr + memsz {
            let n = (paddr + memsz - at).min(zeros.len() as u64);
            mem.write_slice(&zeros[..n as usize], GuestAddress(at))
                .map_err(|e| BootError::Memory(e.to_string()))?;
            at += n;
        }
        end = end.max(paddr + memsz);
        loaded += 1;
    }
    if loaded == 0 {
        return Err(BootError::BadElf("no PT_LOAD segment"));
    }
    Ok(LoadedImage { entry, end })
}

const PTE_P: u64 = 1;
const PTE_RW: u64 = 2;
const PTE_US: u64 = 4;
const PTE_A: u64 = 0x20;
const PTE_D: u64 = 0x40;
const PTE_PS: u64 = 0x80;

/// Write identity page tables covering `0 .. top` (rounded up to 1 GiB,
/// capped at what fits below [`PT_END`]). Returns the CR3 value.
pub fn write_page_tables(mem: &GuestMemoryMmap, top: u64) -> Result<u64, BootError> {
    let max_pds = (PT_END - PD_GPA) / 0x1000;
    let gibs = top.div_ceil(1 << 30).clamp(4, max_pds);
    let w = |gpa: u64, v: u64| {
        mem.write_obj(v, GuestAddress(gpa))
            .map_err(|e| BootError::Memory(e.to_string()))
    };
    let table_flags = PTE_P | PTE_RW | PTE_US | PTE_A;
    let pdpt = PML4_GPA + 0x1000;
    mem.write_slice(&[0u8; 0x2000], GuestAddress(PML4_GPA))
        .map_err(|e| BootError::Memory(e.to_string()))?;
    w(PML4_GPA, pdpt | table_flags)?;
    let mut pd_bytes = vec![0u8; (gibs * 0x1000) as usize];
    for g in 0..gibs {
        w(pdpt + g * 8, (PD_GPA + g * 0x1000) | table_flags)?;
        for e in 0..512u64 {
            let addr = (g << 30) | (e << 21);
            let v = addr | table_flags | PTE_D | PTE_PS;
            let at = ((g * 512 + e) * 8) as usize;
            pd_bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
        }
    }
    mem.write_slice(&pd_bytes, GuestAddress(PD_GPA))
        .map_err(|e| BootError::Memory(e.to_string()))?;
    Ok(PML4_GPA)
}

/// GDT entries written at [`GDT_GPA`] (accessed bits preset).
const GDT: [u64; 4] = [
    0,
    0x00af_9b00_0000_ffff, // 0x08: 64-bit ring-0 code
    0x00cf_9300_0000_ffff, // 0x10: ring-0 data
    0x0080_8b00_0000_0067, // 0x18: 64-bit TSS (busy) at 0, for TR's cache
];

fn seg(selector: u16, type_: u8, l: u8, db: u8, s: u8, limit: u32) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit,
        selector,
        type_,
        present: 1,
        dpl: 0,
        db,
        s,
        l,
        g: u8::from(limit > 0xfffff || limit == 0xffff_ffff),
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

/// Set `sregs` for 64-bit long mode with the given CR3.
pub fn long_mode_sregs(sregs: &mut kvm_sregs, cr3: u64) {
    sregs.cs = seg(0x08, 11, 1, 0, 1, 0xffff_ffff);
    let data = seg(0x10, 3, 0, 1, 1, 0xffff_ffff);
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = seg(0x18, 11, 0, 0, 0, 0x67);
    sregs.gdt.base = GDT_GPA;
    sregs.gdt.limit = (GDT.len() * 8 - 1) as u16;
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    sregs.cr0 = 0x8001_0033; // PG | WP | NE | ET | MP | PE
    sregs.cr3 = cr3;
    sregs.cr4 = 0x620; // OSXMMEXCPT | OSFXSR | PAE
    sregs.efer = 0x501; // LMA | LME | SCE
}

/// Initial general registers: entry point, stack, boot info in rdi.
pub fn entry_regs(entry: u64) -> kvm_regs {
    kvm_regs {
        rip: entry,
        rsp: BOOT_STACK_TOP,
        rdi: BOOT_INFO_GPA,
        rflags: 2,
        ..Default::default()
    }
}

/// Initial FPU state (x87 default control word, SSE default MXCSR).
pub fn initial_fpu() -> kvm_fpu {
    kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    }
}

/// Write the GDT, page tables and boot info. Returns the CR3 value.
pub fn write_boot_area(mem: &GuestMemoryMmap, top: u64, info: &BootInfo) -> Result<u64, BootError> {
    let gdt: Vec<u8> = GDT.iter().flat_map(|e| e.to_le_bytes()).collect();
    mem.write_slice(&gdt, GuestAddress(GDT_GPA))
        .map_err(|e| BootError::Memory(e.to_string()))?;
    let mut page = info.to_bytes();
    page.resize(0x1000, 0);
    mem.write_slice(&page, GuestAddress(BOOT_INFO_GPA))
        .map_err(|e| BootError::Memory(e.to_string()))?;
    mem.write_slice(&[0u8; 0x1000], GuestAddress(STATUS_PAGE_GPA))
        .map_err(|e| BootError::Memory(e.to_string()))?;
    write_page_tables(mem, top)
}

/// A boot info for this machine's fixed layout.
pub fn boot_info(ram_size: u64, nr_cpus: u32, free_start: u64, tsc_khz: u64, fb: bool) -> BootInfo {
    let high = ram_size.saturating_sub(layout::RAM_LOW_END);
    BootInfo {
        magic: BOOT_INFO_MAGIC,
        version: BOOT_INFO_VERSION,
        nr_cpus,
        ram_size,
        ram_low_end: ram_size.min(layout::RAM_LOW_END),
        ram_high_start: if high > 0 { layout::RAM_HIGH_START } else { 0 },
        ram_high_size: high,
        free_start,
        tsc_khz,
        fb_base: if fb { layout::FB_BASE } else { 0 },
        fb_size: if fb { layout::FB_SIZE } else { 0 },
        fb_regs: layout::FB_REGS_BASE,
        pointer_regs: layout::POINTER_REGS_BASE,
        virtio_base: layout::VIRTIO_MMIO_BASE,
        virtio_size: layout::VIRTIO_MMIO_SIZE,
        virtio_slots: layout::VIRTIO_MMIO_SLOTS,
        virtio_irq_base: u64::from(layout::VIRTIO_MMIO_IRQ_BASE),
        com1_port: u64::from(layout::COM1_PORT),
        debug_exit_port: u64::from(layout::DEBUG_EXIT_PORT),
        status_page: STATUS_PAGE_GPA,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 16 << 20)]).unwrap()
    }

    #[test]
    fn rejects_bad_elves() {
        let m = mem();
        assert!(load_elf(&m, b"").is_err());
        assert!(load_elf(&m, b"\x7fELF\x02\x01").is_err());
        let mut e = vec![0u8; 64];
        e[..4].copy_from_slice(b"\x7fELF");
        e[4] = 2;
        e[5] = 1;
        e[18] = 62;
        e[32] = 0xff; // phoff far outside
        e[54] = 56;
        e[56] = 1;
        assert!(load_elf(&m, &e).is_err());
    }

    #[test]
    fn page_tables_identity_map() {
        let m = mem();
        let cr3 = write_page_tables(&m, 1 << 30).unwrap();
        let pml4: u64 = m.read_obj(GuestAddress(cr3)).unwrap();
        let pdpt: u64 = m.read_obj(GuestAddress(pml4 & !0xfff)).unwrap();
        // GiB 3 (MMIO hole) is mapped too.
        let pdpt3: u64 = m.read_obj(GuestAddress((pml4 & !0xfff) + 24)).unwrap();
        let pde: u64 = m.read_obj(GuestAddress((pdpt3 & !0xfff) + 8)).unwrap();
        assert_eq!(pde & !0xfff, (3 << 30) | (1 << 21));
        assert_ne!(pdpt & PTE_US, 0);
        // However large RAM is, a Linux command line at 0x2_0000 survives.
        m.write_slice(&[0xaa; 0x1000], GuestAddress(0x2_0000))
            .unwrap();
        write_page_tables(&m, 1 << 40).unwrap();
        let mut b = [0u8; 0x1000];
        m.read_slice(&mut b, GuestAddress(0x2_0000)).unwrap();
        assert!(b.iter().all(|&x| x == 0xaa));
    }
}
