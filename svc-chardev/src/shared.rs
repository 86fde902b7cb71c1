//! State shared by the IPC thread and the connection thread, and the IPC
//! thread's loop.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};

use creds::authz::Authz;
use ipc::chardev::{ChardevToCore, CoreToChardev};
use ipc::flow::{RecvCredit, SendCredit};
use ipc::{BrokerReply, Channel, IpcError};

/// Flow-control and connection state.
pub struct State {
    /// Bytes from the core not yet written to the client (bounded by the
    /// window through `from_core`).
    pub outq: VecDeque<u8>,
    /// Credit accounting for the core's `Data`.
    pub from_core: RecvCredit,
    /// Credit for our `Data` to the core.
    pub to_core: SendCredit,
    /// A client is connected (and passed TLS + authz).
    pub connected: bool,
    /// The core asked to drop the current client.
    pub disconnect: bool,
    /// The core asked us to stop, or went away.
    pub shutdown: bool,
}

/// Shared between the two threads.
pub struct Shared {
    /// The IPC channel (send from either thread).
    pub ch: Arc<Channel>,
    state: Mutex<State>,
    /// Readable when `state` changed in a way the connection thread must see.
    wake: OwnedFd,
    broker_tx: Mutex<Sender<BrokerReply>>,
    /// Broker replies for the connection thread.
    pub broker_rx: Mutex<Receiver<BrokerReply>>,
    /// The current `tls-authz` rules (server role with TLS): set from
    /// `Startup`, replaced by `UpdateAuthz`, read once per accepted
    /// connection so a change applies to the next client.
    authz: Mutex<Option<Arc<Authz>>>,
}

impl Shared {
    /// Fresh state with full windows and the startup `authz` rules.
    pub fn new(ch: Arc<Channel>, authz: Option<Authz>) -> io::Result<Shared> {
        // SAFETY: eventfd(2) with integer arguments; the fd is owned below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned by nothing else.
        let wake = unsafe { OwnedFd::from_raw_fd(fd) };
        let (tx, rx) = std::sync::mpsc::channel();
        Ok(Shared {
            ch,
            state: Mutex::new(State {
                outq: VecDeque::new(),
                from_core: RecvCredit::new(),
                to_core: SendCredit::new(),
                connected: false,
                disconnect: false,
                shutdown: false,
            }),
            wake,
            broker_tx: Mutex::new(tx),
            broker_rx: Mutex::new(rx),
            authz: Mutex::new(authz.map(Arc::new)),
        })
    }

    /// The authz rules to check the next connection against.
    pub fn authz(&self) -> Option<Arc<Authz>> {
        self.authz.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the authz rules (connections accepted from now on).
    fn set_authz(&self, authz: Authz) {
        *self.authz.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(authz));
    }

    /// Locks the state.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The wake-up fd for `poll`.
    pub fn wake_fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// Wakes the connection thread.
    pub fn wake(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: write(2) of 8 bytes from a local buffer to our eventfd.
        unsafe { libc::write(self.wake.as_raw_fd(), one.as_ptr().cast(), one.len()) };
    }

    /// Clears a pending wake-up.
    pub fn drain_wake(&self) {
        let mut b = [0u8; 8];
        // SAFETY: read(2) of 8 bytes into a local buffer from our
        // non-blocking eventfd.
        unsafe { libc::read(self.wake.as_raw_fd(), b.as_mut_ptr().cast(), b.len()) };
    }

    /// Records that `n` bytes of the core's data were consumed (written to
    /// the client or dropped) and returns credit when due.
    pub fn consumed_from_core(&self, st: &mut State, n: usize) {
        if let Some(k) = st.from_core.consumed(n) {
            if let Err(e) = self.ch.send(&ChardevToCore::Credit(k)) {
                tracing::debug!(error = %e, "credit not sent");
            }
        }
    }

