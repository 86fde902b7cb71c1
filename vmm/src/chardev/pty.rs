//! `-chardev pty` / `-serial pty`: a pseudo-terminal pair; the guest UART is
//! on the master side and users open the slave path (printed like QEMU's
//! `char device redirected to /dev/pts/N (label serial0)`).
//!
//! The slave end stays open in this process so the master never reports
//! hang-up while no client is attached; output written while nobody reads
//! and the pty buffer is full is dropped (non-blocking master), as QEMU does.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use super::{read_fd, set_nonblocking, write_fd, CharBackend};

/// A pty pair.
#[derive(Debug)]
pub struct PtyBackend {
    master: OwnedFd,
    _slave: OwnedFd,
    path: PathBuf,
}

impl PtyBackend {
    /// Open a new pty pair in raw mode.
    pub fn open() -> io::Result<Self> {
        let p = nix::pty::openpty(None, None).map_err(io::Error::from)?;
        // SAFETY: tcgetattr/cfmakeraw/tcsetattr on the slave fd we own.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(p.slave.as_raw_fd(), &mut t) == 0 {
                libc::cfmakeraw(&mut t);
                libc::tcsetattr(p.slave.as_raw_fd(), libc::TCSANOW, &t);
            }
        }
        let path = nix::unistd::ttyname(&p.slave).map_err(io::Error::from)?;
        set_nonblocking(p.master.as_raw_fd(), true)?;
        Ok(Self {
            master: p.master,
            _slave: p.slave,
            path,
        })
    }

    /// Path of the slave device for users to open.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

impl CharBackend for PtyBackend {
    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        match write_fd(self.master.as_raw_fd(), data) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            r => r,
        }
    }
    fn input_fd(&self) -> Option<RawFd> {
        Some(self.master.as_raw_fd())
    }
    fn read_input(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match read_fd(self.master.as_raw_fd(), buf) {
            // EIO: no slave open right now; not end of input.
            Err(e) if e.raw_os_error() == Some(libc::EIO) => Err(io::ErrorKind::WouldBlock.into()),
            r => r,
        }
    }
    fn describe(&self) -> String {
        format!("pty:{}", self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn pty_round_trip() {
        let mut b = PtyBackend::open().unwrap();
        assert!(b.describe().starts_with("pty:/dev/pts/"));
        let mut client = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(b.path())
            .unwrap();
        b.write(b"out").unwrap();
        let mut buf = [0u8; 3];
        client.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"out");
        client.write_all(b"in").unwrap();
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while got.len() < 2 && std::time::Instant::now() < deadline {
            let mut x = [0u8; 8];
            match b.read_input(&mut x) {
                Ok(n) => got.extend_from_slice(&x[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, b"in");
    }
}
