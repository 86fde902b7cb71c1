//! Dirty-page logging: raw guest code writes known pages, the per-slot
//! bitmap shows exactly those pages, and reading it clears it.

use std::sync::Arc;
use std::time::Duration;

use vm_memory::{Bytes, GuestAddress, MmapRegion};
use vmm::layout::FB_BASE;
use vmm::vm::{Boot, Vm, VmConfig, VmEvent};

/// `mov rax, addr; mov qword ptr [rax], val` for each (addr, val), then
/// debug-exit 7 and halt.
fn writer_code(writes: &[(u64, u32)]) -> Vec<u8> {
    let mut c = Vec::new();
    for &(addr, val) in writes {
        c.extend_from_slice(&[0x48, 0xb8]);
        c.extend_from_slice(&addr.to_le_bytes());
        c.extend_from_slice(&[0x48, 0xc7, 0x00]);
        c.extend_from_slice(&val.to_le_bytes());
    }
    c.extend_from_slice(&[
        0xb8, 7, 0, 0, 0, 0x66, 0xba, 0x01, 0x05, 0xef, 0xf4, 0xeb, 0xfd,
    ]);
    c
}

fn pages(bitmap: &[u64]) -> Vec<u64> {
    let mut v = Vec::new();
    for (w, &bits) in bitmap.iter().enumerate() {
        for b in 0..64 {
            if bits & (1 << b) != 0 {
                v.push(w as u64 * 64 + b);
            }
        }
    }
    v
}

#[test]
fn vm_dirty_log_shows_exactly_the_written_pages() {
    let writes = [
        (0x30_0000, 1),
        (0x30_5008, 2),
        (0x31_0ff8, 3),
        (FB_BASE + 0x2000, 0x00ff_00ff),
    ];
    let code = writer_code(&writes);
    let cfg = VmConfig {
        boot: Boot::Raw {
            gpa: 0x10_0000,
            bytes: Arc::new(code),
            entry: 0x10_0000,
        },
        ..VmConfig::builtin(64 << 20, Box::new(vmm::chardev::null::NullBackend))
    };
    let vm = Vm::new(cfg).unwrap();
    let vram = Arc::new(MmapRegion::new(16 << 20).unwrap());
    let fb_slot = vm.add_memslot(FB_BASE, vram.clone(), true).unwrap();
    let ram_slot = vm
        .memslots()
        .iter()
        .find(|s| s.is_ram && s.gpa == 0)
        .unwrap()
        .slot;
    vm.set_dirty_logging(ram_slot, true).unwrap();
    // Nothing written by the guest yet (the VMM's own boot writes are not logged).
    assert!(pages(&vm.dirty_bitmap(ram_slot).unwrap()).is_empty());
    assert!(pages(&vm.dirty_bitmap(fb_slot).unwrap()).is_empty());

    let rx = vm.subscribe();
    vm.start().unwrap();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(20)).unwrap(),
        VmEvent::Resume
    );
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(20)).unwrap(),
        VmEvent::GuestExit(7)
    );

    assert_eq!(
        pages(&vm.dirty_bitmap(ram_slot).unwrap()),
        vec![0x300, 0x305, 0x310]
    );
    assert_eq!(pages(&vm.dirty_bitmap(fb_slot).unwrap()), vec![2]);
    // Get-and-clear: a second read is empty.
    assert!(pages(&vm.dirty_bitmap(ram_slot).unwrap()).is_empty());
    // Writes made by the VMM (device DMA) are reported once marked.
    vm.mark_dirty(0x40_0ff0, 0x1010); // ends exactly at 0x402000: pages 0x400, 0x401
    vm.mark_dirty(FB_BASE - 0x10, 0x20); // straddles the hole: VRAM page 0 only
    assert_eq!(
        pages(&vm.dirty_bitmap(ram_slot).unwrap()),
        vec![0x400, 0x401]
    );
    assert_eq!(pages(&vm.dirty_bitmap(fb_slot).unwrap()), vec![0]);
    assert!(pages(&vm.dirty_bitmap(ram_slot).unwrap()).is_empty());
    // The writes really landed in guest RAM and in the VRAM mapping.
    assert_eq!(
        vm.memory()
            .read_obj::<u64>(GuestAddress(0x30_5008))
            .unwrap(),
        2
    );
    // SAFETY: reading 4 bytes inside the 16 MiB mapping we own.
    let px = unsafe { std::ptr::read_volatile(vram.as_ptr().add(0x2000) as *const u32) };
    assert_eq!(px, 0x00ff_00ff);
    // Logging off: reading the bitmap is refused.
    vm.set_dirty_logging(ram_slot, false).unwrap();
    assert!(vm.dirty_bitmap(ram_slot).is_err());
}
