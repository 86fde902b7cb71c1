//! The handshake every service connection starts with.
//!
//! ```text
//!   service                                   core
//!   hello_service(kind)                       hello_core(expected)
//!     --- Hello { protocol_version, service } --->
//!                                             version == ours and
//!                                             service == expected ?
//!     <-- HelloReply { protocol_version, expected, accepted } ---
//!   Ok(()) if accepted                        Ok(()) if accepted
//! ```
//!
//! Both messages start with the protocol version, and the version is
//! decoded and compared *before* the rest, so a peer of another version
//! gets [`IpcError::VersionMismatch`] (not a decode error) on both sides
//! even if later fields changed shape. A kind mismatch is
//! [`IpcError::KindMismatch`] on both sides. Both sides wait at most
//! [`HELLO_TIMEOUT`] for the other.

use std::os::fd::OwnedFd;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Channel, IpcError, ServiceKind, PROTOCOL_VERSION};

/// How long each side waits for the other's handshake message.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(30);

/// The first message on every channel, service -> core.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
pub struct Hello {
    /// [`PROTOCOL_VERSION`] of the service binary. Must stay the first field.
    pub protocol_version: u32,
    /// What the service is.
    pub service: ServiceKind,
}

/// The core's answer to [`Hello`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
pub struct HelloReply {
    /// [`PROTOCOL_VERSION`] of the core. Must stay the first field.
    pub protocol_version: u32,
    /// The kind the core expected on this channel.
    pub expected: ServiceKind,
    /// True when the core accepted the service.
    pub accepted: bool,
}

/// Reads the leading protocol version, then (if it matches ours) the rest.
/// Any fds attached are closed.
fn decode_versioned<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    fds: Vec<OwnedFd>,
) -> Result<Result<T, u32>, IpcError> {
    drop(fds);
    let (peer_version, _) = postcard::take_from_bytes::<u32>(bytes).map_err(IpcError::Decode)?;
    if peer_version != PROTOCOL_VERSION {
        return Ok(Err(peer_version));
    }
    crate::from_bytes::<T>(bytes, Vec::new()).map(Ok)
}

/// Decodes a [`Hello`] from untrusted bytes: the core-side decoder, exposed
/// for fuzzing. A different version is [`IpcError::VersionMismatch`].
pub fn decode_hello(bytes: &[u8], fds: Vec<OwnedFd>) -> Result<Hello, IpcError> {
    match decode_versioned::<Hello>(bytes, fds)? {
        Ok(h) => Ok(h),
        Err(peer) => Err(IpcError::VersionMismatch {
            local: PROTOCOL_VERSION,
            peer,
        }),
    }
}

/// Core side: waits for the service's [`Hello`], checks version and kind,
/// and answers. On a mismatch the service is told (so it reports the same
/// error) and the error is returned here too.
pub fn hello_core(ch: &Channel, expect: ServiceKind) -> Result<(), IpcError> {
    hello_core_timeout(ch, expect, HELLO_TIMEOUT)
}

/// [`hello_core`] with an explicit timeout.
pub fn hello_core_timeout(
    ch: &Channel,
    expect: ServiceKind,
    timeout: Duration,
) -> Result<(), IpcError> {
    let got = ch.recv_decoded_timeout(timeout, |bytes, fds| {
        // A wrong version is still answered, so keep it as a value here.
        match decode_hello(bytes, fds) {
            Ok(h) => Ok(Ok(h)),
            Err(IpcError::VersionMismatch { peer, .. }) => Ok(Err(peer)),
            Err(e) => Err(e),
        }
    });
    let reject = |accepted: bool| HelloReply {
        protocol_version: PROTOCOL_VERSION,
        expected: expect,
        accepted,
    };
    let hello = match got {
        Ok(Some(Ok(h))) => h,
        Ok(Some(Err(peer))) => {
            // Best effort: the peer may already be gone.
            let _ = ch.send_timeout(&reject(false), Duration::from_secs(1));
            return Err(IpcError::VersionMismatch {
                local: PROTOCOL_VERSION,
                peer,
            });
        }
        Ok(None) => return Err(IpcError::Timeout),
        Err(IpcError::Decode(_) | IpcError::TrailingBytes(_)) => {
            let _ = ch.send_timeout(&reject(false), Duration::from_secs(1));
            return Err(IpcError::Handshake(
                "malformed Hello (unknown service kind?)",
            ));
        }
        Err(e) => return Err(e),
    };
    if hello.service != expect {
        let _ = ch.send_timeout(&reject(false), Duration::from_secs(1));
        return Err(IpcError::KindMismatch {
            expected: expect,
            got: hello.service,
        });
    }
    ch.send_timeout(&reject(true), timeout)
}

/// Service side: announces `kind` and waits for the core's verdict.
pub fn hello_service(ch: &Channel, kind: ServiceKind) -> Result<(), IpcError> {
    hello_service_timeout(ch, kind, HELLO_TIMEOUT)
}

/// [`hello_service`] with an explicit timeout.
pub fn hello_service_timeout(
    ch: &Channel,
    kind: ServiceKind,
    timeout: Duration,
) -> Result<(), IpcError> {
    ch.send_timeout(
        &Hello {
            protocol_version: PROTOCOL_VERSION,
            service: kind,
        },
        timeout,
    )?;
    let reply = ch
        .recv_decoded_timeout(timeout, decode_versioned::<HelloReply>)?
        .ok_or(IpcError::Timeout)?;
    match reply {
        Err(peer) => Err(IpcError::VersionMismatch {
            local: PROTOCOL_VERSION,
            peer,
        }),
        Ok(r) if !r.accepted && r.expected != kind => Err(IpcError::KindMismatch {
            expected: r.expected,
            got: kind,
        }),
        Ok(r) if !r.accepted => Err(IpcError::Handshake("the core rejected this service")),
        Ok(r) if r.expected != kind => Err(IpcError::Handshake(
            "the core accepted a different service kind",
        )),
        Ok(_) => Ok(()),
    }
}
