//! A backend over already-open file descriptors: one stream fd used both
//! ways (a connected socket, the core's end of an svc-chardev socketpair) or
//! an input/output pair (QEMU's `-chardev pipe`).
//!
//! Output never stalls a vCPU for long: when the peer does not read, a write
//! waits at most [`WRITE_STALL`] for room, then the rest of that chunk is
//! dropped (QEMU drops output of disconnected chardevs too).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

use super::{read_fd, set_nonblocking, CharBackend};

/// Longest a guest write waits for the peer to make room.
pub const WRITE_STALL: Duration = Duration::from_millis(100);

/// Chardev over fds.
#[derive(Debug)]
pub struct FdBackend {
    input: OwnedFd,
    output: Option<OwnedFd>,
    label: String,
    dropped: u64,
}

impl FdBackend {
    /// One fd for both directions (made non-blocking).
    pub fn stream(fd: OwnedFd, label: &str) -> io::Result<Self> {
        set_nonblocking(fd.as_raw_fd(), true)?;
        Ok(Self {
            input: fd,
            output: None,
            label: label.to_string(),
            dropped: 0,
        })
    }

    /// Separate input and output fds (both made non-blocking).
    pub fn pair(input: OwnedFd, output: OwnedFd, label: &str) -> io::Result<Self> {
        set_nonblocking(input.as_raw_fd(), true)?;
        set_nonblocking(output.as_raw_fd(), true)?;
        Ok(Self {
            input,
            output: Some(output),
            label: label.to_string(),
            dropped: 0,
        })
    }

    /// Bytes dropped because the peer did not read.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    fn out_fd(&self) -> RawFd {
        self.output.as_ref().unwrap_or(&self.input).as_raw_fd()
    }
}

fn wait_writable(fd: RawFd, timeout: Duration) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: poll on one valid pollfd.
    let r = unsafe { libc::poll(&mut p, 1, timeout.as_millis() as libc::c_int) };
    r > 0 && p.revents & libc::POLLOUT != 0
}

impl CharBackend for FdBackend {
    fn write(&mut self, mut data: &[u8]) -> io::Result<()> {
        let fd = self.out_fd();
        while !data.is_empty() {
            // SAFETY: write(2) from a valid buffer of data.len() bytes.
            let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
            if n >= 0 {
                data = &data[n as usize..];
                continue;
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock if wait_writable(fd, WRITE_STALL) => {}
                io::ErrorKind::WouldBlock => {
                    if self.dropped == 0 {
                        tracing::warn!("chardev {}: peer not reading, dropping output", self.label);
                    }
                    self.dropped += data.len() as u64;
                    return Ok(());
                }
                _ => return Err(e),
            }
        }
        Ok(())
    }
    fn input_fd(&self) -> Option<RawFd> {
        Some(self.input.as_raw_fd())
    }
    fn read_input(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        read_fd(self.input.as_raw_fd(), buf)
    }
    fn describe(&self) -> String {
        self.label.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    #[test]
    fn stream_both_ways_and_drop_when_peer_stalls() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let mut be = FdBackend::stream(a.into(), "socket").unwrap();
        be.write(b"hi").unwrap();
        let mut got = [0u8; 2];
        b.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hi");
        b.write_all(b"in").unwrap();
        let mut buf = [0u8; 8];
        let n = be.read_input(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"in");
        // Nobody reads `b`: the socket buffer fills, then output is dropped
        // after a bounded wait instead of blocking forever.
        let chunk = vec![0u8; 64 * 1024];
        let t = std::time::Instant::now();
        while be.dropped() == 0 {
            be.write(&chunk).unwrap();
            assert!(t.elapsed() < Duration::from_secs(10));
        }
        drop(b);
        assert!(be.write(b"x").is_err(), "EPIPE after the peer closed");
    }
}
