//! Bulkhead built-in test guest: a serial command shell running in ring 3.
//!
//! Commands: `help`, `echo TEXT`, `memtest N`, `dirty [N]`, `exit N`,
//! `info`. Device drivers (virtio-blk, framebuffer, input) live in their own
//! modules and add commands in `shell::run_command`.

#![no_std]
#![no_main]

mod arch;
mod bootinfo;
mod fb;
mod input;
mod mem;
mod power;
mod mmio;
mod serial;
mod shell;
mod virtio_blk;

use bootinfo::BootInfo;

/// Guest version shown in the banner.
pub const VERSION: &str = "1";

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    print!("\r\nguest panic: {}\r\n", info.message());
    arch::debug_exit(0xdead_00ff)
}

/// The precompiled `core` (built for unwinding) references this symbol; with
/// `panic=abort` it is never called.
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}

/// Ring-3 entry (from `_start`'s `iretq`), `bi` = boot-info page.
#[no_mangle]
extern "C" fn guest_main(bi: *const BootInfo) -> ! {
    // SAFETY: the VMM passes the identity-mapped boot-info page.
    let bi = unsafe { core::ptr::read_volatile(bi) };
    serial::init();
    power::init();
    if bi.magic != bootinfo::BOOT_INFO_MAGIC {
        serial::puts("bad boot info\r\n");
        arch::debug_exit(0xdead_0100);
    }
    arch::status_write(arch::status::MAGIC, u64::from_le_bytes(*b"BHSTATUS"));
    print!(
        "\r\nBulkhead test guest v{}\r\nram {} MiB, {} vcpu(s), tsc {} kHz\r\n",
        VERSION,
        bi.ram_size >> 20,
        bi.nr_cpus,
        bi.tsc_khz
    );
    shell::run(&bi)
}
