//! The QMP server: listeners, one thread per client, bounded I/O.
//!
//! ```text
//!  Listener(s) ──► acceptor thread (poll: listeners + stop eventfd)
//!                        │ accept4 → spawn
//!                        ▼
//!  client thread (poll: socket + wake eventfd)
//!    recvmsg 64 KiB (+ SCM_RIGHTS fds) ─► JsonStreamer ─► Session ─► reply
//!                                                             │
//!    EventBus::emit (any thread) ──► client out-queue ◄───────┘ (same queue,
//!                                      │                  so order is kept)
//!                                      ▼ send(MSG_DONTWAIT)
//! ```
//!
//! Bounds: a request is at most [`stream::DEFAULT_MAX_REQUEST`] bytes; a
//! client whose output queue passes [`READ_PAUSE_BYTES`] is not read until it
//! drains (backpressure); one whose queue passes [`MAX_OUTPUT_BYTES`] (it
//! stopped reading events) is disconnected; at most [`MAX_CLIENTS`] clients.
//! After `quit` the server sends the reply, closes every connection (each
//! gets up to [`CLOSE_FLUSH`] to take its queued output, then up to
//! [`QUIT_LINGER`] to hang up first, as clients of QEMU expect) and removes
//! the unix socket files it created.

use std::collections::VecDeque;
use std::io;
use std::io::IoSliceMut;
use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::socket::{recvmsg, send, ControlMessageOwned, MsgFlags};
use serde_json::Value;

use super::backend::MachineControl;
use super::dispatch::{Flow, Registry, Session};
use super::events::{EventBus, EventSink};
use super::stream::JsonStreamer;
use super::wire;

/// Most clients served at once; further connections are closed at once.
pub const MAX_CLIENTS: usize = 64;
/// Output queued for a client above which its requests are not read.
pub const READ_PAUSE_BYTES: usize = 1 << 20;
/// Output queued for a client above which it is disconnected.
pub const MAX_OUTPUT_BYTES: usize = 16 << 20;
/// How long a closing connection may take to drain its output.
pub const CLOSE_FLUSH: Duration = Duration::from_secs(2);
/// After `quit` (or shutdown) and a flushed queue, how long the server waits
/// for the client to close its end before closing the connection itself.
pub const QUIT_LINGER: Duration = Duration::from_millis(500);
const READ_CHUNK: usize = 64 * 1024;
const CLIENT_STACK: usize = 8 << 20;

