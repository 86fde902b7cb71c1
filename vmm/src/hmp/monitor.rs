//! Serving HMP as a text console: `-monitor stdio` and `-monitor unix:...`.
//!
//! ```text
//! QEMU 7.2.22 monitor - type 'help' for more information
//! (qemu) info status
//! VM status: running
//! (qemu)
//! ```
//!
//! Line mode (the terminal does the editing). Lines are bounded
//! ([`MAX_LINE`]); longer input is discarded up to the next newline and
//! reported. `quit` ends the session after the VM has been told to quit.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::qmp::dispatch::{Ctx, Registry};
use crate::qmp::fds::FdStore;
use crate::qmp::server::Listener;
use crate::qmp::wire;
use crate::qmp::MachineControl;

/// Longest accepted command line (QEMU's readline buffer is 4 KiB).
pub const MAX_LINE: usize = 4096;
/// Most HMP socket clients served at once.
pub const MAX_CLIENTS: usize = 16;

/// The banner printed on connect.
pub fn banner() -> String {
    let (a, b, c) = wire::QEMU_VERSION;
    format!("QEMU {a}.{b}.{c} monitor - type 'help' for more information\r\n")
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// Input closed.
    Eof,
    /// The user ran `quit`.
    Quit,
}

/// Serves one HMP session over a reader/writer pair until EOF or `quit`.
pub fn serve_stream<R: Read, W: Write>(
    input: R,
    mut output: W,
    backend: &dyn MachineControl,
    registry: &Registry,
) -> io::Result<SessionEnd> {
    let mut fds = FdStore::default();
    let mut reader = BufReader::new(input);
    output.write_all(banner().as_bytes())?;
    loop {
        output.write_all(b"(qemu) ")?;
        output.flush()?;
        let mut line = Vec::new();
        let n = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(SessionEnd::Eof);
        }
        if line.len() > MAX_LINE && !line.ends_with(b"\n") {
            // Discard the rest of the over-long line.
            loop {
                let mut junk = Vec::new();
                let m = (&mut reader)
                    .take(MAX_LINE as u64)
                    .read_until(b'\n', &mut junk)?;
                if m == 0 || junk.ends_with(b"\n") {
                    break;
                }
            }
            output.write_all(b"command line too long\r\n")?;
            continue;
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\n', '\r']);
        let mut ctx = Ctx {
            backend,
            fds: &mut fds,
            registry,
            close_after_reply: false,
        };
        let out = super::execute(&mut ctx, text);
        output.write_all(out.as_bytes())?;
        if ctx.close_after_reply {
            output.flush()?;
            return Ok(SessionEnd::Quit);
        }
    }
}

/// A client's socket (kept to shut it down) and its thread.
type ClientList = Arc<Mutex<Vec<(OwnedFd, JoinHandle<()>)>>>;

/// HMP served on listening sockets, a thread per client.
pub struct HmpServer {
    stop: Arc<EventFd>,
    stopping: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
    clients: ClientList,
}

impl std::fmt::Debug for HmpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HmpServer").finish_non_exhaustive()
    }
}

impl HmpServer {
    /// Starts accepting HMP clients on `listeners`.
    pub fn start(
        listeners: Vec<Listener>,
        backend: Arc<dyn MachineControl>,
        registry: Arc<Registry>,
    ) -> io::Result<HmpServer> {
        let stop = Arc::new(EventFd::from_value_and_flags(
            0,
            EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK,
        )?);
        let stopping = Arc::new(AtomicBool::new(false));
        let clients: ClientList = Arc::default();
        let (st, sg, cl) = (
            Arc::clone(&stop),
            Arc::clone(&stopping),
            Arc::clone(&clients),
        );
        let acceptor = std::thread::Builder::new()
            .name("hmp-accept".into())
            .spawn(move || {
                while !sg.load(Ordering::SeqCst) {
                    let mut pfds = vec![PollFd::new(st.as_fd(), PollFlags::POLLIN)];
                    for l in &listeners {
                        pfds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
                    }
                    if poll(&mut pfds, PollTimeout::NONE).is_err() {
                        continue;
                    }
                    let ready: Vec<bool> = pfds
                        .iter()
                        .skip(1)
                        .map(|p| p.revents().is_some_and(|r| !r.is_empty()))
                        .collect();
                    drop(pfds);
                    for (l, r) in listeners.iter().zip(ready) {
                        if !r || sg.load(Ordering::SeqCst) {
                            continue;
                        }
                        let Ok(sock) = l.accept() else { continue };
                        {
                            let mut c = cl.lock().unwrap_or_else(|p| p.into_inner());
                            c.retain(|(_, t)| !t.is_finished());
                            if c.len() >= MAX_CLIENTS {
                                tracing::warn!("HMP: too many clients, closing new connection");
                                continue;
                            }
                        }
                        let (Ok(rd), Ok(wr), Ok(keep)) =
                            (sock.try_clone(), sock.try_clone(), sock.try_clone())
                        else {
                            continue;
                        };
                        let b = Arc::clone(&backend);
                        let reg = Arc::clone(&registry);
                        let t = std::thread::Builder::new().name("hmp-client".into()).spawn(
                            move || {
                                let r = std::fs::File::from(rd);
                                let w = std::fs::File::from(wr);
                                let _ = serve_stream(r, w, &*b, &reg);
                                drop(sock);
                            },
                        );
                        if let Ok(t) = t {
                            let mut c = cl.lock().unwrap_or_else(|p| p.into_inner());
                            c.retain(|(_, t)| !t.is_finished());
                            c.push((keep, t));
                        }
                    }
                }
                for l in &listeners {
                    l.remove_socket_file();
                }
            })?;
        Ok(HmpServer {
            stop,
            stopping,
            acceptor: Some(acceptor),
            clients,
        })
    }

    /// Stops accepting, disconnects clients, removes socket files.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = self.stop.write(1);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        let clients = std::mem::take(&mut *self.clients.lock().unwrap_or_else(|p| p.into_inner()));
        for (fd, t) in clients {
            // SAFETY: shutdown on a valid socket fd touches no memory; it
            // makes the client thread's blocking read return EOF.
            unsafe {
                libc::shutdown(fd.as_raw_fd(), libc::SHUT_RDWR);
            }
            let _ = t.join();
        }
    }
}

impl Drop for HmpServer {
    fn drop(&mut self) {
        self.stop_now();
    }
}
