//! [`Channel`]: one end of a framed `SOCK_SEQPACKET` socketpair.
//!
//! One message is one datagram, so message boundaries come from the kernel
//! and a reader can never see half a message. Both `send` and `recv` take
//! `&self`: a `Channel` can be shared between threads (one datagram is sent
//! or received atomically).
//!
//! ```text
//!   core                                          service
//!   Channel --- AF_UNIX SOCK_SEQPACKET pair ---   Channel
//!   send(&CoreToX)  -> [postcard bytes | SCM_RIGHTS fds] ->  recv::<CoreToX>()
//!   recv::<XToCore>() <- [postcard bytes | SCM_RIGHTS fds] <- send(&XToCore)
//! ```
//!
//! Sizes: a message encodes to at most [`MAX_MESSAGE_SIZE`] bytes and
//! carries at most [`MAX_FDS`] fds; both limits are checked before sending
//! and enforced by the receive buffers (`MSG_TRUNC` / `MSG_CTRUNC`, after
//! which every received fd is closed). Encode and receive buffers are
//! zeroed after each message, since messages may carry key material.

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;
use zeroize::Zeroize;

use crate::codec::{from_bytes, with_encoded};
use crate::{sys, IpcError, MAX_FDS, MAX_MESSAGE_SIZE};

thread_local! {
    static RECV_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// One end of an IPC connection between the core and a service.
pub struct Channel {
    fd: OwnedFd,
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Channel({})", self.fd.as_raw_fd())
    }
}

/// Maps socket errors that mean "the peer is gone" to `Disconnected`.
fn map_io(e: io::Error) -> IpcError {
    match e.raw_os_error() {
        Some(libc::ECONNRESET | libc::EPIPE | libc::ENOTCONN | libc::ECONNREFUSED) => {
            IpcError::Disconnected
        }
        _ => IpcError::Io(e),
    }
}

fn is_would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// Milliseconds for `poll`, rounded up so we never wake before `d`.
fn poll_ms(d: Duration) -> libc::c_int {
    let ms = d.as_nanos().div_ceil(1_000_000);
    ms.min(libc::c_int::MAX as u128) as libc::c_int
}

/// Runs `f` with this thread's reusable `MAX_MESSAGE_SIZE` receive buffer.
fn with_recv_buf<R>(f: impl FnOnce(&mut [u8]) -> R) -> R {
    RECV_BUF.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            if buf.len() != MAX_MESSAGE_SIZE {
                buf.resize(MAX_MESSAGE_SIZE, 0);
            }
            f(&mut buf)
        }
        Err(_) => f(&mut vec![0; MAX_MESSAGE_SIZE]),
    })
}

