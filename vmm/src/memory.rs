//! Guest RAM: one file (a sealed memfd by default) mapped into the VMM with
//! `vm-memory`, split around the 32-bit MMIO hole.
//!
//! ```text
//!  guest-physical                          file offset
//!  0 .. min(size, RAM_LOW_END)        <->  0 ..
//!  RAM_HIGH_START .. +(size-LOW)      <->  RAM_LOW_END ..      (only when size > RAM_LOW_END)
//! ```
//!
//! The same fd can be handed to services (svc-migrate maps it, svc-vnc does
//! not need it): [`GuestRam::ram_fd`] plus [`GuestRam::regions`] give them
//! everything needed to map guest RAM at the right offsets. Backends follow
//! QEMU's `-object memory-backend-*` as libvirt uses them:
//!
//! | QEMU backend            | here                                              |
//! |-------------------------|---------------------------------------------------|
//! | `memory-backend-memfd`  | memfd, `F_SEAL_SHRINK`, `MAP_SHARED` (optionally `hugetlb=on`) |
//! | `memory-backend-ram`    | same memfd (private to this process unless passed on) |
//! | `memory-backend-file`   | `mem-path` file or directory (e.g. /dev/shm, hugetlbfs); `share=on` → `MAP_SHARED`, `share=off` → `MAP_PRIVATE` (then not shareable with services) |

use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use vm_memory::{FileOffset, GuestAddress, GuestMemoryMmap, GuestRegionMmap, MmapRegion};

use crate::layout::{RAM_HIGH_START, RAM_LOW_END};

/// Largest guest RAM we accept (1 TiB): bounds page-table and bitmap sizes.
pub const MAX_RAM_SIZE: u64 = 1 << 40;

/// Errors creating guest RAM.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// Size zero, not page aligned, or too large.
    #[error("invalid guest RAM size {0:#x} (must be a non-zero multiple of 4 KiB up to 1 TiB)")]
    BadSize(u64),
    /// Creating, sizing or sealing the backing file failed.
    #[error("guest RAM backing file: {0}")]
    Backing(#[source] std::io::Error),
    /// Mapping failed.
    #[error("mapping guest RAM: {0}")]
    Map(String),
}

/// Which QEMU memory backend provides guest RAM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemoryBackend {
    /// `memory-backend-memfd` (`hugetlb=on` uses `MFD_HUGETLB`).
    Memfd {
        /// Back RAM with huge pages.
        hugetlb: bool,
    },
    /// `memory-backend-ram`.
    Ram,
    /// `memory-backend-file,mem-path=PATH,share=on|off`. A directory gets an
    /// unlinked temporary file inside it (as QEMU does).
    File {
        /// File or directory (e.g. `/dev/shm`, a hugetlbfs mount).
        mem_path: PathBuf,
        /// `share=on`: `MAP_SHARED`, writes reach the file.
        share: bool,
    },
}

/// Guest RAM configuration (`-m` plus an optional `-machine memory-backend=`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryConfig {
    /// Total RAM in bytes.
    pub size: u64,
    /// Backend.
    pub backend: MemoryBackend,
}

impl MemoryConfig {
    /// `size` bytes in a memfd (the default).
    pub fn memfd(size: u64) -> Self {
        Self {
            size,
            backend: MemoryBackend::Memfd { hugetlb: false },
        }
    }
}

/// One contiguous piece of guest RAM and where it lives in the backing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RamRegion {
    /// Guest-physical start.
    pub gpa: u64,
    /// Length in bytes.
    pub size: u64,
    /// Offset of `gpa` in the backing file.
    pub file_offset: u64,
}

/// Split `size` bytes of RAM around the MMIO hole.
pub fn ram_layout(size: u64) -> Vec<RamRegion> {
    let low = size.min(RAM_LOW_END);
    let mut v = vec![RamRegion {
        gpa: 0,
        size: low,
        file_offset: 0,
    }];
    if size > RAM_LOW_END {
        v.push(RamRegion {
            gpa: RAM_HIGH_START,
            size: size - RAM_LOW_END,
            file_offset: RAM_LOW_END,
        });
    }
    v
}

/// Guest RAM: the backing file, its regions and the VMM's mapping of it.
pub struct GuestRam {
    file: Arc<File>,
    shareable: bool,
    regions: Vec<RamRegion>,
    mem: GuestMemoryMmap,
}

impl std::fmt::Debug for GuestRam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestRam")
            .field("regions", &self.regions)
            .field("shareable", &self.shareable)
            .finish()
    }
}

