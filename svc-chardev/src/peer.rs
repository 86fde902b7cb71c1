//! Accepting on the passed listener and naming peers.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{getpeername, SockaddrLike, SockaddrStorage};

/// The peer of a connected socket as text (`127.0.0.1:5555`, `[::1]:5555`,
/// `unix`), for logs and `ClientConnected`.
pub fn peer_name(fd: RawFd) -> String {
    match getpeername::<SockaddrStorage>(fd) {
        Ok(a) => {
            if let Some(v4) = a.as_sockaddr_in() {
                format!("{}:{}", v4.ip(), v4.port())
            } else if let Some(v6) = a.as_sockaddr_in6() {
                format!("[{}]:{}", v6.ip(), v6.port())
            } else if a.family() == Some(nix::sys::socket::AddressFamily::Unix) {
                "unix".into()
            } else {
                "unknown".into()
            }
        }
        Err(_) => "unknown".into(),
    }
}

/// Accepts one connection (blocking; call after `poll` said readable).
/// `Ok(None)` for transient failures (the client left before accept).
pub fn accept(listener: BorrowedFd<'_>) -> io::Result<Option<OwnedFd>> {
    // SAFETY: accept4 without an address buffer on a listening socket fd we
    // borrow; the returned fd is owned below.
    let fd = unsafe {
        libc::accept4(
            listener.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC,
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(
                libc::EAGAIN
                | libc::EINTR
                | libc::ECONNABORTED
                | libc::EPROTO
                | libc::EPERM
                | libc::ENETDOWN
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
                | libc::ENETUNREACH,
            ) => Ok(None),
            _ => Err(e),
        };
    }
    // SAFETY: accept4 returned a new fd that nothing else owns.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
}
