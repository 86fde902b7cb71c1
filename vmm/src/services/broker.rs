//! The broker: does on a service's behalf what its sandbox forbids (open a
//! file, bind a listener, connect outward) and hands back the fd.
//!
//! A service cannot name arbitrary targets: each service has a list of
//! [`Grant`]s derived from the user's configuration (command line or QMP),
//! and a request is served only when it matches a grant exactly. Anything
//! else is refused with `errno = 0` and a message, and logged.

use std::fs::OpenOptions;
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

use ipc::{BrokerError, BrokerOp, SocketAddress};

/// Timeout of a brokered outgoing TCP connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One thing a service may ask the broker for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Grant {
    /// Connect to exactly this address.
    Connect(SocketAddress),
    /// Bind and listen on exactly this address.
    Listen(SocketAddress),
    /// Open exactly this path; `write` allows read-write.
    Open {
        /// The path.
        path: String,
        /// Read-write allowed.
        write: bool,
    },
}

/// A service's grants and the code that serves them.
#[derive(Clone, Debug, Default)]
pub struct Broker {
    grants: Vec<Grant>,
}

fn refused(msg: impl Into<String>) -> BrokerError {
    BrokerError {
        errno: 0,
        message: msg.into(),
    }
}

fn io_err(what: &str, e: std::io::Error) -> BrokerError {
    BrokerError {
        errno: e.raw_os_error().unwrap_or(libc::EIO),
        message: format!("{what}: {e}"),
    }
}

impl Broker {
    /// A broker that grants exactly `grants`.
    pub fn new(grants: Vec<Grant>) -> Self {
        Self { grants }
    }

    /// Adds a grant.
    pub fn grant(&mut self, g: Grant) {
        self.grants.push(g);
    }

    fn allowed(&self, op: &BrokerOp) -> bool {
        self.grants.iter().any(|g| match (g, op) {
            (Grant::Connect(a), BrokerOp::Connect { addr }) => a == addr,
            (Grant::Listen(a), BrokerOp::Listen { addr }) => a == addr,
            (Grant::Open { path, write }, BrokerOp::Open { path: p, write: w }) => {
                path == p && (*write || !*w)
            }
            _ => false,
        })
    }

    /// Serves `op` if a grant allows it.
    pub fn serve(&self, op: &BrokerOp) -> Result<OwnedFd, BrokerError> {
        if !self.allowed(op) {
            tracing::warn!(?op, "broker refused a request outside the service's grants");
            return Err(refused("not permitted by the service's configuration"));
        }
        match op {
            BrokerOp::Connect { addr } => connect(addr),
            BrokerOp::Listen { addr } => listen(addr),
            BrokerOp::Open { path, write } => OpenOptions::new()
                .read(true)
                .write(*write)
                .open(path)
                .map(OwnedFd::from)
                .map_err(|e| io_err(&format!("open {path}"), e)),
        }
    }
}

/// Connects to `addr` (supervisor side, used by the broker and by features
/// that connect before starting a service).
pub fn connect(addr: &SocketAddress) -> Result<OwnedFd, BrokerError> {
    match addr {
        SocketAddress::Tcp { host, port } => {
            let addrs = (host.as_str(), *port)
                .to_socket_addrs()
                .map_err(|e| io_err(&format!("resolve {host}"), e))?;
            let mut last = None;
            for a in addrs {
                match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
                    Ok(s) => {
                        let _ = s.set_nodelay(true);
                        return Ok(s.into());
                    }
                    Err(e) => last = Some(io_err(&format!("connect {a}"), e)),
                }
            }
            Err(last.unwrap_or_else(|| refused(format!("{host}: no addresses"))))
        }
        SocketAddress::Unix { path } => UnixStream::connect(path)
            .map(OwnedFd::from)
            .map_err(|e| io_err(&format!("connect {path}"), e)),
        #[allow(unreachable_patterns)]
        other => Err(refused(format!("unsupported address {other:?}"))),
    }
}

/// Binds and listens on `addr`. A stale unix socket file is replaced.
pub fn listen(addr: &SocketAddress) -> Result<OwnedFd, BrokerError> {
    match addr {
        SocketAddress::Tcp { host, port } => {
            let l = TcpListener::bind((host.as_str(), *port))
                .map_err(|e| io_err(&format!("listen {host}:{port}"), e))?;
            Ok(l.into())
        }
        SocketAddress::Unix { path } => {
            if let Ok(meta) = std::fs::symlink_metadata(path) {
                use std::os::unix::fs::FileTypeExt;
                if meta.file_type().is_socket() {
                    let _ = std::fs::remove_file(path);
                }
            }
            UnixListener::bind(path)
                .map(OwnedFd::from)
                .map_err(|e| io_err(&format!("listen {path}"), e))
        }
        #[allow(unreachable_patterns)]
        other => Err(refused(format!("unsupported address {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_outside_grants() {
        let dir = std::env::temp_dir();
        let f = dir.join(format!("bulkhead-broker-{}", std::process::id()));
        std::fs::write(&f, b"x").unwrap();
        let p = f.to_string_lossy().into_owned();
        let b = Broker::new(vec![Grant::Open {
            path: p.clone(),
            write: false,
        }]);
        assert!(b
            .serve(&BrokerOp::Open {
                path: p.clone(),
                write: false
            })
            .is_ok());
        let e = b
            .serve(&BrokerOp::Open {
                path: p.clone(),
                write: true,
            })
            .unwrap_err();
        assert_eq!(e.errno, 0);
        let e = b
            .serve(&BrokerOp::Open {
                path: "/etc/shadow".into(),
                write: false,
            })
            .unwrap_err();
        assert_eq!(e.errno, 0);
        let e = b
            .serve(&BrokerOp::Connect {
                addr: SocketAddress::Tcp {
                    host: "127.0.0.1".into(),
                    port: 1,
                },
            })
            .unwrap_err();
        assert_eq!(e.errno, 0);
        std::fs::remove_file(&f).unwrap();
    }

    #[test]
    fn listen_and_connect_granted() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let addr = SocketAddress::Tcp {
            host: "127.0.0.1".into(),
            port,
        };
        let b = Broker::new(vec![Grant::Connect(addr.clone())]);
        let fd = b.serve(&BrokerOp::Connect { addr }).unwrap();
        let (_s, peer) = l.accept().unwrap();
        let s = TcpStream::from(fd);
        assert_eq!(s.local_addr().unwrap(), peer);
    }
}
