//! `ipc`: the one place that defines every message between the Bulkhead core
//! and its sandboxed services, and the framed `SOCK_SEQPACKET` channel that
//! carries them (postcard encoding, versioned handshake, maximum message size,
//! file descriptors passed with `SCM_RIGHTS`).
//!
//! ```text
//!   core (trusted)                                  service (sandboxed)
//!   let (core, svc) = Channel::pair()?;      exec, inherits svc's fd
//!   hello_core(&core, ServiceKind::Chardev)  <->  hello_service(&ch, ServiceKind::Chardev)
//!   core.send(&CoreToChardev::Startup(..))   ->   ch.recv::<CoreToChardev>()
//!   core.recv::<ChardevToCore>()             <-   ch.send(&ChardevToCore::Ready)
//! ```
//!
//! - [`Channel`]: blocking `send`/`recv` (plus `recv_timeout`, `try_recv`,
//!   `send_timeout`) on `&self`; `AsFd`/`AsRawFd` for `poll`ing many
//!   channels. A dead peer is [`IpcError::Disconnected`], never `SIGPIPE`.
//! - One message = one datagram of at most [`MAX_MESSAGE_SIZE`] bytes with
//!   at most [`MAX_FDS`] fds. Bulk data (RAM, disk blocks, framebuffers) goes
//!   through shared memory or passed fds, never through big messages.
//! - [`Fd`] fields travel inside messages ([`fd`] module docs).
//! - Messages from services are untrusted: decoding never panics, allocates
//!   at most in proportion to the datagram ([`codec`]), and closes every fd
//!   it does not hand out. `fuzz/` fuzzes each decoder the core runs.
//! - Families: [`chardev`], [`nbd`], [`vnc`], [`migrate`], [`idle`], all
//!   sharing the layout in [`common`]; [`hello`] is the handshake;
//!   [`broker`] the fd requests; [`tls`] the credentials sent at startup;
//!   [`flow`] the credit window for byte streams.

pub mod broker;
pub mod channel;
pub mod chardev;
pub mod codec;
pub mod common;
mod error;
pub mod fd;
pub mod flow;
pub mod hello;
pub mod idle;
pub mod migrate;
pub mod nbd;
mod sys;
pub mod tls;
pub mod vnc;

pub use broker::{BrokerError, BrokerOp, BrokerReply, BrokerRequest, SocketAddress};
pub use channel::Channel;
pub use codec::{from_bytes, to_bytes};
pub use common::{Bytes, CommonToCore, Protocol, SecretBytes, ServiceKind, TestAction};
pub use error::IpcError;
pub use fd::Fd;
pub use hello::{
    decode_hello, hello_core, hello_core_timeout, hello_service, hello_service_timeout, Hello,
    HelloReply, HELLO_TIMEOUT,
};
pub use tls::{
    AuthzMatch, AuthzPolicy, AuthzRule, AuthzRules, KeyFormat, PrivateKey, TlsEndpoint, TlsMaterial,
};

/// Version of the core<->service protocol. Bump it whenever any message
/// type changes its encoding; both sides refuse to talk across versions.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest encoded message, in bytes, enforced on send and on receive.
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024;

/// Most fds one message may carry.
pub const MAX_FDS: usize = 16;