fn memfd(name: &str, hugetlb: bool) -> std::io::Result<File> {
    let cname = std::ffi::CString::new(name).expect("no NUL in memfd name");
    let mut flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    if hugetlb {
        flags = libc::MFD_CLOEXEC | libc::MFD_HUGETLB;
    }
    // SAFETY: memfd_create reads a valid NUL-terminated string; the returned
    // fd (checked) is owned by the File from here on.
    let fd = unsafe { libc::memfd_create(cname.as_ptr(), flags) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a freshly created descriptor nobody else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

fn seal_shrink(file: &File) -> std::io::Result<()> {
    // SAFETY: fcntl on an fd we own with integer arguments.
    let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, libc::F_SEAL_SHRINK) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn is_hugetlbfs(file: &File) -> bool {
    const HUGETLBFS_MAGIC: i64 = 0x9584_58f6;
    // SAFETY: fstatfs into a zeroed statfs owned here.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above, on a valid fd.
    unsafe { libc::fstatfs(file.as_raw_fd(), &mut st) == 0 && st.f_type as i64 == HUGETLBFS_MAGIC }
}

fn open_mem_path(path: &std::path::Path) -> std::io::Result<File> {
    if path.is_dir() {
        // Unlinked temporary file in the directory (hugetlbfs or tmpfs).
        OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_TMPFILE | libc::O_CLOEXEC)
            .mode(0o600)
            .open(path)
    } else {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
    }
}

impl GuestRam {
    /// Create and map guest RAM.
    pub fn new(cfg: &MemoryConfig) -> Result<Self, MemoryError> {
        let size = cfg.size;
        if size == 0 || size % 4096 != 0 || size > MAX_RAM_SIZE {
            return Err(MemoryError::BadSize(size));
        }
        let (file, shareable, map_flags) = match &cfg.backend {
            MemoryBackend::Memfd { hugetlb } => {
                let f = memfd("bulkhead-ram", *hugetlb).map_err(MemoryError::Backing)?;
                f.set_len(size).map_err(MemoryError::Backing)?;
                if !hugetlb {
                    seal_shrink(&f).map_err(MemoryError::Backing)?;
                }
                (f, true, libc::MAP_SHARED | libc::MAP_NORESERVE)
            }
            MemoryBackend::Ram => {
                let f = memfd("bulkhead-ram", false).map_err(MemoryError::Backing)?;
                f.set_len(size).map_err(MemoryError::Backing)?;
                seal_shrink(&f).map_err(MemoryError::Backing)?;
                (f, true, libc::MAP_SHARED | libc::MAP_NORESERVE)
            }
            MemoryBackend::File { mem_path, share } => {
                let f = open_mem_path(mem_path).map_err(MemoryError::Backing)?;
                let cur = f.metadata().map_err(MemoryError::Backing)?.len();
                if cur < size {
                    f.set_len(size).map_err(MemoryError::Backing)?;
                }
                let flags = if *share {
                    libc::MAP_SHARED
                } else {
                    libc::MAP_PRIVATE
                } | libc::MAP_NORESERVE;
                (f, *share, flags)
            }
        };
        // Huge pages are reserved at mmap time unless MAP_NORESERVE: without
        // it a host short of huge pages fails here, at start-up, instead of
        // with SIGBUS/EFAULT when the guest first touches RAM (as QEMU).
        let map_flags = if is_hugetlbfs(&file) {
            map_flags & !libc::MAP_NORESERVE
        } else {
            map_flags
        };
        let file = Arc::new(file);
        let regions = ram_layout(size);
        let mut mapped = Vec::new();
        for r in &regions {
            let len = usize::try_from(r.size).map_err(|_| MemoryError::BadSize(size))?;
            let mmap = MmapRegion::build(
                Some(FileOffset::from_arc(file.clone(), r.file_offset)),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                map_flags,
            )
            .map_err(|e| MemoryError::Map(e.to_string()))?;
            let region = GuestRegionMmap::new(mmap, GuestAddress(r.gpa))
                .ok_or_else(|| MemoryError::Map("region end overflows".into()))?;
            mapped.push(region);
        }
        let mem =
            GuestMemoryMmap::from_regions(mapped).map_err(|e| MemoryError::Map(e.to_string()))?;
        Ok(Self {
            file,
            shareable,
            regions,
            mem,
        })
    }

    /// The VMM's mapping of guest RAM.
    pub fn memory(&self) -> &GuestMemoryMmap {
        &self.mem
    }

    /// RAM regions with their backing-file offsets (index = KVM memslot).
    pub fn regions(&self) -> &[RamRegion] {
        &self.regions
    }

    /// Total RAM size.
    pub fn size(&self) -> u64 {
        self.regions.iter().map(|r| r.size).sum()
    }

    /// End of the highest RAM region (exclusive).
    pub fn top(&self) -> u64 {
        self.regions
            .iter()
            .map(|r| r.gpa + r.size)
            .max()
            .unwrap_or(0)
    }

    /// The backing file, when other processes can map it and see the guest's
    /// RAM (memfd, or `share=on` files). `None` for private file mappings.
    pub fn ram_fd(&self) -> Option<BorrowedFd<'_>> {
        self.shareable.then(|| self.file.as_fd())
    }

    /// Host virtual address of the start of region `idx`.
    pub fn host_addr(&self, idx: usize) -> Option<u64> {
        use vm_memory::GuestMemoryBackend;
        let r = self.regions.get(idx)?;
        self.mem
            .get_host_address(GuestAddress(r.gpa))
            .ok()
            .map(|p| p as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::{Bytes, GuestMemoryBackend};

    #[test]
    fn layout_splits_around_hole() {
        assert_eq!(
            ram_layout(512 << 20),
            vec![RamRegion {
                gpa: 0,
                size: 512 << 20,
                file_offset: 0
            }]
        );
        let l = ram_layout(8 << 30);
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].size, RAM_LOW_END);
        assert_eq!(l[1].gpa, RAM_HIGH_START);
        assert_eq!(l[1].size, (8 << 30) - RAM_LOW_END);
        assert_eq!(l[1].file_offset, RAM_LOW_END);
    }

    #[test]
    fn memfd_is_sealed_and_shared() {
        let ram = GuestRam::new(&MemoryConfig::memfd(16 << 20)).unwrap();
        ram.memory()
            .write_obj(0xdead_beef_u32, GuestAddress(0x1000))
            .unwrap();
        let fd = ram.ram_fd().unwrap();
        // The fd shows the guest's write (MAP_SHARED).
        let mut b = [0u8; 4];
        // SAFETY: pread into a local buffer of the given length.
        let n = unsafe { libc::pread(fd.as_raw_fd(), b.as_mut_ptr().cast(), 4, 0x1000) };
        assert_eq!(n, 4);
        assert_eq!(u32::from_le_bytes(b), 0xdead_beef);
        // Shrinking is refused by the seal.
        // SAFETY: ftruncate on a valid fd.
        let r = unsafe { libc::ftruncate(fd.as_raw_fd(), 4096) };
        assert!(r < 0);
        assert_eq!(ram.memory().num_regions(), 1);
    }

    #[test]
    fn file_backend_on_dev_shm_private_and_shared() {
        let dir = std::env::temp_dir();
        let ram = GuestRam::new(&MemoryConfig {
            size: 8 << 20,
            backend: MemoryBackend::File {
                mem_path: dir.clone(),
                share: false,
            },
        })
        .unwrap();
        assert!(ram.ram_fd().is_none());
        ram.memory().write_obj(7u8, GuestAddress(0)).unwrap();
        let path = dir.join(format!("bulkhead-memtest-{}", std::process::id()));
        let ram = GuestRam::new(&MemoryConfig {
            size: 8 << 20,
            backend: MemoryBackend::File {
                mem_path: path.clone(),
                share: true,
            },
        })
        .unwrap();
        ram.memory()
            .write_obj(0x55u8, GuestAddress(0x2000))
            .unwrap();
        let data = std::fs::read(&path).unwrap();
        assert_eq!(data.len(), 8 << 20);
        assert_eq!(data[0x2000], 0x55);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn hugetlb_memfd_maps_or_fails_at_creation() {
        // With huge pages on the host the RAM works; without (the usual case
        // here) creation fails cleanly instead of faulting later.
        match GuestRam::new(&MemoryConfig {
            size: 4 << 20,
            backend: MemoryBackend::Memfd { hugetlb: true },
        }) {
            Ok(ram) => {
                ram.memory()
                    .write_obj(5u64, GuestAddress(0x20_0000))
                    .unwrap();
                assert_eq!(
                    ram.memory()
                        .read_obj::<u64>(GuestAddress(0x20_0000))
                        .unwrap(),
                    5
                );
            }
            Err(e) => {
                eprintln!("hugetlb RAM refused: {e}");
                assert!(
                    matches!(e, MemoryError::Map(_) | MemoryError::Backing(_)),
                    "{e}"
                );
            }
        }
    }

    #[test]
    fn bad_sizes_rejected() {
        assert!(GuestRam::new(&MemoryConfig::memfd(0)).is_err());
        assert!(GuestRam::new(&MemoryConfig::memfd(4097)).is_err());
    }
}
