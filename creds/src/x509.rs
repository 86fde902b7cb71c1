//! `tls-creds-x509`: load QEMU's credential directory into [`X509Material`]
//! (in the supervisor, which may read files) and build rustls configurations
//! from that material (in a service, which may not).
//!
//! ```text
//!   supervisor                                   service (sandboxed, no files)
//!   X509Material::load(dir, endpoint, ..) ─IPC─► material.server_config()
//!     reads ca-cert.pem, ca-crl.pem,               / material.client_config(host)
//!     {server,client}-{cert,key}.pem,            ─► Arc<rustls::ServerConfig|ClientConfig>
//!     decrypts the key with passwordid=,
//!     runs the sanity check
//! ```
//!
//! Directory layout (QEMU's names):
//!
//! | file | server endpoint | client endpoint |
//! |---|---|---|
//! | `ca-cert.pem` | required | required |
//! | `ca-crl.pem` | optional | optional |
//! | `server-cert.pem`, `server-key.pem` | required | — |
//! | `client-cert.pem`, `client-key.pem` | — | optional (needed when the server verifies peers) |
//! | `dh-params.pem` | accepted, unused | — |
//!
//! `dh-params.pem` and `priority=` are accepted for compatibility; rustls only
//! offers (EC)DHE with its own safe groups and cipher suites, so they change nothing.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, PrivatePkcs1KeyDer,
    PrivatePkcs8KeyDer, PrivateSec1KeyDer, ServerName, UnixTime,
};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use serde::{Deserialize, Serialize};
use x509_parser::prelude::*;
use zeroize::Zeroizing;

use crate::pem;
use crate::protected::ProtectedBytes;
use crate::secret::Secret;

/// QEMU's file names inside `dir=`.
pub const CA_CERT: &str = "ca-cert.pem";
pub const CA_CRL: &str = "ca-crl.pem";
pub const SERVER_CERT: &str = "server-cert.pem";
pub const SERVER_KEY: &str = "server-key.pem";
pub const CLIENT_CERT: &str = "client-cert.pem";
pub const CLIENT_KEY: &str = "client-key.pem";
pub const DH_PARAMS: &str = "dh-params.pem";

/// Largest credential file read (certificates and CRLs are a few KiB).
const MAX_FILE: u64 = 4 << 20;

/// `endpoint=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Endpoint {
    Server,
    Client,
}

impl Endpoint {
    /// Parse QEMU's `endpoint=` value.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "server" => Some(Endpoint::Server),
            "client" => Some(Endpoint::Client),
            _ => None,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Endpoint::Server => "server",
            Endpoint::Client => "client",
        }
    }
}

/// Encoding of a private key's DER bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyKind {
    /// `PRIVATE KEY` (or a decrypted `ENCRYPTED PRIVATE KEY`).
    Pkcs8,
    /// `RSA PRIVATE KEY`.
    Pkcs1,
    /// `EC PRIVATE KEY`.
    Sec1,
}

/// A private key: kept in a [`ProtectedBytes`] region (not in core dumps,
/// zeroized on drop), redacted in `Debug`, serialized as its bytes (it travels
/// once, in the service's startup message).
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PrivateKeyMaterial {
    pub kind: KeyKind,
    pub der: ProtectedBytes,
}

impl fmt::Debug for PrivateKeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PrivateKeyMaterial({:?}, <redacted, {} bytes>)",
            self.kind,
            self.der.len()
        )
    }
}

impl PrivateKeyMaterial {
    /// A view of the key for rustls that borrows our zeroizing buffer, so no
    /// unzeroized copy of the DER is left on the heap.
    fn borrowed(&self) -> PrivateKeyDer<'_> {
        let bytes = &self.der[..];
        match self.kind {
            KeyKind::Pkcs8 => PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(bytes)),
            KeyKind::Pkcs1 => PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(bytes)),
            KeyKind::Sec1 => PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(bytes)),
        }
    }

    /// The rustls signing key (ring).
    fn signing_key(&self) -> Result<Arc<dyn rustls::sign::SigningKey>, rustls::Error> {
        rustls::crypto::ring::sign::any_supported_type(&self.borrowed())
    }
}

