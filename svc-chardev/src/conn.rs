//! The connection thread: server role (accept, TLS, authz, relay; one
//! client at a time, later ones wait in the listen backlog as in QEMU) and
//! client role (connect through the broker, TLS, relay, reconnect).
//!
//! A refused connection (not TLS, bad or missing certificate, authz
//! denial, handshake past [`HANDSHAKE_TIMEOUT`]) is reported as
//! `ClientRejected` and the next one is served.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use creds::authz::Authz;
use creds::x509::ClientTls;
use ipc::chardev::{ChardevRole, ChardevStartup, ChardevToCore};
use ipc::{BrokerOp, BrokerRequest, SocketAddress, TlsEndpoint};
use netio::{NetError, ServerOptions, Stream};

use crate::peer::{accept, peer_name};
use crate::relay::{relay, End};
use crate::shared::Shared;

/// TLS handshake timeout for every connection.
pub const HANDSHAKE_TIMEOUT: Duration = netio::DEFAULT_HANDSHAKE_TIMEOUT;
/// How long to wait for the broker's answer to a `Connect`.
const BROKER_TIMEOUT: Duration = Duration::from_secs(30);

/// TLS configuration built once from the startup material.
pub enum TlsSetup {
    /// Plain sockets.
    None,
    /// Server role with TLS (the authz rules live in [`Shared`], where
    /// `UpdateAuthz` replaces them).
    Server {
        config: Arc<netio::rustls::ServerConfig>,
    },
    /// Client role with TLS.
    Client(ClientTls),
}

impl TlsSetup {
    /// Builds the rustls configuration (no file access).
    pub fn from_startup(s: &ChardevStartup) -> Result<TlsSetup, String> {
        let Some(wire) = &s.tls else {
            if s.authz.is_some() {
                return Err("'tls_authz' option requires 'tls_creds' option".into());
            }
            return Ok(TlsSetup::None);
        };
        let material = creds::wire::tls_from_wire(wire);
        match (&s.role, wire.endpoint) {
            (ChardevRole::Server { .. }, TlsEndpoint::Server) => {
                let config = material.server_config().map_err(|e| e.to_string())?;
                Ok(TlsSetup::Server { config })
            }
            (ChardevRole::Client { addr, .. }, TlsEndpoint::Client) => {
                let host = match (&wire.server_name, addr) {
                    (Some(n), _) => n.clone(),
                    (None, SocketAddress::Tcp { host, .. }) => host.clone(),
                    (None, SocketAddress::Unix { .. }) => "localhost".into(),
                };
                Ok(TlsSetup::Client(
                    material.client_config(&host).map_err(|e| e.to_string())?,
                ))
            }
            (ChardevRole::Server { .. }, _) => {
                Err("Expecting TLS credentials with a server endpoint".into())
            }
            (ChardevRole::Client { .. }, _) => {
                Err("Expecting TLS credentials with a client endpoint".into())
            }
        }
    }
}

/// The connection thread's body.
pub fn run(shared: Arc<Shared>, role: ChardevRole, tls: TlsSetup, id: &str) {
    match role {
        ChardevRole::Server { listener, .. } => {
            shared.send(&ChardevToCore::Ready);
            tracing::info!(chardev = %id, "listening");
            serve(&shared, listener.into_owned(), &tls);
        }
        ChardevRole::Client {
            addr,
            reconnect_secs,
        } => connect_loop(&shared, &addr, reconnect_secs, &tls, id),
    }
}

