//! The service manager: one monitor thread per service that spawns the
//! sandboxed process, performs the handshake and startup, serves the
//! service's messages, notices its death (pidfd), reports it and restarts it
//! with backoff. Dropping the manager (or [`ServiceManager::shutdown_all`])
//! stops every service; the parent-death signal set by the spawner covers an
//! abnormal supervisor exit.

use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ipc::{BrokerReply, Channel, CommonToCore, Fd, IpcError, Protocol, TestAction};
use sandbox::{ExitStatus, ServiceKind, ServiceProcess, SpawnSpec};
use vmm_sys_util::eventfd::EventFd;

use super::Broker;

/// How long a service has to complete the handshake and report `Ready`.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a service has to exit after `Shutdown` before it is killed.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// First restart delay; doubled after each quick crash.
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest restart delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A service that ran this long resets the backoff.
pub const STABLE_AFTER: Duration = Duration::from_secs(30);

/// What the manager reports about services (turned into QMP events by the
/// supervisor: `SERVICE_EXITED`, `SERVICE_STARTED`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceEvent {
    /// A service process is up and reported `Ready`.
    Started {
        /// The service's name (e.g. the chardev id).
        name: String,
        /// Its kind.
        kind: ServiceKind,
        /// Its pid.
        pid: i32,
        /// How many times it was restarted before this start.
        restarts: u32,
    },
    /// A service process ended.
    Exited {
        /// The service's name.
        name: String,
        /// Its kind.
        kind: ServiceKind,
        /// Its pid.
        pid: i32,
        /// How it ended.
        status: ExitStatus,
        /// Why the manager thinks it ended (crash, seccomp violation, ...).
        reason: String,
        /// Delay before the restart, `None` when it will not be restarted.
        restart_in: Option<Duration>,
    },
}

/// Where service events go.
pub type ServiceEventSink = Arc<dyn Fn(ServiceEvent) + Send + Sync>;

/// The feature-specific side of a service, implemented by the code that
/// owns the feature (chardev, NBD, VNC, migration).
pub trait ServiceHandler<P: Protocol>: Send + Sync + 'static {
    /// The startup configuration. Called before every (re)start, so fds in
    /// it (listeners, images) are fresh duplicates each time.
    fn startup(&self) -> Result<P::Startup, String>;

    /// A family-specific message from the service. Untrusted input: validate
    /// everything. Returning `Err` is a protocol violation: the service is
    /// killed and restarted.
    fn on_message(&self, msg: P::ToCore, link: &ServiceLink<P>) -> Result<(), String>;

    /// The service (re)started and is ready for traffic.
    fn on_ready(&self, _link: &ServiceLink<P>) {}

    /// The service went away (before a possible restart).
    fn on_exit(&self) {}

    /// What the broker may do for this service.
    fn broker(&self) -> Broker {
        Broker::default()
    }
}

/// The current connection to a service, usable from any thread. It is empty
/// while the service is down or restarting.
pub struct ServiceLink<P: Protocol> {
    channel: RwLock<Option<Arc<Channel>>>,
    pid: AtomicI32,
    _p: std::marker::PhantomData<fn() -> P>,
}

impl<P: Protocol> ServiceLink<P> {
    fn new() -> Self {
        Self {
            channel: RwLock::new(None),
            pid: AtomicI32::new(0),
            _p: std::marker::PhantomData,
        }
    }

    /// Sends a message to the service if it is up.
    pub fn send(&self, msg: &P::ToService) -> Result<(), IpcError> {
        let ch = self
            .channel
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(IpcError::Disconnected)?;
        ch.send(msg)
    }

    /// Whether the service is up.
    pub fn is_up(&self) -> bool {
        self.channel
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// The service's pid, 0 when down.
    pub fn pid(&self) -> i32 {
        self.pid.load(Ordering::SeqCst)
    }

    fn set(&self, ch: Option<Arc<Channel>>, pid: i32) {
        *self.channel.write().unwrap_or_else(|p| p.into_inner()) = ch;
        self.pid.store(pid, Ordering::SeqCst);
    }
}

/// Settings shared by every service of one supervisor.
#[derive(Clone, Debug)]
pub struct ServiceSettings {
    /// The multi-call executable (normally `/proc/self/exe`).
    pub exe: PathBuf,
    /// `false` only with the `--no-sandbox` debugging switch.
    pub sandbox: bool,
    /// Restart services that die.
    pub restart: bool,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        Self {
            exe: PathBuf::from("/proc/self/exe"),
            sandbox: true,
            restart: true,
        }
    }
}

struct Shared {
    stop: AtomicBool,
    stop_fd: EventFd,
    restarts: AtomicU32,
}

