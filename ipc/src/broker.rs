//! Broker requests: what a sandboxed service cannot do itself (open files,
//! bind, connect), it asks the core to do, and gets back an fd.
//!
//! ```text
//!   service                                   core (broker)
//!     Broker(BrokerRequest { id: 7, op: Connect { addr } })  ->
//!                                            validates op against the
//!                                            service's configuration,
//!                                            connects (or refuses)
//!     <- BrokerReply { id: 7, result: Ok(Fd) | Err(BrokerError) }
//! ```
//! The core must only grant what the service's startup configuration
//! allows (for example, `Connect` only to the configured peer address): a
//! compromised service must not become an open proxy. Requests are answered
//! in any order; `id` pairs them.

use serde::{Deserialize, Serialize};

use crate::Fd;

/// A socket address as the user wrote it (QEMU `SocketAddress`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
pub enum SocketAddress {
    /// TCP: host name or IP literal, and port.
    Tcp { host: String, port: u16 },
    /// Unix-domain socket path.
    Unix { path: String },
}

/// What the service asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
pub enum BrokerOp {
    /// A connected stream socket to `addr`.
    Connect { addr: SocketAddress },
    /// A bound, listening stream socket on `addr`.
    Listen { addr: SocketAddress },
    /// An open file (read-only, or read-write when `write`).
    Open { path: String, write: bool },
}

/// A service->core broker request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
pub struct BrokerRequest {
    /// Chosen by the service; echoed in the reply.
    pub id: u64,
    /// The operation.
    pub op: BrokerOp,
}

/// Why the broker refused or failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
pub struct BrokerError {
    /// `errno` of the failed call, or 0 when the broker refused by policy.
    pub errno: i32,
    /// Human-readable reason (no secrets).
    pub message: String,
}

/// The core's answer to a [`BrokerRequest`].
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
pub struct BrokerReply {
    /// The request's `id`.
    pub id: u64,
    /// The fd, or why not.
    pub result: Result<Fd, BrokerError>,
}
