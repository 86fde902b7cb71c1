//! TLS credentials and authorization rules as plain data, sent once to a
//! service in its `Startup` message.
//!
//! The core reads `tls-creds-x509` directories and `authz-*` objects (crate
//! `creds`) and turns them into these structs; the service builds its own
//! rustls configuration from them and never opens a file. Everything is DER:
//! the core converts PEM, so services need no PEM parser. The private key is
//! a [`SecretBytes`]: zeroed on drop and redacted in `Debug`.

use serde::{Deserialize, Serialize};

use crate::{Bytes, SecretBytes};

/// Which side of the TLS handshake the service plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
pub enum TlsEndpoint {
    /// Accepts TLS connections (`endpoint=server`).
    Server,
    /// Makes TLS connections (`endpoint=client`).
    Client,
}

/// Encoding of the private key's DER bytes (the three rustls accepts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
pub enum KeyFormat {
    /// PKCS#1 `RSAPrivateKey`.
    Pkcs1,
    /// PKCS#8 `PrivateKeyInfo` (unencrypted; the core decrypts
    /// `passwordid=` keys before sending).
    Pkcs8,
    /// SEC1 `ECPrivateKey`.
    Sec1,
}

/// A private key in DER.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
pub struct PrivateKey {
    /// How `der` is encoded.
    pub format: KeyFormat,
    /// The key itself.
    pub der: SecretBytes,
}

/// Everything a service needs to speak TLS on one endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
pub struct TlsMaterial {
    /// Server or client.
    pub endpoint: TlsEndpoint,
    /// `verify-peer=on`: a server requires and verifies a client
    /// certificate; a client always verifies the server.
    pub verify_peer: bool,
    /// Our certificate chain, DER, leaf first (`server-cert.pem` /
    /// `client-cert.pem`); empty for a client without a certificate.
    pub cert_chain: Vec<Bytes>,
    /// The key of `cert_chain[0]`; `None` when `cert_chain` is empty.
    pub private_key: Option<PrivateKey>,
    /// Trusted CA certificates, DER (`ca-cert.pem`).
    pub ca_certs: Vec<Bytes>,
    /// Certificate revocation lists, DER (`ca-crl.pem`), possibly empty.
    pub crls: Vec<Bytes>,
    /// Client side: the name to check the server certificate against (the
    /// host the user gave), if any.
    pub server_name: Option<String>,
}

/// Allow or deny.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
pub enum AuthzPolicy {
    /// Let the identity in.
    Allow,
    /// Refuse it.
    Deny,
}

/// How a rule's identity is compared with the peer's (x509 DN or username).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
pub enum AuthzMatch {
    /// Byte-for-byte equality.
    Exact,
    /// `fnmatch`-style glob (`*`, `?`, `[...]`), as QEMU's `authz-list`.
    Glob,
}

/// One rule of an access list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
pub struct AuthzRule {
    /// The identity (for TLS: the client certificate's distinguished name).
    pub identity: String,
    /// How `identity` is matched.
    pub format: AuthzMatch,
    /// What a match means.
    pub policy: AuthzPolicy,
}

/// An access list: the first matching rule decides, else `default_policy`.
///
/// `authz-simple,identity=X` is `{ default_policy: Deny, rules: [X exact
/// allow] }`; `authz-list` and `authz-listfile` map one to one (the core
/// reads the file). Matching itself lives with the TLS code (crate `netio`),
/// not here: these are plain data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
pub struct AuthzRules {
    /// Rules, in order.
    pub rules: Vec<AuthzRule>,
    /// Decision when no rule matches.
    pub default_policy: AuthzPolicy,
}