/// A listening socket the server accepts QMP clients on.
#[derive(Debug)]
pub struct Listener {
    fd: OwnedFd,
    /// Unix socket path we bound (removed when the server stops).
    unlink: Option<PathBuf>,
    desc: String,
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Listener {
    /// Binds a unix socket at `path`, replacing a stale socket file as QEMU
    /// does; the file is removed when the server stops.
    pub fn bind_unix(path: impl Into<PathBuf>) -> io::Result<Listener> {
        let path = path.into();
        if let Ok(meta) = std::fs::symlink_metadata(&path) {
            use std::os::unix::fs::FileTypeExt;
            if meta.file_type().is_socket() {
                let _ = std::fs::remove_file(&path);
            }
        }
        let l = UnixListener::bind(&path)?;
        Ok(Listener {
            desc: format!("unix:{}", path.display()),
            fd: l.into(),
            unlink: Some(path),
        })
    }

    /// Binds a TCP socket (`host` may be a name or an address; port 0 picks
    /// a free port, see [`Listener::local_port`]).
    pub fn bind_tcp(host: &str, port: u16) -> io::Result<Listener> {
        let l = TcpListener::bind((host, port))?;
        let desc = format!("tcp:{}", l.local_addr()?);
        Ok(Listener {
            fd: l.into(),
            unlink: None,
            desc,
        })
    }

    /// Adopts an already listening socket (libvirt's `-chardev socket,fd=N`).
    pub fn from_fd(fd: OwnedFd) -> io::Result<Listener> {
        let mut acceptconn: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `acceptconn`,
        // a live c_int; `fd` is a valid open descriptor we own.
        let rc = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ACCEPTCONN,
                (&mut acceptconn as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        if acceptconn == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "fd is not a listening socket",
            ));
        }
        let desc = format!("fd:{}", fd.as_raw_fd());
        Ok(Listener {
            fd,
            unlink: None,
            desc,
        })
    }

    /// The TCP port, for `bind_tcp(.., 0)`.
    pub fn local_port(&self) -> Option<u16> {
        let dup = self.fd.try_clone().ok()?;
        let l = TcpListener::from(dup);
        l.local_addr().ok().map(|a| a.port())
    }

    /// Accepts one connection (the listener is non-blocking once a server
    /// started on it; `WouldBlock` then means no client is waiting).
    pub fn accept(&self) -> io::Result<OwnedFd> {
        // SAFETY: accept4 on a valid listening fd with null address
        // pointers writes no memory; the result is a new fd we own.
        let raw = unsafe {
            libc::accept4(
                self.fd.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` was just returned by accept4 and is owned by no one else.
        Ok(unsafe { OwnedFd::from_raw_fd(raw) })
    }

    /// Removes the unix socket file this listener created, if any.
    pub fn remove_socket_file(&self) {
        if let Some(p) = &self.unlink {
            let _ = std::fs::remove_file(p);
        }
    }

    /// Where it listens, e.g. `unix:/run/qmp.sock`.
    pub fn describe(&self) -> &str {
        &self.desc
    }
}

fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: fcntl on a valid fd with F_GETFL/F_SETFL touches no memory.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Shared between the handle, the acceptor and the clients.
struct ServerState {
    stopping: AtomicBool,
    stop_fd: EventFd,
    clients: Mutex<Vec<Arc<Client>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    active: AtomicUsize,
    accepted: Mutex<u64>,
    accepted_cv: Condvar,
    quit: AtomicBool,
}

impl ServerState {
    fn begin_shutdown(&self) {
        if !self.stopping.swap(true, Ordering::SeqCst) {
            let _ = self.stop_fd.write(1);
            let clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
            for c in clients.iter() {
                c.wake();
            }
        }
    }
}

/// One connection's output queue and wake-up fd.
struct Client {
    out: Mutex<OutQueue>,
    wake_fd: EventFd,
}

#[derive(Default)]
struct OutQueue {
    data: VecDeque<u8>,
    overflow: bool,
}

impl Client {
    fn wake(&self) {
        let _ = self.wake_fd.write(1);
    }

    fn push(&self, line: &[u8]) {
        let mut q = self.out.lock().unwrap_or_else(|p| p.into_inner());
        if q.overflow {
            return;
        }
        if q.data.len() + line.len() > MAX_OUTPUT_BYTES {
            q.overflow = true;
            q.data.clear();
        } else {
            q.data.extend(line);
        }
    }
}

impl EventSink for Client {
    fn push_event(&self, line: &[u8]) {
        self.push(line);
        self.wake();
    }
}

/// Entry point.
#[derive(Debug)]
pub struct Server;

impl Server {
    /// Starts serving `listeners` with a new [`EventBus`].
    pub fn start(
        listeners: Vec<Listener>,
        backend: Arc<dyn MachineControl>,
    ) -> io::Result<ServerHandle> {
        Self::start_with(listeners, backend, EventBus::new(), Registry::standard())
    }

    /// Starts serving with a given bus (shared with the VM core, which emits
    /// events through it) and command registry.
    pub fn start_with(
        listeners: Vec<Listener>,
        backend: Arc<dyn MachineControl>,
        bus: EventBus,
        registry: Registry,
    ) -> io::Result<ServerHandle> {
        for l in &listeners {
            set_nonblocking(l.fd.as_fd())?;
        }
        let state = Arc::new(ServerState {
            stopping: AtomicBool::new(false),
            stop_fd: EventFd::from_value_and_flags(
                0,
                EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK,
            )?,
            clients: Mutex::new(Vec::new()),
            threads: Mutex::new(Vec::new()),
            active: AtomicUsize::new(0),
            accepted: Mutex::new(0),
            accepted_cv: Condvar::new(),
            quit: AtomicBool::new(false),
        });
        let registry = Arc::new(registry);
        let st = Arc::clone(&state);
        let b = bus.clone();
        let (be, reg) = (Arc::clone(&backend), Arc::clone(&registry));
        let acceptor = std::thread::Builder::new()
            .name("qmp-accept".into())
            .spawn(move || accept_loop(listeners, st, be, reg, b))?;
        Ok(ServerHandle {
            state,
            bus,
            backend,
            registry,
            acceptor: Some(acceptor),
        })
    }
}

/// Controls a running server; dropping it shuts the server down.
pub struct ServerHandle {
    state: Arc<ServerState>,
    bus: EventBus,
    backend: Arc<dyn MachineControl>,
    registry: Arc<Registry>,
    acceptor: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle").finish_non_exhaustive()
    }
}

impl ServerHandle {
    /// Emits an event to every negotiated client.
    pub fn emit_event(&self, name: &str, data: Option<Value>) {
        self.bus.emit(name, data);
    }

    /// The bus events go through (give a clone to the VM core).
    pub fn events(&self) -> EventBus {
        self.bus.clone()
    }

    /// Serves QMP on an already connected socket (a client-mode socket
    /// chardev, `-chardev socket,...,server=off -mon ...,mode=control`).
    pub fn attach_socket(&self, sock: OwnedFd) {
        spawn_client(
            Conn {
                rd: sock,
                wr: None,
                socket: true,
            },
            &self.state,
            &self.backend,
            &self.registry,
            &self.bus,
        );
    }

    /// Serves QMP on a pair of plain fds (`-qmp stdio`: dup'ed stdin and
    /// stdout). Writes to `output` block, so give it a dedicated stream.
    pub fn attach_stdio(&self, input: OwnedFd, output: OwnedFd) {
        let socket = is_socket(&input) && is_socket(&output);
        spawn_client(
            Conn {
                rd: input,
                wr: Some(output),
                socket,
            },
            &self.state,
            &self.backend,
            &self.registry,
            &self.bus,
        );
    }

    /// Whether a client ran `quit` (the server is then shutting down).
    pub fn quit_requested(&self) -> bool {
        self.state.quit.load(Ordering::SeqCst)
    }

    /// Number of connected clients.
    pub fn clients(&self) -> usize {
        self.state.active.load(Ordering::SeqCst)
    }

    /// Blocks until at least `n` clients have connected in total or the
    /// timeout passes (for `server=on,wait=on`); returns whether they did.
    pub fn wait_for_clients(&self, n: u64, timeout: Option<Duration>) -> bool {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut count = self
            .state
            .accepted
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        while *count < n {
            match deadline {
                None => {
                    count = self
                        .state
                        .accepted_cv
                        .wait(count)
                        .unwrap_or_else(|p| p.into_inner());
                }
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return false;
                    }
                    count = self
                        .state
                        .accepted_cv
                        .wait_timeout(count, d - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
        }
        true
    }

    /// Blocks until the server stopped on its own (after `quit`).
    pub fn wait(&mut self) {
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        self.join_clients();
    }

    fn join_clients(&self) {
        let threads =
            std::mem::take(&mut *self.state.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }

    /// Stops accepting, lets every client flush (bounded), closes them,
    /// removes unix socket files and joins all threads.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.state.begin_shutdown();
        self.wait();
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(
    listeners: Vec<Listener>,
    state: Arc<ServerState>,
    backend: Arc<dyn MachineControl>,
    registry: Arc<Registry>,
    bus: EventBus,
) {
    for l in &listeners {
        tracing::info!("QMP listening on {}", l.desc);
    }
    while !state.stopping.load(Ordering::SeqCst) {
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(listeners.len() + 1);
        fds.push(PollFd::new(state.stop_fd.as_fd(), PollFlags::POLLIN));
        for l in &listeners {
            fds.push(PollFd::new(l.fd.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                tracing::error!("QMP accept poll failed: {e}");
                break;
            }
        }
        let ready: Vec<bool> = fds
            .iter()
            .skip(1)
            .map(|p| p.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        for (l, ready) in listeners.iter().zip(ready) {
            if !ready || state.stopping.load(Ordering::SeqCst) {
                continue;
            }
            let sock = match l.accept() {
                Ok(s) => s,
                Err(e) => {
                    if e.kind() != io::ErrorKind::WouldBlock
                        && e.kind() != io::ErrorKind::Interrupted
                    {
                        tracing::warn!("QMP accept on {} failed: {e}", l.desc);
                        // Avoid spinning on persistent errors such as EMFILE.
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    continue;
                }
            };
            if state.active.load(Ordering::SeqCst) >= MAX_CLIENTS {
                tracing::warn!(
                    "QMP: too many clients on {}, closing new connection",
                    l.desc
                );
                continue;
            }
            let conn = Conn {
                rd: sock,
                wr: None,
                socket: true,
            };
            spawn_client(conn, &state, &backend, &registry, &bus);
        }
    }
    for l in &listeners {
        l.remove_socket_file();
    }
    drop(listeners);
}

/// One client connection: a socket, or separate input/output fds.
struct Conn {
    rd: OwnedFd,
    /// Output fd when it differs from `rd`.
    wr: Option<OwnedFd>,
    /// Both ends are sockets (recvmsg with SCM_RIGHTS, non-blocking send).
    socket: bool,
}

impl Conn {
    fn wr(&self) -> BorrowedFd<'_> {
        self.wr.as_ref().unwrap_or(&self.rd).as_fd()
    }

    fn recv(&self, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> nix::Result<usize> {
        if self.socket {
            recv_chunk(self.rd.as_raw_fd(), buf, fds)
        } else {
            nix::unistd::read(&self.rd, buf)
        }
    }

    fn send(&self, data: &[u8]) -> nix::Result<usize> {
        if self.socket {
            send(
                self.wr().as_raw_fd(),
                data,
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
            )
        } else {
            nix::unistd::write(self.wr(), data)
        }
    }
}

fn is_socket(fd: &OwnedFd) -> bool {
    nix::sys::stat::fstat(fd).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFSOCK)
}

fn spawn_client(
    conn: Conn,
    state: &Arc<ServerState>,
    backend: &Arc<dyn MachineControl>,
    registry: &Arc<Registry>,
    bus: &EventBus,
) {
    let wake_fd =
        match EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!("QMP: cannot create eventfd: {e}");
                return;
            }
        };
    let client = Arc::new(Client {
        out: Mutex::new(OutQueue::default()),
        wake_fd,
    });
    let session = Session::new(Arc::clone(backend), Arc::clone(registry));
    state.active.fetch_add(1, Ordering::SeqCst);
    {
        let mut clients = state.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients.push(Arc::clone(&client));
    }
    let st = Arc::clone(state);
    let b = bus.clone();
    let spawned = std::thread::Builder::new()
        .name("qmp-client".into())
        .stack_size(CLIENT_STACK)
        .spawn(move || {
            client_loop(&conn, &client, session, &st, &b);
            let mut clients = st.clients.lock().unwrap_or_else(|p| p.into_inner());
            clients.retain(|c| !Arc::ptr_eq(c, &client));
            st.active.fetch_sub(1, Ordering::SeqCst);
        });
    match spawned {
        Ok(t) => {
            let mut threads = state.threads.lock().unwrap_or_else(|p| p.into_inner());
            threads.retain(|t| !t.is_finished());
            threads.push(t);
            let mut n = state.accepted.lock().unwrap_or_else(|p| p.into_inner());
            *n += 1;
            state.accepted_cv.notify_all();
        }
        Err(e) => {
            tracing::warn!("QMP: cannot spawn client thread: {e}");
            state.active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Receives up to READ_CHUNK bytes and any passed fds.
fn recv_chunk(fd: RawFd, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> nix::Result<usize> {
    let mut cmsg = nix::cmsg_space!([RawFd; 16]);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(
        fd,
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::ScmRights(raw) = c {
                for r in raw {
                    // SAFETY: the kernel installed these fds for us in this
                    // recvmsg; nothing else owns them.
                    fds.push(unsafe { OwnedFd::from_raw_fd(r) });
                }
            }
        }
    }
    Ok(msg.bytes)
}

fn client_loop(
    conn: &Conn,
    client: &Arc<Client>,
    mut session: Session,
    state: &ServerState,
    bus: &EventBus,
) {
    client.push(&wire::greeting());
    let mut streamer = JsonStreamer::default();
    let mut buf = vec![0u8; READ_CHUNK];
    let mut frames = Vec::new();
    let mut closing: Option<Instant> = None;
    let mut subscribed = false;
    loop {
        if closing.is_none() && state.stopping.load(Ordering::SeqCst) {
            closing = Some(Instant::now() + CLOSE_FLUSH);
        }
        let (queued, overflow) = {
            let q = client.out.lock().unwrap_or_else(|p| p.into_inner());
            (q.data.len(), q.overflow)
        };
        if overflow {
            tracing::warn!("QMP client stopped reading its output; disconnecting it");
            break;
        }
        if let Some(deadline) = closing {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            if queued == 0 {
                // Everything is sent. Give the client a moment to hang up
                // first, as it would with QEMU (whose teardown takes a
                // while): `qemu.qmp` reports an EOF that arrives before its
                // own disconnect() as an error.
                let linger = deadline.min(now + QUIT_LINGER);
                let hung_up = wait_for_hangup(conn, linger);
                tracing::debug!(hung_up, "QMP connection closing");
                break;
            }
        }
        let mut rflags = PollFlags::empty();
        let mut wflags = PollFlags::empty();
        if closing.is_none() && queued < READ_PAUSE_BYTES {
            rflags |= PollFlags::POLLIN;
        }
        if queued > 0 {
            wflags |= PollFlags::POLLOUT;
        }
        let timeout = match closing {
            Some(d) => PollTimeout::try_from(d.saturating_duration_since(Instant::now()))
                .unwrap_or(PollTimeout::ZERO),
            None => PollTimeout::NONE,
        };
        let (read_ev, write_ev) = {
            let mut fds = vec![PollFd::new(client.wake_fd.as_fd(), PollFlags::POLLIN)];
            if conn.wr.is_some() {
                fds.push(PollFd::new(conn.rd.as_fd(), rflags));
                fds.push(PollFd::new(conn.wr(), wflags));
            } else {
                fds.push(PollFd::new(conn.rd.as_fd(), rflags | wflags));
            }
            match poll(&mut fds, timeout) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(_) => break,
            }
            let ev = |i: usize| {
                fds.get(i)
                    .and_then(PollFd::revents)
                    .unwrap_or(PollFlags::empty())
            };
            (ev(1), if conn.wr.is_some() { ev(2) } else { ev(1) })
        };
        let _ = client.wake_fd.read();
        if write_ev.contains(PollFlags::POLLOUT) && !flush_some(conn, client) {
            break;
        }
        if write_ev.contains(PollFlags::POLLERR) && conn.wr.is_some() {
            break;
        }
        let sock_ev = read_ev;
        if sock_ev.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR)
            && closing.is_none()
        {
            let mut new_fds = Vec::new();
            let n = match conn.recv(&mut buf, &mut new_fds) {
                Ok(0) => break,
                Ok(n) => n,
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
            };
            let dropped = session.fds.receive(new_fds);
            if dropped > 0 {
                tracing::warn!(
                    "QMP client passed {dropped} fds beyond the pending limit; closed them"
                );
            }
            streamer.push(&buf[..n], &mut frames);
            for frame in frames.drain(..) {
                let flow = session.handle_frame(frame, &mut |line| client.push(&line));
                if !subscribed && session.negotiated() {
                    subscribed = true;
                    let weak: std::sync::Weak<dyn EventSink> = Arc::downgrade(client) as _;
                    bus.subscribe(weak);
                }
                if flow == Flow::Close {
                    state.quit.store(true, Ordering::SeqCst);
                    closing = Some(Instant::now() + CLOSE_FLUSH);
                    state.begin_shutdown();
                    break;
                }
            }
            frames.clear();
        } else if sock_ev.intersects(PollFlags::POLLHUP | PollFlags::POLLERR) && closing.is_some() {
            break;
        }
    }
    if conn.socket && conn.wr.is_none() {
        // SAFETY: shutdown on a valid socket fd touches no memory.
        unsafe {
            libc::shutdown(conn.rd.as_raw_fd(), libc::SHUT_RDWR);
        }
    }
}

/// Waits until the peer closes its end (EOF or error) or `until` passes;
/// input that still arrives is discarded. True when the peer hung up.
fn wait_for_hangup(conn: &Conn, until: Instant) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let mut fds = [PollFd::new(conn.rd.as_fd(), PollFlags::POLLIN)];
        let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::ZERO);
        match poll(&mut fds, timeout) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return true,
        }
        let mut fds_in = Vec::new();
        match conn.recv(&mut buf, &mut fds_in) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => continue,
            Err(_) => return true,
        }
    }
}

/// Writes queued output until the socket would block; false on a dead peer.
fn flush_some(conn: &Conn, client: &Client) -> bool {
    let mut q = client.out.lock().unwrap_or_else(|p| p.into_inner());
    while !q.data.is_empty() {
        let (a, _) = q.data.as_slices();
        let chunk = &a[..a.len().min(READ_CHUNK)];
        match conn.send(chunk) {
            Ok(n) => {
                q.data.drain(..n);
            }
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => return true,
            Err(_) => return false,
        }
    }
    true
}
