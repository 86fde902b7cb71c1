//! virtio devices over the virtio-mmio transport (virtio 1.x, "modern",
//! register layout version 2).
//!
//! ```text
//!  vCPU thread                         device worker thread
//!  ───────────                         ────────────────────
//!  MMIO exit ─▶ MmioTransport ─┐
//!               (registers,    │ DRIVER_OK: activate(queues, Interrupt)
//!                status FSM)   └────────▶ VirtioDevice ──spawn──▶ worker
//!  QueueNotify write ─▶ queue EventFd ─────────────────────────────▶ wakes
//!  (or KVM ioeventfd on the same EventFd: no exit round-trip)       │
//!  guest IRQ ◀─ irqfd GSI ◀─ Interrupt (status bits + EventFd) ◀────┘
//! ```
//!
//! * [`mmio`]: the transport (`BusDevice`), generic over [`VirtioDevice`].
//! * [`block`]: virtio-blk with a worker thread and a pluggable
//!   [`block::BlockBackend`] (raw file now, NBD client later).

pub mod block;
pub mod mmio;

use std::sync::atomic::{AtomicU32, Ordering};

use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

pub use virtio_queue::Queue;

/// `VIRTIO_F_VERSION_1`: the device is a virtio 1.x ("modern") device.
pub const VIRTIO_F_VERSION_1: u32 = 32;
/// `VIRTIO_RING_F_EVENT_IDX`: used/avail event index notification suppression.
pub const VIRTIO_RING_F_EVENT_IDX: u32 = 29;

/// Device status bits (virtio 1.x §2.1).
pub mod status {
    /// Guest noticed the device.
    pub const ACKNOWLEDGE: u32 = 1;
    /// Guest has a driver for it.
    pub const DRIVER: u32 = 2;
    /// Driver is ready; the device may process queues.
    pub const DRIVER_OK: u32 = 4;
    /// Feature negotiation finished.
    pub const FEATURES_OK: u32 = 8;
    /// The device hit an unrecoverable error; the driver must reset it.
    pub const DEVICE_NEEDS_RESET: u32 = 0x40;
    /// The driver gave up on the device.
    pub const FAILED: u32 = 0x80;
}

/// Interrupt status bit: a used ring was updated.
pub const INT_VRING: u32 = 1;
/// Interrupt status bit: the configuration space (or device status) changed.
pub const INT_CONFIG: u32 = 2;

/// The device-to-guest interrupt of one virtio-mmio device: the
/// `InterruptStatus` register bits plus the `EventFd` the core registers as a
/// KVM irqfd on GSI `layout::VIRTIO_MMIO_IRQ_BASE + slot`.
///
/// Each [`Interrupt::signal`] writes the eventfd once (an edge). The guest
/// reads `InterruptStatus` and acknowledges through `InterruptACK`.
#[derive(Debug)]
pub struct Interrupt {
    status: AtomicU32,
    irq: EventFd,
}

impl Interrupt {
    /// Wrap the irq eventfd.
    pub fn new(irq: EventFd) -> Self {
        Self {
            status: AtomicU32::new(0),
            irq,
        }
    }

    /// Set `bits` in `InterruptStatus` and trigger the irq line.
    pub fn signal(&self, bits: u32) {
        self.status.fetch_or(bits, Ordering::SeqCst);
        if let Err(e) = self.irq.write(1) {
            tracing::warn!("virtio irq eventfd write failed: {e}");
        }
    }

    /// Current `InterruptStatus`.
    pub fn status(&self) -> u32 {
        self.status.load(Ordering::SeqCst)
    }

    /// `InterruptACK`: clear `bits`.
    pub fn ack(&self, bits: u32) {
        self.status.fetch_and(!bits, Ordering::SeqCst);
    }

    /// Restore `InterruptStatus` (migration), without raising the line.
    pub fn set_status(&self, bits: u32) {
        self.status.store(bits, Ordering::SeqCst);
    }

