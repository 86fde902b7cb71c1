//! virtio-mmio transport, register layout version 2 (virtio 1.x §4.2.2).
//!
//! ```text
//!  off   reg                    dir   off   reg                    dir
//!  0x000 MagicValue "virt"      R     0x044 QueueReady             RW
//!  0x004 Version = 2            R     0x050 QueueNotify            W
//!  0x008 DeviceID               R     0x060 InterruptStatus        R
//!  0x00c VendorID               R     0x064 InterruptACK           W
//!  0x010 DeviceFeatures         R     0x070 Status                 RW
//!  0x014 DeviceFeaturesSel      W     0x080/84 QueueDesc lo/hi     W
//!  0x020 DriverFeatures         W     0x090/94 QueueDriver lo/hi   W
//!  0x024 DriverFeaturesSel      W     0x0a0/a4 QueueDevice lo/hi   W
//!  0x030 QueueSel               W     0x0fc ConfigGeneration       R
//!  0x034 QueueNumMax            R     0x100.. device config        RW
//!  0x038 QueueNum               W
//! ```
//!
//! Registers below 0x100 take 32-bit accesses only; other widths read as 0
//! and writes are dropped. The core maps the transport at
//! `layout::VIRTIO_MMIO_BASE + slot * VIRTIO_MMIO_SIZE`, registers
//! [`MmioTransport::irq_eventfd`] as irqfd on `VIRTIO_MMIO_IRQ_BASE + slot`
//! and, optionally, each [`MmioTransport::ioeventfds`] entry as an
//! ioeventfd (address `base + NOTIFY_OFFSET`, 4 bytes, datamatch = queue
//! index) so notifications skip the vCPU exit path.

use std::sync::Arc;

use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use super::{status, ActiveQueue, Interrupt, QueueRegs, VirtioDevice, VIRTIO_F_VERSION_1};
use crate::devices::bus::BusDevice;

/// "virt" little-endian.
pub const MMIO_MAGIC: u32 = 0x7472_6976;
/// Register layout version implemented.
pub const MMIO_VERSION: u32 = 2;
/// Vendor id reported ("BLKH").
pub const VENDOR_ID: u32 = 0x484b_4c42;
/// Offset of the QueueNotify register (for ioeventfd registration).
pub const NOTIFY_OFFSET: u64 = 0x50;
/// Start of the device configuration space.
pub const CONFIG_OFFSET: u64 = 0x100;

/// Transport state for migration/snapshots (device config space is
/// derived from the backend and not included).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MmioTransportState {
    /// Device status register.
    pub status: u32,
    /// Negotiated features.
    pub acked_features: u64,
    /// DeviceFeaturesSel.
    pub device_features_sel: u32,
    /// DriverFeaturesSel.
    pub driver_features_sel: u32,
    /// QueueSel.
    pub queue_sel: u32,
    /// InterruptStatus.
    pub interrupt_status: u32,
    /// ConfigGeneration.
    pub config_generation: u32,
    /// Every queue, live positions included when the device was running.
    pub queues: Vec<QueueRegs>,
}

/// Errors restoring a transport state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The saved state names a different number of queues.
    #[error("state has {got} queues, device has {expected}")]
    QueueCount {
        /// Device queues.
        expected: usize,
        /// Saved queues.
        got: usize,
    },
    /// A queue's registers are not a valid configuration.
    #[error("queue {0}: invalid saved configuration")]
    BadQueue(usize),
    /// Features the device does not offer, or an impossible status.
    #[error("inconsistent status {status:#x} / features {features:#x}")]
    Inconsistent {
        /// Saved status.
        status: u32,
        /// Saved features.
        features: u64,
    },
    /// Restarting the device failed.
    #[error("activation: {0}")]
    Activate(#[from] super::ActivateError),
}

struct QueueSlot {
    max: u16,
    queue: Queue,
}

/// The virtio-mmio register block in front of one [`VirtioDevice`].
pub struct MmioTransport {
    device: Box<dyn VirtioDevice>,
    mem: GuestMemoryMmap,
    interrupt: Arc<Interrupt>,
    queues: Vec<QueueSlot>,
    notify: Vec<EventFd>,
    device_features_sel: u32,
    driver_features_sel: u32,
    acked_features: u64,
    queue_sel: u32,
    status: u32,
    activated: bool,
    config_generation: u32,
}

