//! Linux direct boot (`-kernel`, `-initrd`, `-append`) with `linux-loader`.
//!
//! Accepts a bzImage (64-bit boot protocol, header version >= 2.12 with
//! `XLF_KERNEL_64`) or an ELF `vmlinux` (PVH entry when it carries the
//! `XEN_ELFNOTE_PHYS32_ENTRY` note, else the 64-bit protocol at `e_entry`).
//!
//! ```text
//!  guest-physical layout written here
//!  0x0000_0500  boot GDT / IDT                     (cpu.rs)
//!  0x0000_6000  PVH hvm_start_info, modlist, memmap (PVH only)
//!  0x0000_7000  zero page (struct boot_params)      (Linux protocol)
//!  0x0000_8ff0  boot stack top
//!  0x0000_9000  identity page tables (1 GiB)
//!  0x0009_0000  kernel command line (NUL-terminated; clear of the core's
//!               boot area 0x1000..0x8_0000, see vmm::boot)
//!  0x0010_0000  kernel (bzImage protected-mode part, or vmlinux segments)
//!  top of low RAM, below initrd_addr_max, 4 KiB aligned: initrd
//! ```
//!
//! The result, [`BootSetup`], is plain data: what was placed where, the
//! e820 map, and the register state the core applies to vCPU 0. This host
//! cannot run a Linux kernel (nested PVM), so the loader is tested on a
//! real Debian kernel image without executing it (docs/devices.md).

pub mod cpu;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, setup_header};
use linux_loader::loader::elf::{Elf, PvhBootCapability};
use linux_loader::loader::{BzImage, KernelLoader};
use vm_memory::{
    Address, ByteValued, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap,
    GuestMemoryRegion,
};

pub use cpu::BootCpuState;

/// Where the kernel goes (1 MiB).
pub const KERNEL_START: u64 = 0x10_0000;
/// Zero page (boot_params).
pub const ZERO_PAGE: u64 = 0x7000;
/// Command line: above the core's boot area (page tables up to 0x7_0000,
/// stack top 0x8_0000) and below the EBDA, room for 64 KiB.
pub const CMDLINE_START: u64 = 0x9_0000;
/// Command-line buffer limit when the kernel does not say (or for ELF).
pub const CMDLINE_DEFAULT_MAX: u32 = 2048;
/// PVH `hvm_start_info`.
pub const PVH_START_INFO: u64 = 0x6000;
/// PVH module list (initrd).
pub const PVH_MODLIST: u64 = 0x6100;
/// PVH memory map.
pub const PVH_MEMMAP: u64 = 0x6200;
/// End of conventional memory below the EBDA.
pub const EBDA_START: u64 = 0x9_fc00;
/// e820 type: usable RAM.
pub const E820_RAM: u32 = 1;
/// e820 type: reserved.
pub const E820_RESERVED: u32 = 2;

const HDRS_MAGIC: u32 = 0x5372_6448;
const XLF_KERNEL_64: u16 = 1;
const LOADED_HIGH: u8 = 0x01;
const CAN_USE_HEAP: u8 = 0x80;
const PVH_MAGIC: u32 = 0x336e_c578;

/// One e820 entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct E820Entry {
    /// Start address.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// [`E820_RAM`] or [`E820_RESERVED`].
    pub kind: u32,
}

/// Which entry protocol the kernel uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootProtocol {
    /// bzImage, 64-bit boot protocol (entry = load address + 0x200).
    BzImage64,
    /// ELF vmlinux entered at `e_entry` in long mode with a zero page.
    Elf64,
    /// ELF with a PVH note, entered in 32-bit protected mode.
    Pvh,
}

