//! An in-memory backend for tests and tools: guest output is collected in a
//! buffer that can be waited on; input is fed through a pipe.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::{read_fd, set_nonblocking, write_fd, CharBackend};

#[derive(Default)]
struct Shared {
    out: Mutex<Vec<u8>>,
    cv: Condvar,
}

/// The backend half (give it to the serial device).
pub struct CaptureBackend {
    shared: Arc<Shared>,
    input: OwnedFd,
}

/// The test's half: read output, send input.
#[derive(Clone)]
pub struct CaptureHandle {
    shared: Arc<Shared>,
    input: Arc<OwnedFd>,
}

impl std::fmt::Debug for CaptureHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CaptureHandle")
    }
}

/// A new capture backend and its handle.
pub fn capture() -> io::Result<(CaptureBackend, CaptureHandle)> {
    let (r, w) = nix::unistd::pipe().map_err(io::Error::from)?;
    set_nonblocking(r.as_raw_fd(), true)?;
    let shared = Arc::new(Shared::default());
    Ok((
        CaptureBackend {
            shared: shared.clone(),
            input: r,
        },
        CaptureHandle {
            shared,
            input: Arc::new(w),
        },
    ))
}

impl CharBackend for CaptureBackend {
    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.shared
            .out
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(data);
        self.shared.cv.notify_all();
        Ok(())
    }
    fn input_fd(&self) -> Option<RawFd> {
        Some(self.input.as_raw_fd())
    }
    fn read_input(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        read_fd(self.input.as_raw_fd(), buf)
    }
    fn describe(&self) -> String {
        "capture".into()
    }
}

impl CaptureHandle {
    /// Everything the guest has written so far.
    pub fn output(&self) -> Vec<u8> {
        self.shared
            .out
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Output as (lossy) text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.output()).into_owned()
    }

    /// Send bytes to the guest (blocks while the pipe is full).
    pub fn send(&self, data: &[u8]) -> io::Result<()> {
        write_fd(self.input.as_raw_fd(), data)
    }

    /// Wait until the output, from byte `from` on, contains `needle`; returns
    /// the offset just past the match.
    pub fn wait_for(&self, needle: &str, from: usize, timeout: Duration) -> Option<usize> {
        let deadline = Instant::now() + timeout;
        let n = needle.as_bytes();
        let mut out = self.shared.out.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if out.len() >= from + n.len() {
                if let Some(p) = out[from..].windows(n.len()).position(|w| w == n) {
                    return Some(from + p + n.len());
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            out = self
                .shared
                .cv
                .wait_timeout(out, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}
