//! virtio-blk request parsing and execution (virtio 1.x §5.2.6).
//!
//! ```text
//!  descriptor chain (driver-readable parts first, then device-writable):
//!  ┌──────────────────────────────┬──────────────────────┬────────────┐
//!  │ header: type u32, rsvd u32,  │ data (OUT: readable; │ status u8  │
//!  │         sector u64  (R)      │  IN/GET_ID: writable)│ (W, last)  │
//!  └──────────────────────────────┴──────────────────────┴────────────┘
//! ```
//!
//! Everything here reads guest-controlled descriptors: every length and
//! address is checked, arithmetic is checked, and a bad request ends with a
//! status byte (`IOERR`/`UNSUPP`), never a panic. Data moves through a
//! bounded bounce buffer, so no guest value sizes an allocation.

use virtio_queue::desc::split::Descriptor;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::backend::BlockBackend;

/// Read sectors into the driver's buffers.
pub const VIRTIO_BLK_T_IN: u32 = 0;
/// Write sectors from the driver's buffers.
pub const VIRTIO_BLK_T_OUT: u32 = 1;
/// Flush the write cache.
pub const VIRTIO_BLK_T_FLUSH: u32 = 4;
/// Return the device serial (20 bytes).
pub const VIRTIO_BLK_T_GET_ID: u32 = 8;
/// Discard sector ranges.
pub const VIRTIO_BLK_T_DISCARD: u32 = 11;

/// Request completed.
pub const VIRTIO_BLK_S_OK: u8 = 0;
/// Request failed.
pub const VIRTIO_BLK_S_IOERR: u8 = 1;
/// Request type not supported.
pub const VIRTIO_BLK_S_UNSUPP: u8 = 2;

/// virtio-blk sectors are always 512 bytes.
pub const SECTOR_SIZE: u64 = 512;
/// Length of the serial returned by GET_ID.
pub const ID_BYTES: usize = 20;
/// Maximum discard segments per request (config `max_discard_seg`).
pub const MAX_DISCARD_SEG: u32 = 32;
/// Maximum sectors per discard segment (config `max_discard_sectors`).
pub const MAX_DISCARD_SECTORS: u32 = 0x40_0000;
/// Maximum data segments per request (config `seg_max`).
pub const SEG_MAX: u32 = 254;
/// Bounce buffer size: data moves between guest memory and the backend in
/// chunks of at most this many bytes.
pub const BOUNCE_SIZE: usize = 256 << 10;

const HEADER_LEN: u64 = 16;
const DISCARD_SEG_LEN: u64 = 16;
/// Hard cap on descriptors per chain we are willing to look at.
const MAX_DESCS: usize = SEG_MAX as usize + 2;

#[derive(Clone, Copy, Debug)]
struct Seg {
    addr: u64,
    len: u64,
}

/// What a request runs against.
pub struct RequestContext<'a> {
    /// Storage.
    pub backend: &'a dyn BlockBackend,
    /// Refuse OUT and DISCARD with `IOERR`.
    pub read_only: bool,
    /// GET_ID answer.
    pub serial: &'a [u8; ID_BYTES],
    /// Reusable bounce buffer (grown to at most [`BOUNCE_SIZE`]).
    pub bounce: &'a mut Vec<u8>,
}

/// Skip `skip` bytes of `segs`, returning the rest.
fn skip_bytes(segs: &[Seg], mut skip: u64) -> Vec<Seg> {
    let mut out = Vec::with_capacity(segs.len());
    for s in segs {
        if skip >= s.len {
            skip -= s.len;
            continue;
        }
        out.push(Seg {
            addr: s.addr.wrapping_add(skip),
            len: s.len - skip,
        });
        skip = 0;
    }
    out
}

fn total(segs: &[Seg]) -> u64 {
    segs.iter().map(|s| s.len).sum()
}

/// Gather exactly `buf.len()` bytes from the front of `segs`.
fn gather(mem: &GuestMemoryMmap, segs: &[Seg], buf: &mut [u8]) -> Option<()> {
    let mut pos = 0usize;
    for s in segs {
        if pos == buf.len() {
            break;
        }
        let n = usize::try_from(s.len).ok()?.min(buf.len() - pos);
        mem.read_slice(&mut buf[pos..pos + n], GuestAddress(s.addr))
            .ok()?;
        pos += n;
    }
    (pos == buf.len()).then_some(())
}

/// Byte range on the disk for `sector` and `len`, or `None` if it does not
/// fit the disk (or is not a whole number of sectors).
fn disk_range(sector: u64, len: u64, size: u64) -> Option<u64> {
    if len % SECTOR_SIZE != 0 {
        return None;
    }
    let off = sector.checked_mul(SECTOR_SIZE)?;
    (off.checked_add(len)? <= size).then_some(off)
}

struct Outcome {
    status: u8,
    /// Bytes written into device-writable data buffers (not counting status).
    written: u64,
}

impl Outcome {
    fn status(status: u8) -> Self {
        Self { status, written: 0 }
    }
}