/// The interesting fields of a bzImage setup header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetupHeaderInfo {
    /// Boot protocol version (0x020f = 2.15).
    pub version: u16,
    /// 512-byte setup sectors.
    pub setup_sects: u8,
    /// loadflags as written to the zero page.
    pub loadflags: u8,
    /// xloadflags.
    pub xloadflags: u16,
    /// Highest address the initrd may end at (inclusive).
    pub initrd_addr_max: u32,
    /// Command-line buffer size (excluding NUL).
    pub cmdline_size: u32,
    /// Required kernel alignment.
    pub kernel_alignment: u32,
    /// Memory the kernel needs from its load address while decompressing.
    pub init_size: u32,
}

/// Everything [`load_linux`] placed in guest memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootSetup {
    /// Entry protocol.
    pub protocol: BootProtocol,
    /// Where the kernel image starts.
    pub kernel_load: u64,
    /// End of the loaded kernel image.
    pub kernel_end: u64,
    /// bzImage header, when there was one.
    pub setup_header: Option<SetupHeaderInfo>,
    /// Zero page address (Linux protocols).
    pub zero_page: Option<u64>,
    /// PVH `hvm_start_info` address.
    pub pvh_start_info: Option<u64>,
    /// Command line address and length (without NUL).
    pub cmdline: (u64, usize),
    /// Initrd address and size.
    pub initrd: Option<(u64, u64)>,
    /// The memory map given to the kernel.
    pub e820: Vec<E820Entry>,
    /// vCPU 0 state at entry.
    pub cpu: BootCpuState,
}

