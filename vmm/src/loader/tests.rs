//! Loader tests: synthetic bzImage/ELF images for every error path, and a
//! real Debian kernel (fetched by `scripts/fetch-test-kernel`) for the
//! parsing and placement of an actual bzImage.

use std::io::Write;
use std::path::PathBuf;

use super::*;

const MIB: u64 = 1 << 20;

fn mem(size: u64) -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), size as usize)]).unwrap()
}

struct Tmp(PathBuf);
impl Tmp {
    fn new(tag: &str, bytes: &[u8]) -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "bulkhead-loader-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ));
        std::fs::File::create(&p).unwrap().write_all(bytes).unwrap();
        Self(p)
    }
    fn file(&self) -> File {
        File::open(&self.0).unwrap()
    }
}
impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2654435761).wrapping_add(seed) >> 13) as u8)
        .collect()
}

/// A minimal bzImage: 4 setup sectors + boot sector, then `payload`.
fn fake_bzimage(version: u16, xloadflags: u16, payload: &[u8]) -> Vec<u8> {
    let mut img = vec![0u8; 5 * 512];
    img[0x1f1] = 4;
    img[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
    img[0x202..0x206].copy_from_slice(b"HdrS");
    img[0x206..0x208].copy_from_slice(&version.to_le_bytes());
    img[0x211] = LOADED_HIGH;
    img[0x214..0x218].copy_from_slice(&0x10_0000u32.to_le_bytes());
    img[0x22c..0x230].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    img[0x230..0x234].copy_from_slice(&0x20_0000u32.to_le_bytes());
    img[0x234] = 1;
    img[0x236..0x238].copy_from_slice(&xloadflags.to_le_bytes());
    img[0x238..0x23c].copy_from_slice(&255u32.to_le_bytes());
    img[0x260..0x264].copy_from_slice(&(2 * MIB as u32).to_le_bytes());
    img.extend_from_slice(payload);
    img
}

fn read_params(m: &GuestMemoryMmap) -> boot_params {
    m.read_obj(GuestAddress(ZERO_PAGE)).unwrap()
}

fn check_common(m: &GuestMemoryMmap, setup: &BootSetup, cmdline: &str, ram: u64) {
    // Command line placed and NUL-terminated.
    let mut c = vec![0u8; cmdline.len() + 1];
    m.read_slice(&mut c, GuestAddress(CMDLINE_START)).unwrap();
    assert_eq!(&c[..cmdline.len()], cmdline.as_bytes());
    assert_eq!(c[cmdline.len()], 0);
    assert_eq!(setup.cmdline, (CMDLINE_START, cmdline.len()));
    // e820: low RAM, legacy hole, RAM from 1 MiB, MMIO hole reserved.
    assert_eq!(
        setup.e820,
        vec![
            E820Entry {
                addr: 0,
                size: EBDA_START,
                kind: E820_RAM
            },
            E820Entry {
                addr: EBDA_START,
                size: KERNEL_START - EBDA_START,
                kind: E820_RESERVED
            },
            E820Entry {
                addr: KERNEL_START,
                size: ram - KERNEL_START,
                kind: E820_RAM
            },
            E820Entry {
                addr: crate::layout::MMIO_BASE,
                size: (1 << 32) - crate::layout::MMIO_BASE,
                kind: E820_RESERVED
            },
        ]
    );
}

fn check_zero_page(m: &GuestMemoryMmap, setup: &BootSetup) {
    let p = read_params(m);
    let hdr = p.hdr;
    assert_eq!({ hdr.header }, HDRS_MAGIC);
    assert_eq!(hdr.type_of_loader, 0xff);
    assert_eq!({ hdr.cmd_line_ptr }, CMDLINE_START as u32);
    assert_ne!(hdr.loadflags & LOADED_HIGH, 0);
    assert_ne!(hdr.loadflags & CAN_USE_HEAP, 0);
    assert_eq!({ hdr.code32_start }, KERNEL_START as u32);
    match setup.initrd {
        Some((a, s)) => {
            assert_eq!({ hdr.ramdisk_image }, a as u32);
            assert_eq!({ hdr.ramdisk_size }, s as u32);
        }
        None => assert_eq!({ hdr.ramdisk_size }, 0),
    }
    assert_eq!(p.e820_entries as usize, setup.e820.len());
    for (i, e) in setup.e820.iter().enumerate() {
        let t = p.e820_table[i];
        assert_eq!(
            ({ t.addr }, { t.size }, { t.r#type }),
            (e.addr, e.size, e.kind)
        );
    }
    // Long-mode entry state and the structures it points at.
    let cpu = setup.cpu;
    assert_eq!(cpu.rsi, ZERO_PAGE);
    assert_eq!(cpu.cr3, cpu::PML4);
    assert_eq!(cpu.efer, cpu::EFER_LME | cpu::EFER_LMA);
    assert_eq!(cpu.cs.l, 1);
    assert_eq!(cpu.cs.selector, 0x08);
    assert_eq!(cpu.data.selector, 0x10);
    assert_eq!(
        m.read_obj::<u64>(GuestAddress(cpu::BOOT_GDT + 8)).unwrap(),
        0x00af_9b00_0000_ffff
    );
    assert_eq!(
        m.read_obj::<u64>(GuestAddress(cpu::PML4)).unwrap(),
        cpu::PDPT | 3
    );
    assert_eq!(
        m.read_obj::<u64>(GuestAddress(cpu::PD + 8)).unwrap(),
        (1 << 21) | 0x83
    );
}

#[test]
fn loader_synthetic_bzimage_with_initrd() {
    let payload = pattern(64 << 10, 1);
    let k = Tmp::new("bz", &fake_bzimage(0x020f, XLF_KERNEL_64, &payload));
    let rd_bytes = pattern(300_000, 2);
    let rd = Tmp::new("rd", &rd_bytes);
    let m = mem(64 * MIB);
    let cmdline = "console=ttyS0 root=/dev/vda rw";
    let setup = load_linux(&m, &mut k.file(), Some(&mut rd.file()), cmdline).unwrap();
    assert_eq!(setup.protocol, BootProtocol::BzImage64);
    assert_eq!(setup.kernel_load, KERNEL_START);
    assert_eq!(setup.cpu.rip, KERNEL_START + 0x200);
    let h = setup.setup_header.unwrap();
    assert_eq!((h.version, h.setup_sects, h.cmdline_size), (0x020f, 4, 255));
    let mut back = vec![0u8; payload.len()];
    m.read_slice(&mut back, GuestAddress(KERNEL_START)).unwrap();
    assert_eq!(back, payload);
    // Initrd at the top of RAM, page aligned, contents intact.
    let (a, s) = setup.initrd.unwrap();
    assert_eq!(s, rd_bytes.len() as u64);
    assert_eq!(a, (64 * MIB - s) & !0xfff);
    let mut back = vec![0u8; rd_bytes.len()];
    m.read_slice(&mut back, GuestAddress(a)).unwrap();
    assert_eq!(back, rd_bytes);
    check_common(&m, &setup, cmdline, 64 * MIB);
    check_zero_page(&m, &setup);
}

#[test]
fn loader_rejects_bad_inputs_clearly() {
    let m = mem(64 * MIB);
    let payload = pattern(4096, 3);
    let not_kernel = Tmp::new("junk", b"#!/bin/sh\necho this is not a kernel\n");
    let e = load_linux(&m, &mut not_kernel.file(), None, "").unwrap_err();
    assert!(matches!(e, LoaderError::NotAKernel), "{e}");
    assert!(e.to_string().contains("not a Linux kernel"));
    let empty = Tmp::new("empty", b"");
    assert!(matches!(
        load_linux(&m, &mut empty.file(), None, ""),
        Err(LoaderError::NotAKernel)
    ));
    let old = Tmp::new("old", &fake_bzimage(0x0205, XLF_KERNEL_64, &payload));
    let e = load_linux(&m, &mut old.file(), None, "").unwrap_err();
    assert!(e.to_string().contains("2.05"), "{e}");
    let no64 = Tmp::new("no64", &fake_bzimage(0x020f, 0, &payload));
    assert!(matches!(
        load_linux(&m, &mut no64.file(), None, ""),
        Err(LoaderError::No64BitEntry)
    ));
    let k = Tmp::new("bz", &fake_bzimage(0x020f, XLF_KERNEL_64, &payload));
    let long = "x".repeat(256);
    assert!(matches!(
        load_linux(&m, &mut k.file(), None, &long),
        Err(LoaderError::CmdlineTooLong { len: 256, max: 255 })
    ));
    assert!(matches!(
        load_linux(&m, &mut k.file(), None, "a\0b"),
        Err(LoaderError::CmdlineNul)
    ));
    // Initrd that cannot fit above the kernel's init_size.
    let big = Tmp::new("bigrd", &vec![0u8; 63 * MIB as usize]);
    assert!(matches!(
        load_linux(&m, &mut k.file(), Some(&mut big.file()), ""),
        Err(LoaderError::InitrdTooLarge { .. })
    ));
    // Too little RAM.
    assert!(matches!(
        load_linux(&mem(8 * MIB), &mut k.file(), None, ""),
        Err(LoaderError::LowMemory(_))
    ));
    // Truncated image: header promises setup sectors that are not there.
    let mut trunc = fake_bzimage(0x020f, XLF_KERNEL_64, &[]);
    trunc.truncate(0x300);
    let t = Tmp::new("trunc", &trunc);
    assert!(load_linux(&m, &mut t.file(), None, "").is_err());
    // A 32-bit ELF.
    let mut elf32 = vec![0u8; 64];
    elf32[..4].copy_from_slice(b"\x7fELF");
    elf32[4] = 1;
    let t = Tmp::new("elf32", &elf32);
    assert!(matches!(
        load_linux(&m, &mut t.file(), None, ""),
        Err(LoaderError::NotX86_64Elf)
    ));
}

/// ELF64 x86-64 with one PT_LOAD at 16 MiB and, optionally, a PVH note.
fn fake_elf(pvh_entry: Option<u32>) -> Vec<u8> {
    let mut f = vec![0u8; 0x2000];
    f[..4].copy_from_slice(b"\x7fELF");
    f[4] = 2; // 64-bit
    f[5] = 1; // little endian
    f[6] = 1;
    f[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    f[18..20].copy_from_slice(&0x3eu16.to_le_bytes());
    f[20..24].copy_from_slice(&1u32.to_le_bytes());
    f[24..32].copy_from_slice(&0x100_0000u64.to_le_bytes()); // e_entry
    f[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
    f[52..54].copy_from_slice(&64u16.to_le_bytes());
    f[54..56].copy_from_slice(&56u16.to_le_bytes());
    let phnum: u16 = if pvh_entry.is_some() { 2 } else { 1 };
    f[56..58].copy_from_slice(&phnum.to_le_bytes());
    // PT_LOAD: file 0x1000..0x1800 -> paddr 16 MiB.
    let ph = 64;
    f[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes());
    f[ph + 8..ph + 16].copy_from_slice(&0x1000u64.to_le_bytes());
    f[ph + 16..ph + 24].copy_from_slice(&0xffff_ffff_8100_0000u64.to_le_bytes());
    f[ph + 24..ph + 32].copy_from_slice(&0x100_0000u64.to_le_bytes());
    f[ph + 32..ph + 40].copy_from_slice(&0x800u64.to_le_bytes());
    f[ph + 40..ph + 48].copy_from_slice(&0x1000u64.to_le_bytes());
    if let Some(entry) = pvh_entry {
        let ph = 64 + 56;
        f[ph..ph + 4].copy_from_slice(&4u32.to_le_bytes()); // PT_NOTE
        f[ph + 8..ph + 16].copy_from_slice(&0x200u64.to_le_bytes());
        f[ph + 32..ph + 40].copy_from_slice(&20u64.to_le_bytes());
        // Note: namesz 4, descsz 4, type 18 (XEN_ELFNOTE_PHYS32_ENTRY), "Xen\0", entry.
        let n = 0x200;
        f[n..n + 4].copy_from_slice(&4u32.to_le_bytes());
        f[n + 4..n + 8].copy_from_slice(&4u32.to_le_bytes());
        f[n + 8..n + 12].copy_from_slice(&18u32.to_le_bytes());
        f[n + 12..n + 16].copy_from_slice(b"Xen\0");
        f[n + 16..n + 20].copy_from_slice(&entry.to_le_bytes());
    }
    f[0x1000..0x1800].copy_from_slice(&pattern(0x800, 9));
    f
}

#[test]
fn loader_elf_pvh_and_elf64() {
    let m = mem(64 * MIB);
    let k = Tmp::new("pvh", &fake_elf(Some(0x100_0040)));
    let rd = Tmp::new("rd", &pattern(8192, 4));
    let setup = load_linux(&m, &mut k.file(), Some(&mut rd.file()), "console=hvc0").unwrap();
    assert_eq!(setup.protocol, BootProtocol::Pvh);
    assert_eq!(setup.cpu.rip, 0x100_0040);
    assert_eq!(setup.cpu.rbx, PVH_START_INFO);
    assert_eq!(setup.cpu.cr0 & cpu::X86_CR0_PG, 0);
    assert_eq!(setup.cpu.cs.db, 1);
    let mut back = vec![0u8; 0x800];
    m.read_slice(&mut back, GuestAddress(0x100_0000)).unwrap();
    assert_eq!(back, pattern(0x800, 9));
    assert_eq!(
        m.read_obj::<u32>(GuestAddress(PVH_START_INFO)).unwrap(),
        PVH_MAGIC
    );
    assert_eq!(
        m.read_obj::<u64>(GuestAddress(PVH_START_INFO + 24))
            .unwrap(),
        CMDLINE_START
    );
    assert_eq!(
        m.read_obj::<u32>(GuestAddress(PVH_START_INFO + 48))
            .unwrap() as usize,
        setup.e820.len()
    );
    let (a, s) = setup.initrd.unwrap();
    assert_eq!(m.read_obj::<u64>(GuestAddress(PVH_MODLIST)).unwrap(), a);
    assert_eq!(m.read_obj::<u64>(GuestAddress(PVH_MODLIST + 8)).unwrap(), s);
    check_common(&m, &setup, "console=hvc0", 64 * MIB);

    let m = mem(64 * MIB);
    let k = Tmp::new("elf64", &fake_elf(None));
    let setup = load_linux(&m, &mut k.file(), None, "quiet").unwrap();
    assert_eq!(setup.protocol, BootProtocol::Elf64);
    assert_eq!(setup.cpu.rip, 0x100_0000);
    assert_eq!({ read_params(&m).hdr.cmd_line_ptr }, CMDLINE_START as u32);
    check_common(&m, &setup, "quiet", 64 * MIB);
}

/// The real-kernel file: `$BULKHEAD_TEST_KERNEL`, else the cache that
/// `scripts/fetch-test-kernel` fills.
fn real_kernel() -> Option<PathBuf> {
    let p = std::env::var_os("BULKHEAD_TEST_KERNEL")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/bulkhead/kernel/vmlinuz"))
        })?;
    if p.is_file() {
        return Some(p);
    }
    if std::env::var_os("BULKHEAD_REQUIRE_KERNEL").is_some() {
        panic!(
            "BULKHEAD_REQUIRE_KERNEL is set but no kernel at {} (run scripts/fetch-test-kernel)",
            p.display()
        );
    }
    eprintln!(
        "\n*** SKIPPING real-kernel loader test: no kernel at {} ***\n\
         *** run scripts/fetch-test-kernel (CI sets BULKHEAD_REQUIRE_KERNEL=1) ***\n",
        p.display()
    );
    None
}

#[test]
fn loader_real_debian_bzimage() {
    let Some(path) = real_kernel() else { return };
    let raw = std::fs::read(&path).unwrap();
    let ram = 512 * MIB;
    let m = mem(ram);
    let rd_bytes = pattern(3 * MIB as usize + 123, 5);
    let rd = Tmp::new("realrd", &rd_bytes);
    let cmdline = "console=ttyS0 reboot=k panic=1 root=/dev/vda";
    let setup =
        load_linux_paths(&m, &path, Some(rd.0.as_path()), cmdline).expect("load real kernel");
    assert_eq!(setup.protocol, BootProtocol::BzImage64);
    let h = setup.setup_header.unwrap();
    // Header fields as in the file.
    assert_eq!(h.setup_sects, raw[0x1f1]);
    assert_eq!(h.version, u16::from_le_bytes([raw[0x206], raw[0x207]]));
    assert!(h.version >= 0x0206, "protocol {:#x}", h.version);
    assert_ne!(h.xloadflags & XLF_KERNEL_64, 0);
    assert!(h.cmdline_size >= 255);
    assert!(
        h.init_size as usize > raw.len(),
        "init_size covers decompression"
    );
    // Protected-mode kernel at 1 MiB, byte for byte.
    let off = (usize::from(h.setup_sects) + 1) * 512;
    let body = &raw[off..];
    let mut back = vec![0u8; body.len()];
    m.read_slice(&mut back, GuestAddress(KERNEL_START)).unwrap();
    assert!(back == body, "kernel body differs");
    assert_eq!(setup.kernel_end, KERNEL_START + body.len() as u64);
    assert_eq!(setup.cpu.rip, KERNEL_START + 0x200);
    // Initrd below initrd_addr_max, at the top of RAM, above the kernel.
    let (a, s) = setup.initrd.unwrap();
    let limit = ram.min(u64::from(h.initrd_addr_max) + 1);
    assert_eq!(a, (limit - s) & !0xfff);
    assert!(a >= KERNEL_START + u64::from(h.init_size));
    let mut back = vec![0u8; rd_bytes.len()];
    m.read_slice(&mut back, GuestAddress(a)).unwrap();
    assert!(back == rd_bytes);
    check_common(&m, &setup, cmdline, ram);
    check_zero_page(&m, &setup);
    // The zero page carries the kernel's own header fields through.
    let p = read_params(&m);
    assert_eq!(p.hdr.setup_sects, raw[0x1f1]);
    assert_eq!({ p.hdr.version }, h.version);
    assert_eq!({ p.hdr.kernel_alignment }, h.kernel_alignment);
    eprintln!(
        "real kernel {}: protocol {}.{:02}, setup_sects {}, init_size {:#x}, initrd at {a:#x}",
        path.display(),
        h.version >> 8,
        h.version & 0xff,
        h.setup_sects,
        h.init_size
    );
    // Too long a command line for this kernel.
    let too_long = "y".repeat(h.cmdline_size as usize + 1);
    assert!(matches!(
        load_linux_paths(&mem(ram), &path, None, &too_long),
        Err(LoaderError::CmdlineTooLong { .. })
    ));
}

#[test]
fn loader_virtio_mmio_cmdline() {
    assert_eq!(virtio_mmio_cmdline(0), "");
    assert_eq!(
        virtio_mmio_cmdline(2),
        "virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=4K@0xd0001000:6"
    );
    assert_eq!(virtio_mmio_cmdline(100).split(' ').count(), 8);
}
