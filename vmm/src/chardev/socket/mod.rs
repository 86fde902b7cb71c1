//! Socket character devices (`-chardev socket`, `-serial tcp:`/`unix:`,
//! QMP `chardev-add`), each served by its own sandboxed `svc-chardev`
//! process started through the [`ServiceManager`].
//!
//! ```text
//!  vCPU ─UART─► SocketBackend::write ─► logfile (always)
//!                      │ connected? credit? else drop
//!                      └──Data──► svc-chardev ──TLS──► client
//!  serial-input thread ◄─eventfd+queue◄─Data── svc-chardev ◄── client
//!                      └──Credit (as the UART consumes)──►
//! ```
//!
//! Where the supervisor binds (server mode, so bind errors are start-up
//! errors as in QEMU) and passes the listener in `Startup`, or grants the
//! service exactly one `Connect` target (client mode). The service is
//! restarted with backoff when it dies; the VM keeps running meanwhile and
//! the listener (kept open here) keeps queueing new clients.
//!
//! # Authz refresh
//! A `tls-authz=` naming an `authz-listfile` with `refresh=on` is re-read by
//! the supervisor when the file changes; [`SocketChardevs::update_authz`]
//! then stores the new rules here (the next (re)start's `Startup` carries
//! them) and sends `UpdateAuthz` to the running service, which checks
//! connections accepted from then on against them (the connected client
//! stays, as in QEMU).
//!
//! # What is dropped, compared with QEMU
//! * No client connected: guest output is dropped (QEMU's `tcp_chr_write`
//!   returns the length and discards it). The `logfile=` still gets it,
//!   as in QEMU.
//! * Client connected but slow: QEMU's 16550 keeps the byte in its
//!   transmit register and retries when the socket is writable (the guest
//!   sees a busy UART). This UART cannot defer a transmit, so output
//!   beyond the 64 KiB credit window is dropped instead of stalling the
//!   vCPU; nothing is lost while the client keeps up.
//! * Client to guest: read from the client only while the UART has room
//!   (through the credit window), as QEMU's `chr_can_read` does, so a fast
//!   client is back-pressured by TCP, not dropped.
//!
//! # Events
//! QEMU emits no QMP event when a socket chardev's client connects or
//! leaves (`VSERPORT_CHANGE` is for virtio-serial ports only), so none is
//! emitted here either; the state is logged and shown in `query-chardev`'s
//! `filename` exactly as QEMU does (`disconnected:tcp:H:P,server=on`, then
//! `tcp:H:P,server=on <-> PEER`).

mod backend;
pub mod config;
mod handler;
mod registry;

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ipc::chardev::{Chardev, CoreToChardev};
use ipc::flow::{RecvCredit, SendCredit};
use ipc::AuthzRules;
use vmm_sys_util::eventfd::EventFd;

use crate::services::{ServiceHandle, ServiceLink, ServiceManager};

pub use backend::SocketBackend;
pub use config::SocketConfig;
use handler::Handler;
pub use registry::SocketChardevs;

/// Longest peer/DN/reason text kept from the (untrusted) service.
const MAX_TEXT: usize = 512;

