//! The bottom layer: a connected socket fd (TCP or Unix, as handed over by the
//! broker) with `Read`/`Write`/vectored writes, `MSG_NOSIGNAL` so a closed peer
//! is an `EPIPE` error rather than a process-killing `SIGPIPE`, and `poll`.
//!
//! [`Transport`] is the seam for layering: TLS runs over any transport, so a
//! later websocket layer (RFC 6455 framing over a socket or over TLS) can
//! implement `Transport` and carry TLS too (VNC's VeNCrypt inside websockets).

use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{self, MsgFlags};

/// A byte transport that TLS (or a later websocket layer) can run over.
pub trait Transport: Read + Write + Send {
    /// The fd whose readability signals new input.
    fn fd(&self) -> BorrowedFd<'_>;
    /// True when input is already buffered above the fd (then `poll` would lie).
    fn has_buffered_input(&self) -> bool {
        false
    }
    /// The next input byte without consuming it (waiting for one), for the
    /// "plaintext client on a TLS port" check; `None` when the transport cannot
    /// peek (the check is then left to the TLS parser).
    fn peek_byte(&mut self) -> io::Result<Option<u8>> {
        Ok(None)
    }
}

/// A connected socket.
#[derive(Debug)]
pub struct Socket {
    fd: OwnedFd,
    is_socket: bool,
}

impl Socket {
    /// Take ownership of a connected socket fd.
    pub fn new(fd: OwnedFd) -> Self {
        let is_socket = socket::getsockopt(&fd, socket::sockopt::SockType).is_ok();
        Socket { fd, is_socket }
    }

    /// Give the fd back.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// Look at the next bytes without consuming them (waits for at least one).
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match socket::recv(self.fd.as_raw_fd(), buf, MsgFlags::MSG_PEEK) {
                Err(Errno::EINTR) => continue,
                r => return r.map_err(io::Error::from),
            }
        }
    }

    /// Shut down both directions (the peer sees EOF).
    pub fn shutdown(&self) -> io::Result<()> {
        socket::shutdown(self.fd.as_raw_fd(), socket::Shutdown::Both).map_err(io::Error::from)
    }
}

impl AsRawFd for Socket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match nix::unistd::read(&self.fd, buf) {
                Err(Errno::EINTR) => continue,
                r => return r.map_err(io::Error::from),
            }
        }
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            let r = if self.is_socket {
                socket::send(self.fd.as_raw_fd(), buf, MsgFlags::MSG_NOSIGNAL)
            } else {
                nix::unistd::write(&self.fd, buf)
            };
            match r {
                Err(Errno::EINTR) => continue,
                r => return r.map_err(io::Error::from),
            }
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        // IOV_MAX is 1024 on Linux; longer lists are written in parts by callers.
        let bufs = &bufs[..bufs.len().min(1024)];
        loop {
            let r = if self.is_socket {
                socket::sendmsg::<()>(self.fd.as_raw_fd(), bufs, &[], MsgFlags::MSG_NOSIGNAL, None)
            } else {
                nix::sys::uio::writev(&self.fd, bufs)
            };
            match r {
                Err(Errno::EINTR) => continue,
                r => return r.map_err(io::Error::from),
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Transport for Socket {
    fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
    fn peek_byte(&mut self) -> io::Result<Option<u8>> {
        if !self.is_socket {
            return Ok(None);
        }
        let mut b = [0u8; 1];
        match self.peek(&mut b)? {
            0 => Err(io::ErrorKind::UnexpectedEof.into()),
            _ => Ok(Some(b[0])),
        }
    }
}

/// Wait until `fd` is readable (or hung up) or `deadline` passes.
/// Returns `Ok(false)` on timeout.
pub fn wait_readable(fd: BorrowedFd<'_>, deadline: Instant) -> io::Result<bool> {
    wait(fd, PollFlags::POLLIN, deadline)
}

/// Wait until `fd` is writable or `deadline` passes. `Ok(false)` on timeout.
pub fn wait_writable(fd: BorrowedFd<'_>, deadline: Instant) -> io::Result<bool> {
    wait(fd, PollFlags::POLLOUT, deadline)
}

fn wait(fd: BorrowedFd<'_>, events: PollFlags, deadline: Instant) -> io::Result<bool> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        // Round up so we never spin on a sub-millisecond remainder.
        let ms = left.as_millis().clamp(1, i32::MAX as u128) as u32;
        let timeout = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(fd, events)];
        match nix::poll::poll(&mut fds, timeout) {
            Ok(0) => continue, // loop re-checks the deadline
            Ok(_) => return Ok(true),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// `deadline` for a timeout, saturating far in the future.
pub fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or(now + Duration::from_secs(86400 * 365))
}