/// Loader failures, each naming what is wrong with the input.
#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    /// Neither a bzImage nor an ELF file.
    #[error("not a Linux kernel: no bzImage 'HdrS' header at 0x202 and no ELF magic")]
    NotAKernel,
    /// An ELF file that is not a 64-bit x86 executable.
    #[error("ELF kernel is not a 64-bit x86-64 image")]
    NotX86_64Elf,
    /// bzImage too old for the 64-bit boot protocol.
    #[error("bzImage boot protocol {major}.{minor:02} is too old (need 2.12 with a 64-bit entry)")]
    ProtocolTooOld {
        /// Major version.
        major: u8,
        /// Minor version.
        minor: u8,
    },
    /// bzImage without a 64-bit entry point.
    #[error("bzImage has no 64-bit entry point (XLF_KERNEL_64 clear) or is not LOADED_HIGH")]
    No64BitEntry,
    /// Reading the kernel or initrd.
    #[error("{what}: {source}")]
    Io {
        /// Which file.
        what: &'static str,
        /// Cause.
        source: std::io::Error,
    },
    /// linux-loader rejected the image.
    #[error("kernel image: {0}")]
    Image(#[from] linux_loader::loader::Error),
    /// Command line does not fit the kernel's buffer.
    #[error("kernel command line is {len} bytes, the kernel accepts at most {max}")]
    CmdlineTooLong {
        /// Given length.
        len: usize,
        /// Kernel limit.
        max: u32,
    },
    /// Command line contains a NUL byte.
    #[error("kernel command line contains a NUL byte")]
    CmdlineNul,
    /// No RAM at address 0, or too little for the boot structures.
    #[error("guest RAM below 4 GiB is too small for direct Linux boot ({0:#x} bytes)")]
    LowMemory(u64),
    /// The kernel does not fit guest RAM.
    #[error("kernel needs {need:#x} bytes from {start:#x} but low RAM ends at {end:#x}")]
    KernelTooLarge {
        /// Load address.
        start: u64,
        /// Bytes needed.
        need: u64,
        /// End of low RAM.
        end: u64,
    },
    /// The initrd does not fit between the kernel and initrd_addr_max.
    #[error("initrd of {size:#x} bytes does not fit below {limit:#x} above the kernel (ends {kernel_end:#x})")]
    InitrdTooLarge {
        /// Initrd size.
        size: u64,
        /// Highest end allowed.
        limit: u64,
        /// Kernel end (incl. init_size).
        kernel_end: u64,
    },
    /// Writing guest memory.
    #[error("guest memory: {0}")]
    Memory(#[from] vm_memory::GuestMemoryError),
    /// Writing boot params.
    #[error("boot params: {0}")]
    BootParams(#[from] linux_loader::configurator::Error),
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> LoaderError {
    move |source| LoaderError::Io { what, source }
}

/// End of the RAM that starts at address 0 (clamped to the 32-bit hole).
fn low_ram_end(mem: &GuestMemoryMmap) -> u64 {
    let mut end = 0u64;
    let mut regions: Vec<(u64, u64)> = mem
        .iter()
        .map(|r| (r.start_addr().raw_value(), r.len()))
        .collect();
    regions.sort_unstable();
    for (start, len) in regions {
        if start != end {
            break;
        }
        end = start + len;
    }
    end.min(crate::layout::RAM_LOW_END)
}

/// Kernel command-line words that tell Linux where the virtio-mmio devices
/// of the first `slots` slots are (`virtio_mmio.device=4K@0xd0000000:5 ...`),
/// since this machine has no ACPI/device-tree description of them.
pub fn virtio_mmio_cmdline(slots: usize) -> String {
    (0..slots.min(crate::layout::VIRTIO_MMIO_SLOTS as usize))
        .map(|n| {
            format!(
                "virtio_mmio.device={}K@{:#x}:{}",
                crate::layout::VIRTIO_MMIO_SIZE >> 10,
                crate::layout::VIRTIO_MMIO_BASE + n as u64 * crate::layout::VIRTIO_MMIO_SIZE,
                crate::layout::VIRTIO_MMIO_IRQ_BASE + n as u32
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The e820 map for `mem`: low RAM split around the legacy BIOS area, the
/// MMIO hole reserved, RAM above 4 GiB.
pub fn e820_map(mem: &GuestMemoryMmap) -> Vec<E820Entry> {
    let mut map = Vec::new();
    let mut regions: Vec<(u64, u64)> = mem
        .iter()
        .map(|r| (r.start_addr().raw_value(), r.len()))
        .collect();
    regions.sort_unstable();
    for (start, len) in regions {
        let end = start + len;
        let mut s = start;
        if s < EBDA_START {
            let e = end.min(EBDA_START);
            map.push(E820Entry {
                addr: s,
                size: e - s,
                kind: E820_RAM,
            });
            s = KERNEL_START;
            if end > EBDA_START {
                map.push(E820Entry {
                    addr: EBDA_START,
                    size: KERNEL_START - EBDA_START,
                    kind: E820_RESERVED,
                });
            }
        }
        if end > s {
            map.push(E820Entry {
                addr: s,
                size: end - s,
                kind: E820_RAM,
            });
        }
    }
    map.push(E820Entry {
        addr: crate::layout::MMIO_BASE,
        size: crate::layout::RAM_HIGH_START - crate::layout::MMIO_BASE,
        kind: E820_RESERVED,
    });
    map
}

fn place_cmdline(
    mem: &GuestMemoryMmap,
    cmdline: &str,
    max: u32,
    low_end: u64,
) -> Result<(u64, usize), LoaderError> {
    if cmdline.as_bytes().contains(&0) {
        return Err(LoaderError::CmdlineNul);
    }
    // The buffer ends below the EBDA whatever the kernel claims.
    let max = max.min((EBDA_START - CMDLINE_START - 1) as u32);
    if cmdline.len() > max as usize {
        return Err(LoaderError::CmdlineTooLong {
            len: cmdline.len(),
            max,
        });
    }
    if CMDLINE_START + cmdline.len() as u64 + 1 > low_end {
        return Err(LoaderError::LowMemory(low_end));
    }
    mem.write_slice(cmdline.as_bytes(), GuestAddress(CMDLINE_START))?;
    mem.write_obj(0u8, GuestAddress(CMDLINE_START + cmdline.len() as u64))?;
    Ok((CMDLINE_START, cmdline.len()))
}

fn place_initrd(
    mem: &GuestMemoryMmap,
    initrd: &mut File,
    addr_max: u64,
    kernel_end: u64,
    low_end: u64,
) -> Result<(u64, u64), LoaderError> {
    let size = initrd.seek(SeekFrom::End(0)).map_err(io("initrd"))?;
    initrd.seek(SeekFrom::Start(0)).map_err(io("initrd"))?;
    let limit = low_end.min(addr_max.saturating_add(1));
    let too_large = LoaderError::InitrdTooLarge {
        size,
        limit,
        kernel_end,
    };
    let Some(addr) = limit.checked_sub(size).map(|a| a & !0xfff) else {
        return Err(too_large);
    };
    if addr < kernel_end || size > u64::from(u32::MAX) {
        return Err(too_large);
    }
    let n = usize::try_from(size).map_err(|_| LoaderError::LowMemory(low_end))?;
    mem.read_exact_volatile_from(GuestAddress(addr), initrd, n)?;
    Ok((addr, size))
}

fn read_header(kernel: &mut File) -> Result<Vec<u8>, LoaderError> {
    let mut head = vec![0u8; 0x400];
    kernel.seek(SeekFrom::Start(0)).map_err(io("kernel"))?;
    let mut got = 0;
    loop {
        let n = kernel.read(&mut head[got..]).map_err(io("kernel"))?;
        if n == 0 {
            break;
        }
        got += n;
        if got == head.len() {
            break;
        }
    }
    head.truncate(got);
    kernel.seek(SeekFrom::Start(0)).map_err(io("kernel"))?;
    Ok(head)
}

fn e820_into_params(params: &mut boot_params, e820: &[E820Entry]) {
    let n = e820.len().min(params.e820_table.len());
    for (slot, e) in params.e820_table.iter_mut().zip(e820) {
        *slot = boot_e820_entry {
            addr: e.addr,
            size: e.size,
            r#type: e.kind,
        };
    }
    params.e820_entries = n as u8;
}

/// Load `kernel` (and `initrd`) into `mem` with `cmdline`; fill the zero page
/// (or PVH start info), e820 map, GDT and page tables. See the module docs.
pub fn load_linux(
    mem: &GuestMemoryMmap,
    kernel: &mut File,
    initrd: Option<&mut File>,
    cmdline: &str,
) -> Result<BootSetup, LoaderError> {
    let low_end = low_ram_end(mem);
    if low_end < 16 << 20 {
        return Err(LoaderError::LowMemory(low_end));
    }
    let head = read_header(kernel)?;
    let is_bz = head.len() >= 0x206
        && u32::from_le_bytes([head[0x202], head[0x203], head[0x204], head[0x205]]) == HDRS_MAGIC;
    let is_elf = head.len() >= 4 && head[..4] == *b"\x7fELF";
    if is_bz {
        load_bzimage(mem, kernel, initrd, cmdline, low_end)
    } else if is_elf {
        // ELFCLASS64 and EM_X86_64.
        if head.len() < 20 || head[4] != 2 || u16::from_le_bytes([head[18], head[19]]) != 0x3e {
            return Err(LoaderError::NotX86_64Elf);
        }
        load_elf(mem, kernel, initrd, cmdline, low_end)
    } else {
        Err(LoaderError::NotAKernel)
    }
}

/// [`load_linux`] with file paths.
pub fn load_linux_paths(
    mem: &GuestMemoryMmap,
    kernel: &Path,
    initrd: Option<&Path>,
    cmdline: &str,
) -> Result<BootSetup, LoaderError> {
    let mut k = File::open(kernel).map_err(io("kernel"))?;
    let mut i = match initrd {
        Some(p) => Some(File::open(p).map_err(io("initrd"))?),
        None => None,
    };
    load_linux(mem, &mut k, i.as_mut(), cmdline)
}

fn load_bzimage(
    mem: &GuestMemoryMmap,
    kernel: &mut File,
    initrd: Option<&mut File>,
    cmdline: &str,
    low_end: u64,
) -> Result<BootSetup, LoaderError> {
    // Validate the header before copying anything.
    let head = read_header(kernel)?;
    let mut hdr = setup_header::default();
    let hlen = std::mem::size_of::<setup_header>().min(head.len().saturating_sub(0x1f1));
    hdr.as_mut_slice()[..hlen].copy_from_slice(&head[0x1f1..0x1f1 + hlen]);
    let version = hdr.version;
    if version < 0x020c {
        return Err(LoaderError::ProtocolTooOld {
            major: (version >> 8) as u8,
            minor: version as u8,
        });
    }
    if hdr.xloadflags & XLF_KERNEL_64 == 0 || hdr.loadflags & LOADED_HIGH == 0 {
        return Err(LoaderError::No64BitEntry);
    }
    let init_size = u64::from(hdr.init_size);
    let kernel_file_len = kernel.seek(SeekFrom::End(0)).map_err(io("kernel"))?;
    kernel.seek(SeekFrom::Start(0)).map_err(io("kernel"))?;
    let need = init_size.max(kernel_file_len);
    if KERNEL_START + need > low_end {
        return Err(LoaderError::KernelTooLarge {
            start: KERNEL_START,
            need,
            end: low_end,
        });
    }

    let res = BzImage::load(
        mem,
        Some(GuestAddress(KERNEL_START)),
        kernel,
        Some(GuestAddress(KERNEL_START)),
    )?;
    let mut hdr = res.setup_header.unwrap_or(hdr);
    let kernel_load = res.kernel_load.raw_value();
    let kernel_end = res.kernel_end.max(kernel_load + init_size);

    let cmdline_max = hdr.cmdline_size; // protocol >= 2.06 has it
    let cmd = place_cmdline(mem, cmdline, cmdline_max, low_end)?;
    let initrd = match initrd {
        Some(f) => Some(place_initrd(
            mem,
            f,
            u64::from(hdr.initrd_addr_max),
            kernel_end,
            low_end,
        )?),
        None => None,
    };

    hdr.type_of_loader = 0xff;
    hdr.loadflags |= CAN_USE_HEAP;
    hdr.heap_end_ptr = 0xfe00;
    hdr.vid_mode = 0xffff;
    hdr.cmd_line_ptr = cmd.0 as u32;
    if let Some((a, s)) = initrd {
        hdr.ramdisk_image = a as u32;
        hdr.ramdisk_size = s as u32;
    }
    let mut params = boot_params {
        hdr,
        ..Default::default()
    };
    let e820 = e820_map(mem);
    e820_into_params(&mut params, &e820);
    LinuxBootConfigurator::write_bootparams::<GuestMemoryMmap>(
        &BootParams::new(&params, GuestAddress(ZERO_PAGE)),
        mem,
    )?;
    let cpu = cpu::long_mode(mem, kernel_load + 0x200, ZERO_PAGE)?;
    Ok(BootSetup {
        protocol: BootProtocol::BzImage64,
        kernel_load,
        kernel_end: res.kernel_end,
        setup_header: Some(SetupHeaderInfo {
            version,
            setup_sects: hdr.setup_sects,
            loadflags: hdr.loadflags,
            xloadflags: hdr.xloadflags,
            initrd_addr_max: hdr.initrd_addr_max,
            cmdline_size: hdr.cmdline_size,
            kernel_alignment: hdr.kernel_alignment,
            init_size: hdr.init_size,
        }),
        zero_page: Some(ZERO_PAGE),
        pvh_start_info: None,
        cmdline: cmd,
        initrd,
        e820,
        cpu,
    })
}

fn load_elf(
    mem: &GuestMemoryMmap,
    kernel: &mut File,
    initrd: Option<&mut File>,
    cmdline: &str,
    low_end: u64,
) -> Result<BootSetup, LoaderError> {
    let res = Elf::load(mem, None, kernel, Some(GuestAddress(KERNEL_START)))?;
    let kernel_load = res.kernel_load.raw_value();
    let kernel_end = res.kernel_end;
    if kernel_end > low_end {
        return Err(LoaderError::KernelTooLarge {
            start: kernel_load,
            need: kernel_end - kernel_load.min(kernel_end),
            end: low_end,
        });
    }
    let cmd = place_cmdline(mem, cmdline, CMDLINE_DEFAULT_MAX, low_end)?;
    let initrd = match initrd {
        Some(f) => Some(place_initrd(mem, f, 0x37ff_ffff, kernel_end, low_end)?),
        None => None,
    };
    let e820 = e820_map(mem);
    if let PvhBootCapability::PvhEntryPresent(entry) = res.pvh_boot_cap {
        write_pvh_info(mem, cmd.0, initrd, &e820)?;
        let cpu = cpu::pvh(mem, entry.raw_value(), PVH_START_INFO)?;
        return Ok(BootSetup {
            protocol: BootProtocol::Pvh,
            kernel_load,
            kernel_end,
            setup_header: None,
            zero_page: None,
            pvh_start_info: Some(PVH_START_INFO),
            cmdline: cmd,
            initrd,
            e820,
            cpu,
        });
    }
    // No PVH note: 64-bit entry at e_entry with a synthesized zero page.
    let mut params = boot_params::default();
    params.hdr.boot_flag = 0xaa55;
    params.hdr.header = HDRS_MAGIC;
    params.hdr.type_of_loader = 0xff;
    params.hdr.kernel_alignment = 0x0100_0000;
    params.hdr.cmd_line_ptr = cmd.0 as u32;
    params.hdr.cmdline_size = CMDLINE_DEFAULT_MAX;
    if let Some((a, s)) = initrd {
        params.hdr.ramdisk_image = a as u32;
        params.hdr.ramdisk_size = s as u32;
    }
    e820_into_params(&mut params, &e820);
    LinuxBootConfigurator::write_bootparams::<GuestMemoryMmap>(
        &BootParams::new(&params, GuestAddress(ZERO_PAGE)),
        mem,
    )?;
    let cpu = cpu::long_mode(mem, kernel_load, ZERO_PAGE)?;
    Ok(BootSetup {
        protocol: BootProtocol::Elf64,
        kernel_load,
        kernel_end,
        setup_header: None,
        zero_page: Some(ZERO_PAGE),
        pvh_start_info: None,
        cmdline: cmd,
        initrd,
        e820,
        cpu,
    })
}

fn write_pvh_info(
    mem: &GuestMemoryMmap,
    cmdline: u64,
    initrd: Option<(u64, u64)>,
    e820: &[E820Entry],
) -> Result<(), LoaderError> {
    // hvm_start_info (56 bytes).
    let mut info = [0u8; 56];
    info[0..4].copy_from_slice(&PVH_MAGIC.to_le_bytes());
    info[4..8].copy_from_slice(&1u32.to_le_bytes()); // version
    if let Some((addr, size)) = initrd {
        info[12..16].copy_from_slice(&1u32.to_le_bytes()); // nr_modules
        info[16..24].copy_from_slice(&PVH_MODLIST.to_le_bytes());
        let mut m = [0u8; 32];
        m[0..8].copy_from_slice(&addr.to_le_bytes());
        m[8..16].copy_from_slice(&size.to_le_bytes());
        mem.write_slice(&m, GuestAddress(PVH_MODLIST))?;
    }
    info[24..32].copy_from_slice(&cmdline.to_le_bytes());
    info[40..48].copy_from_slice(&PVH_MEMMAP.to_le_bytes());
    info[48..52].copy_from_slice(&(e820.len() as u32).to_le_bytes());
    mem.write_slice(&info, GuestAddress(PVH_START_INFO))?;
    for (i, e) in e820.iter().enumerate() {
        let mut ent = [0u8; 24];
        ent[0..8].copy_from_slice(&e.addr.to_le_bytes());
        ent[8..16].copy_from_slice(&e.size.to_le_bytes());
        ent[16..20].copy_from_slice(&e.kind.to_le_bytes());
        mem.write_slice(&ent, GuestAddress(PVH_MEMMAP + 24 * i as u64))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
