//! [`ProtectedBytes`]: fixed-size secret bytes in their own anonymous mapping
//! that a core dump of the process does not contain.
//!
//! ```text
//!   ProtectedBytes::from_vec(v) / ::new(&[u8])
//!     mmap(len rounded up to pages, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS)
//!     madvise(MADV_DONTDUMP)      ── left out of core dumps (VmFlags "dd")
//!     madvise(MADV_WIPEONFORK)    ── a forked child sees zeros (VmFlags "wf")
//!     mlock, only after enable_mlock() ── never swapped (VmFlags "lo"); EPERM/ENOMEM ignored
//!     copy the bytes in, zeroize the source
//!   drop: zeroize the whole mapping, munmap
//! ```
//!
//! The size is fixed at creation: the bytes are never reallocated, so no stale
//! copy is left behind in freed heap memory. `Debug` prints only the length.
//! Serde (de)serializes the value exactly as a `Vec<u8>` would, so types that
//! switch to it keep their wire and JSON form.
//!
//! `mlock` is opt-in per process ([`enable_mlock`]) because the services'
//! seccomp allowlists do not contain it (calling it there kills the service);
//! `mmap`, `madvise` and `munmap` are allowed there.

use std::fmt;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::{Zeroize, Zeroizing};

static MLOCK: AtomicBool = AtomicBool::new(false);

/// Make every later [`ProtectedBytes`] of this process try to `mlock` its
/// region (best effort: EPERM/ENOMEM are ignored). For the supervisor only:
/// sandboxed services must not call it (their seccomp allowlist has no `mlock`).
pub fn enable_mlock() {
    MLOCK.store(true, Ordering::Relaxed);
}

/// Secret bytes in a private anonymous mapping marked `MADV_DONTDUMP` and
/// `MADV_WIPEONFORK`, zeroized before `munmap`, redacted in `Debug`.
pub struct ProtectedBytes {
    /// Start of the mapping (page aligned, `map_len` bytes, read/write).
    ptr: NonNull<u8>,
    /// Bytes of secret at the start of the mapping.
    len: usize,
    /// Mapping length: `len` rounded up to whole pages, at least one page.
    map_len: usize,
    /// Whether `mlock` succeeded.
    locked: bool,
}

// SAFETY: `ProtectedBytes` owns its mapping exclusively (like `Box<[u8]>`); the
// bytes are only written during construction and read through `&self`.
unsafe impl Send for ProtectedBytes {}
// SAFETY: shared access only reads the bytes; there is no interior mutability.
unsafe impl Sync for ProtectedBytes {}

fn page_size() -> usize {
    // SAFETY: sysconf takes no pointers and has no side effects.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
}

impl ProtectedBytes {
    /// A protected copy of `bytes` (the caller still owns and must zeroize
    /// `bytes`; prefer [`ProtectedBytes::from_vec`]).
    ///
    /// # Panics
    /// When the kernel refuses an anonymous mapping (out of memory), as a
    /// `Vec` allocation would abort.
    pub fn new(bytes: &[u8]) -> Self {
        let page = page_size();
        let map_len = bytes
            .len()
            .max(1)
            .checked_next_multiple_of(page)
            .expect("secret length overflows the address space");
        // SAFETY: a fresh private anonymous mapping: no address hint, no fd, so
        // it cannot alias any existing memory. The result is checked below.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            panic!(
                "mmap of {map_len} bytes for secret storage failed: {}",
                std::io::Error::last_os_error()
            );
        }
        let ptr = NonNull::new(addr.cast::<u8>()).expect("mmap returned address 0");
        // SAFETY: `addr..addr+map_len` is the mapping created above and owned
        // here; madvise changes only its dump/fork behaviour, not its contents.
        if unsafe { libc::madvise(addr, map_len, libc::MADV_DONTDUMP) } != 0 {
            tracing::warn!(
                "madvise(MADV_DONTDUMP) on secret storage failed: {}",
                std::io::Error::last_os_error()
            );
        }
        // SAFETY: as above. Kernels before 4.14 answer EINVAL: nothing is lost
        // but the zeroing of a forked child's copy, so it is ignored.
        unsafe { libc::madvise(addr, map_len, libc::MADV_WIPEONFORK) };
        let locked = MLOCK.load(Ordering::Relaxed)
            // SAFETY: locks the pages of our own mapping; no memory is touched.
            // Failure (EPERM without CAP_IPC_LOCK, ENOMEM over RLIMIT_MEMLOCK)
            // only means the pages may be swapped.
            && unsafe { libc::mlock(addr, map_len) } == 0;
        // SAFETY: the mapping is `map_len >= bytes.len()` bytes, writable, and
        // cannot overlap `bytes`, which was allocated before it existed.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr.as_ptr(), bytes.len());
        }
        ProtectedBytes {
            ptr,
            len: bytes.len(),
            map_len,
            locked,
        }
    }

    /// Move `bytes` into protected storage: they are copied in and the
    /// vector's whole buffer is zeroized.
    pub fn from_vec(bytes: Vec<u8>) -> Self {
        let bytes = Zeroizing::new(bytes);
        Self::new(&bytes)
    }

    /// The bytes.
    pub fn expose(&self) -> &[u8] {
        // SAFETY: the first `len` bytes of our live mapping were initialized in
        // `new` and are only freed in `drop`, which needs `&mut self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the region is `mlock`ed (only tried after [`enable_mlock`]).
    pub fn is_locked(&self) -> bool {
        self.locked
    }

    /// Address range of the mapping (start, end), for checks in
    /// `/proc/self/smaps`.
    pub fn mapping_range(&self) -> (usize, usize) {
        let start = self.ptr.as_ptr() as usize;
        (start, start + self.map_len)
    }
}

