//! virtio-blk tests: a hand-built split virtqueue in guest memory, driven
//! both synchronously (`process_queue`) and end to end through the MMIO
//! transport and the worker thread.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use virtio_queue::{Queue, QueueT};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::request::*;
use super::*;
use crate::devices::bus::BusDevice;
use crate::devices::virtio::status;

const MEM_SIZE: usize = 16 << 20;
const DESC: u64 = 0x1000;
const AVAIL: u64 = 0x2000;
const USED: u64 = 0x3000;
const QSIZE: u16 = 16;
const F_NEXT: u16 = 1;
const F_WRITE: u16 = 2;
const F_INDIRECT: u16 = 4;

/// Driver side of a split virtqueue.
pub(crate) struct Ring {
    pub mem: GuestMemoryMmap,
    next_desc: u16,
    avail_idx: u16,
}

impl Ring {
    pub fn new() -> Self {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap();
        Self {
            mem,
            next_desc: 0,
            avail_idx: 0,
        }
    }

    pub fn queue(&self) -> Queue {
        let mut q = Queue::new(QSIZE).unwrap();
        q.set_size(QSIZE);
        q.set_desc_table_address(Some(DESC as u32), Some(0));
        q.set_avail_ring_address(Some(AVAIL as u32), Some(0));
        q.set_used_ring_address(Some(USED as u32), Some(0));
        q.set_ready(true);
        assert!(q.is_valid(&self.mem));
        q
    }

    pub fn write_desc(&self, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let a = GuestAddress(DESC + 16 * u64::from(i));
        self.mem.write_obj(addr, a).unwrap();
        self.mem.write_obj(len, a.unchecked_add(8)).unwrap();
        self.mem.write_obj(flags, a.unchecked_add(12)).unwrap();
        self.mem.write_obj(next, a.unchecked_add(14)).unwrap();
    }

    pub fn publish(&mut self, head: u16) {
        let slot = AVAIL + 4 + 2 * u64::from(self.avail_idx % QSIZE);
        self.mem.write_obj(head, GuestAddress(slot)).unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.mem
            .write_obj(self.avail_idx, GuestAddress(AVAIL + 2))
            .unwrap();
    }

    /// Add a chain of `(addr, len, device_writable)` and publish it.
    pub fn add(&mut self, parts: &[(u64, u32, bool)]) -> u16 {
        let head = self.next_desc;
        for (k, &(addr, len, w)) in parts.iter().enumerate() {
            let i = (head + k as u16) % QSIZE;
            let last = k + 1 == parts.len();
            let flags = if w { F_WRITE } else { 0 } | if last { 0 } else { F_NEXT };
            self.write_desc(i, addr, len, flags, (i + 1) % QSIZE);
        }
        self.next_desc = (head + parts.len() as u16) % QSIZE;
        self.publish(head);
        head
    }

    pub fn used_idx(&self) -> u16 {
        self.mem.read_obj(GuestAddress(USED + 2)).unwrap()
    }

    pub fn used(&self, n: u16) -> (u32, u32) {
        let e = USED + 4 + 8 * u64::from(n % QSIZE);
        (
            self.mem.read_obj(GuestAddress(e)).unwrap(),
            self.mem.read_obj(GuestAddress(e + 4)).unwrap(),
        )
    }

    pub fn header(&self, at: u64, rtype: u32, sector: u64) {
        self.mem.write_obj(rtype, GuestAddress(at)).unwrap();
        self.mem.write_obj(0u32, GuestAddress(at + 4)).unwrap();
        self.mem.write_obj(sector, GuestAddress(at + 8)).unwrap();
    }

    pub fn status(&self, at: u64) -> u8 {
        self.mem.read_obj(GuestAddress(at)).unwrap()
    }
}

/// In-memory backend that records flushes and discards.
#[derive(Default)]
struct MemDisk {
    data: Mutex<Vec<u8>>,
    flushes: Mutex<u32>,
}

impl MemDisk {
    fn new(size: usize) -> Arc<Self> {
        Arc::new(Self {
            data: Mutex::new(vec![0; size]),
            flushes: Mutex::new(0),
        })
    }
}