/// A started service.
pub struct ServiceHandle<P: Protocol> {
    name: String,
    link: Arc<ServiceLink<P>>,
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl<P: Protocol> ServiceHandle<P> {
    /// The service's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The connection (for sending from feature code).
    pub fn link(&self) -> &Arc<ServiceLink<P>> {
        &self.link
    }

    /// Sends a message if the service is up.
    pub fn send(&self, msg: &P::ToService) -> Result<(), IpcError> {
        self.link.send(msg)
    }

    /// The current pid (0 while down).
    pub fn pid(&self) -> i32 {
        self.link.pid()
    }

    /// How many times the service was restarted.
    pub fn restarts(&self) -> u32 {
        self.shared.restarts.load(Ordering::SeqCst)
    }

    /// Test-only misbehaviour request.
    pub fn test_trigger(&self, action: TestAction) -> Result<(), IpcError> {
        self.link.send(&P::test_trigger(action))
    }

    /// Waits until the service is up (with a pid different from `not_pid`).
    pub fn wait_up(&self, not_pid: i32, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let pid = self.pid();
            if pid != 0 && pid != not_pid && self.link.is_up() {
                return Some(pid);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Stops the service (Shutdown, then kill after a grace period) and its
    /// monitor thread. Idempotent.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = self.shared.stop_fd.write(1);
        let t = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = t {
            let _ = t.join();
        }
    }
}

impl<P: Protocol> Drop for ServiceHandle<P> {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Anything the manager can stop on shutdown.
trait Stoppable: Send + Sync {
    fn stop(&self);
}

impl<P: Protocol + 'static> Stoppable for ServiceHandle<P> {
    fn stop(&self) {
        ServiceHandle::stop(self)
    }
}

/// Spawns and supervises services.
pub struct ServiceManager {
    settings: ServiceSettings,
    events: ServiceEventSink,
    started: Mutex<Vec<std::sync::Weak<dyn Stoppable>>>,
}

impl ServiceManager {
    /// A manager reporting to `events`.
    pub fn new(settings: ServiceSettings, events: ServiceEventSink) -> Self {
        if !settings.sandbox {
            tracing::warn!(
                "*** services will run WITHOUT their sandbox (--no-sandbox): \
                 debugging only ***"
            );
        }
        Self {
            settings,
            events,
            started: Mutex::new(Vec::new()),
        }
    }

    /// Starts a service of protocol `P` named `name`. Returns at once; the
    /// service comes up in the background (see [`ServiceHandle::wait_up`]).
    pub fn start<P, H>(
        &self,
        name: &str,
        handler: Arc<H>,
    ) -> Result<Arc<ServiceHandle<P>>, IpcError>
    where
        P: Protocol + 'static,
        H: ServiceHandler<P>,
    {
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            stop_fd: EventFd::new(libc::EFD_CLOEXEC | libc::EFD_NONBLOCK)?,
            restarts: AtomicU32::new(0),
        });
        let link = Arc::new(ServiceLink::<P>::new());
        let monitor = Monitor {
            name: name.to_owned(),
            kind: sandbox_kind(P::KIND),
            settings: self.settings.clone(),
            events: self.events.clone(),
            handler,
            link: link.clone(),
            shared: shared.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("svc-{name}"))
            .spawn(move || monitor.run())?;
        let handle = Arc::new(ServiceHandle {
            name: name.to_owned(),
            link,
            shared,
            thread: Mutex::new(Some(thread)),
        });
        let dyn_handle: Arc<dyn Stoppable> = handle.clone();
        let mut started = self.started.lock().unwrap_or_else(|p| p.into_inner());
        started.retain(|w| w.strong_count() > 0);
        started.push(Arc::downgrade(&dyn_handle));
        Ok(handle)
    }

    /// Stops every service still running.
    pub fn shutdown_all(&self) {
        let all: Vec<_> =
            std::mem::take(&mut *self.started.lock().unwrap_or_else(|p| p.into_inner()));
        for w in all {
            if let Some(h) = w.upgrade() {
                h.stop();
            }
        }
    }
}

impl Drop for ServiceManager {
    fn drop(&mut self) {
        self.shutdown_all();
    }
}

/// Maps the IPC kind to the sandbox kind (the two crates stay independent).
pub fn sandbox_kind(k: ipc::ServiceKind) -> ServiceKind {
    match k {
        ipc::ServiceKind::Vnc => ServiceKind::Vnc,
        ipc::ServiceKind::Nbd => ServiceKind::Nbd,
        ipc::ServiceKind::Migrate => ServiceKind::Migrate,
        ipc::ServiceKind::Chardev => ServiceKind::Chardev,
        ipc::ServiceKind::Idle => ServiceKind::Idle,
    }
}

