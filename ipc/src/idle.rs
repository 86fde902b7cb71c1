//! Core <-> a service binary in idle mode ([`ServiceKind::Idle`]).
//!
//! The idle mode runs the full sandbox and the common message loop and
//! nothing else: sandbox, supervisor and broker tests use it, and the IPC
//! benchmark pings it. It has exactly the common messages.

use serde::{Deserialize, Serialize};

use crate::common::impl_protocol;
use crate::{BrokerReply, BrokerRequest, ServiceKind, TestAction};

/// Marker type for [`crate::Protocol`].
#[derive(Debug)]
pub struct Idle;

impl_protocol!(Idle, ServiceKind::Idle, IdleStartup, CoreToIdle, IdleToCore);

/// Configuration sent in `Startup` (none).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
pub struct IdleStartup {}

/// Core -> idle service.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
pub enum CoreToIdle {
    /// Configuration; the first message after the handshake.
    Startup(IdleStartup),
    /// Exit 0.
    Shutdown,
    /// Test-only misbehaviour.
    TestTrigger(TestAction),
    /// Liveness probe; answered with `Pong` of the same value.
    Ping(u64),
    /// Answer to a `Broker` request.
    BrokerReply(BrokerReply),
}

/// Idle service -> core. Untrusted: validated by the core.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
pub enum IdleToCore {
    /// Startup done.
    Ready,
    /// Startup impossible; the service exits.
    StartupFailed { reason: String },
    /// Answer to `Ping`.
    Pong(u64),
    /// Ask the core for an fd.
    Broker(BrokerRequest),
}
