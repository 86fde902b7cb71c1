//! virtio-blk (device id 2): one request queue served by a worker thread.
//!
//! The worker sleeps on the queue's notify eventfd (written by the MMIO
//! transport on `QueueNotify`, or directly by KVM when the core registers it
//! as an ioeventfd), drains the available ring in one batch, and raises one
//! interrupt per batch when the driver asks for it.

pub mod backend;
pub mod request;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use super::mmio::MmioTransport;
use super::{
    ActivateError, ActiveQueue, Interrupt, Queue, VirtioDevice, INT_VRING, VIRTIO_F_VERSION_1,
    VIRTIO_RING_F_EVENT_IDX,
};
pub use backend::{BlockBackend, RawFile};
use request::{RequestContext, ID_BYTES, MAX_DISCARD_SECTORS, MAX_DISCARD_SEG, SEG_MAX};

/// virtio device id of a block device.
pub const VIRTIO_ID_BLOCK: u32 = 2;
/// Feature: `seg_max` is valid.
pub const VIRTIO_BLK_F_SEG_MAX: u32 = 2;
/// Feature: the device is read-only.
pub const VIRTIO_BLK_F_RO: u32 = 5;
/// Feature: `blk_size` is valid.
pub const VIRTIO_BLK_F_BLK_SIZE: u32 = 6;
/// Feature: FLUSH requests are supported.
pub const VIRTIO_BLK_F_FLUSH: u32 = 9;
/// Feature: DISCARD requests are supported.
pub const VIRTIO_BLK_F_DISCARD: u32 = 13;
/// Queue size offered.
pub const QUEUE_SIZE: u16 = 256;
/// Bytes of configuration space exposed.
pub const CONFIG_LEN: usize = 60;

struct Worker {
    handle: JoinHandle<Queue>,
    stop: Arc<AtomicBool>,
    kick: EventFd,
}

/// The virtio-blk device model (put it behind an [`MmioTransport`]).
pub struct Block {
    backend: Arc<dyn BlockBackend>,
    read_only: bool,
    serial: [u8; ID_BYTES],
    features: u64,
    config: [u8; CONFIG_LEN],
    worker: Option<Worker>,
}

impl Block {
    /// A block device over `backend`. `serial` (truncated to 20 bytes) is
    /// what GET_ID returns (`/sys/block/vda/serial` in Linux).
    pub fn new(backend: Arc<dyn BlockBackend>, read_only: bool, serial: &str) -> Self {
        let mut features = (1u64 << VIRTIO_F_VERSION_1)
            | (1u64 << VIRTIO_RING_F_EVENT_IDX)
            | (1u64 << VIRTIO_BLK_F_SEG_MAX)
            | (1u64 << VIRTIO_BLK_F_BLK_SIZE)
            | (1u64 << VIRTIO_BLK_F_FLUSH);
        if read_only {
            features |= 1u64 << VIRTIO_BLK_F_RO;
        } else if backend.supports_discard() {
            features |= 1u64 << VIRTIO_BLK_F_DISCARD;
        }
        let mut id = [0u8; ID_BYTES];
        let n = serial.len().min(ID_BYTES);
        id[..n].copy_from_slice(&serial.as_bytes()[..n]);
        let mut config = [0u8; CONFIG_LEN];
        let capacity = backend.size() / request::SECTOR_SIZE;
        config[0..8].copy_from_slice(&capacity.to_le_bytes());
        config[12..16].copy_from_slice(&SEG_MAX.to_le_bytes());
        config[20..24].copy_from_slice(&(request::SECTOR_SIZE as u32).to_le_bytes());
        config[34..36].copy_from_slice(&1u16.to_le_bytes());
        config[36..40].copy_from_slice(&MAX_DISCARD_SECTORS.to_le_bytes());
        config[40..44].copy_from_slice(&MAX_DISCARD_SEG.to_le_bytes());
        config[44..48].copy_from_slice(&1u32.to_le_bytes());
        Self {
            backend,
            read_only,
            serial: id,
            features,
            config,
            worker: None,
        }
    }

