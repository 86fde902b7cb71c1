//! virtio-blk driver over virtio-mmio (modern, version 2), ring 3.
//!
//! The device is (re)initialised by every `disk` command, so the rings and
//! buffers may live in ordinary RAM that other commands (memtest) reuse:
//! the top 16 MiB of low RAM. Requests go out in batches of up to
//! `BATCH` (each up to 256 KiB) with one `QueueNotify` per batch; the
//! driver sleeps in `hlt` until the used-ring interrupt.
//!
//! Shell: `disk [info]`, `disk write SECTOR COUNT [SEED]`,
//! `disk read SECTOR COUNT`, `disk verify SECTOR COUNT [SEED]`.
//! Data pattern: the u64 at absolute disk byte offset `o` is
//! `((o / 8) + 1) * 0x9e3779b97f4a7c15 ^ SEED` (the host tests recompute it).

use core::sync::atomic::{fence, Ordering};

use crate::arch;
use crate::bootinfo::BootInfo;
use crate::mmio::{r32, w32};
use crate::print;

const QSIZE: u16 = 64;
const BATCH: usize = 16;
const CHUNK_SECTORS: u64 = 512; // 256 KiB per request
const DMA_SIZE: u64 = 16 << 20;

const F_NEXT: u16 = 1;
const F_WRITE: u16 = 2;

const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;