    /// Sends a message to the core, ignoring a closed channel (the IPC
    /// thread notices that and ends the process).
    pub fn send(&self, msg: &ChardevToCore) {
        if let Err(e) = self.ch.send(msg) {
            tracing::debug!(error = %e, "message to core not sent");
        }
    }

    /// Whether we are stopping.
    pub fn stopping(&self) -> bool {
        self.lock().shutdown
    }

    fn stop(&self) {
        self.lock().shutdown = true;
        self.wake();
    }
}

/// The IPC thread: serves the core's messages until `Shutdown` or until the
/// core goes away. A flow-control violation by the core ends the service
/// (the core restarts it with fresh windows).
pub fn serve_ipc(shared: &Shared) -> Result<(), IpcError> {
    loop {
        let msg = match shared.ch.recv::<CoreToChardev>() {
            Ok(m) => m,
            Err(e) if e.is_disconnected() => {
                shared.stop();
                return Ok(());
            }
            Err(e) => {
                shared.stop();
                return Err(e);
            }
        };
        match msg {
            CoreToChardev::Data(bytes) => {
                let mut st = shared.lock();
                if let Err(e) = st.from_core.on_data(bytes.len()) {
                    drop(st);
                    shared.stop();
                    tracing::error!(error = %e, "core broke flow control");
                    return Err(IpcError::Io(io::Error::other(e.to_string())));
                }
                if st.connected {
                    st.outq.extend(bytes.iter());
                    drop(st);
                    shared.wake();
                } else {
                    // No client: dropped, as QEMU's socket chardev does.
                    shared.consumed_from_core(&mut st, bytes.len());
                }
            }
            CoreToChardev::Credit(n) => {
                let r = shared.lock().to_core.grant(n);
                if let Err(e) = r {
                    shared.stop();
                    tracing::error!(error = %e, "core broke flow control");
                    return Err(IpcError::Io(io::Error::other(e.to_string())));
                }
                shared.wake();
            }
            CoreToChardev::DisconnectClient => {
                shared.lock().disconnect = true;
                shared.wake();
            }
            CoreToChardev::Ping(n) => shared.send(&ChardevToCore::Pong(n)),
            CoreToChardev::TestTrigger(a) => svc_runtime::handle_test_trigger(a),
            CoreToChardev::BrokerReply(r) => {
                let tx = shared.broker_tx.lock().unwrap_or_else(|p| p.into_inner());
                let _ = tx.send(r);
                shared.wake();
            }
            CoreToChardev::UpdateAuthz(rules) => {
                // Untrusted-size input was bounded by the IPC decoder;
                // the rules only ever decide who may connect next.
                tracing::info!(rules = rules.rules.len(), "tls-authz rules updated");
                shared.set_authz(creds::wire::authz_from_wire(&rules));
            }
            CoreToChardev::Startup(_) => tracing::warn!("ignoring a second Startup"),
            CoreToChardev::Shutdown => {
                shared.stop();
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipc::{AuthzMatch, AuthzPolicy, AuthzRule, AuthzRules};

    #[test]
    fn update_authz_replaces_the_rules_for_the_next_connection() {
        let (core, svc) = Channel::pair().unwrap();
        let deny_all = Authz::List(Default::default());
        let shared = Arc::new(Shared::new(Arc::new(svc), Some(deny_all)).unwrap());
        assert!(!shared.authz().unwrap().is_allowed("CN=client"));
        let t = {
            let shared = shared.clone();
            std::thread::spawn(move || serve_ipc(&shared))
        };
        let allow = AuthzRules {
            default_policy: AuthzPolicy::Deny,
            rules: vec![AuthzRule {
                identity: "CN=client".into(),
                format: AuthzMatch::Exact,
                policy: AuthzPolicy::Allow,
            }],
        };
        core.send(&CoreToChardev::UpdateAuthz(allow)).unwrap();
        core.send(&CoreToChardev::Shutdown).unwrap();
        t.join().unwrap().unwrap();
        let now = shared.authz().unwrap();
        assert!(now.is_allowed("CN=client"));
        assert!(!now.is_allowed("CN=other"));
    }
}
