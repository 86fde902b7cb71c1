//! Guest RAM configurations: 8 GiB split around the hole, file-backed RAM on
//! /dev/shm, and the guest's memtest checked against the host's own sum.

use std::time::Duration;

use vm_memory::{Bytes, GuestAddress};
use vmm::chardev::capture::capture;
use vmm::layout::{RAM_HIGH_START, RAM_LOW_END};
use vmm::memory::{MemoryBackend, MemoryConfig};
use vmm::vm::{Vm, VmConfig, VmEvent};

const T: Duration = Duration::from_secs(30);

#[test]
fn vm_8g_ram_creates_and_boots() {
    let (backend, serial) = capture().unwrap();
    let vm = Vm::new(VmConfig::builtin(8 << 30, Box::new(backend))).unwrap();
    let slots = vm.memslots();
    assert_eq!(slots.len(), 2);
    assert_eq!((slots[0].gpa, slots[0].size), (0, RAM_LOW_END));
    assert_eq!(
        (slots[1].gpa, slots[1].size),
        (RAM_HIGH_START, (8 << 30) - RAM_LOW_END)
    );
    let regions = vm.ram().regions();
    assert_eq!(regions[1].file_offset, RAM_LOW_END);
    assert!(vm.ram().ram_fd().is_some());
    // The top of high RAM is reachable through the VMM mapping.
    let top = RAM_HIGH_START + (8 << 30) - RAM_LOW_END - 8;
    vm.memory()
        .write_obj(0x1234_5678u64, GuestAddress(top))
        .unwrap();
    vm.start().unwrap();
    let at = serial
        .wait_for("ram 8192 MiB", 0, T)
        .unwrap_or_else(|| panic!("{}", serial.text()));
    serial.wait_for("bulkhead> ", at, T).unwrap();
}

/// The guest's memtest checksum: wrapping sum of pattern(i) over all words.
fn expected_checksum(mib: u64) -> u64 {
    let pattern = |i: u64| (i + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (i << 7);
    (0..(mib << 20) / 8).fold(0u64, |s, i| s.wrapping_add(pattern(i)))
}

#[test]
fn vm_file_backed_ram_memtest() {
    let path =
        std::path::Path::new("/dev/shm").join(format!("bulkhead-vm-test-{}", std::process::id()));
    let (backend, serial) = capture().unwrap();
    let cfg = VmConfig {
        mem: MemoryConfig {
            size: 64 << 20,
            backend: MemoryBackend::File {
                mem_path: path.clone(),
                share: true,
            },
        },
        ..VmConfig::builtin(0, Box::new(backend))
    };
    let vm = Vm::new(cfg).unwrap();
    let rx = vm.subscribe();
    vm.start().unwrap();
    let at = serial.wait_for("bulkhead> ", 0, T).unwrap();
    serial.send(b"memtest 8\r").unwrap();
    let want = format!("memtest: 8 MiB ok checksum {:#018x}", expected_checksum(8));
    serial
        .wait_for(&want, at, T)
        .unwrap_or_else(|| panic!("expected {want:?} in {:?}", serial.text()));
    // share=on: the file holds what the guest wrote (the pattern at free_start).
    let free_start = vm
        .memory()
        .read_obj::<u64>(GuestAddress(vmm::boot::BOOT_INFO_GPA + 48))
        .unwrap();
    let data = std::fs::read(&path).unwrap();
    let w =
        |i: usize| u64::from_le_bytes(data[free_start as usize + i * 8..][..8].try_into().unwrap());
    assert_eq!(w(0), 1u64.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    assert_eq!(w(5), 6u64.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (5 << 7));
    serial.send(b"exit 9\r").unwrap();
    loop {
        if let VmEvent::GuestExit(c) = rx.recv_timeout(T).unwrap() {
            assert_eq!(c, 9);
            break;
        }
    }
    std::fs::remove_file(path).unwrap();
}