fn do_in(mem: &GuestMemoryMmap, data: &[Seg], off: u64, ctx: &mut RequestContext) -> Outcome {
    let mut disk = off;
    let mut written = 0u64;
    for s in data {
        let mut done = 0u64;
        while done < s.len {
            let n = (s.len - done).min(BOUNCE_SIZE as u64) as usize;
            let buf = &mut ctx.bounce[..n];
            if let Err(e) = ctx.backend.read_at(buf, disk) {
                tracing::warn!("virtio-blk: read at {disk:#x}: {e}");
                return Outcome {
                    status: VIRTIO_BLK_S_IOERR,
                    written,
                };
            }
            let Some(addr) = s.addr.checked_add(done) else {
                return Outcome {
                    status: VIRTIO_BLK_S_IOERR,
                    written,
                };
            };
            if mem.write_slice(buf, GuestAddress(addr)).is_err() {
                return Outcome {
                    status: VIRTIO_BLK_S_IOERR,
                    written,
                };
            }
            done += n as u64;
            disk += n as u64;
            written += n as u64;
        }
    }
    Outcome {
        status: VIRTIO_BLK_S_OK,
        written,
    }
}

fn do_out(mem: &GuestMemoryMmap, data: &[Seg], off: u64, ctx: &mut RequestContext) -> Outcome {
    let mut disk = off;
    for s in data {
        let mut done = 0u64;
        while done < s.len {
            let n = (s.len - done).min(BOUNCE_SIZE as u64) as usize;
            let buf = &mut ctx.bounce[..n];
            let Some(addr) = s.addr.checked_add(done) else {
                return Outcome::status(VIRTIO_BLK_S_IOERR);
            };
            if mem.read_slice(buf, GuestAddress(addr)).is_err() {
                return Outcome::status(VIRTIO_BLK_S_IOERR);
            }
            if let Err(e) = ctx.backend.write_at(buf, disk) {
                tracing::warn!("virtio-blk: write at {disk:#x}: {e}");
                return Outcome::status(VIRTIO_BLK_S_IOERR);
            }
            done += n as u64;
            disk += n as u64;
        }
    }
    Outcome::status(VIRTIO_BLK_S_OK)
}

fn do_discard(mem: &GuestMemoryMmap, payload: &[Seg], ctx: &mut RequestContext) -> Outcome {
    let len = total(payload);
    if len == 0 || len % DISCARD_SEG_LEN != 0 || len / DISCARD_SEG_LEN > u64::from(MAX_DISCARD_SEG)
    {
        return Outcome::status(VIRTIO_BLK_S_IOERR);
    }
    // Bounded: at most MAX_DISCARD_SEG * 16 bytes.
    let mut raw = vec![0u8; len as usize];
    if gather(mem, payload, &mut raw).is_none() {
        return Outcome::status(VIRTIO_BLK_S_IOERR);
    }
    // Validate every segment before touching the disk.
    let mut ranges = Vec::with_capacity(raw.len() / DISCARD_SEG_LEN as usize);
    for seg in raw.chunks_exact(DISCARD_SEG_LEN as usize) {
        let sector = u64::from_le_bytes(seg[0..8].try_into().unwrap_or_default());
        let num = u32::from_le_bytes(seg[8..12].try_into().unwrap_or_default());
        let flags = u32::from_le_bytes(seg[12..16].try_into().unwrap_or_default());
        if flags & !1 != 0 {
            return Outcome::status(VIRTIO_BLK_S_UNSUPP);
        }
        if num > MAX_DISCARD_SECTORS {
            return Outcome::status(VIRTIO_BLK_S_IOERR);
        }
        let bytes = u64::from(num) * SECTOR_SIZE;
        let Some(off) = disk_range(sector, bytes, ctx.backend.size()) else {
            return Outcome::status(VIRTIO_BLK_S_IOERR);
        };
        ranges.push((off, bytes));
    }
    for (off, bytes) in ranges {
        if bytes == 0 {
            continue;
        }
        if let Err(e) = ctx.backend.discard(off, bytes) {
            tracing::warn!("virtio-blk: discard {off:#x}+{bytes:#x}: {e}");
            return Outcome::status(VIRTIO_BLK_S_IOERR);
        }
    }
    Outcome::status(VIRTIO_BLK_S_OK)
}

fn do_get_id(mem: &GuestMemoryMmap, data: &[Seg], ctx: &RequestContext) -> Outcome {
    let mut src: &[u8] = ctx.serial;
    let mut written = 0u64;
    for s in data {
        if src.is_empty() {
            break;
        }
        let n = (s.len.min(src.len() as u64)) as usize;
        if mem.write_slice(&src[..n], GuestAddress(s.addr)).is_err() {
            return Outcome {
                status: VIRTIO_BLK_S_IOERR,
                written,
            };
        }
        src = &src[n..];
        written += n as u64;
    }
    Outcome {
        status: VIRTIO_BLK_S_OK,
        written,
    }
}

