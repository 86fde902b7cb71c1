//! Wires this crate's guest-visible devices into a [`Vm`] at the addresses
//! of `crate::layout`: i8042 (ports 0x60..0x64, IRQ 1), framebuffer (VRAM
//! memslot with dirty logging + register block), absolute pointer (IRQ 3)
//! and one virtio-mmio block device per drive (slot n, GSI 5 + n).
//!
//! The returned [`PlatformDevices`] holds the handles QMP/HMP and the
//! services need: `send-key` → `i8042`, `input-send-event` → `pointer`,
//! `screendump` → `framebuffer`, VNC → `framebuffer.vram().memfd()` and
//! `fb_slot` dirty bitmaps.

use std::sync::{Arc, Mutex};

use super::framebuffer::Framebuffer;
use super::i8042::I8042;
use super::pointer::Pointer;
use super::virtio::block::{virtio_mmio_block, BlockBackend};
use super::virtio::mmio::MmioTransport;
use crate::layout;
use crate::vm::{Vm, VmError};

/// One `-drive ...,if=virtio`.
pub struct DriveSpec {
    /// Storage.
    pub backend: Arc<dyn BlockBackend>,
    /// `readonly=on`.
    pub read_only: bool,
    /// GET_ID serial (QEMU's `serial=`; we default to the drive id).
    pub serial: String,
}

/// Handles on the attached devices.
pub struct PlatformDevices {
    /// Keyboard controller (`send_key`).
    pub i8042: Arc<Mutex<I8042>>,
    /// Framebuffer (`screendump`, VRAM memfd).
    pub framebuffer: Arc<Framebuffer>,
    /// KVM memslot of VRAM (dirty bitmaps).
    pub fb_slot: u32,
    /// Absolute pointer (`input-send-event`).
    pub pointer: Arc<Mutex<Pointer>>,
    /// virtio-blk transports, index = slot.
    pub drives: Vec<Arc<Mutex<MmioTransport>>>,
}

/// Errors attaching devices.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// More drives than virtio-mmio slots.
    #[error("at most {0} virtio drives are supported")]
    TooManyDrives(u64),
    /// VM-side failure (bus overlap, irqfd, memslot).
    #[error("{0}")]
    Vm(#[from] VmError),
    /// Device creation (memfd, eventfds).
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Attach the platform devices to `vm` (before `vm.start()`).
pub fn attach(vm: &Vm, drives: Vec<DriveSpec>) -> Result<PlatformDevices, AttachError> {
    if drives.len() as u64 > layout::VIRTIO_MMIO_SLOTS {
        return Err(AttachError::TooManyDrives(layout::VIRTIO_MMIO_SLOTS));
    }
    // i8042: data port at offset 0, command/status at offset 4.
    let ctl = vm.control();
    let i8042 = Arc::new(Mutex::new(I8042::new(
        Box::new(move || ctl.request_reset()),
        vm.register_irqfd(layout::I8042_IRQ)?,
    )));
    vm.add_pio_device(layout::I8042_DATA_PORT, 5, i8042.clone())?;
    let k = i8042.clone();
    vm.add_reset_hook(move || lock(&k).reset_state());

    let framebuffer = Framebuffer::new()?;
    let fb_slot = vm.add_memslot(layout::FB_BASE, framebuffer.vram().mapping(), true)?;
    vm.add_mmio_device(
        layout::FB_REGS_BASE,
        layout::FB_REGS_SIZE,
        Arc::new(Mutex::new(framebuffer.regs())),
    )?;
    let f = framebuffer.clone();
    vm.add_reset_hook(move || f.reset());

    let pointer = Arc::new(Mutex::new(Pointer::with_irq(
        vm.register_irqfd(layout::POINTER_IRQ)?,
    )));
    vm.add_mmio_device(
        layout::POINTER_REGS_BASE,
        layout::POINTER_REGS_SIZE,
        pointer.clone(),
    )?;
    let p = pointer.clone();
    vm.add_reset_hook(move || lock(&p).reset());

    let mut transports = Vec::with_capacity(drives.len());
    for (slot, d) in drives.into_iter().enumerate() {
        let irq = vm.register_irqfd(layout::VIRTIO_MMIO_IRQ_BASE + slot as u32)?;
        let t = Arc::new(Mutex::new(virtio_mmio_block(
            d.backend,
            d.read_only,
            &d.serial,
            irq,
            vm.memory().clone(),
        )?));
        vm.add_mmio_device(
            layout::VIRTIO_MMIO_BASE + slot as u64 * layout::VIRTIO_MMIO_SIZE,
            layout::VIRTIO_MMIO_SIZE,
            t.clone(),
        )?;
        let t2 = t.clone();
        vm.add_reset_hook(move || lock(&t2).reset_device());
        transports.push(t);
    }
    Ok(PlatformDevices {
        i8042,
        framebuffer,
        fb_slot,
        pointer,
        drives: transports,
    })
}
