//! Core <-> `svc-vnc` (RFB server).
//!
//! This family is deliberately small for now: startup, readiness, liveness
//! and brokering. The framebuffer, dirty-rectangle and input messages (VRAM memfd,
//! input events) are added by the VNC issue.

use serde::{Deserialize, Serialize};

use crate::common::impl_protocol;
use crate::{BrokerReply, BrokerRequest, ServiceKind, TestAction};

/// Marker type for [`crate::Protocol`].
#[derive(Debug)]
pub struct Vnc;

impl_protocol!(Vnc, ServiceKind::Vnc, VncStartup, CoreToVnc, VncToCore);

/// Configuration sent in `Startup` (no fields yet; see module docs).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
pub struct VncStartup {}

/// Core -> svc-vnc.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
pub enum CoreToVnc {
    /// Configuration; the first message after the handshake.
    Startup(VncStartup),
    /// Finish and exit 0.
    Shutdown,
    /// Test-only misbehaviour.
    TestTrigger(TestAction),
    /// Liveness probe; answered with `Pong` of the same value.
    Ping(u64),
    /// Answer to a `Broker` request.
    BrokerReply(BrokerReply),
}

/// svc-vnc -> core. Untrusted: validated by the core.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
pub enum VncToCore {
    /// Startup done.
    Ready,
    /// Startup impossible; the service exits.
    StartupFailed { reason: String },
    /// Answer to `Ping`.
    Pong(u64),
    /// Ask the core for an fd.
    Broker(BrokerRequest),
}
