//! Shared harness for the fuzz targets.
//!
//! IPC targets: the first input byte picks how many fds (0..=MAX_FDS) are
//! attached to the datagram, the rest are its bytes. The decoder under test
//! is `ipc::from_bytes`, exactly what `Channel::recv` runs. Checked on every
//! input: no panic, no fd left open once the result is dropped, and a
//! message that decodes re-encodes and decodes to the same value.

use std::fmt::Debug;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Splits the input into (fd count, datagram bytes) and opens the fds.
pub fn datagram(data: &[u8]) -> (Vec<OwnedFd>, Vec<RawFd>, &[u8]) {
    let (n, bytes) = match data.split_first() {
        Some((n, rest)) => (*n as usize % (ipc::MAX_FDS + 1), rest),
        None => (0, data),
    };
    let fds: Vec<OwnedFd> = (0..n)
        .map(|_| OwnedFd::from(File::open("/dev/null").expect("open /dev/null")))
        .collect();
    let raws = fds.iter().map(|f| f.as_raw_fd()).collect();
    (fds, raws, bytes)
}

/// Panics if any of `raws` is still open.
pub fn assert_closed(raws: &[RawFd]) {
    for &fd in raws {
        // SAFETY: F_GETFD only queries the descriptor table.
        let open = unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0;
        assert!(!open, "fd {fd} leaked by the decoder");
    }
}

/// Fuzzes the decoder of message type `T` (one the core receives).
pub fn decode<T: DeserializeOwned + Serialize + PartialEq + Debug>(data: &[u8]) {
    let (fds, raws, bytes) = datagram(data);
    let result = ipc::from_bytes::<T>(bytes, fds);
    if let Ok(msg) = &result {
        // Messages from services carry no fds, so they re-encode.
        if let Ok(again) = ipc::to_bytes(msg) {
            let back: T = ipc::from_bytes(&again, Vec::new()).expect("re-encoded message decodes");
            assert_eq!(&back, msg);
        }
    }
    drop(result);
    assert_closed(&raws);
}