struct Monitor<P: Protocol, H: ServiceHandler<P>> {
    name: String,
    kind: ServiceKind,
    settings: ServiceSettings,
    events: ServiceEventSink,
    handler: Arc<H>,
    link: Arc<ServiceLink<P>>,
    shared: Arc<Shared>,
}

/// Why a serve loop ended.
enum End {
    /// The manager asked the service to stop.
    Stopped,
    /// The service died or misbehaved.
    Failed(String),
}

impl<P: Protocol, H: ServiceHandler<P>> Monitor<P, H> {
    fn stopping(&self) -> bool {
        self.shared.stop.load(Ordering::SeqCst)
    }

    fn run(self) {
        let mut backoff = BACKOFF_MIN;
        loop {
            if self.stopping() {
                return;
            }
            let started_at = Instant::now();
            let (mut proc_, end) = match self.spawn() {
                Ok((proc_, ch)) => {
                    let end = self.serve(&proc_, ch);
                    (Some(proc_), end)
                }
                Err(e) => (None, End::Failed(e)),
            };
            self.link.set(None, 0);
            self.handler.on_exit();
            let Some(p) = proc_.as_mut() else {
                // Could not even spawn: report and retry later.
                let reason = match end {
                    End::Failed(r) => r,
                    End::Stopped => return,
                };
                tracing::error!(service = %self.name, %reason, "service failed to start");
                if !self.wait_backoff(&mut backoff, started_at, &reason, None) {
                    return;
                }
                continue;
            };
            let pid = p.pid();
            if matches!(end, End::Stopped) {
                let st = p.wait_timeout(SHUTDOWN_GRACE).ok().flatten();
                let st = match st {
                    Some(st) => st,
                    None => {
                        let _ = p.kill();
                        p.wait().unwrap_or(ExitStatus::Signaled(libc::SIGKILL))
                    }
                };
                tracing::info!(service = %self.name, pid, status = %st, "service stopped");
                return;
            }
            let End::Failed(why) = end else { return };
            // Make sure it is dead (a misbehaving but living service is killed).
            let st = match p.wait_timeout(Duration::from_millis(200)) {
                Ok(Some(st)) => st,
                _ => {
                    let _ = p.kill();
                    p.wait().unwrap_or(ExitStatus::Signaled(libc::SIGKILL))
                }
            };
            let reason = if st.is_seccomp_violation() {
                "seccomp violation (forbidden syscall)".to_owned()
            } else {
                why
            };
            let info = ExitInfo { pid, status: st };
            if !self.wait_backoff(&mut backoff, started_at, &reason, Some(info)) {
                return;
            }
        }
    }

