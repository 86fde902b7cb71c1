//! [`Stream`]: one byte-stream type for every service, plain or TLS.
//!
//! ```text
//!   fd from broker ─► Socket ─► Stream::Plain ──start_tls_server/client()──► Stream::Tls
//!                                 (NBD STARTTLS, VeNCrypt: upgrade in place)     │
//!                                                                  peer(): DN + authz decision
//! ```
//!
//! The handshake is blocking with a deadline: before each read the fd is
//! `poll`ed for the remaining time, so a silent or slow peer costs at most the
//! timeout. After the handshake the stream is an ordinary blocking
//! `Read + Write` (vectored writes included); `close()` sends TLS close_notify.

use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use creds::authz::Authz;
use creds::x509::ClientTls;
use rustls::{ClientConnection, Connection, ServerConfig, ServerConnection};

use crate::error::NetError;
use crate::socket::{deadline_after, wait_readable, wait_writable, Socket, Transport};

/// Default handshake timeout (QEMU has none; a stuck peer should not pin a service).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Who is on the other end of a TLS channel, and whether tls-authz allows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    /// Subject DN of the peer certificate as QEMU shows it (`C=GB,O=...,CN=...`),
    /// `None` when the peer sent no certificate.
    pub dn: Option<String>,
    /// The peer's end-entity certificate (DER).
    pub cert_der: Option<Vec<u8>>,
    /// The tls-authz decision: `None` without tls-authz, else allowed or not.
    /// (A denied peer never yields a `Stream`; this is always `Some(true)` then.)
    pub authorized: Option<bool>,
}

/// Server-side handshake options.
#[derive(Clone, Debug)]
pub struct ServerOptions<'a> {
    pub timeout: Duration,
    /// `tls-authz`: the peer DN must be allowed, or the handshake fails with
    /// [`NetError::AuthzDenied`].
    pub authz: Option<&'a Authz>,
}

impl Default for ServerOptions<'_> {
    fn default() -> Self {
        ServerOptions {
            timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            authz: None,
        }
    }
}

struct TlsLayer {
    conn: Connection,
    io: Box<dyn Transport>,
    server_name: Option<String>,
    peer: PeerIdentity,
}

enum Inner {
    Plain(Box<dyn Transport>),
    Tls(Box<TlsLayer>),
    /// Only while being upgraded.
    Gone,
}

/// A plain or TLS byte stream over a socket fd.
pub struct Stream {
    inner: Inner,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Inner::Plain(t) => write!(f, "Stream::Plain(fd {})", t.fd().as_raw_fd()),
            Inner::Tls(l) => write!(
                f,
                "Stream::Tls(fd {}, peer {:?})",
                l.io.fd().as_raw_fd(),
                l.peer.dn
            ),
            Inner::Gone => write!(f, "Stream::Gone"),
        }
    }
}

/// The TLS record content type of a handshake record; anything else first means
/// the peer is not speaking TLS.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

impl Stream {
    /// A plain stream over a connected socket fd.
    pub fn plain(fd: OwnedFd) -> Self {
        Stream {
            inner: Inner::Plain(Box::new(Socket::new(fd))),
        }
    }

    /// A plain stream over any transport (the seam for websockets).
    pub fn over(transport: Box<dyn Transport>) -> Self {
        Stream {
            inner: Inner::Plain(transport),
        }
    }

    /// Accept a TLS client on `fd`.
    pub fn tls_server(
        fd: OwnedFd,
        config: Arc<ServerConfig>,
        opts: &ServerOptions<'_>,
    ) -> Result<Self, NetError> {
        Self::plain(fd).start_tls_server(config, opts)
    }

    /// Connect as a TLS client on `fd`.
    pub fn tls_client(fd: OwnedFd, tls: &ClientTls, timeout: Duration) -> Result<Self, NetError> {
        Self::plain(fd).start_tls_client(tls, timeout)
    }