/// Execute one request given its descriptors (in chain order). Returns the
/// used length: bytes written into device-writable buffers, status included.
pub fn handle_chain(
    mem: &GuestMemoryMmap,
    descs: impl Iterator<Item = Descriptor>,
    ctx: &mut RequestContext,
) -> u32 {
    if ctx.bounce.len() < BOUNCE_SIZE {
        ctx.bounce.resize(BOUNCE_SIZE, 0);
    }
    let mut readable = Vec::new();
    let mut writable = Vec::new();
    let mut malformed = false;
    for (i, d) in descs.enumerate() {
        if i >= MAX_DESCS {
            malformed = true;
            break;
        }
        let seg = Seg {
            addr: d.addr().0,
            len: u64::from(d.len()),
        };
        if d.is_write_only() {
            writable.push(seg);
        } else if writable.is_empty() {
            readable.push(seg);
        } else {
            // Readable after writable: not a valid virtio-blk request.
            malformed = true;
        }
    }
    // The status byte is the last byte of the last writable descriptor.
    let Some(last) = writable.pop() else {
        tracing::debug!("virtio-blk: chain without a writable status byte");
        return 0;
    };
    if last.len == 0 {
        return 0;
    }
    let Some(status_addr) = last.addr.checked_add(last.len - 1) else {
        return 0;
    };
    if last.len > 1 {
        writable.push(Seg {
            addr: last.addr,
            len: last.len - 1,
        });
    }
    let outcome = if malformed {
        Outcome::status(VIRTIO_BLK_S_IOERR)
    } else {
        execute(mem, &readable, &writable, ctx)
    };
    if mem
        .write_obj(outcome.status, GuestAddress(status_addr))
        .is_err()
    {
        return u32::try_from(outcome.written).unwrap_or(u32::MAX);
    }
    u32::try_from(outcome.written.saturating_add(1)).unwrap_or(u32::MAX)
}

fn execute(
    mem: &GuestMemoryMmap,
    readable: &[Seg],
    writable: &[Seg],
    ctx: &mut RequestContext,
) -> Outcome {
    let mut hdr = [0u8; HEADER_LEN as usize];
    if gather(mem, readable, &mut hdr).is_none() {
        return Outcome::status(VIRTIO_BLK_S_IOERR);
    }
    let rtype = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
    let sector = u64::from_le_bytes(hdr[8..16].try_into().unwrap_or_default());
    let payload = skip_bytes(readable, HEADER_LEN);
    let size = ctx.backend.size();
    match rtype {
        VIRTIO_BLK_T_IN => {
            if !payload.is_empty() {
                return Outcome::status(VIRTIO_BLK_S_IOERR);
            }
            match disk_range(sector, total(writable), size) {
                Some(off) => do_in(mem, writable, off, ctx),
                None => Outcome::status(VIRTIO_BLK_S_IOERR),
            }
        }
        VIRTIO_BLK_T_OUT => {
            if ctx.read_only || !writable.is_empty() {
                return Outcome::status(VIRTIO_BLK_S_IOERR);
            }
            match disk_range(sector, total(&payload), size) {
                Some(off) => do_out(mem, &payload, off, ctx),
                None => Outcome::status(VIRTIO_BLK_S_IOERR),
            }
        }
        VIRTIO_BLK_T_FLUSH => match ctx.backend.flush() {
            Ok(()) => Outcome::status(VIRTIO_BLK_S_OK),
            Err(e) => {
                tracing::warn!("virtio-blk: flush: {e}");
                Outcome::status(VIRTIO_BLK_S_IOERR)
            }
        },
        VIRTIO_BLK_T_GET_ID => do_get_id(mem, writable, ctx),
        VIRTIO_BLK_T_DISCARD => {
            if ctx.read_only || !ctx.backend.supports_discard() {
                return Outcome::status(if ctx.read_only {
                    VIRTIO_BLK_S_IOERR
                } else {
                    VIRTIO_BLK_S_UNSUPP
                });
            }
            do_discard(mem, &payload, ctx)
        }
        _ => Outcome::status(VIRTIO_BLK_S_UNSUPP),
    }
}

/// Drain the available ring: execute every request, post used entries.
/// Returns whether the driver wants an interrupt for this batch. A broken
/// ring (bad addresses, bogus indices) ends the batch with an error.
pub fn process_queue(
    mem: &GuestMemoryMmap,
    queue: &mut Queue,
    ctx: &mut RequestContext,
) -> Result<bool, virtio_queue::Error> {
    let mut any = false;
    loop {
        queue.disable_notification(mem)?;
        let mut n = 0usize;
        while let Some(chain) = queue.pop_descriptor_chain(mem) {
            let head = chain.head_index();
            let len = handle_chain(mem, chain, ctx);
            // A head index outside the ring cannot be completed; skip it.
            if let Err(e) = queue.add_used(mem, head, len) {
                tracing::debug!("virtio-blk: add_used({head}): {e}");
                if !matches!(e, virtio_queue::Error::InvalidDescriptorIndex) {
                    return Err(e);
                }
            }
            n += 1;
        }
        any |= n > 0;
        let more = queue.enable_notification(mem)?;
        // A ring whose avail index is garbage yields nothing but still
        // reports "more": stop instead of spinning.
        if !more || n == 0 {
            break;
        }
    }
    Ok(any && queue.needs_notification(mem)?)
}