    /// Reports the exit and sleeps the backoff; false when stopping.
    fn wait_backoff(
        &self,
        backoff: &mut Duration,
        started_at: Instant,
        reason: &str,
        info: Option<ExitInfo>,
    ) -> bool {
        if started_at.elapsed() >= STABLE_AFTER {
            *backoff = BACKOFF_MIN;
        }
        let restart_in = (self.settings.restart && !self.stopping()).then_some(*backoff);
        if let Some(info) = info {
            tracing::error!(
                service = %self.name, pid = info.pid, status = %info.status, %reason,
                restart_in_ms = restart_in.map(|d| d.as_millis() as u64),
                "service exited"
            );
            (self.events)(ServiceEvent::Exited {
                name: self.name.clone(),
                kind: self.kind,
                pid: info.pid,
                status: info.status,
                reason: reason.to_owned(),
                restart_in,
            });
        }
        let Some(delay) = restart_in else {
            return false;
        };
        // Interruptible sleep.
        let mut pfd = [libc::pollfd {
            fd: self.shared.stop_fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: `pfd` is a valid array of one pollfd for the call.
        unsafe { libc::poll(pfd.as_mut_ptr(), 1, delay.as_millis() as i32) };
        *backoff = (*backoff * 2).min(BACKOFF_MAX);
        self.shared.restarts.fetch_add(1, Ordering::SeqCst);
        !self.stopping()
    }

    fn spawn(&self) -> Result<(ServiceProcess, Channel), String> {
        let (core, svc) = Channel::pair().map_err(|e| format!("socketpair: {e}"))?;
        let mut spec = SpawnSpec::service(&self.settings.exe, self.kind.argv0(), svc.into_fd())
            .with_env_from_current(&["RUST_LOG"]);
        spec = spec
            .with_inherited_stderr()
            .map_err(|e| format!("stderr: {e}"))?;
        if !self.settings.sandbox {
            spec.namespaces = false;
            spec.args.push("--no-sandbox".into());
        }
        let proc_ = sandbox::spawn(spec).map_err(|e| format!("spawn: {e}"))?;
        Ok((proc_, core))
    }

    /// Handshake, startup, then the message loop until the service dies,
    /// misbehaves or is stopped.
    fn serve(&self, p: &ServiceProcess, ch: Channel) -> End {
        let pid = p.pid();
        if let Err(e) = ipc::hello_core_timeout(&ch, P::KIND, STARTUP_TIMEOUT) {
            return End::Failed(format!("handshake: {e}"));
        }
        let startup = match self.handler.startup() {
            Ok(s) => s,
            Err(e) => {
                // A configuration problem will not fix itself by restarting.
                tracing::error!(service = %self.name, error = %e, "cannot build startup configuration");
                let _ = ch.send(&P::shutdown());
                return End::Stopped;
            }
        };
        if let Err(e) = ch.send(&P::startup(startup)) {
            return End::Failed(format!("send startup: {e}"));
        }
        let ch = Arc::new(ch);
        let broker = self.handler.broker();
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut ready = false;
        loop {
            let timeout = if ready {
                None
            } else {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return End::Failed("no Ready within the startup timeout".into());
                }
                Some(left)
            };
            match wait3(
                ch.as_raw_fd(),
                p.pidfd().as_raw_fd(),
                self.shared.stop_fd.as_raw_fd(),
                timeout,
            ) {
                Woke::Stop => {
                    let _ = self.shared.stop_fd.read();
                    let _ = ch.send(&P::shutdown());
                    return End::Stopped;
                }
                Woke::Exited => {
                    // Drain what it said last, then report.
                    return End::Failed("process exited".into());
                }
                Woke::Timeout => continue,
                Woke::Channel => {}
            }
            let msg = match ch.try_recv::<P::ToCore>() {
                Ok(Some(m)) => m,
                Ok(None) => continue,
                Err(e) if e.is_disconnected() => {
                    return End::Failed("IPC channel closed".into());
                }
                Err(e) => {
                    tracing::warn!(service = %self.name, pid, error = %e, "bad message from service");
                    return End::Failed(format!("protocol violation: {e}"));
                }
            };
            match P::common(&msg) {
                Some(CommonToCore::Ready) => {
                    if ready {
                        return End::Failed("protocol violation: second Ready".into());
                    }
                    ready = true;
                    self.link.set(Some(ch.clone()), pid);
                    let restarts = self.shared.restarts.load(Ordering::SeqCst);
                    tracing::info!(service = %self.name, pid, restarts, "service ready");
                    (self.events)(ServiceEvent::Started {
                        name: self.name.clone(),
                        kind: self.kind,
                        pid,
                        restarts,
                    });
                    self.handler.on_ready(&self.link);
                }
                Some(CommonToCore::StartupFailed(reason)) => {
                    tracing::error!(service = %self.name, pid, reason, "service could not start");
                    return End::Failed(format!("startup failed: {reason}"));
                }
                Some(CommonToCore::Pong(_)) => {}
                Some(CommonToCore::Broker(req)) => {
                    let result = broker.serve(&req.op).map(Fd::new);
                    let reply = BrokerReply { id: req.id, result };
                    if let Err(e) = ch.send(&P::broker_reply(reply)) {
                        return End::Failed(format!("send broker reply: {e}"));
                    }
                }
                None => {
                    if !ready {
                        return End::Failed("protocol violation: message before Ready".into());
                    }
                    if let Err(e) = self.handler.on_message(msg, &self.link) {
                        tracing::warn!(service = %self.name, pid, error = %e, "service message rejected");
                        return End::Failed(format!("protocol violation: {e}"));
                    }
                }
            }
        }
    }
}

struct ExitInfo {
    pid: i32,
    status: ExitStatus,
}

enum Woke {
    Channel,
    Exited,
    Stop,
    Timeout,
}

fn wait3(ch: RawFd, pidfd: RawFd, stop: RawFd, timeout: Option<Duration>) -> Woke {
    let mut fds = [
        libc::pollfd {
            fd: stop,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: ch,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: pidfd,
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let ms = timeout.map_or(-1, |t| t.as_millis().min(i32::MAX as u128) as i32);
    // SAFETY: `fds` is a valid array of 3 pollfds for the duration of the call.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    if n <= 0 {
        return Woke::Timeout;
    }
    if fds[0].revents != 0 {
        Woke::Stop
    } else if fds[1].revents & libc::POLLIN != 0 {
        // Serve pending messages before noticing the exit.
        Woke::Channel
    } else if fds[2].revents != 0 || fds[1].revents != 0 {
        Woke::Exited
    } else {
        Woke::Timeout
    }
}
