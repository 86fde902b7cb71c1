//! Moving bytes between one connected client and the core, both ways,
//! within the credit windows.
//!
//! ```text
//!   poll(client fd: POLLIN if the core granted credit, POLLOUT if outq has
//!        bytes; wake eventfd)
//!   readable -> read <= min(credit, 4 KiB) -> Data to core
//!   writable -> write <= 4 KiB of outq     -> Credit back to core
//! ```
//! The socket gets `SO_RCVTIMEO` (a client that sends half a TLS record
//! and stops costs at most that long) and `SO_SNDTIMEO` (a client that
//! stops reading while its socket buffer is full is dropped after that
//! long; until then the core's window fills and the core drops guest
//! output, so nothing upstream stalls).

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use ipc::chardev::ChardevToCore;
use netio::Stream;

use crate::shared::Shared;

/// Largest single read from or write to the client.
const IO_CHUNK: usize = 4096;
/// See the module docs.
const RECV_STALL: Duration = Duration::from_secs(1);
/// See the module docs.
pub const SEND_STALL: Duration = Duration::from_secs(10);

fn set_timeout(fd: RawFd, opt: libc::c_int, d: Duration) {
    let tv = libc::timeval {
        tv_sec: d.as_secs() as libc::time_t,
        tv_usec: d.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: setsockopt with a valid timeval of the size passed; on a
    // non-socket fd it fails harmlessly.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
}

/// Why a relay ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// The client closed or failed.
    ClientGone(String),
    /// The core asked to drop the client.
    Disconnected,
    /// The service is stopping.
    Shutdown,
}

/// Relays until the client goes away, the core drops it or we stop. Sends
/// `ClientConnected` first and `ClientDisconnected` at the end.
pub fn relay(shared: &Shared, mut stream: Stream, peer: &str, dn: Option<String>) -> End {
    let fd = stream.as_raw_fd();
    set_timeout(fd, libc::SO_RCVTIMEO, RECV_STALL);
    set_timeout(fd, libc::SO_SNDTIMEO, SEND_STALL);
    {
        let mut st = shared.lock();
        st.connected = true;
        st.disconnect = false;
    }
    tracing::info!(%peer, dn = dn.as_deref().unwrap_or("-"), "client connected");
    shared.send(&ChardevToCore::ClientConnected {
        peer: peer.to_owned(),
        dn,
    });
    let end = pump(shared, &mut stream, fd);
    {
        let mut st = shared.lock();
        st.connected = false;
        st.disconnect = false;
        let n = st.outq.len();
        st.outq.clear();
        shared.consumed_from_core(&mut st, n);
    }
    if !matches!(end, End::ClientGone(_)) {
        let _ = stream.close();
    }
    tracing::info!(%peer, why = ?end, "client disconnected");
    shared.send(&ChardevToCore::ClientDisconnected);
    end
}

fn pump(shared: &Shared, stream: &mut Stream, fd: RawFd) -> End {
    let mut buf = vec![0u8; IO_CHUNK];
    loop {
        let (credit, pending) = {
            let st = shared.lock();
            if st.shutdown {
                return End::Shutdown;
            }
            if st.disconnect {
                return End::Disconnected;
            }
            (st.to_core.available(), !st.outq.is_empty())
        };
        let mut readable = credit > 0 && stream.has_buffered_input();
        let mut writable = false;
        if !readable {
            let mut events = 0;
            if credit > 0 {
                events |= libc::POLLIN;
            }
            if pending {
                events |= libc::POLLOUT;
            }
            let mut fds = [
                libc::pollfd {
                    fd: shared.wake_fd().as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: if events != 0 { fd } else { -1 },
                    events,
                    revents: 0,
                },
            ];
            // SAFETY: poll over a valid local array of two pollfds.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return End::ClientGone(format!("poll: {e}"));
            }
            if fds[0].revents != 0 {
                shared.drain_wake();
            }
            let r = fds[1].revents;
            readable = credit > 0 && r & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0;
            writable = pending && r & (libc::POLLOUT | libc::POLLHUP | libc::POLLERR) != 0;
        }
        if readable {
            let want = credit.min(IO_CHUNK);
            match stream.read(&mut buf[..want]) {
                Ok(0) => return End::ClientGone("end of stream".into()),
                Ok(n) => {
                    let granted = shared.lock().to_core.take(n);
                    debug_assert_eq!(granted, n);
                    shared.send(&ChardevToCore::Data(buf[..n].to_vec().into()));
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return End::ClientGone("end of stream".into())
                }
                Err(e) => return End::ClientGone(e.to_string()),
            }
        }
        if writable {
            let chunk: Vec<u8> = {
                let st = shared.lock();
                let n = st.outq.len().min(IO_CHUNK);
                st.outq.iter().take(n).copied().collect()
            };
            if let Err(e) = stream.write_all(&chunk).and_then(|()| stream.flush()) {
                return End::ClientGone(format!("write: {e}"));
            }
            let mut st = shared.lock();
            let n = chunk.len().min(st.outq.len());
            st.outq.drain(..n);
            shared.consumed_from_core(&mut st, n);
        }
    }
}