    /// Whether the drive refuses writes.
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// Capacity in 512-byte sectors.
    pub fn capacity_sectors(&self) -> u64 {
        self.backend.size() / request::SECTOR_SIZE
    }

    /// Stop the worker; returns its queue (with live ring positions).
    fn stop_worker(&mut self) -> Option<Queue> {
        let w = self.worker.take()?;
        w.stop.store(true, Ordering::SeqCst);
        let _ = w.kick.write(1);
        match w.handle.join() {
            Ok(q) => Some(q),
            Err(_) => {
                tracing::error!("virtio-blk worker panicked");
                None
            }
        }
    }
}

/// Build a virtio-mmio block device ready to map on the MMIO bus:
/// `backend` storage, `irq` the eventfd for the slot's GSI, `mem` guest RAM.
pub fn virtio_mmio_block(
    backend: Arc<dyn BlockBackend>,
    read_only: bool,
    serial: &str,
    irq: EventFd,
    mem: GuestMemoryMmap,
) -> std::io::Result<MmioTransport> {
    MmioTransport::new(Box::new(Block::new(backend, read_only, serial)), mem, irq)
}

struct WorkerState {
    mem: GuestMemoryMmap,
    queue: Queue,
    backend: Arc<dyn BlockBackend>,
    read_only: bool,
    serial: [u8; ID_BYTES],
    interrupt: Arc<Interrupt>,
    bounce: Vec<u8>,
}

impl WorkerState {
    fn run(mut self, notify: EventFd, stop: Arc<AtomicBool>) -> Queue {
        loop {
            if stop.load(Ordering::SeqCst) {
                return self.queue;
            }
            self.process();
            if notify.read().is_err() {
                // Only EINTR-like transient failures; avoid a hot loop.
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
    }

    fn process(&mut self) {
        let mut ctx = RequestContext {
            backend: &*self.backend,
            read_only: self.read_only,
            serial: &self.serial,
            bounce: &mut self.bounce,
        };
        match request::process_queue(&self.mem, &mut self.queue, &mut ctx) {
            Ok(true) => self.interrupt.signal(INT_VRING),
            Ok(false) => {}
            Err(e) => tracing::warn!("virtio-blk: queue error: {e}"),
        }
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_BLOCK
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn features(&self) -> u64 {
        self.features
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        match start
            .checked_add(data.len())
            .filter(|&end| end <= CONFIG_LEN)
        {
            Some(end) => data.copy_from_slice(&self.config[start..end]),
            None => data.fill(0),
        }
    }

    fn write_config(&mut self, offset: u64, _data: &[u8]) {
        tracing::debug!("virtio-blk: config write at {offset:#x} ignored");
    }

    fn activate(
        &mut self,
        mem: GuestMemoryMmap,
        _acked_features: u64,
        mut queues: Vec<ActiveQueue>,
        interrupt: Arc<Interrupt>,
    ) -> Result<(), ActivateError> {
        if queues.len() != 1 {
            return Err(ActivateError::QueueCount {
                expected: 1,
                got: queues.len(),
            });
        }
        self.stop_worker();
        let ActiveQueue { queue, notify } = queues.remove(0);
        let kick = notify.try_clone()?;
        let stop = Arc::new(AtomicBool::new(false));
        let state = WorkerState {
            mem,
            queue,
            backend: self.backend.clone(),
            read_only: self.read_only,
            serial: self.serial,
            interrupt,
            bounce: Vec::new(),
        };
        let stop2 = stop.clone();
        let handle = std::thread::Builder::new()
            .name("virtio-blk".into())
            .spawn(move || state.run(notify, stop2))?;
        self.worker = Some(Worker { handle, stop, kick });
        Ok(())
    }

    fn reset(&mut self) {
        self.stop_worker();
    }

    fn quiesce(&mut self) -> Vec<virtio_queue::QueueState> {
        self.stop_worker().map(|q| q.state()).into_iter().collect()
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        self.stop_worker();
    }
}

#[cfg(test)]
pub(crate) mod tests;