    /// Clear all bits (device reset).
    pub fn clear(&self) {
        self.status.store(0, Ordering::SeqCst);
    }

    /// The irq eventfd (for irqfd registration or tests).
    pub fn eventfd(&self) -> &EventFd {
        &self.irq
    }
}

/// One queue handed to a device at activation: the negotiated ring plus the
/// eventfd the driver's notifications arrive on.
#[derive(Debug)]
pub struct ActiveQueue {
    /// The split virtqueue (addresses, size, ready, next indices).
    pub queue: Queue,
    /// Written on every `QueueNotify` of this queue (by the transport or by
    /// a KVM ioeventfd).
    pub notify: EventFd,
}

/// Errors when a device cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    /// The driver set up a different number of queues than the device needs.
    #[error("expected {expected} queues, driver enabled {got}")]
    QueueCount {
        /// Queues the device needs.
        expected: usize,
        /// Queues the driver made ready.
        got: usize,
    },
    /// A queue's rings are misaligned or outside guest memory.
    #[error("queue {0} is not valid (size, alignment or guest address)")]
    InvalidQueue(usize),
    /// Creating the worker or its eventfds failed.
    #[error("device worker: {0}")]
    Io(#[from] std::io::Error),
}

/// A virtio device model, driven by a transport.
pub trait VirtioDevice: Send {
    /// virtio device id (2 = block).
    fn device_type(&self) -> u32;
    /// Maximum size of each queue; its length is the number of queues.
    fn queue_max_sizes(&self) -> &[u16];
    /// Offered feature bits (including `VIRTIO_F_VERSION_1`).
    fn features(&self) -> u64;
    /// Read the device configuration space.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Write the device configuration space (most devices ignore this).
    fn write_config(&mut self, offset: u64, data: &[u8]);
    /// Start processing: the driver set `DRIVER_OK`.
    fn activate(
        &mut self,
        mem: GuestMemoryMmap,
        acked_features: u64,
        queues: Vec<ActiveQueue>,
        interrupt: std::sync::Arc<Interrupt>,
    ) -> Result<(), ActivateError>;
    /// Stop processing (driver wrote status 0). Must stop any worker.
    fn reset(&mut self);
    /// Stop any worker (for a snapshot) and return the live state of each
    /// queue it was serving; the transport re-activates afterwards. Devices
    /// without workers return nothing.
    fn quiesce(&mut self) -> Vec<virtio_queue::QueueState> {
        Vec::new()
    }
}

/// A virtqueue's registers and ring positions, as saved for migration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QueueRegs {
    /// Maximum size the device offers.
    pub max_size: u16,
    /// Size the driver chose.
    pub size: u16,
    /// QueueReady.
    pub ready: bool,
    /// Descriptor table address.
    pub desc_table: u64,
    /// Available ring address.
    pub avail_ring: u64,
    /// Used ring address.
    pub used_ring: u64,
    /// Next available index the device will read.
    pub next_avail: u16,
    /// Next used index the device will write.
    pub next_used: u16,
    /// `VIRTIO_RING_F_EVENT_IDX` in use.
    pub event_idx: bool,
}

impl From<virtio_queue::QueueState> for QueueRegs {
    fn from(q: virtio_queue::QueueState) -> Self {
        Self {
            max_size: q.max_size,
            size: q.size,
            ready: q.ready,
            desc_table: q.desc_table,
            avail_ring: q.avail_ring,
            used_ring: q.used_ring,
            next_avail: q.next_avail,
            next_used: q.next_used,
            event_idx: q.event_idx_enabled,
        }
    }
}

impl From<QueueRegs> for virtio_queue::QueueState {
    fn from(q: QueueRegs) -> Self {
        Self {
            max_size: q.max_size,
            next_avail: q.next_avail,
            next_used: q.next_used,
            event_idx_enabled: q.event_idx,
            size: q.size,
            ready: q.ready,
            desc_table: q.desc_table,
            avail_ring: q.avail_ring,
            used_ring: q.used_ring,
        }
    }
}