    /// Upgrade a plain stream to TLS as the server (NBD `STARTTLS`, VeNCrypt).
    pub fn start_tls_server(
        mut self,
        config: Arc<ServerConfig>,
        opts: &ServerOptions<'_>,
    ) -> Result<Self, NetError> {
        let io = self.take_plain()?;
        let deadline = deadline_after(opts.timeout);
        // A plaintext client talking to a TLS port: say so instead of a parse error.
        if !io.has_buffered_input() && !wait_readable(io.fd(), deadline)? {
            return Err(NetError::HandshakeTimeout(opts.timeout));
        }
        let mut io = io;
        match io.peek_byte() {
            Ok(Some(TLS_HANDSHAKE_RECORD)) | Ok(None) => {}
            Ok(Some(_)) => return Err(NetError::NotTls),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(NetError::PeerClosed),
            Err(e) => return Err(NetError::Io(e)),
        }
        let conn = ServerConnection::new(config).map_err(|e| NetError::from_tls(e, None))?;
        let mut layer = TlsLayer {
            conn: conn.into(),
            io,
            server_name: None,
            peer: empty_peer(),
        };
        layer.handshake(deadline, opts.timeout)?;
        layer.peer = identify(&layer.conn);
        if let Some(authz) = opts.authz {
            let Some(dn) = layer.peer.dn.clone() else {
                tracing::warn!("tls-authz: peer presented no certificate");
                return Err(NetError::AuthzNoIdentity);
            };
            let allowed = authz.is_allowed(&dn);
            layer.peer.authorized = Some(allowed);
            if !allowed {
                tracing::warn!(dn = %dn, "tls-authz: peer not authorized");
                // Tell the peer, best effort, before dropping the connection.
                layer.conn.send_close_notify();
                let _ = layer.flush_tls(deadline_after(Duration::from_millis(200)));
                return Err(NetError::AuthzDenied(dn));
            }
        }
        Ok(Stream {
            inner: Inner::Tls(Box::new(layer)),
        })
    }

    /// Upgrade a plain stream to TLS as the client.
    pub fn start_tls_client(
        mut self,
        tls: &ClientTls,
        timeout: Duration,
    ) -> Result<Self, NetError> {
        let io = self.take_plain()?;
        let name = server_name_text(&tls.server_name);
        let conn = ClientConnection::new(tls.config.clone(), tls.server_name.clone())
            .map_err(|e| NetError::from_tls(e, Some(&name)))?;
        let mut layer = TlsLayer {
            conn: conn.into(),
            io,
            server_name: Some(name),
            peer: empty_peer(),
        };
        layer.handshake(deadline_after(timeout), timeout)?;
        layer.peer = identify(&layer.conn);
        Ok(Stream {
            inner: Inner::Tls(Box::new(layer)),
        })
    }

