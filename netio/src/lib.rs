//! `netio`: the QIOChannel idea from the seed's part 4 — plain, TLS and
//! websocket byte streams layered over a file descriptor received from the
//! broker, with handshake timeouts and peer DN + authz checks in one place.
//! Every service uses it and writes no TLS plumbing of its own.
//!
//! ```text
//!   let stream = Stream::tls_server(fd, material.server_config()?, &ServerOptions {
//!       timeout: Duration::from_secs(10), authz: Some(&authz) })?;
//!   stream.peer()  // Some(PeerIdentity { dn: Some("C=GB,...,CN=client.test"), authorized: Some(true), .. })
//! ```
//!
//! Layers: [`socket::Socket`] (fd, `MSG_NOSIGNAL`, `poll`) implements
//! [`socket::Transport`]; [`Stream`] is plain or TLS over any `Transport`, so a
//! websocket layer can later be added as another `Transport` (TLS inside
//! websockets) or wrap a `Stream` (websockets inside TLS).

pub mod error;
pub mod socket;
pub mod stream;

/// The rustls this crate was built with (services name its types through here).
pub use rustls;

pub use error::NetError;
pub use socket::{Socket, Transport};
pub use stream::{PeerIdentity, ServerOptions, Stream, DEFAULT_HANDSHAKE_TIMEOUT};
