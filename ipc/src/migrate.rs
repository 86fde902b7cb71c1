//! Core <-> `svc-migrate` (outgoing and incoming live migration).
//!
//! This family is deliberately small for now: startup, readiness, liveness
//! and brokering. The migration messages (RAM memfd, dirty bitmaps,
//! device state, progress) are added by the migration issue.

use serde::{Deserialize, Serialize};

use crate::common::impl_protocol;
use crate::{BrokerReply, BrokerRequest, ServiceKind, TestAction};

/// Marker type for [`crate::Protocol`].
#[derive(Debug)]
pub struct Migrate;

impl_protocol!(
    Migrate,
    ServiceKind::Migrate,
    MigrateStartup,
    CoreToMigrate,
    MigrateToCore
);

/// Configuration sent in `Startup` (no fields yet; see module docs).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
pub struct MigrateStartup {}

/// Core -> svc-migrate.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
pub enum CoreToMigrate {
    /// Configuration; the first message after the handshake.
    Startup(MigrateStartup),
    /// Finish and exit 0.
    Shutdown,
    /// Test-only misbehaviour.
    TestTrigger(TestAction),
    /// Liveness probe; answered with `Pong` of the same value.
    Ping(u64),
    /// Answer to a `Broker` request.
    BrokerReply(BrokerReply),
}

/// svc-migrate -> core. Untrusted: validated by the core.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
pub enum MigrateToCore {
    /// Startup done.
    Ready,
    /// Startup impossible; the service exits.
    StartupFailed { reason: String },
    /// Answer to `Ping`.
    Pong(u64),
    /// Ask the core for an fd.
    Broker(BrokerRequest),
}