    fn take_plain(&mut self) -> Result<Box<dyn Transport>, NetError> {
        match std::mem::replace(&mut self.inner, Inner::Gone) {
            Inner::Plain(t) => Ok(t),
            other => {
                self.inner = other;
                Err(NetError::Io(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "stream is already TLS",
                )))
            }
        }
    }

    /// The peer's identity and authz decision (`None` for a plain stream).
    pub fn peer(&self) -> Option<&PeerIdentity> {
        match &self.inner {
            Inner::Tls(l) => Some(&l.peer),
            _ => None,
        }
    }

    /// The negotiated TLS version (`None` for a plain stream).
    pub fn tls_version(&self) -> Option<rustls::ProtocolVersion> {
        match &self.inner {
            Inner::Tls(l) => l.conn.protocol_version(),
            _ => None,
        }
    }

    /// True for a TLS stream.
    pub fn is_tls(&self) -> bool {
        matches!(self.inner, Inner::Tls(_))
    }

    /// Decrypted bytes are waiting: read them before `poll`ing the fd again.
    /// (Needs `&mut` because rustls reports its plaintext buffer only from
    /// `process_new_packets`; an error there also returns true, so the caller's
    /// next read reports it.)
    pub fn has_buffered_input(&mut self) -> bool {
        match &mut self.inner {
            Inner::Plain(t) => t.has_buffered_input(),
            Inner::Tls(l) => match l.conn.process_new_packets() {
                Ok(state) => state.plaintext_bytes_to_read() > 0 || l.io.has_buffered_input(),
                Err(_) => true,
            },
            Inner::Gone => false,
        }
    }

    /// Write every byte of every buffer (vectored, retrying short writes).
    pub fn write_all_vectored(&mut self, mut bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
        IoSlice::advance_slices(&mut bufs, 0);
        while !bufs.is_empty() {
            match self.write_vectored(bufs) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut bufs, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Send TLS close_notify (if TLS) and shut the socket down.
    pub fn close(mut self) -> io::Result<()> {
        if let Inner::Tls(l) = &mut self.inner {
            l.conn.send_close_notify();
            l.flush_tls(deadline_after(Duration::from_secs(1)))
                .map_err(NetError::into_io)?;
        }
        match &self.inner {
            Inner::Plain(t) => shutdown_fd(t.fd()),
            Inner::Tls(l) => shutdown_fd(l.io.fd()),
            Inner::Gone => Ok(()),
        }
    }
}

fn shutdown_fd(fd: BorrowedFd<'_>) -> io::Result<()> {
    match nix::sys::socket::shutdown(fd.as_raw_fd(), nix::sys::socket::Shutdown::Both) {
        Ok(()) | Err(nix::errno::Errno::ENOTCONN) | Err(nix::errno::Errno::ENOTSOCK) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn empty_peer() -> PeerIdentity {
    PeerIdentity {
        dn: None,
        cert_der: None,
        authorized: None,
    }
}

fn identify(conn: &Connection) -> PeerIdentity {
    let cert = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.as_ref().to_vec());
    let dn = cert.as_deref().and_then(creds::dn::subject_dn);
    PeerIdentity {
        dn,
        cert_der: cert,
        authorized: None,
    }
}

fn server_name_text(name: &rustls::pki_types::ServerName<'_>) -> String {
    match name {
        rustls::pki_types::ServerName::DnsName(d) => d.as_ref().to_string(),
        rustls::pki_types::ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        other => format!("{other:?}"),
    }
}

impl TlsLayer {
    fn fail(&mut self, e: rustls::Error) -> NetError {
        // Let the peer know why (rustls queued an alert), best effort.
        let _ = self.flush_tls(deadline_after(Duration::from_millis(200)));
        NetError::from_tls(e, self.server_name.as_deref())
    }

    fn flush_tls(&mut self, deadline: Instant) -> Result<(), NetError> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut self.io) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !wait_writable(self.io.fd(), deadline)? {
                        return Err(NetError::Io(io::ErrorKind::TimedOut.into()));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(NetError::Io(e)),
            }
        }
        Ok(())
    }

    fn handshake(&mut self, deadline: Instant, timeout: Duration) -> Result<(), NetError> {
        while self.conn.is_handshaking() {
            self.flush_tls(deadline)?;
            if !self.conn.is_handshaking() {
                break;
            }
            if self.conn.wants_read() {
                if !self.io.has_buffered_input() && !wait_readable(self.io.fd(), deadline)? {
                    return Err(NetError::HandshakeTimeout(timeout));
                }
                let n = match self.conn.read_tls(&mut self.io) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                        return Err(NetError::PeerClosed)
                    }
                    Err(e) => return Err(NetError::Io(e)),
                };
                if n == 0 {
                    return Err(NetError::PeerClosed);
                }
                if let Err(e) = self.conn.process_new_packets() {
                    return Err(self.fail(e));
                }
            }
        }
        // The client's last flight (Finished, certificate) must go out now.
        self.flush_tls(deadline)?;
        Ok(())
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Plain(t) => t.read(buf),
            Inner::Tls(l) => l.read(buf),
            Inner::Gone => Err(io::ErrorKind::NotConnected.into()),
        }
    }
}

impl TlsLayer {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut eof = false;
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if eof {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let n = match self.conn.read_tls(&mut self.io) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            eof = n == 0;
            if let Err(e) = self.conn.process_new_packets() {
                let err = self.fail(e);
                return Err(err.into_io());
            }
            // Post-handshake messages (key updates, tickets) may need replies.
            self.flush_tls(deadline_after(DEFAULT_HANDSHAKE_TIMEOUT))
                .map_err(NetError::into_io)?;
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let n = self.conn.writer().write_vectored(bufs)?;
        self.flush_blocking()?;
        Ok(n)
    }

    fn flush_blocking(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut self.io) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Plain(t) => t.write_vectored(bufs),
            Inner::Tls(l) => l.write_vectored(bufs),
            Inner::Gone => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Inner::Plain(t) => t.flush(),
            Inner::Tls(l) => l.flush_blocking(),
            Inner::Gone => Ok(()),
        }
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        match &self.inner {
            Inner::Plain(t) => t.fd().as_raw_fd(),
            Inner::Tls(l) => l.io.fd().as_raw_fd(),
            Inner::Gone => -1,
        }
    }
}
