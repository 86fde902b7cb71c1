//! Memory primitives the compiler expects (`memcpy` & co., ring 3 only) and
//! the memory commands: pattern test and dirtier.

use crate::arch;
use crate::bootinfo::BootInfo;

/// # Safety
/// Standard `memcpy` contract.
#[no_mangle]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: caller guarantees non-overlapping valid ranges.
    unsafe {
        core::arch::asm!("rep movsb", inout("rcx") n => _, inout("rdi") dst => _, inout("rsi") src => _, options(nostack, preserves_flags));
    }
    dst
}

/// # Safety
/// Standard `memmove` contract.
#[no_mangle]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize) <= (src as usize) || (dst as usize) >= (src as usize) + n {
        // SAFETY: forward copy is safe when dst does not start inside src.
        return unsafe { memcpy(dst, src, n) };
    }
    let mut i = n;
    while i > 0 {
        i -= 1;
        // SAFETY: in bounds by the caller's contract; backward copy for overlap.
        unsafe { core::ptr::write_volatile(dst.add(i), core::ptr::read_volatile(src.add(i))) };
    }
    dst
}

/// # Safety
/// Standard `memset` contract.
#[no_mangle]
pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: caller guarantees a valid range.
    unsafe {
        core::arch::asm!("rep stosb", inout("rcx") n => _, inout("rdi") dst => _, in("al") c as u8, options(nostack, preserves_flags));
    }
    dst
}

/// # Safety
/// Standard `memcmp` contract.
#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        // SAFETY: in bounds by the caller's contract.
        let (x, y) = unsafe { (core::ptr::read_volatile(a.add(i)), core::ptr::read_volatile(b.add(i))) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
    }
    0
}

/// # Safety
/// Standard `bcmp` contract.
#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract.
    unsafe { memcmp(a, b, n) }
}

/// The memtest pattern word at index `i` (the VMM tests recompute it).
pub fn pattern(i: u64) -> u64 {
    (i + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (i << 7)
}

/// Usable RAM window for tests: from the first free byte to the end of low RAM.
fn window(bi: &BootInfo) -> (u64, u64) {
    (bi.free_start, bi.ram_low_end.saturating_sub(bi.free_start))
}

/// Write the pattern over `mib` MiB, verify it, print the checksum
/// (wrapping sum of all words read back).
pub fn memtest(bi: &BootInfo, mib: u64) {
    let (base, avail) = window(bi);
    let bytes = mib << 20;
    if mib == 0 || bytes > avail {
        crate::print!("memtest: N must be 1..={} (MiB)\r\n", avail >> 20);
        return;
    }
    let words = bytes / 8;
    let p = base as *mut u64;
    for i in 0..words {
        // SAFETY: [base, base+bytes) is free identity-mapped guest RAM.
        unsafe { core::ptr::write_volatile(p.add(i as usize), pattern(i)) };
    }
    let mut sum = 0u64;
    for i in 0..words {
        // SAFETY: as above.
        let v = unsafe { core::ptr::read_volatile(p.add(i as usize)) };
        if v != pattern(i) {
            crate::print!("memtest: FAIL at {:#x}: {:#x} != {:#x}\r\n", base + i * 8, v, pattern(i));
            return;
        }
        sum = sum.wrapping_add(v);
    }
    crate::print!("memtest: {} MiB ok checksum {:#018x}\r\n", mib, sum);
}

/// Keep writing one word per 4 KiB page over `mib` MiB until a key is
/// pressed; the pass counter goes to the status page heartbeat and to serial
/// (about 4 times a second).
pub fn dirty(bi: &BootInfo, mib: u64) {
    let (base, avail) = window(bi);
    let mib = mib.clamp(1, (avail >> 20).max(1));
    let pages = (mib << 20) / 4096;
    let interval = if bi.tsc_khz > 0 { bi.tsc_khz * 250 } else { 0 };
    let mut last = arch::rdtsc();
    let mut pass = 0u64;
    crate::print!("dirty: {} MiB at {:#x}, press a key to stop\r\n", mib, base);
    loop {
        pass += 1;
        for pg in 0..pages {
            // SAFETY: free identity-mapped guest RAM in the window.
            unsafe { core::ptr::write_volatile((base + pg * 4096) as *mut u64, pass) };
        }
        arch::status_write(arch::status::HEARTBEAT, pass);
        let now = arch::rdtsc();
        if (interval > 0 && now.wrapping_sub(last) >= interval) || (interval == 0 && pass.is_multiple_of(64)) {
            crate::print!("dirty: pass {}\r\n", pass);
            last = now;
        }
        crate::power::poll();
        if arch::rx_pending() {
            while crate::serial::try_getc().is_some() {}
            crate::print!("dirty: stopped after {} passes\r\n", pass);
            return;
        }
    }
}
