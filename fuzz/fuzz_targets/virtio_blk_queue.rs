//! virtio-blk request parser and virtqueue processing, driven by guest
//! memory contents taken from the input: descriptor table, available ring,
//! request headers, data and discard segments are all attacker-controlled.
//! The device must never panic, hang, or touch the disk outside what a
//! well-formed request asks for (checked against an in-memory disk).
#![no_main]

use std::sync::Mutex;

use libfuzzer_sys::fuzz_target;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm::devices::virtio::block::backend::BlockBackend;
use vmm::devices::virtio::block::request::{process_queue, RequestContext};

const MEM: usize = 64 << 10;
const DISK: usize = 32 << 10;

struct MemDisk(Mutex<Vec<u8>>);

impl BlockBackend for MemDisk {
    fn size(&self) -> u64 {
        DISK as u64
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let d = self.0.lock().unwrap();
        let o = offset as usize;
        // The device must have range-checked already.
        buf.copy_from_slice(&d[o..o + buf.len()]);
        Ok(())
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        let mut d = self.0.lock().unwrap();
        let o = offset as usize;
        d[o..o + buf.len()].copy_from_slice(buf);
        Ok(())
    }
    fn flush(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn discard(&self, offset: u64, len: u64) -> std::io::Result<()> {
        let mut d = self.0.lock().unwrap();
        d[offset as usize..(offset + len) as usize].fill(0);
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let (ctl, image) = data.split_at(8);
    // Two regions with a hole between them, so chains can straddle or miss.
    let mem =
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM), (GuestAddress(0x10_0000), 0x1000)])
            .unwrap();
    mem.write_slice(&image[..image.len().min(MEM)], GuestAddress(0))
        .unwrap();
    let size = 1u16 << (ctl[0] % 9); // 1..=256
    let mut q = Queue::new(256).unwrap();
    q.set_size(size);
    let addr = |b: u8| u64::from(b) * 0x100;
    q.set_desc_table_address(Some(addr(ctl[1]) as u32), Some(0));
    q.set_avail_ring_address(Some(addr(ctl[2]) as u32), Some(0));
    q.set_used_ring_address(Some(addr(ctl[3]) as u32), Some(0));
    q.set_event_idx(ctl[4] & 1 != 0);
    q.set_ready(true);
    if !q.is_valid(&mem) {
        return;
    }
    let disk = MemDisk(Mutex::new(vec![0x5a; DISK]));
    let serial = *b"fuzz-serial-00000000";
    let mut bounce = Vec::new();
    let mut ctx = RequestContext {
        backend: &disk,
        read_only: ctl[5] & 1 != 0,
        serial: &serial,
        bounce: &mut bounce,
    };
    for _ in 0..=(ctl[6] % 3) {
        let _ = process_queue(&mem, &mut q, &mut ctx);
    }
    if ctx.read_only {
        assert!(disk.0.lock().unwrap().iter().all(|&b| b == 0x5a));
    }
});