/// Polls the listener and the wake fd; true when a connection is pending.
fn wait_listener(shared: &Shared, listener: &OwnedFd) -> bool {
    loop {
        if shared.stopping() {
            return false;
        }
        let mut fds = [
            libc::pollfd {
                fd: shared.wake_fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: listener.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: poll over a valid local array of two pollfds.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if n < 0 {
            continue;
        }
        if fds[0].revents != 0 {
            shared.drain_wake();
            // A DisconnectClient with no client: nothing to do.
            shared.lock().disconnect = false;
        }
        if fds[1].revents != 0 {
            return true;
        }
    }
}

fn serve(shared: &Shared, listener: OwnedFd, tls: &TlsSetup) {
    while wait_listener(shared, &listener) {
        let fd = match accept(listener.as_fd()) {
            Ok(Some(fd)) => fd,
            Ok(None) => continue,
            Err(e) => {
                tracing::error!(error = %e, "accept failed");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let peer = peer_name(fd.as_raw_fd());
        let stream = match tls {
            TlsSetup::Server { config } => {
                // The rules current at accept time decide (UpdateAuthz).
                let authz: Option<Arc<Authz>> = shared.authz();
                Stream::tls_server(
                    fd,
                    config.clone(),
                    &ServerOptions {
                        timeout: HANDSHAKE_TIMEOUT,
                        authz: authz.as_deref(),
                    },
                )
            }
            _ => Ok(Stream::plain(fd)),
        };
        match stream {
            Ok(stream) => {
                let dn = stream.peer().and_then(|p| p.dn.clone());
                if relay(shared, stream, &peer, dn) == End::Shutdown {
                    return;
                }
            }
            Err(e) => reject(shared, &peer, &e),
        }
    }
}

fn reject(shared: &Shared, peer: &str, e: &NetError) {
    let reason = e.to_string();
    tracing::warn!(%peer, %reason, "connection refused");
    shared.send(&ChardevToCore::ClientRejected {
        peer: peer.to_owned(),
        reason,
    });
}

fn addr_text(addr: &SocketAddress) -> String {
    match addr {
        SocketAddress::Tcp { host, port } => format!("{host}:{port}"),
        SocketAddress::Unix { path } => format!("unix:{path}"),
    }
}

/// One brokered connect plus handshake.
fn connect_once(
    shared: &Shared,
    addr: &SocketAddress,
    tls: &TlsSetup,
    req_id: u64,
) -> Result<Stream, String> {
    shared.send(&ChardevToCore::Broker(BrokerRequest {
        id: req_id,
        op: BrokerOp::Connect { addr: addr.clone() },
    }));
    let rx = shared.broker_rx.lock().unwrap_or_else(|p| p.into_inner());
    let deadline = Instant::now() + BROKER_TIMEOUT;
    let reply = loop {
        if shared.stopping() {
            return Err("stopping".into());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("no answer from the broker".into());
        }
        match rx.recv_timeout(left.min(Duration::from_millis(200))) {
            Ok(r) if r.id == req_id => break r,
            Ok(_) => continue,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
            Err(_) => return Err("stopping".into()),
        }
    };
    let fd = reply.result.map_err(|e| e.message)?.into_owned();
    match tls {
        TlsSetup::Client(c) => {
            Stream::tls_client(fd, c, HANDSHAKE_TIMEOUT).map_err(|e| e.to_string())
        }
        _ => Ok(Stream::plain(fd)),
    }
}

/// Sleeps `d` unless the service stops first; false when stopping.
fn pause(shared: &Shared, d: Duration) -> bool {
    let deadline = Instant::now() + d;
    loop {
        if shared.stopping() {
            return false;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        let mut fds = [libc::pollfd {
            fd: shared.wake_fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
        // SAFETY: poll over a valid local array of one pollfd.
        if unsafe { libc::poll(fds.as_mut_ptr(), 1, ms) } > 0 {
            shared.drain_wake();
            shared.lock().disconnect = false;
        }
    }
}

fn connect_loop(
    shared: &Shared,
    addr: &SocketAddress,
    reconnect_secs: u64,
    tls: &TlsSetup,
    id: &str,
) {
    let target = addr_text(addr);
    let mut req_id = 0u64;
    let mut ready = false;
    loop {
        req_id += 1;
        let result = connect_once(shared, addr, tls, req_id);
        if !ready {
            match &result {
                Err(reason) if reconnect_secs == 0 => {
                    tracing::error!(chardev = %id, %target, %reason, "cannot connect");
                    shared.send(&ChardevToCore::StartupFailed {
                        reason: format!("Failed to connect to '{target}': {reason}"),
                    });
                    return;
                }
                _ => {
                    shared.send(&ChardevToCore::Ready);
                    ready = true;
                }
            }
        }
        match result {
            Ok(stream) => {
                let dn = stream.peer().and_then(|p| p.dn.clone());
                if relay(shared, stream, &target, dn) == End::Shutdown {
                    return;
                }
            }
            Err(reason) => {
                if shared.stopping() {
                    return;
                }
                tracing::warn!(chardev = %id, %target, %reason, "connect failed");
                shared.send(&ChardevToCore::ClientRejected {
                    peer: target.clone(),
                    reason,
                });
            }
        }
        if reconnect_secs == 0 {
            tracing::info!(chardev = %id, "disconnected; reconnect is off");
            // Stay up (the chardev exists, disconnected) until stopped.
            while pause(shared, Duration::from_secs(3600)) {}
            return;
        }
        if !pause(shared, Duration::from_secs(reconnect_secs)) {
            return;
        }
    }
}