/// Everything a service needs to run TLS for one `tls-creds-x509` object, with
/// no file paths: DER certificates, the key, CA roots, CRLs and the policy.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct X509Material {
    pub endpoint: Endpoint,
    /// `verify-peer=` (QEMU default on). Server: require and check a client
    /// certificate. Client: check the server certificate and host name.
    pub verify_peer: bool,
    /// Our certificate (first) and any intermediates. Empty for a client without one.
    pub cert_chain: Vec<Vec<u8>>,
    /// Our private key (present exactly when `cert_chain` is non-empty).
    pub key: Option<PrivateKeyMaterial>,
    /// Trusted CA certificates from `ca-cert.pem`.
    pub ca_certs: Vec<Vec<u8>>,
    /// CRLs from `ca-crl.pem`.
    pub crls: Vec<Vec<u8>>,
}

impl fmt::Debug for X509Material {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("X509Material")
            .field("endpoint", &self.endpoint)
            .field("verify_peer", &self.verify_peer)
            .field(
                "cert_chain",
                &format_args!("{} certs", self.cert_chain.len()),
            )
            .field("key", &self.key)
            .field("ca_certs", &format_args!("{} certs", self.ca_certs.len()))
            .field("crls", &format_args!("{} CRLs", self.crls.len()))
            .finish()
    }
}

/// Options for [`X509Material::load_with`].
#[derive(Clone, Debug)]
pub struct X509LoadOptions<'a> {
    pub dir: &'a Path,
    pub endpoint: Endpoint,
    pub verify_peer: bool,
    /// The decrypted `passwordid=` secret for an encrypted PKCS#8 key.
    pub password: Option<&'a Secret>,
    /// Check validity dates, CA flags, key usage and the chain at load time
    /// (QEMU's `qcrypto_tls_creds_x509_sanity_check`). Default true.
    pub sanity_check: bool,
}

