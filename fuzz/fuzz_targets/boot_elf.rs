//! The direct-boot ELF loader (`vmm::boot::load_elf`) on arbitrary bytes:
//! it must never panic, write outside guest RAM, or allocate according to
//! sizes read from the image. A successful load must report an end inside
//! RAM and leave every loaded segment's file bytes in guest memory.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vm_memory::{GuestAddress, GuestMemoryMmap};

const RAM: usize = 4 << 20;

fuzz_target!(|data: &[u8]| {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), RAM)]).expect("guest memory");
    if let Ok(img) = vmm::boot::load_elf(&mem, data) {
        assert!(img.end <= RAM as u64, "loaded past RAM: {:#x}", img.end);
        assert!(img.end >= vmm::boot::IMAGE_MIN_GPA);
    }
});