impl MmioTransport {
    /// Build a transport for `device`. `irq` is the eventfd the core will
    /// register as irqfd for this slot's GSI.
    pub fn new(
        device: Box<dyn VirtioDevice>,
        mem: GuestMemoryMmap,
        irq: EventFd,
    ) -> std::io::Result<Self> {
        let mut queues = Vec::new();
        let mut notify = Vec::new();
        for &max in device.queue_max_sizes() {
            let queue = Queue::new(max).map_err(|e| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{e}"))
            })?;
            queues.push(QueueSlot { max, queue });
            // Blocking: the device worker sleeps in read().
            notify.push(EventFd::new(0)?);
        }
        Ok(Self {
            device,
            mem,
            interrupt: Arc::new(Interrupt::new(irq)),
            queues,
            notify,
            device_features_sel: 0,
            driver_features_sel: 0,
            acked_features: 0,
            queue_sel: 0,
            status: 0,
            activated: false,
            config_generation: 0,
        })
    }

    /// The irq eventfd (register as irqfd).
    pub fn irq_eventfd(&self) -> &EventFd {
        self.interrupt.eventfd()
    }

    /// `(register offset, queue index, eventfd)` for each queue: register
    /// as KVM ioeventfd at `base + offset` with 4-byte datamatch `index`.
    pub fn ioeventfds(&self) -> impl Iterator<Item = (u64, u32, &EventFd)> {
        self.notify
            .iter()
            .enumerate()
            .map(|(i, e)| (NOTIFY_OFFSET, i as u32, e))
    }

    /// Device status register value.
    pub fn status(&self) -> u32 {
        self.status
    }

    /// Features the driver acknowledged.
    pub fn acked_features(&self) -> u64 {
        self.acked_features
    }

    fn selected(&mut self) -> Option<&mut QueueSlot> {
        self.queues.get_mut(self.queue_sel as usize)
    }

    fn queue_config_writable(&self) -> bool {
        // Queue setup happens after FEATURES_OK and before DRIVER_OK.
        !self.activated && self.status & status::FEATURES_OK != 0
    }

    /// Device reset (system_reset): as if the driver wrote status 0.
    pub fn reset_device(&mut self) {
        self.reset();
    }

    /// Snapshot the transport. A running device's worker is stopped to read
    /// consistent ring positions and restarted right after (call with vCPUs
    /// paused so the driver adds nothing meanwhile).
    pub fn save_state(&mut self) -> Result<MmioTransportState, StateError> {
        let mut queues: Vec<QueueRegs> = self
            .queues
            .iter()
            .map(|q| QueueRegs::from(q.queue.state()))
            .collect();
        if self.activated {
            let live = self.device.quiesce();
            // Live positions for the queues the device was serving, in order
            // of the ready queues.
            let mut live = live.into_iter();
            for (i, slot) in self.queues.iter().enumerate() {
                if slot.queue.ready() {
                    if let Some(l) = live.next() {
                        queues[i] = QueueRegs::from(l);
                    }
                }
            }
            self.restart_with(&queues)?;
        }
        Ok(MmioTransportState {
            status: self.status,
            acked_features: self.acked_features,
            device_features_sel: self.device_features_sel,
            driver_features_sel: self.driver_features_sel,
            queue_sel: self.queue_sel,
            interrupt_status: self.interrupt.status(),
            config_generation: self.config_generation,
            queues,
        })
    }

    /// Load a snapshot (from an untrusted stream: everything is checked).
    /// A running device is restarted at the saved ring positions.
    pub fn restore_state(&mut self, s: &MmioTransportState) -> Result<(), StateError> {
        if s.queues.len() != self.queues.len() {
            return Err(StateError::QueueCount {
                expected: self.queues.len(),
                got: s.queues.len(),
            });
        }
        let offered = self.device.features();
        let driver_ok = s.status & status::DRIVER_OK != 0;
        if s.acked_features & !offered != 0
            || (driver_ok && s.status & status::FEATURES_OK == 0)
            || (s.status & status::FEATURES_OK != 0
                && s.acked_features & (1u64 << VIRTIO_F_VERSION_1) == 0)
        {
            return Err(StateError::Inconsistent {
                status: s.status,
                features: s.acked_features,
            });
        }
        let mut restored = Vec::with_capacity(s.queues.len());
        for (i, (q, slot)) in s.queues.iter().zip(&self.queues).enumerate() {
            if q.max_size != slot.max {
                return Err(StateError::BadQueue(i));
            }
            restored.push(
                Queue::try_from(virtio_queue::QueueState::from(*q))
                    .map_err(|_| StateError::BadQueue(i))?,
            );
        }
        self.reset();
        for (slot, q) in self.queues.iter_mut().zip(restored) {
            slot.queue = q;
        }
        self.acked_features = s.acked_features;
        self.device_features_sel = s.device_features_sel;
        self.driver_features_sel = s.driver_features_sel;
        self.queue_sel = s.queue_sel;
        self.config_generation = s.config_generation;
        self.status = s.status;
        self.interrupt.set_status(s.interrupt_status);
        if driver_ok && s.status & status::DEVICE_NEEDS_RESET == 0 {
            self.restart_with(&s.queues)?;
        }
        Ok(())
    }

    /// (Re)start the device with queues at the given positions.
    fn restart_with(&mut self, regs: &[QueueRegs]) -> Result<(), StateError> {
        for (i, (slot, r)) in self.queues.iter_mut().zip(regs).enumerate() {
            slot.queue = Queue::try_from(virtio_queue::QueueState::from(*r))
                .map_err(|_| StateError::BadQueue(i))?;
        }
        self.activated = false;
        self.activate()?;
        self.activated = true;
        Ok(())
    }

    fn reset(&mut self) {
        if self.activated {
            self.device.reset();
        }
        self.activated = false;
        self.status = 0;
        self.acked_features = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.queue_sel = 0;
        for q in &mut self.queues {
            q.queue.reset();
        }
        self.interrupt.clear();
    }

    fn set_status(&mut self, v: u32) {
        if v == 0 {
            self.reset();
            return;
        }
        let old = self.status;
        // The driver may only add bits (other than through reset).
        if v & old != old {
            tracing::debug!("virtio-mmio: status {old:#x} -> {v:#x} clears bits; ignored");
            return;
        }
        let mut new = v;
        if new & status::FEATURES_OK != 0 && old & status::FEATURES_OK == 0 {
            let offered = self.device.features();
            let ok = self.acked_features & !offered == 0
                && self.acked_features & (1u64 << VIRTIO_F_VERSION_1) != 0;
            if !ok {
                // Leave FEATURES_OK clear: the driver re-reads and gives up.
                new &= !status::FEATURES_OK;
            }
        }
        if new & status::DRIVER_OK != 0 && old & status::DRIVER_OK == 0 {
            if new & status::FEATURES_OK == 0 {
                new |= status::DEVICE_NEEDS_RESET;
            } else {
                match self.activate() {
                    Ok(()) => self.activated = true,
                    Err(e) => {
                        tracing::warn!("virtio-mmio: activation failed: {e}");
                        new |= status::DEVICE_NEEDS_RESET;
                        self.status = new;
                        self.interrupt.signal(super::INT_CONFIG);
                        return;
                    }
                }
            }
        }
        self.status = new;
    }

    fn activate(&mut self) -> Result<(), super::ActivateError> {
        let mut active = Vec::with_capacity(self.queues.len());
        for (i, slot) in self.queues.iter().enumerate() {
            if !slot.queue.ready() {
                continue;
            }
            if !slot.queue.is_valid(&self.mem) {
                return Err(super::ActivateError::InvalidQueue(i));
            }
            let mut q = Queue::try_from(slot.queue.state())
                .map_err(|_| super::ActivateError::InvalidQueue(i))?;
            q.set_event_idx(self.acked_features & (1u64 << super::VIRTIO_RING_F_EVENT_IDX) != 0);
            active.push(ActiveQueue {
                queue: q,
                notify: self.notify[i].try_clone()?,
            });
        }
        if active.len() != self.queues.len() {
            return Err(super::ActivateError::QueueCount {
                expected: self.queues.len(),
                got: active.len(),
            });
        }
        self.device.activate(
            self.mem.clone(),
            self.acked_features,
            active,
            self.interrupt.clone(),
        )
    }

    fn read_reg(&self, offset: u64) -> u32 {
        let q = self.queues.get(self.queue_sel as usize);
        match offset {
            0x000 => MMIO_MAGIC,
            0x004 => MMIO_VERSION,
            0x008 => self.device.device_type(),
            0x00c => VENDOR_ID,
            0x010 => {
                let f = self.device.features();
                match self.device_features_sel {
                    0 => f as u32,
                    1 => (f >> 32) as u32,
                    _ => 0,
                }
            }
            0x034 => q.map_or(0, |q| u32::from(q.max)),
            0x044 => q.map_or(0, |q| u32::from(q.queue.ready())),
            0x060 => self.interrupt.status(),
            0x070 => self.status,
            0x0fc => self.config_generation,
            _ => 0,
        }
    }

    fn write_reg(&mut self, offset: u64, v: u32) {
        match offset {
            0x014 => self.device_features_sel = v,
            0x020 => {
                if self.status & status::FEATURES_OK != 0 || self.status & status::DRIVER == 0 {
                    return;
                }
                let shift = match self.driver_features_sel {
                    0 => 0,
                    1 => 32,
                    _ => return,
                };
                let mask = 0xffff_ffffu64 << shift;
                let offered = self.device.features();
                self.acked_features =
                    (self.acked_features & !mask) | ((u64::from(v) << shift) & offered & mask);
            }
            0x024 => self.driver_features_sel = v,
            0x030 => self.queue_sel = v,
            0x038 | 0x044 | 0x080 | 0x084 | 0x090 | 0x094 | 0x0a0 | 0x0a4 => {
                if !self.queue_config_writable() {
                    return;
                }
                let Some(slot) = self.selected() else { return };
                let q = &mut slot.queue;
                match offset {
                    // try_set_size rejects 0 and non-powers of two.
                    0x038 if v <= u32::from(slot.max) => {
                        let _ = q.try_set_size(v as u16);
                    }
                    0x044 => q.set_ready(v == 1),
                    0x080 => q.set_desc_table_address(Some(v), None),
                    0x084 => q.set_desc_table_address(None, Some(v)),
                    0x090 => q.set_avail_ring_address(Some(v), None),
                    0x094 => q.set_avail_ring_address(None, Some(v)),
                    0x0a0 => q.set_used_ring_address(Some(v), None),
                    0x0a4 => q.set_used_ring_address(None, Some(v)),
                    _ => {}
                }
            }
            0x050 => {
                if let Some(e) = self.notify.get(v as usize) {
                    if let Err(err) = e.write(1) {
                        tracing::warn!("virtio-mmio: notify eventfd: {err}");
                    }
                }
            }
            0x064 => self.interrupt.ack(v),
            0x070 => self.set_status(v),
            _ => tracing::trace!("virtio-mmio: write to {offset:#x} ignored"),
        }
    }
}

impl BusDevice for MmioTransport {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= CONFIG_OFFSET {
            self.device.read_config(offset - CONFIG_OFFSET, data);
            return;
        }
        if data.len() != 4 || offset % 4 != 0 {
            data.fill(0);
            return;
        }
        data.copy_from_slice(&self.read_reg(offset).to_le_bytes());
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= CONFIG_OFFSET {
            self.device.write_config(offset - CONFIG_OFFSET, data);
            return;
        }
        let Ok(b) = <[u8; 4]>::try_from(data) else {
            return;
        };
        if offset % 4 != 0 {
            return;
        }
        self.write_reg(offset, u32::from_le_bytes(b));
    }
}

impl Drop for MmioTransport {
    fn drop(&mut self) {
        if self.activated {
            self.device.reset();
        }
    }
}
