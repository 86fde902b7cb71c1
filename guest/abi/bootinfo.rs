//! The boot-information page the VMM writes for the built-in guest (its
//! address in `rdi` at entry): the one definition of that ABI, compiled into
//! both the VMM (`vmm::boot`) and the freestanding guest
//! (`guest/src/bootinfo.rs`) with `#[path]`. `no_std`-clean: core only.

/// `BootInfo::magic`.
pub const BOOT_INFO_MAGIC: u64 = u64::from_le_bytes(*b"BULKHEAD");
/// `BootInfo::version`.
pub const BOOT_INFO_VERSION: u32 = 1;

/// The page at the VMM's `BOOT_INFO_GPA` (little-endian, `repr(C)` layout).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct BootInfo {
    /// [`BOOT_INFO_MAGIC`].
    pub magic: u64,
    /// [`BOOT_INFO_VERSION`].
    pub version: u32,
    /// Number of vCPUs.
    pub nr_cpus: u32,
    /// Total RAM bytes.
    pub ram_size: u64,
    /// End of RAM below the hole.
    pub ram_low_end: u64,
    /// Start and size of RAM above 4 GiB (size 0 if none).
    pub ram_high_start: u64,
    /// Size of the high RAM region.
    pub ram_high_size: u64,
    /// First free RAM byte after the image (2 MiB aligned).
    pub free_start: u64,
    /// TSC frequency in kHz (0 if unknown).
    pub tsc_khz: u64,
    /// Framebuffer base (0 if no framebuffer device).
    pub fb_base: u64,
    /// Framebuffer VRAM size.
    pub fb_size: u64,
    /// Framebuffer register block.
    pub fb_regs: u64,
    /// Pointer device register block.
    pub pointer_regs: u64,
    /// First virtio-mmio slot.
    pub virtio_base: u64,
    /// Size of one slot.
    pub virtio_size: u64,
    /// Number of slots.
    pub virtio_slots: u64,
    /// GSI of slot 0.
    pub virtio_irq_base: u64,
    /// COM1 base port.
    pub com1_port: u64,
    /// Debug-exit port.
    pub debug_exit_port: u64,
    /// Guest status page.
    pub status_page: u64,
}
