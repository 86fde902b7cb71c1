//! Types every service family shares: the service kinds, the test-only
//! trigger, byte buffers, and the [`Protocol`] trait that lets the
//! supervisor drive any service generically.
//!
//! Every `CoreToX` enum starts with the same common variants, in the same
//! order: `Startup(XStartup)`, `Shutdown`, `TestTrigger(TestAction)`,
//! `Ping(u64)`, `BrokerReply(BrokerReply)`. Every `XToCore` enum starts with
//! `Ready`, `StartupFailed { reason }`, `Pong(u64)`, `Broker(BrokerRequest)`.
//!
//! ```text
//!   core                               service
//!    |  <- Hello { version, kind }        |   (crate::hello)
//!    |  -> HelloReply { accepted }        |
//!    |  -> Startup(config)                |
//!    |  <- Ready | StartupFailed{reason}  |
//!    |  <-> family messages, Ping/Pong    |
//!    |  <- Broker(req) / -> BrokerReply   |   (crate::broker)
//!    |  -> Shutdown                       |   service exits 0
//! ```
//! Services do not log over IPC: they write `tracing` output to stderr.

use std::fmt;
use std::str::FromStr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Which service a channel talks to. Sent in [`crate::Hello`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
pub enum ServiceKind {
    /// `svc-vnc`: RFB server ([`crate::vnc`]).
    Vnc,
    /// `svc-nbd`: NBD server and client ([`crate::nbd`]).
    Nbd,
    /// `svc-migrate`: live migration ([`crate::migrate`]).
    Migrate,
    /// `svc-chardev`: socket character device ([`crate::chardev`]).
    Chardev,
    /// The idle mode of a service binary, used by sandbox and supervisor
    /// tests ([`crate::idle`]).
    Idle,
}

impl ServiceKind {
    /// Every kind, in wire order.
    pub const ALL: [ServiceKind; 5] = [
        ServiceKind::Vnc,
        ServiceKind::Nbd,
        ServiceKind::Migrate,
        ServiceKind::Chardev,
        ServiceKind::Idle,
    ];

    /// Short lower-case name (`"vnc"`, `"nbd"`, `"migrate"`, `"chardev"`,
    /// `"idle"`), as used on command lines.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceKind::Vnc => "vnc",
            ServiceKind::Nbd => "nbd",
            ServiceKind::Migrate => "migrate",
            ServiceKind::Chardev => "chardev",
            ServiceKind::Idle => "idle",
        }
    }
}