fn bounded(mut s: String) -> String {
    if s.len() > MAX_TEXT {
        let mut cut = MAX_TEXT;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// State shared by the backend (vCPU and serial-input threads) and the
/// service handler (monitor thread).
struct Flow {
    /// Credit for our `Data` to the service.
    to_service: SendCredit,
    /// Accounting of the service's `Data` to us.
    from_service: RecvCredit,
    /// Bytes from the client not yet taken by the UART (at most the window).
    input: std::collections::VecDeque<u8>,
    /// The connected client (`peer`, DN), if any.
    client: Option<(String, Option<String>)>,
    /// Connections refused so far (TLS, authz, plaintext, timeout).
    rejected: u64,
    /// Times the service process went away.
    exits: u64,
}

pub(crate) struct Shared {
    id: String,
    /// `tcp:H:P,server=on` (QEMU's socket address text).
    address: String,
    flow: Mutex<Flow>,
    changed: Condvar,
    /// Readable while `flow.input` is not empty.
    input_event: EventFd,
    link: Mutex<Option<Arc<ServiceLink<Chardev>>>>,
    /// The `tls-authz` object id, if any.
    authz_id: Option<String>,
    /// Its current rules and how many times they were replaced.
    authz: Mutex<(u64, Option<AuthzRules>)>,
}

impl Shared {
    fn new(id: String, address: String, authz: Option<config::TlsAuthz>) -> std::io::Result<Self> {
        let (authz_id, rules) = match authz {
            Some(a) => (Some(a.object_id), Some(a.rules)),
            None => (None, None),
        };
        Ok(Shared {
            id,
            address,
            flow: Mutex::new(Flow {
                to_service: SendCredit::new(),
                from_service: RecvCredit::new(),
                input: Default::default(),
                client: None,
                rejected: 0,
                exits: 0,
            }),
            changed: Condvar::new(),
            input_event: EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC)?,
            link: Mutex::new(None),
            authz_id,
            authz: Mutex::new((0, rules)),
        })
    }

    /// Replaces the authz rules (kept for the next `Startup`).
    fn set_authz(&self, rules: AuthzRules) {
        let mut a = self.authz.lock().unwrap_or_else(|p| p.into_inner());
        a.0 += 1;
        a.1 = Some(rules);
    }

    /// The current authz rules and their generation.
    fn current_authz(&self) -> (u64, Option<AuthzRules>) {
        self.authz.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn lock(&self) -> MutexGuard<'_, Flow> {
        self.flow.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn send(&self, msg: &CoreToChardev) -> bool {
        let link = self.link.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match link {
            Some(l) => l.send(msg).is_ok(),
            None => false,
        }
    }

    /// Fresh windows and no client (service (re)started or gone).
    fn reset(&self) {
        let mut f = self.lock();
        f.to_service = SendCredit::new();
        f.from_service = RecvCredit::new();
        f.input.clear();
        f.client = None;
        let _ = self.input_event.read();
        self.changed.notify_all();
    }
}

/// A running socket chardev: its service and shared state.
pub struct SocketChardev {
    shared: Arc<Shared>,
    handle: Arc<ServiceHandle<Chardev>>,
    config_logfile: Option<config::LogFile>,
    /// A unix listener's path, removed when the chardev stops (as QEMU).
    unix_path: Option<std::path::PathBuf>,
}

impl SocketChardev {
    /// Starts the service for `cfg` (the listener, if any, is already bound).
    pub fn start(services: &ServiceManager, mut cfg: SocketConfig) -> std::io::Result<Self> {
        let shared = Arc::new(Shared::new(
            cfg.id.clone(),
            cfg.address.clone(),
            cfg.authz.take(),
        )?);
        let logfile = cfg.logfile.clone();
        let unix_path = cfg.unix_listener_path();
        let handler = Arc::new(Handler::new(shared.clone(), cfg));
        let handle = services
            .start::<Chardev, _>(&shared.id, handler)
            .map_err(std::io::Error::other)?;
        *shared.link.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle.link().clone());
        Ok(SocketChardev {
            shared,
            handle,
            config_logfile: logfile,
            unix_path,
        })
    }

    /// The chardev id.
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// The backend for a serial port (one per chardev; opens `logfile=`).
    pub fn backend(&self) -> std::io::Result<SocketBackend> {
        SocketBackend::new(self.shared.clone(), self.config_logfile.as_ref())
    }

    /// QEMU's `query-chardev` filename: `disconnected:ADDR` or `ADDR <-> PEER`.
    pub fn filename(&self) -> String {
        match &self.shared.lock().client {
            Some((peer, _)) => format!("{} <-> {peer}", self.shared.address),
            None => format!("disconnected:{}", self.shared.address),
        }
    }

    /// The connected client's certificate DN, if any.
    pub fn client(&self) -> Option<(String, Option<String>)> {
        self.shared.lock().client.clone()
    }

    /// Connections refused so far.
    pub fn rejected(&self) -> u64 {
        self.shared.lock().rejected
    }

    /// The `tls-authz` object id, if any.
    pub fn authz_id(&self) -> Option<&str> {
        self.shared.authz_id.as_deref()
    }

    /// New rules for the `tls-authz` object (an `authz-listfile` changed):
    /// kept for later restarts and sent to the running service, which
    /// applies them to connections accepted from now on. If the service is
    /// down or starting, its next `Startup` (or the ready hook) carries them.
    pub fn update_authz(&self, rules: AuthzRules) {
        self.shared.set_authz(rules.clone());
        if self.shared.send(&CoreToChardev::UpdateAuthz(rules)) {
            tracing::info!(chardev = %self.shared.id, "tls-authz rules sent to the service");
        } else {
            tracing::info!(chardev = %self.shared.id, "tls-authz rules kept for the next service start");
        }
    }

    /// The service's pid (0 while down).
    pub fn pid(&self) -> i32 {
        self.handle.pid()
    }

    /// Waits until a client is connected (`wait=on`), up to `timeout`
    /// (`None`: forever). Returns whether one is.
    pub fn wait_connected(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut f = self.shared.lock();
        while f.client.is_none() {
            let wait = match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return false;
                    }
                    left
                }
                None => Duration::from_secs(3600),
            };
            f = self
                .shared
                .changed
                .wait_timeout(f, wait)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }

    /// Client mode without `reconnect=`: QEMU fails (start-up or
    /// `chardev-add`) when the connection cannot be made. Waits for the
    /// first connection, or for the service to give up (it exits after
    /// reporting `StartupFailed`), up to `timeout`.
    pub fn wait_first_connection(&self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let mut f = self.shared.lock();
        let exits = f.exits;
        loop {
            if f.client.is_some() {
                return Ok(());
            }
            if f.exits != exits {
                return Err("the connection failed (see the log for the reason)".into());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err("no connection within the time limit".into());
            }
            f = self
                .shared
                .changed
                .wait_timeout(f, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Stops the service and removes a unix listener's socket file
    /// (idempotent).
    pub fn stop(&self) {
        self.handle.stop();
        if let Some(p) = &self.unix_path {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The supervisor-side state machine without a service process, for tests
/// and the `chardev_core_side` fuzz target: service messages go to the
/// handler, the caller drives the backend as the UART would. Messages the
/// core would send to the service are discarded (no link).
#[doc(hidden)]
pub struct Harness {
    handler: Handler,
    backend: SocketBackend,
    shared: Arc<Shared>,
}

#[doc(hidden)]
impl Harness {
    /// A client-mode chardev with no service and no logfile.
    pub fn new() -> std::io::Result<Harness> {
        let shared = Arc::new(Shared::new(
            "harness".into(),
            "tcp:localhost:1".into(),
            None,
        )?);
        let cfg = SocketConfig {
            id: "harness".into(),
            address: shared.address.clone(),
            role: config::Role::Client {
                addr: ipc::SocketAddress::Tcp {
                    host: "localhost".into(),
                    port: 1,
                },
                reconnect_secs: 0,
            },
            tls: None,
            authz: None,
            logfile: None,
        };
        Ok(Harness {
            handler: Handler::new(shared.clone(), cfg),
            backend: SocketBackend::new(shared.clone(), None)?,
            shared,
        })
    }

    /// Feeds one service message; `Err` = protocol violation.
    pub fn message(&self, msg: ipc::chardev::ChardevToCore) -> Result<(), String> {
        self.handler.handle(msg)
    }

    /// The serial port's backend.
    pub fn backend(&mut self) -> &mut SocketBackend {
        &mut self.backend
    }

    /// Client bytes waiting for the UART.
    pub fn buffered_input(&self) -> usize {
        self.shared.lock().input.len()
    }

    /// The connected peer text, if any.
    pub fn peer(&self) -> Option<String> {
        self.shared.lock().client.as_ref().map(|c| c.0.clone())
    }

    /// The service restarted (fresh windows, no client).
    pub fn restart(&self) {
        self.shared.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipc::chardev::ChardevToCore;
    use ipc::flow::STREAM_WINDOW;

    use crate::chardev::CharBackend;

    #[test]
    fn untrusted_service_messages_are_bounded() {
        let mut h = Harness::new().unwrap();
        let window = STREAM_WINDOW as usize;
        // Up to the window is accepted and buffered, one byte more is not.
        h.message(ChardevToCore::Data(vec![7u8; window].into()))
            .unwrap();
        assert_eq!(h.buffered_input(), window);
        assert!(h.message(ChardevToCore::Data(vec![1].into())).is_err());
        // Credit beyond the window is a violation too.
        assert!(h.message(ChardevToCore::Credit(1)).is_err());
        // The UART drains it in order; the backend never reports EOF.
        let mut buf = [0u8; 100];
        let mut total = 0;
        loop {
            match h.backend().read_input(&mut buf) {
                Ok(n) => {
                    assert!(n > 0 && buf[..n].iter().all(|&b| b == 7));
                    total += n;
                }
                Err(e) => {
                    assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
                    break;
                }
            }
        }
        assert_eq!(total, window);
        // Long texts are cut.
        h.message(ChardevToCore::ClientConnected {
            peer: "p".repeat(1 << 20),
            dn: Some("d".repeat(1 << 20)),
        })
        .unwrap();
        assert_eq!(h.peer().unwrap().len(), MAX_TEXT);
        h.message(ChardevToCore::ClientDisconnected).unwrap();
        assert!(h.peer().is_none());
    }

    #[test]
    fn a_restart_after_an_authz_update_starts_with_the_new_rules() {
        use crate::services::ServiceHandler;
        use ipc::{AuthzMatch, AuthzPolicy, AuthzRule};
        let rules = |policy| AuthzRules {
            rules: vec![AuthzRule {
                identity: "CN=client".into(),
                format: AuthzMatch::Exact,
                policy,
            }],
            default_policy: AuthzPolicy::Deny,
        };
        let shared = Arc::new(
            Shared::new(
                "s0".into(),
                "tcp:127.0.0.1:1,server=on".into(),
                Some(config::TlsAuthz {
                    object_id: "auth0".into(),
                    rules: rules(AuthzPolicy::Deny),
                }),
            )
            .unwrap(),
        );
        let cfg = SocketConfig {
            id: "s0".into(),
            address: shared.address.clone(),
            role: config::Role::Client {
                addr: ipc::SocketAddress::Tcp {
                    host: "127.0.0.1".into(),
                    port: 1,
                },
                reconnect_secs: 1,
            },
            tls: None,
            authz: None,
            logfile: None,
        };
        let handler = Handler::new(shared.clone(), cfg);
        assert_eq!(shared.authz_id.as_deref(), Some("auth0"));
        assert_eq!(
            handler.startup().unwrap().authz,
            Some(rules(AuthzPolicy::Deny))
        );
        shared.set_authz(rules(AuthzPolicy::Allow));
        assert_eq!(
            handler.startup().unwrap().authz,
            Some(rules(AuthzPolicy::Allow))
        );
        assert_eq!(shared.current_authz().0, 1);
    }

    #[test]
    fn guest_output_without_a_client_or_service_is_dropped_not_blocked() {
        let mut h = Harness::new().unwrap();
        h.backend().write(&[0u8; 100_000]).unwrap();
        assert_eq!(h.backend().dropped(), 100_000);
        h.message(ChardevToCore::ClientConnected {
            peer: "x".into(),
            dn: None,
        })
        .unwrap();
        // Connected but the service link is down: still dropped, no block.
        h.backend().write(&[0u8; 10]).unwrap();
        assert_eq!(h.backend().dropped(), 100_010);
        h.restart();
        assert!(h.peer().is_none());
    }
}
