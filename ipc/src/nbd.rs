//! Core <-> `svc-nbd` (NBD server exports and the NBD client block backend).
//!
//! This family is deliberately small for now: startup, readiness, liveness
//! and brokering. The export/request messages (image fds, the shared I/O
//! window) are added by the NBD issue.

use serde::{Deserialize, Serialize};

use crate::common::impl_protocol;
use crate::{BrokerReply, BrokerRequest, ServiceKind, TestAction};

/// Marker type for [`crate::Protocol`].
#[derive(Debug)]
pub struct Nbd;

impl_protocol!(Nbd, ServiceKind::Nbd, NbdStartup, CoreToNbd, NbdToCore);

/// Configuration sent in `Startup` (no fields yet; see module docs).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
pub struct NbdStartup {}

/// Core -> svc-nbd.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
pub enum CoreToNbd {
    /// Configuration; the first message after the handshake.
    Startup(NbdStartup),
    /// Finish and exit 0.
    Shutdown,
    /// Test-only misbehaviour.
    TestTrigger(TestAction),
    /// Liveness probe; answered with `Pong` of the same value.
    Ping(u64),
    /// Answer to a `Broker` request.
    BrokerReply(BrokerReply),
}

/// svc-nbd -> core. Untrusted: validated by the core.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
pub enum NbdToCore {
    /// Startup done.
    Ready,
    /// Startup impossible; the service exits.
    StartupFailed { reason: String },
    /// Answer to `Ping`.
    Pong(u64),
    /// Ask the core for an fd.
    Broker(BrokerRequest),
}