impl fmt::Display for ServiceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error of [`ServiceKind::from_str`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown service kind (expected vnc, nbd, migrate, chardev or idle)")]
pub struct UnknownServiceKind;

impl FromStr for ServiceKind {
    type Err = UnknownServiceKind;
    fn from_str(s: &str) -> Result<ServiceKind, UnknownServiceKind> {
        ServiceKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or(UnknownServiceKind)
    }
}

/// Test-only misbehaviour the core can ask a service for, to prove that the
/// sandbox and the supervisor cope (`TestTrigger` in every family).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
pub enum TestAction {
    /// Make a syscall the seccomp filter forbids (expect death by SIGSYS).
    ForbiddenSyscall,
    /// Panic (expect a non-zero exit).
    Panic,
    /// Stop answering, forever (expect the supervisor's liveness check).
    Hang,
}

/// A byte buffer that encodes compactly (postcard byte string, not a
/// sequence of integers) and whose `Debug` prints only its length.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
#[serde(transparent)]
pub struct Bytes(#[serde(with = "serde_bytes")] pub Vec<u8>);

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bytes({} bytes)", self.0.len())
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Bytes {
        Bytes(v)
    }
}

impl From<&[u8]> for Bytes {
    fn from(v: &[u8]) -> Bytes {
        Bytes(v.to_vec())
    }
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

/// Secret bytes (private keys, passwords): zeroed when dropped, redacted in
/// `Debug`. The channel also zeroes its encode and receive buffers after
/// every message, so the secret leaves no copy behind in them.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(transparent)]
pub struct SecretBytes(#[serde(with = "serde_bytes")] Vec<u8>);

impl SecretBytes {
    /// Takes ownership of `bytes` (no copy is left behind).
    pub fn new(bytes: Vec<u8>) -> SecretBytes {
        SecretBytes(bytes)
    }

    /// The secret. Keep the borrow short and do not copy it around.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<u8>> for SecretBytes {
    fn from(v: Vec<u8>) -> SecretBytes {
        SecretBytes(v)
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBytes(<redacted>)")
    }
}

#[cfg(feature = "proptest")]
impl proptest::arbitrary::Arbitrary for SecretBytes {
    type Parameters = ();
    type Strategy = proptest::strategy::BoxedStrategy<SecretBytes>;
    fn arbitrary_with(_: ()) -> Self::Strategy {
        use proptest::strategy::Strategy;
        proptest::collection::vec(proptest::arbitrary::any::<u8>(), 0..256)
            .prop_map(SecretBytes)
            .boxed()
    }
}

/// One core<->service protocol family, so supervisor code can be generic
/// over services. Implemented by the marker types [`crate::chardev::Chardev`],
/// [`crate::nbd::Nbd`], [`crate::vnc::Vnc`], [`crate::migrate::Migrate`] and
/// [`crate::idle::Idle`].
pub trait Protocol {
    /// The kind the service announces in its [`crate::Hello`].
    const KIND: ServiceKind;
    /// Configuration sent once, right after the handshake.
    type Startup: Serialize + DeserializeOwned + fmt::Debug + Send;
    /// Messages from the core to the service (`CoreToX`).
    type ToService: Serialize + DeserializeOwned + fmt::Debug + Send;
    /// Messages from the service to the core (`XToCore`). Untrusted: the
    /// core validates every one.
    type ToCore: Serialize + DeserializeOwned + fmt::Debug + Send;

    /// `Startup(config)`.
    fn startup(config: Self::Startup) -> Self::ToService;
    /// `Shutdown`: the service finishes and exits 0.
    fn shutdown() -> Self::ToService;
    /// `Ping(n)`: the service answers `Pong(n)`.
    fn ping(n: u64) -> Self::ToService;
    /// `TestTrigger(action)`.
    fn test_trigger(action: TestAction) -> Self::ToService;
    /// `BrokerReply(reply)`.
    fn broker_reply(reply: crate::BrokerReply) -> Self::ToService;
    /// The common part of a message from the service, if it is one.
    fn common(msg: &Self::ToCore) -> Option<CommonToCore<'_>>;
}

/// The service->core messages every family has, borrowed out of a family
/// message by [`Protocol::common`].
#[derive(Debug, PartialEq)]
pub enum CommonToCore<'a> {
    /// `Ready`: startup done.
    Ready,
    /// `StartupFailed { reason }`: the service could not start and will exit.
    StartupFailed(&'a str),
    /// `Pong(n)`.
    Pong(u64),
    /// `Broker(request)`.
    Broker(&'a crate::BrokerRequest),
}

/// Implements [`Protocol`] for a family whose enums follow the common
/// variant layout described in the module docs.
macro_rules! impl_protocol {
    ($marker:ident, $kind:expr, $startup:ty, $to_service:ident, $to_core:ident) => {
        impl $crate::Protocol for $marker {
            const KIND: $crate::ServiceKind = $kind;
            type Startup = $startup;
            type ToService = $to_service;
            type ToCore = $to_core;
            fn startup(config: $startup) -> $to_service {
                $to_service::Startup(config)
            }
            fn shutdown() -> $to_service {
                $to_service::Shutdown
            }
            fn ping(n: u64) -> $to_service {
                $to_service::Ping(n)
            }
            fn test_trigger(action: $crate::TestAction) -> $to_service {
                $to_service::TestTrigger(action)
            }
            fn broker_reply(reply: $crate::BrokerReply) -> $to_service {
                $to_service::BrokerReply(reply)
            }
            fn common(msg: &$to_core) -> Option<$crate::CommonToCore<'_>> {
                match msg {
                    $to_core::Ready => Some($crate::CommonToCore::Ready),
                    $to_core::StartupFailed { reason } => {
                        Some($crate::CommonToCore::StartupFailed(reason))
                    }
                    $to_core::Pong(n) => Some($crate::CommonToCore::Pong(*n)),
                    $to_core::Broker(req) => Some($crate::CommonToCore::Broker(req)),
                    #[allow(unreachable_patterns)]
                    _ => None,
                }
            }
        }
    };
}
pub(crate) use impl_protocol;
