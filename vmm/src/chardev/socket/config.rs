//! What a socket chardev needs to start, built from `-chardev socket,...`
//! or `chardev-add`: the bound listener (server) or the one address the
//! service may connect to (client), and the TLS/authz material loaded by
//! the supervisor.

use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;

use creds::x509::{Endpoint, X509Material};
use ipc::{AuthzRules, SocketAddress, TlsMaterial};

use crate::cli::{SocketAddr, SocketChardev as SocketSpec};
use crate::objects::ObjectRegistry;
use crate::services::broker;

/// `logfile=` / `logappend=`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogFile {
    /// The file.
    pub path: PathBuf,
    /// Append instead of truncating.
    pub append: bool,
}

/// Server or client.
#[derive(Debug)]
pub enum Role {
    /// Accept on `listener` (bound and listening).
    Server {
        /// The listening socket.
        listener: OwnedFd,
        /// `wait=on`.
        wait: bool,
    },
    /// Connect to `addr` (the service's only broker grant).
    Client {
        /// The peer.
        addr: SocketAddress,
        /// `reconnect=` seconds (0: never).
        reconnect_secs: u64,
    },
}

/// A chardev's TLS credentials and the host name its client role checks.
#[derive(Debug)]
pub struct TlsCreds {
    /// The loaded `tls-creds-x509` material.
    pub material: X509Material,
    /// Name the server certificate must match (client role over TCP).
    pub server_name: Option<String>,
}

impl TlsCreds {
    /// The startup message's form. The caller sends it and drops it, which
    /// zeroizes the key copy it holds.
    pub fn to_wire(&self) -> TlsMaterial {
        creds::wire::tls_to_wire(&self.material, self.server_name.as_deref())
    }
}

/// A chardev's `tls-authz=` object and the rules it held when read. An
/// `authz-listfile` with `refresh=on` may change later: the supervisor's
/// watcher then hands the chardev new rules by `object_id`
/// ([`super::SocketChardevs::update_authz`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsAuthz {
    /// The `authz-*` object id.
    pub object_id: String,
    /// Its rules, in wire form.
    pub rules: AuthzRules,
}

/// Everything needed to start one socket chardev.
#[derive(Debug)]
pub struct SocketConfig {
    /// `id=`.
    pub id: String,
    /// QEMU's address text (`tcp:127.0.0.1:4444,server=on`).
    pub address: String,
    /// Server or client.
    pub role: Role,
    /// `tls-creds=`: kept in its loaded form (the key in dump-proof
    /// memory) and turned into the wire form only for each (re)start.
    pub tls: Option<TlsCreds>,
    /// `tls-authz=`: the object and its rules, ready for the wire.
    pub authz: Option<TlsAuthz>,
    /// `logfile=`.
    pub logfile: Option<LogFile>,
}

/// QEMU's `SocketAddress_to_str` plus `,server=on`.
pub fn address_text(s: &SocketSpec) -> String {
    let server = if s.server { ",server=on" } else { "" };
    let scheme = if s.telnet { "telnet" } else { "tcp" };
    match &s.addr {
        SocketAddr::Tcp { host, port } => format!("{scheme}:{host}:{port}{server}"),
        SocketAddr::Unix(p) => format!("unix:{}{server}", p.display()),
        SocketAddr::Fd(fd) => format!("fd:{fd}{server}"),
    }
}

impl SocketConfig {
    /// The socket file of a unix listener (`unix:PATH,server=on`).
    pub fn unix_listener_path(&self) -> Option<PathBuf> {
        match &self.role {
            Role::Server { .. } => self
                .address
                .strip_prefix("unix:")
                .and_then(|a| a.strip_suffix(",server=on"))
                .map(PathBuf::from),
            Role::Client { .. } => None,
        }
    }

    /// Builds the configuration (binding the listener in server mode).
    /// Errors are QEMU-style messages without the `chardev 'id':` prefix.
    pub fn new(
        id: &str,
        s: &SocketSpec,
        logfile: Option<LogFile>,
        objects: &ObjectRegistry,
    ) -> Result<SocketConfig, String> {
        if s.telnet {
            return Err("telnet=on is not supported by this build".into());
        }
        let host_or_any = |h: &str| {
            if h.is_empty() {
                "0.0.0.0".to_owned()
            } else {
                h.to_owned()
            }
        };
        let role = if s.server {
            let listener = match &s.addr {
                SocketAddr::Tcp { host, port } => broker::listen(&SocketAddress::Tcp {
                    host: host_or_any(host),
                    port: *port,
                })
                .map_err(|e| format!("Failed to bind socket: {}", e.message))?,
                SocketAddr::Unix(p) => broker::listen(&SocketAddress::Unix {
                    path: p.display().to_string(),
                })
                .map_err(|e| format!("Failed to bind socket to {}: {}", p.display(), e.message))?,
                SocketAddr::Fd(fd) => {
                    // SAFETY: F_GETFD only inspects the descriptor table.
                    if unsafe { libc::fcntl(*fd, libc::F_GETFD) } < 0 {
                        return Err(format!("fd={fd} is not an open file descriptor"));
                    }
                    // SAFETY: the user handed us this inherited listening
                    // socket for this chardev; nothing else owns it.
                    unsafe { OwnedFd::from_raw_fd(*fd) }
                }
            };
            Role::Server {
                listener,
                wait: s.wait,
            }
        } else {
            let addr = match &s.addr {
                SocketAddr::Tcp { host, port } => SocketAddress::Tcp {
                    host: if host.is_empty() {
                        "localhost".into()
                    } else {
                        host.clone()
                    },
                    port: *port,
                },
                SocketAddr::Unix(p) => SocketAddress::Unix {
                    path: p.display().to_string(),
                },
                SocketAddr::Fd(_) => {
                    return Err("fd= in client mode is not supported by this build".into())
                }
            };
            Role::Client {
                addr,
                reconnect_secs: s.reconnect.unwrap_or(0),
            }
        };
        let tls = match &s.tls_creds {
            None => None,
            Some(cid) => {
                let want = if s.server {
                    Endpoint::Server
                } else {
                    Endpoint::Client
                };
                let m = objects
                    .tls_creds(cid, Some(want))
                    .map_err(|e| e.to_string())?;
                let server_name = match &role {
                    Role::Client {
                        addr: SocketAddress::Tcp { host, .. },
                        ..
                    } => Some(host.clone()),
                    _ => None,
                };
                Some(TlsCreds {
                    material: m.clone(),
                    server_name,
                })
            }
        };
        let authz = match &s.tls_authz {
            None => None,
            Some(aid) => Some(TlsAuthz {
                object_id: aid.clone(),
                rules: creds::wire::authz_to_wire(&objects.authz(aid).map_err(|e| e.to_string())?),
            }),
        };
        if authz.is_some() && tls.is_none() {
            return Err("'tls_authz' option requires 'tls_creds' option".into());
        }
        Ok(SocketConfig {
            id: id.to_owned(),
            address: address_text(s),
            role,
            tls,
            authz,
            logfile,
        })
    }
}
