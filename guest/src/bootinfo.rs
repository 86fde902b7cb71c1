//! The boot-info page the VMM passes in `rdi` (mirror of `vmm::boot::BootInfo`).

/// "BULKHEAD".
pub const MAGIC: u64 = u64::from_le_bytes(*b"BULKHEAD");

/// Boot information (all fields little-endian u64 except version/nr_cpus).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BootInfo {
    pub magic: u64,
    pub version: u32,
    pub nr_cpus: u32,
    pub ram_size: u64,
    pub ram_low_end: u64,
    pub ram_high_start: u64,
    pub ram_high_size: u64,
    pub free_start: u64,
    pub tsc_khz: u64,
    pub fb_base: u64,
    pub fb_size: u64,
    pub fb_regs: u64,
    pub pointer_regs: u64,
    pub virtio_base: u64,
    pub virtio_size: u64,
    pub virtio_slots: u64,
    pub virtio_irq_base: u64,
    pub com1_port: u64,
    pub debug_exit_port: u64,
    pub status_page: u64,
}
