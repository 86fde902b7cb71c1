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
}

impl Shared {
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
}

impl SocketChardev {
    /// Starts the service for `cfg` (the listener, if any, is already bound).
    pub fn start(services: &ServiceManager, cfg: SocketConfig) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            id: cfg.id.clone(),
            address: cfg.address.clone(),
            flow: Mutex::new(Flow {
                to_service: SendCredit::new(),
                from_service: RecvCredit::new(),
                input: Default::default(),
                client: None,
                rejected: 0,
            }),
            changed: Condvar::new(),
            input_event: EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC)?,
            link: Mutex::new(None),
        });
        let logfile = cfg.logfile.clone();
        let handler = Arc::new(Handler::new(shared.clone(), cfg));
        let handle = services
            .start::<Chardev, _>(&shared.id, handler)
            .map_err(std::io::Error::other)?;
        *shared.link.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle.link().clone());
        Ok(SocketChardev {
            shared,
            handle,
            config_logfile: logfile,
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

    /// Stops the service (idempotent).
    pub fn stop(&self) {
        self.handle.stop();
    }
}
