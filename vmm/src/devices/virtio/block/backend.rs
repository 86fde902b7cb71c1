//! Block backends: where virtio-blk sectors live.
//!
//! [`BlockBackend`] is the seam between the device model and storage. The
//! raw image file ([`RawFile`]) is the first implementation; an NBD-client
//! backend (svc-nbd through a shared I/O window) implements the same trait.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;

use nix::fcntl::{fallocate, FallocateFlags};

/// Storage behind a virtio-blk device. Offsets and lengths are in bytes;
/// callers check them against [`BlockBackend::size`] first.
pub trait BlockBackend: Send + Sync {
    /// Capacity in bytes.
    fn size(&self) -> u64;
    /// Fill `buf` from `offset`.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Write all of `buf` at `offset`.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Make completed writes durable.
    fn flush(&self) -> io::Result<()>;
    /// Deallocate `[offset, offset+len)`; later reads return zeroes.
    fn discard(&self, offset: u64, len: u64) -> io::Result<()>;
    /// Whether [`BlockBackend::discard`] is supported (advertises
    /// `VIRTIO_BLK_F_DISCARD`).
    fn supports_discard(&self) -> bool {
        true
    }
}

/// A raw disk image file (`-drive file=IMG,format=raw`).
#[derive(Debug)]
pub struct RawFile {
    file: File,
    size: u64,
}

impl RawFile {
    /// Open `path` read-write, or read-only when `read_only`.
    pub fn open(path: &Path, read_only: bool) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(!read_only).open(path)?;
        Self::from_file(file)
    }

    /// Use an already opened file (e.g. one passed by fd).
    pub fn from_file(mut file: File) -> io::Result<Self> {
        // Seek works for regular files and block devices alike.
        let size = file.seek(SeekFrom::End(0))?;
        Ok(Self { file, size })
    }
}

impl BlockBackend for RawFile {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    fn flush(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        let off = i64::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
        let len = i64::try_from(len).map_err(|_| io::ErrorKind::InvalidInput)?;
        fallocate(
            &self.file,
            FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE,
            off,
            len,
        )
        .map_err(io::Error::from)
    }
}