impl BlockBackend for MemDisk {
    fn size(&self) -> u64 {
        self.data.lock().unwrap().len() as u64
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let d = self.data.lock().unwrap();
        let o = offset as usize;
        buf.copy_from_slice(&d[o..o + buf.len()]);
        Ok(())
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        let mut d = self.data.lock().unwrap();
        let o = offset as usize;
        d[o..o + buf.len()].copy_from_slice(buf);
        Ok(())
    }
    fn flush(&self) -> std::io::Result<()> {
        *self.flushes.lock().unwrap() += 1;
        Ok(())
    }
    fn discard(&self, offset: u64, len: u64) -> std::io::Result<()> {
        let mut d = self.data.lock().unwrap();
        d[offset as usize..(offset + len) as usize].fill(0);
        Ok(())
    }
}

const HDR: u64 = 0x10_0000;
const DATA: u64 = 0x20_0000;
const STATUS: u64 = 0x30_0000;
const SERIAL: &[u8; ID_BYTES] = b"bulkhead-test-serial";

fn run(ring: &Ring, q: &mut Queue, disk: &dyn BlockBackend, ro: bool) -> bool {
    let mut bounce = Vec::new();
    let mut ctx = RequestContext {
        backend: disk,
        read_only: ro,
        serial: SERIAL,
        bounce: &mut bounce,
    };
    process_queue(&ring.mem, q, &mut ctx).unwrap()
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn blk_write_read_flush_getid_discard() {
    let mut ring = Ring::new();
    let mut q = ring.queue();
    let disk = MemDisk::new(1 << 20);
    // OUT 4 sectors at sector 10, data split over two descriptors.
    let data = pattern(2048, 7);
    ring.mem.write_slice(&data, GuestAddress(DATA)).unwrap();
    ring.header(HDR, VIRTIO_BLK_T_OUT, 10);
    ring.add(&[
        (HDR, 16, false),
        (DATA, 1024, false),
        (DATA + 1024, 1024, false),
        (STATUS, 1, true),
    ]);
    assert!(run(&ring, &mut q, &*disk, false));
    assert_eq!(ring.status(STATUS), VIRTIO_BLK_S_OK);
    assert_eq!(ring.used_idx(), 1);
    assert_eq!(ring.used(0).1, 1);
    assert_eq!(
        &disk.data.lock().unwrap()[10 * 512..10 * 512 + 2048],
        &data[..]
    );

    // IN the same sectors into a buffer that also holds the status byte.
    ring.header(HDR, VIRTIO_BLK_T_IN, 10);
    ring.add(&[(HDR, 16, false), (DATA + 0x10000, 2049, true)]);
    assert!(run(&ring, &mut q, &*disk, false));
    let mut back = vec![0u8; 2048];
    ring.mem
        .read_slice(&mut back, GuestAddress(DATA + 0x10000))
        .unwrap();
    assert_eq!(back, data);
    assert_eq!(ring.status(DATA + 0x10000 + 2048), VIRTIO_BLK_S_OK);
    assert_eq!(ring.used(1).1, 2049);

    // FLUSH.
    ring.header(HDR, VIRTIO_BLK_T_FLUSH, 0);
    ring.add(&[(HDR, 16, false), (STATUS, 1, true)]);
    run(&ring, &mut q, &*disk, false);
    assert_eq!(ring.status(STATUS), VIRTIO_BLK_S_OK);
    assert_eq!(*disk.flushes.lock().unwrap(), 1);

    // GET_ID.
    ring.header(HDR, VIRTIO_BLK_T_GET_ID, 0);
    ring.add(&[(HDR, 16, false), (DATA, 20, true), (STATUS, 1, true)]);
    run(&ring, &mut q, &*disk, false);
    let mut id = [0u8; 20];
    ring.mem.read_slice(&mut id, GuestAddress(DATA)).unwrap();
    assert_eq!(&id, SERIAL);
    assert_eq!(ring.used(3).1, 21);

    // DISCARD sectors 11..13.
    let mut seg = Vec::new();
    seg.extend_from_slice(&11u64.to_le_bytes());
    seg.extend_from_slice(&2u32.to_le_bytes());
    seg.extend_from_slice(&0u32.to_le_bytes());
    ring.mem.write_slice(&seg, GuestAddress(DATA)).unwrap();
    ring.header(HDR, VIRTIO_BLK_T_DISCARD, 0);
    ring.add(&[(HDR, 16, false), (DATA, 16, false), (STATUS, 1, true)]);
    run(&ring, &mut q, &*disk, false);
    assert_eq!(ring.status(STATUS), VIRTIO_BLK_S_OK);
    let d = disk.data.lock().unwrap();
    assert_eq!(&d[10 * 512..11 * 512], &data[..512]);
    assert!(d[11 * 512..13 * 512].iter().all(|&b| b == 0));
    assert_eq!(&d[13 * 512..14 * 512], &data[1536..]);
}

#[test]
fn blk_read_only_refuses_writes_and_discards() {
    let mut ring = Ring::new();
    let mut q = ring.queue();
    let disk = MemDisk::new(1 << 20);
    disk.data.lock().unwrap().fill(0xAB);
    ring.mem
        .write_slice(&[0u8; 512], GuestAddress(DATA))
        .unwrap();
    ring.header(HDR, VIRTIO_BLK_T_OUT, 0);
    ring.add(&[(HDR, 16, false), (DATA, 512, false), (STATUS, 1, true)]);
    run(&ring, &mut q, &*disk, true);
    assert_eq!(ring.status(STATUS), VIRTIO_BLK_S_IOERR);
    ring.header(HDR, VIRTIO_BLK_T_DISCARD, 0);
    ring.add(&[(HDR, 16, false), (DATA, 16, false), (STATUS, 1, true)]);
    run(&ring, &mut q, &*disk, true);
    assert_eq!(ring.status(STATUS), VIRTIO_BLK_S_IOERR);
    assert!(disk.data.lock().unwrap().iter().all(|&b| b == 0xAB));
    // Reads still work.
    ring.header(HDR, VIRTIO_BLK_T_IN, 0);
    ring.add(&[(HDR, 16, false), (DATA, 512, true), (STATUS, 1, true)]);
    run(&ring, &mut q, &*disk, true);
    assert_eq!(ring.status(STATUS), VIRTIO_BLK_S_OK);
    assert_eq!(ring.mem.read_obj::<u8>(GuestAddress(DATA)).unwrap(), 0xAB);
    // The device advertises RO and not DISCARD.
    let blk = Block::new(disk, true, "x");
    assert_ne!(blk.features() & (1 << VIRTIO_BLK_F_RO), 0);
    assert_eq!(blk.features() & (1 << VIRTIO_BLK_F_DISCARD), 0);
}

#[test]
fn blk_bad_requests_get_error_status() {
    let mut ring = Ring::new();
    let mut q = ring.queue();
    let disk = MemDisk::new(64 * 512);
    type Case = (u32, u64, Vec<(u64, u32, bool)>, u8);
    let cases: Vec<Case> = vec![
        // Past the end of the disk.
        (
            VIRTIO_BLK_T_IN,
            64,
            vec![(DATA, 512, true)],
            VIRTIO_BLK_S_IOERR,
        ),
        (
            VIRTIO_BLK_T_OUT,
            63,
            vec![(DATA, 1024, false)],
            VIRTIO_BLK_S_IOERR,
        ),
        // Sector overflow.
        (
            VIRTIO_BLK_T_IN,
            u64::MAX,
            vec![(DATA, 512, true)],
            VIRTIO_BLK_S_IOERR,
        ),
        // Not a whole sector.
        (
            VIRTIO_BLK_T_IN,
            0,
            vec![(DATA, 100, true)],
            VIRTIO_BLK_S_IOERR,
        ),
        // Data buffer outside guest memory / huge.
        (
            VIRTIO_BLK_T_IN,
            0,
            vec![(0xFFFF_F000_0000, 512, true)],
            VIRTIO_BLK_S_IOERR,
        ),
        (
            VIRTIO_BLK_T_OUT,
            0,
            vec![(MEM_SIZE as u64 - 512, 0xFFFF_FE00, false)],
            VIRTIO_BLK_S_IOERR,
        ),
        // Unknown type.
        (77, 0, vec![], VIRTIO_BLK_S_UNSUPP),
        // IN with a readable data buffer, OUT with a writable one.
        (
            VIRTIO_BLK_T_IN,
            0,
            vec![(DATA, 512, false)],
            VIRTIO_BLK_S_IOERR,
        ),
        (
            VIRTIO_BLK_T_OUT,
            0,
            vec![(DATA, 512, true)],
            VIRTIO_BLK_S_IOERR,
        ),
        // Discard: bad length, bad flags, past the end.
        (
            VIRTIO_BLK_T_DISCARD,
            0,
            vec![(DATA, 15, false)],
            VIRTIO_BLK_S_IOERR,
        ),
    ];
    for (n, (t, sector, mid, want)) in cases.into_iter().enumerate() {
        ring.header(HDR, t, sector);
        ring.mem.write_obj(0xEEu8, GuestAddress(STATUS)).unwrap();
        let mut parts = vec![(HDR, 16, false)];
        parts.extend(mid);
        parts.push((STATUS, 1, true));
        ring.add(&parts);
        run(&ring, &mut q, &*disk, false);
        assert_eq!(ring.status(STATUS), want, "case {n}");
    }
    // Discard with unsupported flags, and past the end.
    for (sector, flags, want) in [
        (0u64, 2u32, VIRTIO_BLK_S_UNSUPP),
        (60, 0, VIRTIO_BLK_S_IOERR),
    ] {
        let mut seg = Vec::new();
        seg.extend_from_slice(&sector.to_le_bytes());
        seg.extend_from_slice(&8u32.to_le_bytes());
        seg.extend_from_slice(&flags.to_le_bytes());
        ring.mem.write_slice(&seg, GuestAddress(DATA)).unwrap();
        ring.header(HDR, VIRTIO_BLK_T_DISCARD, 0);
        ring.add(&[(HDR, 16, false), (DATA, 16, false), (STATUS, 1, true)]);
        run(&ring, &mut q, &*disk, false);
        assert_eq!(ring.status(STATUS), want);
    }
    assert!(disk.data.lock().unwrap().iter().all(|&b| b == 0));
}

#[test]
fn blk_malformed_chains_never_panic() {
    let mut ring = Ring::new();
    let mut q = ring.queue();
    let disk = MemDisk::new(64 * 512);
    ring.header(HDR, VIRTIO_BLK_T_IN, 0);
    // No writable descriptor at all: nothing to report into, used len 0.
    ring.add(&[(HDR, 16, false), (DATA, 512, false)]);
    run(&ring, &mut q, &*disk, false);
    assert_eq!(ring.used_idx(), 1);
    assert_eq!(ring.used(0).1, 0);
    // Readable after writable.
    ring.add(&[
        (HDR, 16, false),
        (DATA, 512, true),
        (DATA, 16, false),
        (STATUS, 1, true),
    ]);
    run(&ring, &mut q, &*disk, false);
    assert_eq!(ring.used_idx(), 2);
    // Header too short.
    ring.add(&[(HDR, 8, false), (STATUS, 1, true)]);
    ring.mem.write_obj(0xEEu8, GuestAddress(STATUS)).unwrap();
    run(&ring, &mut q, &*disk, false);
    assert_eq!(ring.status(STATUS), VIRTIO_BLK_S_IOERR);
    // A descriptor loop: 5 -> 6 -> 5 ... stops at the queue-size TTL.
    ring.write_desc(5, HDR, 16, F_NEXT, 6);
    ring.write_desc(6, DATA, 512, F_NEXT | F_WRITE, 5);
    ring.publish(5);
    // next index out of range.
    ring.write_desc(7, HDR, 16, F_NEXT, 999);
    ring.publish(7);
    // Indirect table outside memory, and a nested/misaligned indirect.
    ring.write_desc(8, 0xFFFF_FFFF_0000, 64, F_INDIRECT, 0);
    ring.publish(8);
    ring.write_desc(9, DATA, 17, F_INDIRECT, 0);
    ring.publish(9);
    // Head index out of range.
    ring.publish(40);
    run(&ring, &mut q, &*disk, false);
    assert!(disk.data.lock().unwrap().iter().all(|&b| b == 0));
    // A bogus avail index (far ahead of the ring) must not hang.
    ring.mem
        .write_obj(0x8000u16, GuestAddress(AVAIL + 2))
        .unwrap();
    let mut bounce = Vec::new();
    let mut ctx = RequestContext {
        backend: &*disk,
        read_only: false,
        serial: SERIAL,
        bounce: &mut bounce,
    };
    let _ = process_queue(&ring.mem, &mut q, &mut ctx);
}

/// Scratch image file removed on drop.
pub(crate) struct TempImage(pub std::path::PathBuf);

impl TempImage {
    pub fn new(tag: &str, len: u64) -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "bulkhead-{tag}-{}-{}.img",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ));
        let f = std::fs::File::create(&p).unwrap();
        f.set_len(len).unwrap();
        Self(p)
    }
}

