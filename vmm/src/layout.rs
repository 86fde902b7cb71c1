//! The guest-physical and port-I/O map of Bulkhead's one machine type
//! (`bulkhead`, also accepted as `pc`/`q35`/`microvm` aliases by the CLI).
//!
//! Every device model and the built-in guest firmware agree on these numbers;
//! `docs/platform.md` describes them for guest authors.
//!
//! ```text
//!   0x0000_0000 .. RAM_LOW_END        guest RAM (low part)
//!   MMIO_BASE   .. MMIO_END           device MMIO hole (virtio-mmio, fb regs)
//!   FB_BASE     .. FB_BASE+FB_SIZE    linear framebuffer (own memslot, dirty-logged)
//!   4 GiB       ..                    guest RAM above the hole (when -m > RAM_LOW_END)
//! ```

/// Guest RAM below the MMIO hole ends here (3 GiB).
pub const RAM_LOW_END: u64 = 0xC000_0000;
/// Start of guest RAM above the 32-bit hole.
pub const RAM_HIGH_START: u64 = 0x1_0000_0000;

/// Start of the MMIO window for emulated devices.
pub const MMIO_BASE: u64 = 0xD000_0000;
/// End (exclusive) of the MMIO window.
pub const MMIO_END: u64 = 0xE000_0000;

/// virtio-mmio device slots: `VIRTIO_MMIO_BASE + n * VIRTIO_MMIO_SIZE`.
pub const VIRTIO_MMIO_BASE: u64 = MMIO_BASE;
/// Size of one virtio-mmio register window.
pub const VIRTIO_MMIO_SIZE: u64 = 0x1000;
/// Number of virtio-mmio slots.
pub const VIRTIO_MMIO_SLOTS: u64 = 8;
/// First GSI used by virtio-mmio slot 0; slot n uses `VIRTIO_MMIO_IRQ_BASE + n`.
pub const VIRTIO_MMIO_IRQ_BASE: u32 = 5;

/// Framebuffer control register block (mode set, see `devices::framebuffer`).
pub const FB_REGS_BASE: u64 = MMIO_BASE + 0x10_0000;
/// Size of the framebuffer register block.
pub const FB_REGS_SIZE: u64 = 0x1000;
/// Absolute pointer device register block.
pub const POINTER_REGS_BASE: u64 = MMIO_BASE + 0x10_1000;
/// Size of the pointer register block.
pub const POINTER_REGS_SIZE: u64 = 0x1000;
/// Pointer event interrupt (IRQ 3: COM2's line, unused on this machine;
/// clear of the virtio GSIs 5..12).
pub const POINTER_IRQ: u32 = 3;

/// Guest-physical base of the linear framebuffer (VRAM memslot).
pub const FB_BASE: u64 = 0xE000_0000;
/// VRAM size: enough for 1920x1200x32 (and 1024x768x32 by default).
pub const FB_SIZE: u64 = 16 << 20;

/// COM1 16550 UART ports and IRQ.
pub const COM1_PORT: u16 = 0x3F8;
/// COM1 IRQ line.
pub const COM1_IRQ: u32 = 4;
/// i8042 data and command/status ports.
pub const I8042_DATA_PORT: u16 = 0x60;
/// i8042 command/status port.
pub const I8042_CMD_PORT: u16 = 0x64;
/// i8042 keyboard IRQ.
pub const I8042_IRQ: u32 = 1;
/// Debug-exit port: a 32-bit write of `code` ends the VM with status `code`.
pub const DEBUG_EXIT_PORT: u16 = 0x501;
/// Power-button port: reading returns 1 once per press (then 0); writing 1
/// powers the machine off (guest-initiated shutdown).
pub const POWER_PORT: u16 = 0x505;
/// Power-button interrupt (IRQ 13: unused legacy line, clear of the
/// virtio GSIs 5..12).
pub const POWER_IRQ: u32 = 13;
