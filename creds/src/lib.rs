//! `creds`: QEMU-compatible credential objects: `secret`, `tls-creds-x509`,
//! `authz-simple`/`authz-list`/`authz-listfile`, and the rustls configurations
//! built from them. Services only ever see ready material.
//!
//! The supervisor reads files (`secret::SecretSpec::load`,
//! `x509::X509Material::load`, `authz::ListFile::load`); services receive the
//! resulting serializable material and build rustls configurations from it with
//! no file access (`X509Material::server_config` / `client_config`).

mod asn1;
pub mod authz;
pub mod dn;
pub mod p8;
pub mod pem;
pub mod pki;
pub mod protected;
pub mod secret;
#[cfg(any(test, feature = "test-pki"))]
pub mod testpki;
pub mod wire;
pub mod x509;

/// The rustls the configurations are built for.
pub use rustls;
/// Re-exported so users name the same `Zeroizing` type as `SecretSpec::data`.
pub use zeroize;

pub use authz::{Authz, AuthzList, ListFile, Policy, Rule, RuleFormat};
pub use protected::ProtectedBytes;
pub use secret::{Secret, SecretError, SecretFormat, SecretSpec};
pub use x509::{ClientTls, Endpoint, PrivateKeyMaterial, X509Error, X509LoadOptions, X509Material};
