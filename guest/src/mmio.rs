//! MMIO register access from ring 3 (device windows are identity-mapped and
//! user-accessible). Every access is one VM exit (~72 µs from ring 3), so
//! drivers touch registers only per batch, never per byte.

/// 32-bit register read.
#[inline(always)]
pub fn r32(addr: u64) -> u32 {
    // SAFETY: `addr` is a device register in the identity-mapped MMIO hole.
    unsafe { core::ptr::read_volatile(addr as *const u32) }
}

/// 64-bit register read (one exit).
#[inline(always)]
pub fn r64(addr: u64) -> u64 {
    // SAFETY: as r32.
    unsafe { core::ptr::read_volatile(addr as *const u64) }
}

/// 32-bit register write.
#[inline(always)]
pub fn w32(addr: u64, v: u32) {
    // SAFETY: as r32.
    unsafe { core::ptr::write_volatile(addr as *mut u32, v) }
}