/// The pattern word for disk byte offset `off` (a multiple of 8).
pub fn pattern(off: u64, seed: u64) -> u64 {
    ((off >> 3) + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ seed
}

struct Blk {
    base: u64,
    irq: u8,
    capacity: u64,
    read_only: bool,
    dma: u64,
    avail_idx: u16,
    used_seen: u16,
}

impl Blk {
    fn desc(&self) -> u64 {
        self.dma
    }
    fn avail(&self) -> u64 {
        self.dma + 0x1000
    }
    fn used(&self) -> u64 {
        self.dma + 0x2000
    }
    fn hdr(&self, k: usize) -> u64 {
        self.dma + 0x3000 + 16 * k as u64
    }
    fn status(&self, k: usize) -> u64 {
        self.dma + 0x3800 + k as u64
    }
    fn buf(&self, k: usize) -> u64 {
        self.dma + (1 << 20) + (k as u64) * (CHUNK_SECTORS * 512)
    }
}

fn wr<T>(addr: u64, v: T) {
    // SAFETY: driver-owned RAM in the DMA window (identity-mapped).
    unsafe { core::ptr::write_volatile(addr as *mut T, v) }
}

fn rd<T>(addr: u64) -> T {
    // SAFETY: as wr.
    unsafe { core::ptr::read_volatile(addr as *const T) }
}

fn open(bi: &BootInfo) -> Option<Blk> {
    if bi.ram_low_end < 64 << 20 {
        print!("disk: need at least 64 MiB of RAM\r\n");
        return None;
    }
    for slot in 0..bi.virtio_slots {
        let base = bi.virtio_base + slot * bi.virtio_size;
        if r32(base) != 0x7472_6976 || r32(base + 4) != 2 || r32(base + 8) != 2 {
            continue;
        }
        w32(base + 0x70, 0);
        w32(base + 0x70, 1);
        w32(base + 0x70, 3);
        w32(base + 0x14, 0);
        let f_lo = r32(base + 0x10);
        w32(base + 0x14, 1);
        let f_hi = r32(base + 0x10);
        if f_hi & 1 == 0 {
            print!("disk: device is not virtio 1.x\r\n");
            return None;
        }
        // FLUSH (9) and RO (5) if offered.
        w32(base + 0x24, 0);
        w32(base + 0x20, f_lo & ((1 << 9) | (1 << 5)));
        w32(base + 0x24, 1);
        w32(base + 0x20, 1);
        w32(base + 0x70, 0xb);
        if r32(base + 0x70) & 8 == 0 {
            print!("disk: feature negotiation failed\r\n");
            return None;
        }
        w32(base + 0x30, 0);
        if r32(base + 0x34) < u32::from(QSIZE) {
            print!("disk: queue too small\r\n");
            return None;
        }
        let dma = bi.ram_low_end - DMA_SIZE;
        // SAFETY: the ring pages of the DMA window are driver-owned RAM.
        unsafe { core::ptr::write_bytes(dma as *mut u8, 0, 0x4000) };
        w32(base + 0x38, u32::from(QSIZE));
        w32(base + 0x80, dma as u32);
        w32(base + 0x84, (dma >> 32) as u32);
        w32(base + 0x90, (dma + 0x1000) as u32);
        w32(base + 0x94, ((dma + 0x1000) >> 32) as u32);
        w32(base + 0xa0, (dma + 0x2000) as u32);
        w32(base + 0xa4, ((dma + 0x2000) >> 32) as u32);
        w32(base + 0x44, 1);
        w32(base + 0x70, 0xf);
        if r32(base + 0x70) & 0x40 != 0 {
            print!("disk: device needs reset\r\n");
            return None;
        }
        let capacity = u64::from(r32(base + 0x100)) | (u64::from(r32(base + 0x104)) << 32);
        let irq = (bi.virtio_irq_base + slot) as u8;
        arch::pic_unmask(irq);
        return Some(Blk {
            base,
            irq,
            capacity,
            read_only: f_lo & (1 << 5) != 0,
            dma,
            avail_idx: 0,
            used_seen: 0,
        });
    }
    print!("disk: no virtio-blk device\r\n");
    None
}

/// One request: (type, sector, sectors). Data for request k lives at buf(k).
fn run_batch(b: &mut Blk, reqs: &[(u32, u64, u64)]) -> bool {
    for (k, &(t, sector, n)) in reqs.iter().enumerate() {
        let h = b.hdr(k);
        wr(h, t);
        wr(h + 4, 0u32);
        wr(h + 8, sector);
        wr(b.status(k), 0xffu8);
        // Descriptors 3k (header), 3k+1 (data, if any), 3k+2 (status).
        let i = 3 * k as u16;
        let d0 = b.desc() + 16 * u64::from(i);
        wr(d0, h);
        wr(d0 + 8, 16u32);
        wr(d0 + 12, F_NEXT);
        wr(d0 + 14, if n > 0 { i + 1 } else { i + 2 });
        if n > 0 {
            let d1 = d0 + 16;
            wr(d1, b.buf(k));
            wr(d1 + 8, (n * 512) as u32);
            wr(d1 + 12, F_NEXT | if t == T_IN { F_WRITE } else { 0 });
            wr(d1 + 14, i + 2);
        }
        let d2 = d0 + 32;
        wr(d2, b.status(k));
        wr(d2 + 8, 1u32);
        wr(d2 + 12, F_WRITE);
        wr(d2 + 14, 0u16);
        let slot = b.avail() + 4 + 2 * u64::from(b.avail_idx.wrapping_add(k as u16) % QSIZE);
        wr(slot, i);
    }
    fence(Ordering::Release);
    b.avail_idx = b.avail_idx.wrapping_add(reqs.len() as u16);
    wr(b.avail() + 2, b.avail_idx);
    fence(Ordering::SeqCst);
    w32(b.base + 0x50, 0);
    let target = b.used_seen.wrapping_add(reqs.len() as u16);
    let t0 = arch::rdtsc();
    loop {
        let seen = arch::irq_total();
        let used: u16 = rd(b.used() + 2);
        if used == target {
            break;
        }
        if arch::rdtsc().wrapping_sub(t0) > 30_000_000_000 {
            print!("disk: timeout waiting for the device (used {} want {})\r\n", used, target);
            return false;
        }
        arch::wait_irq(seen);
    }
    fence(Ordering::Acquire);
    b.used_seen = target;
    let isr = r32(b.base + 0x60);
    w32(b.base + 0x64, isr);
    let _ = b.irq;
    let mut ok = true;
    for k in 0..reqs.len() {
        let s: u8 = rd(b.status(k));
        if s != 0 {
            print!("disk: request {} ({:?}) failed with status {}\r\n", k, reqs[k], s);
            ok = false;
        }
    }
    ok
}

fn us(bi: &BootInfo, t0: u64) -> u64 {
    let dt = arch::rdtsc().wrapping_sub(t0);
    if bi.tsc_khz == 0 {
        0
    } else {
        dt * 1000 / bi.tsc_khz
    }
}

#[derive(Clone, Copy)]
enum Op {
    Write(u64),
    Read,
    Verify(u64),
}

fn transfer(bi: &BootInfo, b: &mut Blk, op: Op, start: u64, count: u64) {
    if count == 0 || start.checked_add(count).is_none_or(|e| e > b.capacity) {
        print!("disk: range {}+{} outside 0..{}\r\n", start, count, b.capacity);
        return;
    }
    let t0 = arch::rdtsc();
    let mut sector = start;
    let mut sum = 0u64;
    let mut batches = 0u64;
    while sector < start + count {
        let mut reqs = [(0u32, 0u64, 0u64); BATCH];
        let mut n = 0;
        while n < BATCH && sector < start + count {
            let len = CHUNK_SECTORS.min(start + count - sector);
            let t = if matches!(op, Op::Write(_)) { T_OUT } else { T_IN };
            if let Op::Write(seed) = op {
                let p = b.buf(n) as *mut u64;
                for w in 0..(len * 64) {
                    // SAFETY: the request's buffer in the DMA window.
                    unsafe { core::ptr::write_volatile(p.add(w as usize), pattern(sector * 512 + w * 8, seed)) };
                }
            }
            reqs[n] = (t, sector, len);
            sector += len;
            n += 1;
        }
        if !run_batch(b, &reqs[..n]) {
            return;
        }
        batches += 1;
        if !matches!(op, Op::Write(_)) {
            for (k, &(_, s0, len)) in reqs[..n].iter().enumerate() {
                let p = b.buf(k) as *const u64;
                for w in 0..(len * 64) {
                    // SAFETY: the request's buffer in the DMA window.
                    let v = unsafe { core::ptr::read_volatile(p.add(w as usize)) };
                    sum = sum.wrapping_add(v);
                    if let Op::Verify(seed) = op {
                        let want = pattern(s0 * 512 + w * 8, seed);
                        if v != want {
                            print!("disk: verify FAIL at sector {} word {}: {:#x} != {:#x}\r\n", s0 + w / 64, w % 64, v, want);
                            return;
                        }
                    }
                }
            }
        }
    }
    if let Op::Write(_) = op {
        if !run_batch(b, &[(T_FLUSH, 0, 0)]) {
            return;
        }
    }
    let t = us(bi, t0);
    let kib_s = if t > 0 { count * 512 * 1_000_000 / 1024 / t } else { 0 };
    match op {
        Op::Write(seed) => print!("disk: wrote {} sectors at {} seed {:#x} ok ({} batches, {} us, {} KiB/s)\r\n", count, start, seed, batches, t, kib_s),
        Op::Read => print!("disk: read {} sectors at {} checksum {:#018x} ({} us)\r\n", count, start, sum, t),
        Op::Verify(seed) => print!("disk: verify {} sectors at {} seed {:#x} ok ({} us)\r\n", count, start, seed, t),
    }
}

fn parse(s: Option<&str>) -> Option<u64> {
    let s = s?.trim();
    if let Some(h) = s.strip_prefix("0x") {
        u64::from_str_radix(h, 16).ok()
    } else {
        s.parse().ok()
    }
}

/// The `disk` shell command.
pub fn command(bi: &BootInfo, arg: &str) {
    let mut it = arg.split_whitespace();
    let sub = it.next().unwrap_or("info");
    let Some(mut b) = open(bi) else { return };
    match sub {
        "info" => print!(
            "disk: capacity {} sectors ({} MiB){} irq {}\r\n",
            b.capacity,
            b.capacity >> 11,
            if b.read_only { " read-only" } else { "" },
            b.irq
        ),
        "write" | "read" | "verify" => {
            let (Some(start), Some(count)) = (parse(it.next()), parse(it.next())) else {
                print!("usage: disk {} SECTOR COUNT [SEED]\r\n", sub);
                return;
            };
            let seed = parse(it.next()).unwrap_or(0);
            let op = match sub {
                "write" => Op::Write(seed),
                "read" => Op::Read,
                _ => Op::Verify(seed),
            };
            transfer(bi, &mut b, op, start, count);
        }
        _ => print!("usage: disk [info|write|read|verify] ...\r\n"),
    }
}
