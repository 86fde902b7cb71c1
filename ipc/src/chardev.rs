//! Core <-> `svc-chardev`: a socket character device (`-chardev socket`),
//! server or client, plain or TLS.
//!
//! ```text
//!   core                                       svc-chardev
//!    -> Startup(ChardevStartup)                 (server: listener fd inside;
//!                                                client: connects via Broker)
//!    <- Ready | StartupFailed { reason }
//!    <- ClientConnected { peer, dn }           (after TLS + authz, if any)
//!    -> Data(bytes)   <- Data(bytes)           guest <-> remote byte stream
//!    -> Credit(n)     <- Credit(n)             flow control (crate::flow)
//!    <- ClientDisconnected
//!    -> UpdateAuthz(rules)                      (authz-listfile refresh=on)
//!    -> Shutdown
//! ```
//! Each direction's `Data` is bounded by credit ([`crate::flow`]): a side
//! sends at most [`crate::flow::STREAM_WINDOW`] bytes beyond what the other
//! has granted back, in chunks of at most [`crate::flow::MAX_DATA_CHUNK`].
//! The service grants credit back for `Data` it could not deliver (no
//! client connected) just as for delivered data. Telnet (`telnet=on`) is not
//! supported.

use serde::{Deserialize, Serialize};

use crate::common::impl_protocol;
use crate::{
    AuthzRules, BrokerReply, BrokerRequest, Bytes, Fd, ServiceKind, SocketAddress, TestAction,
    TlsMaterial,
};

/// Marker type for [`crate::Protocol`].
#[derive(Debug)]
pub struct Chardev;

impl_protocol!(
    Chardev,
    ServiceKind::Chardev,
    ChardevStartup,
    CoreToChardev,
    ChardevToCore
);

/// Server or client.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
pub enum ChardevRole {
    /// `server=on`: accept connections on `listener`, a socket the core has
    /// already bound and put in listening state (so bind errors are reported
    /// at startup, as in QEMU). One client at a time; later ones wait.
    Server {
        listener: Fd,
        /// `wait=on`: the core holds the VM until the first client connects.
        wait: bool,
    },
    /// `server=off`: connect to `addr` through the broker
    /// (`BrokerOp::Connect`), and again after `reconnect_secs` when the
    /// connection drops (0 = no reconnect).
    Client {
        addr: SocketAddress,
        reconnect_secs: u64,
    },
}

/// Configuration sent in `Startup`.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
pub struct ChardevStartup {
    /// The chardev's `id=` (for logs and events).
    pub id: String,
    /// Server or client.
    pub role: ChardevRole,
    /// `tls-creds=`: TLS on every connection.
    pub tls: Option<TlsMaterial>,
    /// `tls-authz=`: who may connect (checked against the client
    /// certificate DN after the TLS handshake).
    pub authz: Option<AuthzRules>,
}

/// Core -> svc-chardev.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
pub enum CoreToChardev {
    /// Configuration; the first message after the handshake.
    Startup(ChardevStartup),
    /// Close everything and exit 0.
    Shutdown,
    /// Test-only misbehaviour.
    TestTrigger(TestAction),
    /// Liveness probe; answered with `Pong` of the same value.
    Ping(u64),
    /// Answer to a `Broker` request.
    BrokerReply(BrokerReply),
    /// Bytes from the guest for the connected client.
    Data(Bytes),
    /// The core consumed this many bytes of the service's `Data`.
    Credit(u32),
    /// Drop the current client connection (if any).
    DisconnectClient,
    /// New `tls-authz` rules (an `authz-listfile` with `refresh=on`
    /// changed): they apply to connections accepted from now on; the
    /// current client, already authorized, stays connected (as in QEMU).
    UpdateAuthz(AuthzRules),
}

/// svc-chardev -> core. Untrusted: validated by the core.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
pub enum ChardevToCore {
    /// Startup done (server: listening; client: first connect attempted).
    Ready,
    /// Startup impossible (bad TLS material, ...); the service exits.
    StartupFailed { reason: String },
    /// Answer to `Ping`.
    Pong(u64),
    /// Ask the core for an fd.
    Broker(BrokerRequest),
    /// Bytes from the client for the guest.
    Data(Bytes),
    /// The service consumed this many bytes of the core's `Data`.
    Credit(u32),
    /// A client connected (and passed TLS and authz). `peer` is its address
    /// as text; `dn` the TLS client certificate's subject DN, if any.
    ClientConnected { peer: String, dn: Option<String> },
    /// The current client went away.
    ClientDisconnected,
    /// A connection was refused (TLS handshake failure, authz denial).
    ClientRejected { peer: String, reason: String },
}
