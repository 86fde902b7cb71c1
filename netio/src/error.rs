//! Readable errors for channel set-up and I/O, one variant per cause a user can
//! act on. Certificate problems are reported on the side that checked the
//! certificate (`Untrusted`, `Revoked`, `Expired`, `HostnameMismatch`,
//! `MissingClientCert`); the other side sees `PeerRejected` with the TLS alert.

use std::time::Duration;

use rustls::{AlertDescription, CertificateError};

/// Why a channel failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("TLS handshake timed out after {0:?}")]
    HandshakeTimeout(Duration),
    #[error("the peer closed the connection during the TLS handshake")]
    PeerClosed,
    #[error(
        "the peer is not speaking TLS (a plaintext client on a TLS port, or a plaintext server?)"
    )]
    NotTls,
    #[error(
        "the peer's certificate is not signed by a trusted CA (check ca-cert.pem on both sides)"
    )]
    Untrusted,
    #[error("the peer's certificate has been revoked (listed in ca-crl.pem)")]
    Revoked,
    #[error("the peer's certificate has expired")]
    Expired,
    #[error("the peer's certificate is not yet valid (check the clocks)")]
    NotYetValid,
    #[error(
        "the server certificate is not valid for host name '{0}' (use tls-hostname to override)"
    )]
    HostnameMismatch(String),
    #[error("the client sent no certificate, but verify-peer=on requires one")]
    MissingClientCert,
    #[error("the peer's certificate is not usable for this purpose (extended key usage)")]
    WrongPurpose,
    #[error("the TLS peer '{0}' is not authorized by tls-authz")]
    AuthzDenied(String),
    #[error("the peer presented no certificate, so tls-authz cannot authorize it")]
    AuthzNoIdentity,
    #[error("the peer rejected our TLS handshake: {0}")]
    PeerRejected(String),
    #[error("TLS error: {0}")]
    Tls(rustls::Error),
}

fn alert_text(a: AlertDescription) -> String {
    match a {
        AlertDescription::UnknownCA => {
            "unknown CA (our certificate is not signed by a CA the peer trusts)".into()
        }
        AlertDescription::CertificateRevoked => "our certificate has been revoked".into(),
        AlertDescription::CertificateExpired => {
            "our certificate has expired or is not yet valid".into()
        }
        AlertDescription::CertificateRequired => "the peer requires a client certificate".into(),
        AlertDescription::BadCertificate => {
            "bad certificate (e.g. not valid for the host name or purpose)".into()
        }
        AlertDescription::AccessDenied => "access denied".into(),
        AlertDescription::HandshakeFailure => {
            "handshake failure (no common protocol or cipher suite)".into()
        }
        AlertDescription::ProtocolVersion => "no common TLS protocol version".into(),
        other => format!("alert {other:?}"),
    }
}

impl NetError {
    /// Classify a rustls error; `server_name` is set on the client side.
    pub fn from_tls(e: rustls::Error, server_name: Option<&str>) -> Self {
        use CertificateError as C;
        match e {
            rustls::Error::InvalidCertificate(c) => match c {
                C::UnknownIssuer | C::BadSignature => NetError::Untrusted,
                C::Revoked => NetError::Revoked,
                C::Expired | C::ExpiredContext { .. } => NetError::Expired,
                C::NotValidYet | C::NotValidYetContext { .. } => NetError::NotYetValid,
                C::NotValidForName | C::NotValidForNameContext { .. } => {
                    NetError::HostnameMismatch(server_name.unwrap_or("?").to_string())
                }
                C::InvalidPurpose | C::InvalidPurposeContext { .. } => NetError::WrongPurpose,
                other => NetError::Tls(rustls::Error::InvalidCertificate(other)),
            },
            rustls::Error::NoCertificatesPresented => NetError::MissingClientCert,
            rustls::Error::AlertReceived(a) => NetError::PeerRejected(alert_text(a)),
            rustls::Error::InvalidMessage(_) => NetError::NotTls,
            other => NetError::Tls(other),
        }
    }

    /// As an `io::Error` (for `Read`/`Write` impls), keeping this as the inner error.
    pub fn into_io(self) -> std::io::Error {
        match self {
            NetError::Io(e) => e,
            other => std::io::Error::new(std::io::ErrorKind::InvalidData, other),
        }
    }
}
