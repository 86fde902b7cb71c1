//! The raw `sendmsg`/`recvmsg` calls with `SCM_RIGHTS`, and nothing else.

use std::io;
use std::mem::size_of;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::ptr;

use crate::MAX_FDS;

/// Room for one `SCM_RIGHTS` header with `MAX_FDS` descriptors, 8-aligned.
#[repr(C, align(8))]
struct CmsgBuffer([u8; CMSG_BUFFER_LEN]);

const CMSG_BUFFER_LEN: usize = 128;

/// `CMSG_SPACE(MAX_FDS * 4)`: exactly `MAX_FDS` fds fit, one more sets
/// `MSG_CTRUNC`.
fn control_len() -> usize {
    // SAFETY: CMSG_SPACE only computes a size.
    let len = unsafe { libc::CMSG_SPACE((MAX_FDS * size_of::<RawFd>()) as u32) } as usize;
    assert!(len <= CMSG_BUFFER_LEN);
    len
}

/// One received datagram as the kernel returned it.
pub(crate) struct Received {
    /// Bytes of the datagram; with `MSG_TRUNC` this is its real size, which
    /// may exceed the buffer.
    pub len: usize,
    /// Every fd that arrived, already owned (so dropped = closed).
    pub fds: Vec<OwnedFd>,
    /// `msg_flags` (`MSG_TRUNC`, `MSG_CTRUNC`).
    pub flags: libc::c_int,
}

/// Sends one datagram with `fds` attached as `SCM_RIGHTS`. Never raises
/// `SIGPIPE` (`MSG_NOSIGNAL`). Retries on `EINTR`.
pub(crate) fn send(
    sock: RawFd,
    bytes: &[u8],
    fds: &[RawFd],
    extra_flags: libc::c_int,
) -> io::Result<()> {
    debug_assert!(fds.len() <= MAX_FDS);
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    let mut cmsg = CmsgBuffer([0; CMSG_BUFFER_LEN]);
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        let data_len = std::mem::size_of_val(fds);
        // SAFETY: CMSG_SPACE/CMSG_LEN only compute sizes.
        let (space, len) = unsafe {
            (
                libc::CMSG_SPACE(data_len as u32) as usize,
                libc::CMSG_LEN(data_len as u32) as usize,
            )
        };
        assert!(
            space <= CMSG_BUFFER_LEN,
            "too many fds for the control buffer"
        );
        msg.msg_control = cmsg.0.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: msg_control points at `space` writable, 8-aligned bytes,
        // enough for one header plus `data_len` bytes, so CMSG_FIRSTHDR is
        // non-null and CMSG_DATA points inside the buffer; the copy writes
        // exactly `data_len` bytes there (unaligned-safe byte copy).
        unsafe {
            let hdr = libc::CMSG_FIRSTHDR(&msg);
            (*hdr).cmsg_level = libc::SOL_SOCKET;
            (*hdr).cmsg_type = libc::SCM_RIGHTS;
            (*hdr).cmsg_len = len as _;
            ptr::copy_nonoverlapping(fds.as_ptr().cast::<u8>(), libc::CMSG_DATA(hdr), data_len);
        }
    }
    loop {
        // SAFETY: `msg` points at live iovec/control buffers for the call.
        let n = unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL | extra_flags) };
        if n >= 0 {
            return if n as usize == bytes.len() {
                Ok(())
            } else {
                Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "short datagram send",
                ))
            };
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Receives one datagram into `buf` (`MSG_CMSG_CLOEXEC`, `MSG_TRUNC` so the
/// real size is reported). Retries on `EINTR`. Every fd that arrives is
/// wrapped in an [`OwnedFd`] before anything else is looked at.
pub(crate) fn recv(sock: RawFd, buf: &mut [u8], extra_flags: libc::c_int) -> io::Result<Received> {
    let mut cmsg = CmsgBuffer([0; CMSG_BUFFER_LEN]);
    let control_len = control_len();
    loop {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: msghdr is plain data; all-zero is a valid empty header.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cmsg.0.as_mut_ptr().cast();
        msg.msg_controllen = control_len as _;
        let flags = libc::MSG_CMSG_CLOEXEC | libc::MSG_TRUNC | extra_flags;
        // SAFETY: `msg` points at live, writable buffers of the sizes given.
        let n = unsafe { libc::recvmsg(sock, &mut msg, flags) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let mut fds = Vec::new();
        // SAFETY: the kernel filled `msg_controllen` bytes of our buffer
        // with well-formed cmsg headers; CMSG_FIRSTHDR/NXTHDR stay inside
        // it. Each SCM_RIGHTS payload holds `(cmsg_len - CMSG_LEN(0)) / 4`
        // descriptors that the kernel just installed in our table and that
        // nobody else owns, so taking ownership of each is sound; they are
        // read unaligned because CMSG_DATA need not be int-aligned.
        unsafe {
            let mut hdr = libc::CMSG_FIRSTHDR(&msg);
            while !hdr.is_null() {
                if (*hdr).cmsg_level == libc::SOL_SOCKET && (*hdr).cmsg_type == libc::SCM_RIGHTS {
                    let payload =
                        ((*hdr).cmsg_len as usize).saturating_sub(libc::CMSG_LEN(0) as usize);
                    let data = libc::CMSG_DATA(hdr).cast::<RawFd>();
                    for i in 0..payload / size_of::<RawFd>() {
                        let raw = ptr::read_unaligned(data.add(i));
                        fds.push(OwnedFd::from_raw_fd(raw));
                    }
                }
                hdr = libc::CMSG_NXTHDR(&msg, hdr);
            }
        }
        return Ok(Received {
            len: n as usize,
            fds,
            flags: msg.msg_flags,
        });
    }
}

/// Waits until `sock` is readable (`POLLIN`) or writable (`POLLOUT`), or has
/// hung up, for at most `timeout_ms` (rounded up by the caller). Returns
/// false on timeout. `EINTR` counts as "try again" (returns true).
pub(crate) fn poll_one(
    sock: RawFd,
    events: libc::c_short,
    timeout_ms: libc::c_int,
) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: sock,
        events,
        revents: 0,
    };
    // SAFETY: one valid pollfd, count 1.
    let n = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(true);
        }
        return Err(e);
    }
    Ok(n > 0)
}