/// Why credentials could not be loaded or used. Messages name the file.
#[derive(Debug, thiserror::Error)]
pub enum X509Error {
    #[error("Unable to access credentials {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("Unable to read {path}: {reason}")]
    BadFile { path: String, reason: String },
    #[error("No certificate found in {0}")]
    NoCertificate(String),
    #[error("No CRL found in {0}")]
    NoCrl(String),
    #[error("No private key found in {0}")]
    NoKey(String),
    #[error("Private key {0} is encrypted: give the password with passwordid=SECRET-ID")]
    KeyNeedsPassword(String),
    #[error("Cannot decrypt private key {path}: {reason}")]
    KeyDecrypt { path: String, reason: String },
    #[error("Certificate {cert} and key {key} do not match")]
    KeyMismatch { cert: String, key: String },
    #[error("{0} and {1} must both be present or both absent")]
    CertKeyPair(String, String),
    #[error("The certificate {0} has expired")]
    Expired(String),
    #[error("The certificate {0} is not yet active")]
    NotYetActive(String),
    #[error("The certificate {0} basic constraints do not show a CA")]
    NotCa(String),
    #[error("The certificate {0} basic constraints show a CA, but we need one for a {1}")]
    UnexpectedCa(String, &'static str),
    #[error("Certificate {0} usage does not permit certificate signing")]
    NoCertSign(String),
    #[error("Certificate {0} usage does not permit digital signature")]
    NoDigitalSignature(String),
    #[error("Certificate {0} usage does not permit key encipherment")]
    NoKeyEncipherment(String),
    #[error("Certificate {0} purpose does not allow use with a TLS {1}")]
    WrongPurpose(String, &'static str),
    #[error("Our own certificate {cert} failed validation against {ca}: {reason}")]
    ChainInvalid {
        cert: String,
        ca: String,
        reason: String,
    },
    #[error("Invalid CRL in {path}: {reason}")]
    BadCrl { path: String, reason: String },
    #[error("Invalid TLS host name '{0}'")]
    BadHostname(String),
    #[error("These credentials are for a TLS {have}, not a {want}")]
    WrongEndpoint {
        have: &'static str,
        want: &'static str,
    },
    #[error("Cannot build TLS configuration: {0}")]
    Config(String),
}

fn read_limited(path: &Path) -> Result<Zeroizing<Vec<u8>>, X509Error> {
    use std::io::Read;
    let shown = path.display().to_string();
    let f = std::fs::File::open(path).map_err(|e| X509Error::Unreadable {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    let mut buf = Zeroizing::new(Vec::new());
    f.take(MAX_FILE + 1)
        .read_to_end(&mut buf)
        .map_err(|e| X509Error::Unreadable {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
    if buf.len() as u64 > MAX_FILE {
        return Err(X509Error::BadFile {
            path: shown,
            reason: "file too large".into(),
        });
    }
    Ok(buf)
}

fn pem_blocks(path: &Path) -> Result<Vec<pem::PemBlock>, X509Error> {
    let text = read_limited(path)?;
    pem::parse(&text).map_err(|e| X509Error::BadFile {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

fn load_certs(path: &Path) -> Result<Vec<Vec<u8>>, X509Error> {
    let certs: Vec<Vec<u8>> = pem_blocks(path)?
        .into_iter()
        .filter(|b| b.label == "CERTIFICATE" || b.label == "X509 CERTIFICATE")
        .map(|b| b.der.to_vec())
        .collect();
    if certs.is_empty() {
        return Err(X509Error::NoCertificate(path.display().to_string()));
    }
    for der in &certs {
        X509Certificate::from_der(der).map_err(|e| X509Error::BadFile {
            path: path.display().to_string(),
            reason: format!("invalid certificate: {e}"),
        })?;
    }
    Ok(certs)
}

fn load_crls(path: &Path) -> Result<Vec<Vec<u8>>, X509Error> {
    let crls: Vec<Vec<u8>> = pem_blocks(path)?
        .into_iter()
        .filter(|b| b.label == "X509 CRL")
        .map(|b| b.der.to_vec())
        .collect();
    if crls.is_empty() {
        return Err(X509Error::NoCrl(path.display().to_string()));
    }
    for der in &crls {
        x509_parser::revocation_list::CertificateRevocationList::from_der(der).map_err(|e| {
            X509Error::BadCrl {
                path: path.display().to_string(),
                reason: e.to_string(),
            }
        })?;
    }
    Ok(crls)
}

fn load_key(path: &Path, password: Option<&Secret>) -> Result<PrivateKeyMaterial, X509Error> {
    let shown = path.display().to_string();
    for block in pem_blocks(path)? {
        let kind = match block.label.as_str() {
            "PRIVATE KEY" => KeyKind::Pkcs8,
            "RSA PRIVATE KEY" => KeyKind::Pkcs1,
            "EC PRIVATE KEY" => KeyKind::Sec1,
            "ENCRYPTED PRIVATE KEY" => {
                let password =
                    password.ok_or_else(|| X509Error::KeyNeedsPassword(shown.clone()))?;
                let der = crate::p8::decrypt(&block.der, password.expose()).map_err(|e| {
                    X509Error::KeyDecrypt {
                        path: shown.clone(),
                        reason: e.to_string(),
                    }
                })?;
                return Ok(repaired(PrivateKeyMaterial {
                    kind: KeyKind::Pkcs8,
                    der: der.into(),
                }));
            }
            _ => continue,
        };
        return Ok(repaired(PrivateKeyMaterial {
            kind,
            der: block.der.into(),
        }));
    }
    Err(X509Error::NoKey(shown))
}

/// Fix gnutls' over-long EC scalars so `ring` accepts the key.
fn repaired(key: PrivateKeyMaterial) -> PrivateKeyMaterial {
    let fixed = match key.kind {
        KeyKind::Sec1 => crate::p8::repair_ec_key(&key.der, false),
        KeyKind::Pkcs8 => crate::p8::repair_ec_key(&key.der, true),
        KeyKind::Pkcs1 => None,
    };
    match fixed {
        Some(der) => PrivateKeyMaterial {
            kind: key.kind,
            der: der.into(),
        },
        None => key,
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Certificate validity window check.
fn check_times(cert: &X509Certificate<'_>, file: &str) -> Result<(), X509Error> {
    let now = ASN1Time::now();
    if cert.validity().not_after < now {
        return Err(X509Error::Expired(file.to_string()));
    }
    if cert.validity().not_before > now {
        return Err(X509Error::NotYetActive(file.to_string()));
    }
    Ok(())
}

/// QEMU's basic-constraints, key-usage and purpose checks for one certificate.
/// Stricter than QEMU in one way: a present extended key usage without the
/// needed purpose is an error even when not critical (rustls would refuse the
/// certificate at handshake time anyway).
fn check_cert(der: &[u8], file: &str, role: Role) -> Result<(), X509Error> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| X509Error::BadFile {
        path: file.to_string(),
        reason: e.to_string(),
    })?;
    check_times(&cert, file)?;
    let is_ca = matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
    match role {
        Role::Ca if !is_ca => return Err(X509Error::NotCa(file.to_string())),
        Role::Server if is_ca => return Err(X509Error::UnexpectedCa(file.to_string(), "server")),
        Role::Client if is_ca => return Err(X509Error::UnexpectedCa(file.to_string(), "client")),
        _ => {}
    }
    if let Ok(Some(ku)) = cert.key_usage() {
        let (usage, critical) = (ku.value, ku.critical);
        match role {
            Role::Ca => {
                if !usage.key_cert_sign() {
                    return Err(X509Error::NoCertSign(file.to_string()));
                }
            }
            Role::Server | Role::Client => {
                if !usage.digital_signature() {
                    return Err(X509Error::NoDigitalSignature(file.to_string()));
                }
                // As QEMU: key encipherment is only demanded when the extension is
                // critical (it is meaningless for ECDSA keys and unused by TLS 1.3).
                if critical && !usage.key_encipherment() && is_rsa(&cert) {
                    return Err(X509Error::NoKeyEncipherment(file.to_string()));
                }
            }
        }
    }
    if let Ok(Some(eku)) = cert.extended_key_usage() {
        let eku = eku.value;
        match role {
            Role::Server if !(eku.server_auth || eku.any) => {
                return Err(X509Error::WrongPurpose(file.to_string(), "server"))
            }
            Role::Client if !(eku.client_auth || eku.any) => {
                return Err(X509Error::WrongPurpose(file.to_string(), "client"))
            }
            _ => {}
        }
    }
    Ok(())
}

fn is_rsa(cert: &X509Certificate<'_>) -> bool {
    cert.public_key().algorithm.algorithm.to_id_string() == "1.2.840.113549.1.1.1"
}

#[derive(Clone, Copy)]
enum Role {
    Ca,
    Server,
    Client,
}

fn root_store(ca_certs: &[Vec<u8>]) -> Result<RootCertStore, X509Error> {
    let mut roots = RootCertStore::empty();
    for der in ca_certs {
        roots
            .add(CertificateDer::from(der.clone()))
            .map_err(|e| X509Error::Config(format!("unusable CA certificate: {e}")))?;
    }
    Ok(roots)
}

fn crl_ders(crls: &[Vec<u8>]) -> Vec<CertificateRevocationListDer<'static>> {
    crls.iter()
        .map(|c| CertificateRevocationListDer::from(c.clone()))
        .collect()
}

impl X509Material {
    /// Read a `tls-creds-x509` directory (QEMU default options: sanity check on).
    pub fn load(
        dir: &Path,
        endpoint: Endpoint,
        verify_peer: bool,
        password: Option<&Secret>,
    ) -> Result<Self, X509Error> {
        Self::load_with(&X509LoadOptions {
            dir,
            endpoint,
            verify_peer,
            password,
            sanity_check: true,
        })
    }

    /// Read a `tls-creds-x509` directory with explicit options.
    pub fn load_with(opts: &X509LoadOptions<'_>) -> Result<Self, X509Error> {
        let path = |name: &str| -> PathBuf { opts.dir.join(name) };
        let ca_path = path(CA_CERT);
        let ca_certs = load_certs(&ca_path)?;
        let crl_path = path(CA_CRL);
        let crls = if crl_path.exists() {
            load_crls(&crl_path)?
        } else {
            Vec::new()
        };
        let (cert_name, key_name) = match opts.endpoint {
            Endpoint::Server => (SERVER_CERT, SERVER_KEY),
            Endpoint::Client => (CLIENT_CERT, CLIENT_KEY),
        };
        let (cert_path, key_path) = (path(cert_name), path(key_name));
        let (cert_chain, key) = match (cert_path.exists(), key_path.exists(), opts.endpoint) {
            (true, true, _) => (
                load_certs(&cert_path)?,
                Some(load_key(&key_path, opts.password)?),
            ),
            (false, false, Endpoint::Client) => (Vec::new(), None),
            (false, _, Endpoint::Server) => {
                return Err(X509Error::Unreadable {
                    path: cert_path.display().to_string(),
                    reason: "No such file or directory (required for endpoint=server)".into(),
                })
            }
            (true, false, Endpoint::Server) => {
                return Err(X509Error::Unreadable {
                    path: key_path.display().to_string(),
                    reason: "No such file or directory (required for endpoint=server)".into(),
                })
            }
            _ => {
                return Err(X509Error::CertKeyPair(
                    cert_path.display().to_string(),
                    key_path.display().to_string(),
                ))
            }
        };
        if path(DH_PARAMS).exists() {
            tracing::debug!(
                "{DH_PARAMS} present: accepted, unused (rustls uses its own ECDHE groups)"
            );
        }
        let material = X509Material {
            endpoint: opts.endpoint,
            verify_peer: opts.verify_peer,
            cert_chain,
            key,
            ca_certs,
            crls,
        };
        if let Some(key) = &material.key {
            material.check_key_matches(key, &cert_path, &key_path)?;
        }
        if opts.sanity_check {
            material.sanity_check(&ca_path, &cert_path, &crl_path)?;
        }
        Ok(material)
    }

    fn check_key_matches(
        &self,
        key: &PrivateKeyMaterial,
        cert: &Path,
        key_path: &Path,
    ) -> Result<(), X509Error> {
        let signing = key.signing_key().map_err(|e| X509Error::BadFile {
            path: key_path.display().to_string(),
            reason: format!("unusable private key: {e}"),
        })?;
        let (_, parsed) =
            X509Certificate::from_der(&self.cert_chain[0]).map_err(|e| X509Error::BadFile {
                path: cert.display().to_string(),
                reason: e.to_string(),
            })?;
        match signing.public_key() {
            Some(spki) if spki.as_ref() != parsed.public_key().raw => Err(X509Error::KeyMismatch {
                cert: cert.display().to_string(),
                key: key_path.display().to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// QEMU's creation-time checks: CA certificates are CAs and valid now; our own
    /// certificate is valid now, has the right usage/purpose, and chains to the CA
    /// (and is not revoked by `ca-crl.pem`).
    fn sanity_check(
        &self,
        ca_path: &Path,
        cert_path: &Path,
        crl_path: &Path,
    ) -> Result<(), X509Error> {
        let ca_name = ca_path.display().to_string();
        for der in &self.ca_certs {
            check_cert(der, &ca_name, Role::Ca)?;
        }
        if let Some(leaf) = self.cert_chain.first() {
            let cert_name = cert_path.display().to_string();
            let role = match self.endpoint {
                Endpoint::Server => Role::Server,
                Endpoint::Client => Role::Client,
            };
            check_cert(leaf, &cert_name, role)?;
            let roots = Arc::new(root_store(&self.ca_certs)?);
            let crls = crl_ders(&self.crls);
            let leaf = CertificateDer::from(leaf.clone());
            let inter: Vec<CertificateDer<'static>> = self.cert_chain[1..]
                .iter()
                .map(|c| CertificateDer::from(c.clone()))
                .collect();
            let fail = |reason: String| X509Error::ChainInvalid {
                cert: cert_name.clone(),
                ca: ca_name.clone(),
                reason,
            };
            let bad_crl = |e: rustls::server::VerifierBuilderError| X509Error::BadCrl {
                path: crl_path.display().to_string(),
                reason: e.to_string(),
            };
            match self.endpoint {
                Endpoint::Client => {
                    let v = WebPkiClientVerifier::builder_with_provider(roots, provider())
                        .with_crls(crls)
                        .allow_unknown_revocation_status()
                        .build()
                        .map_err(bad_crl)?;
                    v.verify_client_cert(&leaf, &inter, UnixTime::now())
                        .map_err(|e| fail(describe(&e)))?;
                }
                Endpoint::Server => {
                    let v = WebPkiServerVerifier::builder_with_provider(roots, provider())
                        .with_crls(crls)
                        .allow_unknown_revocation_status()
                        .build()
                        .map_err(bad_crl)?;
                    // Any name: only the chain matters here; name mismatch is ignored.
                    let name = ServerName::try_from("sanity-check.invalid").expect("static name");
                    match v.verify_server_cert(&leaf, &inter, &name, &[], UnixTime::now()) {
                        Ok(_) => {}
                        Err(rustls::Error::InvalidCertificate(
                            rustls::CertificateError::NotValidForName
                            | rustls::CertificateError::NotValidForNameContext { .. },
                        )) => {}
                        Err(e) => return Err(fail(describe(&e))),
                    }
                }
            }
        }
        Ok(())
    }

    /// Our certificate chain with its signing key, as a rustls resolver.
    fn certified(&self) -> Result<Option<Arc<SingleCertAndKey>>, X509Error> {
        match (&self.key, self.cert_chain.is_empty()) {
            (Some(key), false) => {
                let chain = self
                    .cert_chain
                    .iter()
                    .map(|c| CertificateDer::from(c.clone()))
                    .collect();
                let signing = key
                    .signing_key()
                    .map_err(|e| X509Error::Config(format!("unusable private key: {e}")))?;
                let certified = CertifiedKey::new(chain, signing);
                match certified.keys_match() {
                    Ok(())
                    | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
                    Err(e) => return Err(X509Error::Config(e.to_string())),
                }
                Ok(Some(Arc::new(SingleCertAndKey::from(certified))))
            }
            (None, true) => Ok(None),
            _ => Err(X509Error::Config(
                "certificate chain and key must come together".into(),
            )),
        }
    }

    /// Build the rustls server configuration. Pure: no file access.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, X509Error> {
        if self.endpoint != Endpoint::Server {
            return Err(X509Error::WrongEndpoint {
                have: self.endpoint.name(),
                want: "server",
            });
        }
        let cfg_err = |e: rustls::Error| X509Error::Config(e.to_string());
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(cfg_err)?;
        let builder = if self.verify_peer {
            let verifier = WebPkiClientVerifier::builder_with_provider(
                Arc::new(root_store(&self.ca_certs)?),
                provider(),
            )
            .with_crls(crl_ders(&self.crls))
            .allow_unknown_revocation_status()
            .build()
            .map_err(|e| X509Error::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let resolver = self
            .certified()?
            .ok_or_else(|| X509Error::Config("a TLS server needs a certificate and key".into()))?;
        let cfg = builder.with_cert_resolver(resolver);
        Ok(Arc::new(cfg))
    }

    /// Build the rustls client configuration and the name the server certificate
    /// must match: `hostname` is the host connected to, or the user's
    /// `tls-hostname` override. Pure: no file access.
    pub fn client_config(&self, hostname: &str) -> Result<ClientTls, X509Error> {
        if self.endpoint != Endpoint::Client {
            return Err(X509Error::WrongEndpoint {
                have: self.endpoint.name(),
                want: "client",
            });
        }
        let server_name = ServerName::try_from(
            hostname
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
        )
        .map_err(|_| X509Error::BadHostname(hostname.to_string()))?;
        let cfg_err = |e: rustls::Error| X509Error::Config(e.to_string());
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(cfg_err)?;
        let builder = if self.verify_peer {
            let verifier = WebPkiServerVerifier::builder_with_provider(
                Arc::new(root_store(&self.ca_certs)?),
                provider(),
            )
            .with_crls(crl_ders(&self.crls))
            .allow_unknown_revocation_status()
            .build()
            .map_err(|e| X509Error::Config(e.to_string()))?;
            builder.with_webpki_verifier(verifier)
        } else {
            tracing::warn!("tls-creds-x509 endpoint=client verify-peer=off: the server certificate is not checked");
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoServerVerification(provider())))
        };
        let cfg = match self.certified()? {
            Some(resolver) => builder.with_client_cert_resolver(resolver),
            None => builder.with_no_client_auth(),
        };
        Ok(ClientTls {
            config: Arc::new(cfg),
            server_name,
        })
    }
}

/// A client configuration plus the server name its certificate must match.
#[derive(Clone, Debug)]
pub struct ClientTls {
    pub config: Arc<ClientConfig>,
    pub server_name: ServerName<'static>,
}

/// `verify-peer=off` on a client: accept any server certificate (QEMU's
/// behaviour) but still verify the handshake signatures.
#[derive(Debug)]
struct NoServerVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoServerVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A short human reason for a certificate verification failure.
pub fn describe(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::Expired | C::ExpiredContext { .. } => "the certificate has expired".into(),
            C::NotValidYet | C::NotValidYetContext { .. } => {
                "the certificate is not yet active".into()
            }
            C::Revoked => "the certificate has been revoked".into(),
            C::UnknownIssuer => "the certificate hasn't got a known issuer".into(),
            C::BadSignature => "the certificate signature is invalid".into(),
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                "the certificate is not valid for the host name".into()
            }
            other => format!("{other:?}"),
        },
        other => other.to_string(),
    }
}