impl Drop for TempImage {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn w32(t: &mut dyn BusDevice, off: u64, v: u32) {
    t.write(off, &v.to_le_bytes());
}

fn r32(t: &mut dyn BusDevice, off: u64) -> u32 {
    let mut b = [0u8; 4];
    t.read(off, &mut b);
    u32::from_le_bytes(b)
}

fn negotiate(t: &mut MmioTransport, driver_features: u64) -> u32 {
    w32(t, 0x70, status::ACKNOWLEDGE);
    w32(t, 0x70, status::ACKNOWLEDGE | status::DRIVER);
    w32(t, 0x24, 0);
    w32(t, 0x20, driver_features as u32);
    w32(t, 0x24, 1);
    w32(t, 0x20, (driver_features >> 32) as u32);
    w32(
        t,
        0x70,
        status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK,
    );
    r32(t, 0x70)
}

fn setup_queue(t: &mut MmioTransport) {
    w32(t, 0x30, 0);
    assert_eq!(r32(t, 0x34), u32::from(QUEUE_SIZE));
    w32(t, 0x38, u32::from(QSIZE));
    w32(t, 0x80, DESC as u32);
    w32(t, 0x84, 0);
    w32(t, 0x90, AVAIL as u32);
    w32(t, 0x94, 0);
    w32(t, 0xa0, USED as u32);
    w32(t, 0xa4, 0);
    w32(t, 0x44, 1);
}

fn wait_used(ring: &Ring, n: u16) {
    let t0 = Instant::now();
    while ring.used_idx() != n {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "worker did not complete"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn blk_mmio_transport_end_to_end_with_raw_file() {
    let img = TempImage::new("blk", 1 << 20);
    let backend = Arc::new(RawFile::open(&img.0, false).unwrap());
    let mut ring = Ring::new();
    let irq = EventFd::new(EFD_NONBLOCK).unwrap();
    let irq_probe = irq.try_clone().unwrap();
    let mut t = virtio_mmio_block(backend, false, "disk0", irq, ring.mem.clone()).unwrap();
    assert_eq!(r32(&mut t, 0), 0x7472_6976);
    assert_eq!(r32(&mut t, 4), 2);
    assert_eq!(r32(&mut t, 8), VIRTIO_ID_BLOCK);
    w32(&mut t, 0x14, 1);
    assert_eq!(r32(&mut t, 0x10) & 1, 1, "VERSION_1 offered");
    // Capacity in config space: 2048 sectors, 64-bit read.
    let mut cap = [0u8; 8];
    t.read(0x100, &mut cap);
    assert_eq!(u64::from_le_bytes(cap), 2048);

    let want =
        (1u64 << VIRTIO_F_VERSION_1) | (1 << VIRTIO_BLK_F_FLUSH) | (1 << VIRTIO_BLK_F_DISCARD);
    assert_ne!(negotiate(&mut t, want) & status::FEATURES_OK, 0);
    setup_queue(&mut t);
    w32(
        &mut t,
        0x70,
        status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK,
    );
    assert_eq!(r32(&mut t, 0x70) & status::DEVICE_NEEDS_RESET, 0);

    // A batch of 3 writes, one notify.
    for k in 0..3u64 {
        let buf = pattern(4096, k as u8);
        ring.mem
            .write_slice(&buf, GuestAddress(DATA + k * 0x10000))
            .unwrap();
        ring.header(HDR + k * 64, VIRTIO_BLK_T_OUT, k * 8);
        ring.add(&[
            (HDR + k * 64, 16, false),
            (DATA + k * 0x10000, 4096, false),
            (STATUS + k, 1, true),
        ]);
    }
    w32(&mut t, 0x50, 0);
    wait_used(&ring, 3);
    for k in 0..3 {
        assert_eq!(ring.status(STATUS + k), VIRTIO_BLK_S_OK);
    }
    assert!(irq_probe.read().unwrap() >= 1);
    assert_eq!(r32(&mut t, 0x60) & 1, 1);
    w32(&mut t, 0x64, 1);
    assert_eq!(r32(&mut t, 0x60), 0);
    let file = std::fs::read(&img.0).unwrap();
    for k in 0..3usize {
        assert_eq!(&file[k * 4096..(k + 1) * 4096], &pattern(4096, k as u8)[..]);
    }
    // Flush then discard sector 0..8 through the file.
    ring.header(HDR, VIRTIO_BLK_T_FLUSH, 0);
    ring.add(&[(HDR, 16, false), (STATUS, 1, true)]);
    let mut seg = Vec::new();
    seg.extend_from_slice(&0u64.to_le_bytes());
    seg.extend_from_slice(&8u32.to_le_bytes());
    seg.extend_from_slice(&0u32.to_le_bytes());
    ring.mem.write_slice(&seg, GuestAddress(DATA)).unwrap();
    ring.header(HDR + 64, VIRTIO_BLK_T_DISCARD, 0);
    ring.add(&[
        (HDR + 64, 16, false),
        (DATA, 16, false),
        (STATUS + 1, 1, true),
    ]);
    w32(&mut t, 0x50, 0);
    wait_used(&ring, 5);
    assert_eq!(ring.status(STATUS), VIRTIO_BLK_S_OK);
    assert_eq!(ring.status(STATUS + 1), VIRTIO_BLK_S_OK);
    let file = std::fs::read(&img.0).unwrap();
    assert!(file[..4096].iter().all(|&b| b == 0));
    assert_eq!(&file[4096..8192], &pattern(4096, 1)[..]);

    // Reset stops the worker; the device can be brought up again.
    w32(&mut t, 0x70, 0);
    assert_eq!(r32(&mut t, 0x70), 0);
}

#[test]
fn blk_mmio_feature_and_queue_validation() {
    let img = TempImage::new("blkv", 4096);
    let backend = Arc::new(RawFile::open(&img.0, true).unwrap());
    let ring = Ring::new();
    let irq = EventFd::new(EFD_NONBLOCK).unwrap();
    let mut t = virtio_mmio_block(backend, true, "ro", irq, ring.mem.clone()).unwrap();
    // Without VERSION_1 the device refuses FEATURES_OK.
    assert_eq!(
        negotiate(&mut t, 1 << VIRTIO_BLK_F_FLUSH) & status::FEATURES_OK,
        0
    );
    w32(&mut t, 0x70, 0);
    // RO is offered for a read-only drive.
    assert_ne!(
        negotiate(
            &mut t,
            (1u64 << VIRTIO_F_VERSION_1) | (1 << VIRTIO_BLK_F_RO)
        ) & status::FEATURES_OK,
        0
    );
    // Queue rings outside guest memory: DRIVER_OK leads to NEEDS_RESET.
    w32(&mut t, 0x30, 0);
    w32(&mut t, 0x38, 16);
    w32(&mut t, 0x80, 0);
    w32(&mut t, 0x84, 0x10);
    w32(&mut t, 0x90, AVAIL as u32);
    w32(&mut t, 0xa0, USED as u32);
    w32(&mut t, 0x44, 1);
    w32(
        &mut t,
        0x70,
        status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK,
    );
    assert_ne!(r32(&mut t, 0x70) & status::DEVICE_NEEDS_RESET, 0);
    // Odd-sized register access reads as zero; config reads past the end too.
    let mut b = [0xffu8; 2];
    t.read(0, &mut b);
    assert_eq!(b, [0, 0]);
    let mut c = [0xffu8; 8];
    t.read(0x100 + 58, &mut c);
    assert_eq!(c, [0; 8]);
}

#[test]
fn blk_event_idx_suppresses_interrupts_as_the_driver_asks() {
    let mut ring = Ring::new();
    let mut q = ring.queue();
    q.set_event_idx(true);
    let disk = MemDisk::new(64 * 512);
    // used_event lives after the avail ring: avail + 4 + 2 * size.
    let used_event = GuestAddress(AVAIL + 4 + 2 * u64::from(QSIZE));
    ring.mem.write_obj(5u16, used_event).unwrap();
    ring.header(HDR, VIRTIO_BLK_T_FLUSH, 0);
    ring.add(&[(HDR, 16, false), (STATUS, 1, true)]);
    assert!(
        !run(&ring, &mut q, &*disk, false),
        "used_event 5 not reached"
    );
    ring.mem.write_obj(1u16, used_event).unwrap();
    ring.add(&[(HDR, 16, false), (STATUS, 1, true)]);
    assert!(
        run(&ring, &mut q, &*disk, false),
        "used index passed used_event"
    );
    assert_eq!(ring.used_idx(), 2);
    // With event idx the device publishes avail_event for the driver.
    let avail_event: u16 = ring
        .mem
        .read_obj(GuestAddress(USED + 4 + 8 * u64::from(QSIZE)))
        .unwrap();
    assert_eq!(avail_event, 2);
}

#[test]
fn blk_transport_state_save_and_restore_mid_stream() {
    let img = TempImage::new("mig", 1 << 20);
    let backend: Arc<dyn BlockBackend> = Arc::new(RawFile::open(&img.0, false).unwrap());
    let mut ring = Ring::new();
    let irq = EventFd::new(EFD_NONBLOCK).unwrap();
    let mut t = virtio_mmio_block(backend.clone(), false, "m", irq, ring.mem.clone()).unwrap();
    negotiate(&mut t, 1u64 << VIRTIO_F_VERSION_1);
    setup_queue(&mut t);
    w32(&mut t, 0x70, 0xf);
    ring.header(HDR, VIRTIO_BLK_T_FLUSH, 0);
    ring.add(&[(HDR, 16, false), (STATUS, 1, true)]);
    w32(&mut t, 0x50, 0);
    wait_used(&ring, 1);

    // Snapshot while running: the worker stops, positions are captured, it
    // restarts and keeps serving.
    let s = t.save_state().unwrap();
    assert_eq!(s.queues[0].next_avail, 1);
    assert_eq!(s.queues[0].next_used, 1);
    assert_eq!(s.status, 0xf);
    ring.add(&[(HDR, 16, false), (STATUS, 1, true)]);
    w32(&mut t, 0x50, 0);
    wait_used(&ring, 2);
    drop(t);

    // "Destination": a fresh transport restored from the snapshot continues
    // at the saved position (the second request was made after it, so the
    // destination replays it, as the guest's memory would say).
    ring.mem.write_obj(1u16, GuestAddress(USED + 2)).unwrap();
    let irq = EventFd::new(EFD_NONBLOCK).unwrap();
    let mut d = virtio_mmio_block(backend.clone(), false, "m", irq, ring.mem.clone()).unwrap();
    d.restore_state(&s).unwrap();
    assert_eq!(r32(&mut d, 0x70), 0xf);
    w32(&mut d, 0x50, 0);
    wait_used(&ring, 2);
    ring.mem
        .write_slice(&pattern(512, 9), GuestAddress(DATA))
        .unwrap();
    ring.header(HDR + 64, VIRTIO_BLK_T_OUT, 1);
    ring.add(&[
        (HDR + 64, 16, false),
        (DATA, 512, false),
        (STATUS + 1, 1, true),
    ]);
    w32(&mut d, 0x50, 0);
    wait_used(&ring, 3);
    assert_eq!(
        &std::fs::read(&img.0).unwrap()[512..1024],
        &pattern(512, 9)[..]
    );

    // Inconsistent or mismatched states are refused.
    let irq = EventFd::new(EFD_NONBLOCK).unwrap();
    let mut e = virtio_mmio_block(backend, false, "m", irq, ring.mem.clone()).unwrap();
    let mut bad = s.clone();
    bad.acked_features |= 1 << 40;
    assert!(e.restore_state(&bad).is_err());
    let mut bad = s.clone();
    bad.queues[0].size = 3;
    assert!(e.restore_state(&bad).is_err());
    let mut bad = s.clone();
    bad.queues.push(bad.queues[0]);
    assert!(e.restore_state(&bad).is_err());
    let mut bad = s;
    bad.queues[0].desc_table = 0xffff_ffff_0000;
    assert!(e.restore_state(&bad).is_err());
}