impl Channel {
    /// A connected pair (`socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC)`).
    /// Both ends are close-on-exec: whoever spawns a service `dup2`s the
    /// service's end onto the fd number it passes (which clears the flag).
    pub fn pair() -> Result<(Channel, Channel), IpcError> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: socketpair writes two descriptors into the array we pass.
        let r = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        };
        if r != 0 {
            return Err(IpcError::Io(io::Error::last_os_error()));
        }
        // SAFETY: both descriptors were just created and are owned by nobody else.
        let (a, b) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok((Channel { fd: a }, Channel { fd: b }))
    }

    /// Wraps a descriptor that is one end of a `SOCK_SEQPACKET` pair (for
    /// example the IPC fd a service inherited). Not checked; see
    /// [`Channel::from_fd_checked`].
    pub fn from_fd(fd: OwnedFd) -> Channel {
        Channel { fd }
    }

    /// Like [`Channel::from_fd`], but first checks that `fd` is an
    /// `AF_UNIX` `SOCK_SEQPACKET` socket, and marks it close-on-exec.
    pub fn from_fd_checked(fd: OwnedFd) -> Result<Channel, IpcError> {
        let get = |opt: libc::c_int| -> io::Result<libc::c_int> {
            let mut v: libc::c_int = 0;
            let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: getsockopt writes at most `len` bytes into `v`.
            let r = unsafe {
                libc::getsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    (&mut v as *mut libc::c_int).cast(),
                    &mut len,
                )
            };
            if r == 0 {
                Ok(v)
            } else {
                Err(io::Error::last_os_error())
            }
        };
        if get(libc::SO_DOMAIN)? != libc::AF_UNIX || get(libc::SO_TYPE)? != libc::SOCK_SEQPACKET {
            return Err(IpcError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                "IPC fd is not an AF_UNIX SOCK_SEQPACKET socket",
            )));
        }
        // SAFETY: F_SETFD on a descriptor we own.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
            return Err(IpcError::Io(io::Error::last_os_error()));
        }
        Ok(Channel { fd })
    }

    /// Gives the socket back.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// Sends one message, blocking while the peer's receive queue is full.
    pub fn send<M: Serialize + ?Sized>(&self, msg: &M) -> Result<(), IpcError> {
        with_encoded(msg, |bytes, fds| {
            loop {
                match sys::send(self.fd.as_raw_fd(), bytes, fds, 0) {
                    Ok(()) => return Ok(()),
                    // Someone made the socket non-blocking: wait for room.
                    Err(e) if is_would_block(&e) => {
                        sys::poll_one(self.fd.as_raw_fd(), libc::POLLOUT, -1).map_err(map_io)?;
                    }
                    Err(e) => return Err(map_io(e)),
                }
            }
        })
    }

    /// Sends one message, waiting at most `timeout` for room in the peer's
    /// receive queue ([`IpcError::Timeout`] otherwise, nothing sent). Use it
    /// where a stuck peer must not block the caller.
    pub fn send_timeout<M: Serialize + ?Sized>(
        &self,
        msg: &M,
        timeout: Duration,
    ) -> Result<(), IpcError> {
        let deadline = Instant::now() + timeout;
        with_encoded(msg, |bytes, fds| loop {
            match sys::send(self.fd.as_raw_fd(), bytes, fds, libc::MSG_DONTWAIT) {
                Ok(()) => return Ok(()),
                Err(e) if is_would_block(&e) => {}
                Err(e) => return Err(map_io(e)),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(IpcError::Timeout);
            }
            sys::poll_one(self.fd.as_raw_fd(), libc::POLLOUT, poll_ms(left)).map_err(map_io)?;
        })
    }

    /// Receives one message, blocking until one arrives or the peer is gone
    /// ([`IpcError::Disconnected`]).
    pub fn recv<M: DeserializeOwned>(&self) -> Result<M, IpcError> {
        self.recv_decoded(from_bytes)
    }

    /// Receives one message if one arrives within `timeout`; `Ok(None)` on
    /// timeout. A zero timeout only takes what is already queued.
    pub fn recv_timeout<M: DeserializeOwned>(
        &self,
        timeout: Duration,
    ) -> Result<Option<M>, IpcError> {
        self.recv_decoded_timeout(timeout, from_bytes)
    }

    /// Takes a message that is already queued, without blocking.
    pub fn try_recv<M: DeserializeOwned>(&self) -> Result<Option<M>, IpcError> {
        self.recv_once(libc::MSG_DONTWAIT, from_bytes)
    }

    /// Blocking receive with a custom decoder (used by the handshake).
    pub(crate) fn recv_decoded<R>(
        &self,
        decode: impl Fn(&[u8], Vec<OwnedFd>) -> Result<R, IpcError>,
    ) -> Result<R, IpcError> {
        loop {
            if let Some(m) = self.recv_once(0, &decode)? {
                return Ok(m);
            }
            // Only reached if the socket was made non-blocking.
            sys::poll_one(self.fd.as_raw_fd(), libc::POLLIN, -1).map_err(map_io)?;
        }
    }

    /// Receive with a deadline and a custom decoder.
    pub(crate) fn recv_decoded_timeout<R>(
        &self,
        timeout: Duration,
        decode: impl Fn(&[u8], Vec<OwnedFd>) -> Result<R, IpcError>,
    ) -> Result<Option<R>, IpcError> {
        let deadline = Instant::now() + timeout;
        loop {
            // MSG_DONTWAIT: another thread may take the message between our
            // poll and our recvmsg.
            if let Some(m) = self.recv_once(libc::MSG_DONTWAIT, &decode)? {
                return Ok(Some(m));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            sys::poll_one(self.fd.as_raw_fd(), libc::POLLIN, poll_ms(left)).map_err(map_io)?;
        }
    }

    /// One `recvmsg`; `Ok(None)` when nothing is queued (`EAGAIN`).
    fn recv_once<R>(
        &self,
        flags: libc::c_int,
        decode: impl FnOnce(&[u8], Vec<OwnedFd>) -> Result<R, IpcError>,
    ) -> Result<Option<R>, IpcError> {
        with_recv_buf(|buf| {
            let got = match sys::recv(self.fd.as_raw_fd(), buf, flags) {
                Ok(got) => got,
                Err(e) if is_would_block(&e) => return Ok(None),
                Err(e) => return Err(map_io(e)),
            };
            let filled = got.len.min(buf.len());
            let result = if got.flags & libc::MSG_TRUNC != 0 || got.len > buf.len() {
                Err(IpcError::Truncated {
                    size: got.len,
                    max: MAX_MESSAGE_SIZE,
                })
            } else if got.flags & libc::MSG_CTRUNC != 0 {
                Err(IpcError::ControlTruncated { max: MAX_FDS })
            } else if got.len == 0 && got.fds.is_empty() {
                // EOF. (A zero-length datagram looks the same; `send`
                // refuses to produce one.)
                Err(IpcError::Disconnected)
            } else {
                // `got.fds` moves into the decoder, which closes every fd
                // the message does not take. On the error paths above they
                // are dropped (closed) with `got`.
                decode(&buf[..got.len], got.fds).map(Some)
            };
            buf[..filled].zeroize();
            result
        })
    }
}

impl AsFd for Channel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Channel {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl From<Channel> for OwnedFd {
    fn from(ch: Channel) -> OwnedFd {
        ch.fd
    }
}

impl From<OwnedFd> for Channel {
    fn from(fd: OwnedFd) -> Channel {
        Channel { fd }
    }
}
