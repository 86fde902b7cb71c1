//! Host-side character device backends (QEMU's `-chardev`): where a guest
//! UART's output goes and where its input comes from.
//!
//! A backend is a byte sink plus, optionally, a pollable input fd. The serial
//! device writes guest output with [`CharBackend::write`] from a vCPU thread;
//! its input thread polls [`CharBackend::input_fd`] and pulls bytes with
//! [`CharBackend::read_input`] only when the UART FIFO has room (flow
//! control), so a backend never needs its own buffering. A socket/IPC backend
//! (svc-chardev) implements the same trait over its end of a socketpair.

use std::io;
use std::os::fd::RawFd;

pub mod capture;
pub mod fd;
pub mod file;
pub mod null;
pub mod pty;
pub mod socket;
pub mod stdio;

/// A character device backend.
pub trait CharBackend: Send {
    /// Deliver guest output. Must not block for long: backends with no reader
    /// (an unopened pty) drop bytes instead, as QEMU does.
    fn write(&mut self, data: &[u8]) -> io::Result<()>;

    /// An fd that polls readable when input is available; `None` for
    /// output-only backends.
    fn input_fd(&self) -> Option<RawFd> {
        None
    }

    /// Read available input without blocking. `Ok(0)` means end of input
    /// (the input side is then no longer polled); `WouldBlock` means none yet.
    fn read_input(&mut self, _buf: &mut [u8]) -> io::Result<usize> {
        Ok(0)
    }

    /// A QEMU-style description (`stdio`, `file:PATH`, `pty:/dev/pts/N`, ...)
    /// for logs and `query-chardev`.
    fn describe(&self) -> String;
}

/// Read from a raw fd (non-blocking fds return `WouldBlock`).
pub(crate) fn read_fd(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: read(2) into a valid buffer of buf.len() bytes.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Write all of `data` to a raw fd, retrying on EINTR; returns WouldBlock
/// errors to the caller.
pub(crate) fn write_fd(fd: RawFd, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        // SAFETY: write(2) from a valid buffer of data.len() bytes.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        data = &data[n as usize..];
    }
    Ok(())
}

/// Set or clear O_NONBLOCK on an fd.
pub(crate) fn set_nonblocking(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: fcntl F_GETFL/F_SETFL with integer arguments on a caller-owned fd.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl < 0 {
            return Err(io::Error::last_os_error());
        }
        let nfl = if on {
            fl | libc::O_NONBLOCK
        } else {
            fl & !libc::O_NONBLOCK
        };
        if libc::fcntl(fd, libc::F_SETFL, nfl) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
