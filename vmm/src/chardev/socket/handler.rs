//! The supervisor side of one `svc-chardev`: its startup message, its
//! broker grant and the (untrusted) messages it sends.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ipc::chardev::{Chardev, ChardevRole, ChardevStartup, ChardevToCore, CoreToChardev};
use ipc::{Fd, SocketAddress};

use super::config::{Role, SocketConfig, TlsCreds};
use super::{bounded, Shared};
use crate::services::{Broker, Grant, ServiceHandler, ServiceLink};

enum HandlerRole {
    Server {
        listener: OwnedFd,
        wait: bool,
    },
    Client {
        addr: SocketAddress,
        reconnect_secs: u64,
    },
}

pub(super) struct Handler {
    shared: Arc<Shared>,
    role: HandlerRole,
    tls: Option<TlsCreds>,
    /// Generation of the authz rules the last `Startup` carried.
    startup_authz_generation: AtomicU64,
}

impl Handler {
    pub(super) fn new(shared: Arc<Shared>, cfg: SocketConfig) -> Self {
        let role = match cfg.role {
            Role::Server { listener, wait } => HandlerRole::Server { listener, wait },
            Role::Client {
                addr,
                reconnect_secs,
            } => HandlerRole::Client {
                addr,
                reconnect_secs,
            },
        };
        Handler {
            shared,
            role,
            tls: cfg.tls,
            startup_authz_generation: AtomicU64::new(0),
        }
    }
}

impl ServiceHandler<Chardev> for Handler {
    fn startup(&self) -> Result<ChardevStartup, String> {
        let role = match &self.role {
            HandlerRole::Server { listener, wait } => ChardevRole::Server {
                // A fresh duplicate each (re)start: the listener stays
                // open here, so clients queue while the service restarts.
                listener: Fd::new(
                    listener
                        .try_clone()
                        .map_err(|e| format!("dup listener: {e}"))?,
                ),
                wait: *wait,
            },
            HandlerRole::Client {
                addr,
                reconnect_secs,
            } => ChardevRole::Client {
                addr: addr.clone(),
                reconnect_secs: *reconnect_secs,
            },
        };
        // The current rules, not the ones from the command line: an
        // `authz-listfile` may have been re-read since.
        let (generation, authz) = self.shared.current_authz();
        self.startup_authz_generation
            .store(generation, Ordering::SeqCst);
        Ok(ChardevStartup {
            id: self.shared.id.clone(),
            role,
            tls: self.tls.as_ref().map(TlsCreds::to_wire),
            authz,
        })
    }

    fn on_message(&self, msg: ChardevToCore, _link: &ServiceLink<Chardev>) -> Result<(), String> {
        self.handle(msg)
    }

    fn on_ready(&self, link: &ServiceLink<Chardev>) {
        self.shared.reset();
        // Rules that changed between building `Startup` and now could not
        // reach the service (no link yet): send them now.
        let (generation, authz) = self.shared.current_authz();
        if generation != self.startup_authz_generation.load(Ordering::SeqCst) {
            if let Some(rules) = authz {
                let _ = link.send(&CoreToChardev::UpdateAuthz(rules));
            }
        }
    }

    fn on_exit(&self) {
        self.shared.lock().exits += 1;
        self.shared.reset();
    }

    fn broker(&self) -> Broker {
        match &self.role {
            HandlerRole::Server { .. } => Broker::default(),
            HandlerRole::Client { addr, .. } => Broker::new(vec![Grant::Connect(addr.clone())]),
        }
    }
}

impl Handler {
    /// One (untrusted) message from the service. `Err` is a protocol
    /// violation: the manager kills and restarts the service.
    pub(super) fn handle(&self, msg: ChardevToCore) -> Result<(), String> {
        let sh = &self.shared;
        match msg {
            ChardevToCore::Data(bytes) => {
                let mut f = sh.lock();
                f.from_service
                    .on_data(bytes.len())
                    .map_err(|e| e.to_string())?;
                f.input.extend(bytes.iter());
                if !f.input.is_empty() {
                    let _ = sh.input_event.write(1);
                }
            }
            ChardevToCore::Credit(n) => {
                sh.lock().to_service.grant(n).map_err(|e| e.to_string())?;
            }
            ChardevToCore::ClientConnected { peer, dn } => {
                let peer = bounded(peer);
                let dn = dn.map(bounded);
                tracing::info!(chardev = %sh.id, %peer, dn = dn.as_deref().unwrap_or("-"),
                    "chardev client connected");
                sh.lock().client = Some((peer, dn));
                sh.changed.notify_all();
            }
            ChardevToCore::ClientDisconnected => {
                let old = sh.lock().client.take();
                if let Some((peer, _)) = old {
                    tracing::info!(chardev = %sh.id, %peer, "chardev client disconnected");
                }
                sh.changed.notify_all();
            }
            ChardevToCore::ClientRejected { peer, reason } => {
                tracing::warn!(chardev = %sh.id, peer = %bounded(peer), reason = %bounded(reason),
                    "chardev connection refused");
                sh.lock().rejected += 1;
                sh.changed.notify_all();
            }
            // Handled by the service manager.
            ChardevToCore::Ready
            | ChardevToCore::StartupFailed { .. }
            | ChardevToCore::Pong(_)
            | ChardevToCore::Broker(_) => {}
        }
        Ok(())
    }
}