impl Drop for ProtectedBytes {
    fn drop(&mut self) {
        // SAFETY: the whole mapping is ours, writable and not borrowed (we
        // hold `&mut self`).
        let all = unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.map_len) };
        all.zeroize();
        // SAFETY: unmaps exactly the mapping created in `new`; no reference to
        // it outlives `self`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.map_len) };
    }
}

impl std::ops::Deref for ProtectedBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.expose()
    }
}

impl AsRef<[u8]> for ProtectedBytes {
    fn as_ref(&self) -> &[u8] {
        self.expose()
    }
}

impl Clone for ProtectedBytes {
    fn clone(&self) -> Self {
        Self::new(self.expose())
    }
}

impl PartialEq for ProtectedBytes {
    /// Constant time in the contents (the lengths are not secret).
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len
            && self
                .expose()
                .iter()
                .zip(other.expose())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

impl Eq for ProtectedBytes {}

impl From<Vec<u8>> for ProtectedBytes {
    fn from(bytes: Vec<u8>) -> Self {
        Self::from_vec(bytes)
    }
}

impl From<Zeroizing<Vec<u8>>> for ProtectedBytes {
    fn from(mut bytes: Zeroizing<Vec<u8>>) -> Self {
        Self::from_vec(std::mem::take(&mut *bytes))
    }
}

impl fmt::Debug for ProtectedBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProtectedBytes(<redacted, {} bytes>)", self.len)
    }
}

impl Serialize for ProtectedBytes {
    /// As `Vec<u8>`: a sequence of bytes.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.expose())
    }
}

impl<'de> Deserialize<'de> for ProtectedBytes {
    /// As `Vec<u8>`, through a zeroizing buffer.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes = Zeroizing::<Vec<u8>>::deserialize(deserializer)?;
        Ok(bytes.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `VmFlags:` of the smaps entry that contains `addr` (adjacent
    /// mappings with equal flags may be merged into one entry).
    fn vm_flags(addr: usize) -> Vec<String> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut in_entry = false;
        for line in smaps.lines() {
            let first = line.split_whitespace().next().unwrap_or("");
            if let Some((lo, hi)) = first.split_once('-') {
                if let (Ok(lo), Ok(hi)) =
                    (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
                {
                    in_entry = lo <= addr && addr < hi;
                    continue;
                }
            }
            if in_entry {
                if let Some(flags) = line.strip_prefix("VmFlags:") {
                    return flags.split_whitespace().map(str::to_owned).collect();
                }
            }
        }
        panic!("no smaps entry with VmFlags contains {addr:#x}");
    }

    #[test]
    fn region_is_dontdump_and_bytes_round_trip() {
        let p = ProtectedBytes::from_vec(b"hunter2-key-material".to_vec());
        assert_eq!(p.expose(), b"hunter2-key-material");
        assert_eq!(p.len(), 20);
        let (start, end) = p.mapping_range();
        assert_eq!(start % page_size(), 0);
        assert!(end - start >= 20);
        let flags = vm_flags(start);
        assert!(flags.iter().any(|f| f == "dd"), "VmFlags {flags:?}");
        assert!(flags.iter().any(|f| f == "wf"), "VmFlags {flags:?}");
        // A heap Vec's region is not DONTDUMP: the check can fail.
        let heap = vec![7u8; 1 << 20];
        assert!(!vm_flags(heap.as_ptr() as usize).iter().any(|f| f == "dd"));
    }

    #[test]
    fn debug_redacts_and_clone_is_a_separate_region() {
        let p = ProtectedBytes::new(b"letmein");
        let shown = format!("{p:?}");
        assert!(!shown.contains("letmein"), "{shown}");
        assert!(shown.contains("7 bytes"), "{shown}");
        let q = p.clone();
        assert_eq!(p, q);
        assert_ne!(p.mapping_range(), q.mapping_range());
        assert_ne!(p, ProtectedBytes::new(b"letmeout"));
        assert_ne!(p, ProtectedBytes::new(b"letme"));
    }

    #[test]
    fn empty_and_multi_page_values() {
        let e = ProtectedBytes::new(&[]);
        assert!(e.is_empty());
        assert_eq!(e.expose(), b"");
        let big: Vec<u8> = (0..3 * page_size() + 5).map(|i| i as u8).collect();
        let p = ProtectedBytes::new(&big);
        assert_eq!(p.expose(), &big[..]);
        let (start, end) = p.mapping_range();
        assert_eq!(end - start, 4 * page_size());
        assert!(vm_flags(start).iter().any(|f| f == "dd"));
    }

    #[test]
    fn serde_form_is_that_of_vec_u8() {
        let p = ProtectedBytes::new(&[1, 2, 3, 200]);
        let bytes = postcard::to_allocvec(&p).unwrap();
        assert_eq!(bytes, postcard::to_allocvec(&vec![1u8, 2, 3, 200]).unwrap());
        let back: ProtectedBytes = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, p);
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(json, "[1,2,3,200]");
        assert_eq!(serde_json::from_str::<ProtectedBytes>(&json).unwrap(), p);
    }

    #[test]
    fn mlock_when_enabled() {
        enable_mlock();
        let p = ProtectedBytes::new(b"locked");
        // Root (CAP_IPC_LOCK) or a RLIMIT_MEMLOCK with room locks; otherwise
        // mlock failing is tolerated and the region is simply not locked.
        let flags = vm_flags(p.mapping_range().0);
        assert_eq!(p.is_locked(), flags.iter().any(|f| f == "lo"), "{flags:?}");
        assert!(flags.iter().any(|f| f == "dd"), "{flags:?}");
    }
}
