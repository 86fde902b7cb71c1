//! `bulkhead pki init DIR` (beyond QEMU): a CA, a server and a client
//! certificate in the `tls-creds-x509` layout, so a test or a small deployment
//! does not need the `certtool` recipe from QEMU's docs.
//!
//! | file | contents |
//! |---|---|
//! | `ca-cert.pem` | self-signed CA: basicConstraints CA (critical), keyCertSign + cRLSign |
//! | `ca-key.pem` | CA key (0600), kept so more certificates can be issued with certtool/openssl |
//! | `server-cert.pem` / `server-key.pem` | serverAuth, digitalSignature + keyEncipherment, SANs from `hostnames`/`ips` |
//! | `client-cert.pem` / `client-key.pem` | clientAuth, digitalSignature + keyEncipherment, CN `client_cn` |
//!
//! Keys are ECDSA P-256 in PKCS#8 PEM, written with mode 0600. Existing files
//! are never overwritten unless `force`. The subject DNs are `O=<organization>,
//! CN=<name>`, which QEMU/gnutls print as `O=...,CN=...` for `authz-simple`.

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use crate::x509::{CA_CERT, CLIENT_CERT, CLIENT_KEY, SERVER_CERT, SERVER_KEY};

/// CA private key file name (not read by QEMU or by the creds loader).
pub const CA_KEY: &str = "ca-key.pem";

/// What to make.
#[derive(Clone, Debug)]
pub struct PkiOptions {
    pub dir: PathBuf,
    /// DNS names for the server certificate (first one is also its CN).
    pub hostnames: Vec<String>,
    /// IP addresses for the server certificate.
    pub ips: Vec<IpAddr>,
    /// CN of the client certificate.
    pub client_cn: String,
    /// `O=` of every subject.
    pub organization: String,
    /// Validity in days from now.
    pub days: u32,
    /// Overwrite existing files.
    pub force: bool,
}

impl PkiOptions {
    /// Defaults: localhost + 127.0.0.1 + ::1, client CN `client`, 365 days.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        PkiOptions {
            dir: dir.into(),
            hostnames: Vec::new(),
            ips: Vec::new(),
            client_cn: "client".into(),
            organization: "Bulkhead".into(),
            days: 365,
            force: false,
        }
    }
}

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{0} already exists (use --force to overwrite)")]
    Exists(String),
    #[error("cannot write {path}: {reason}")]
    Write { path: String, reason: String },
    #[error("cannot generate certificates: {0}")]
    Generate(String),
    #[error("invalid host name '{0}'")]
    BadHostname(String),
}

/// Paths written by [`init`].
#[derive(Clone, Debug)]
pub struct PkiFiles {
    pub written: Vec<PathBuf>,
}

fn gen(e: rcgen::Error) -> PkiError {
    PkiError::Generate(e.to_string())
}

fn name(org: &str, cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, org);
    dn.push(DnType::CommonName, cn);
    dn
}

fn validity(params: &mut CertificateParams, days: u32) {
    let now = time::OffsetDateTime::now_utc();
    // Backdate a little for clock skew between hosts.
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(i64::from(days.max(1)));
}

fn serial() -> rcgen::SerialNumber {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).ok();
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01; // positive and non-zero leading byte: 16 content bytes
    rcgen::SerialNumber::from_slice(&bytes)
}

/// Make the CA, server and client certificates in `opts.dir`.
pub fn init(opts: &PkiOptions) -> Result<PkiFiles, PkiError> {
    let mut hostnames = opts.hostnames.clone();
    let mut ips = opts.ips.clone();
    if hostnames.is_empty() && ips.is_empty() {
        hostnames.push("localhost".into());
        ips.push(IpAddr::from([127, 0, 0, 1]));
        ips.push(IpAddr::from(std::net::Ipv6Addr::LOCALHOST));
    }
    for h in &hostnames {
        if h.is_empty()
            || !h
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '*'))
        {
            return Err(PkiError::BadHostname(h.clone()));
        }
    }
    let files = [
        CA_CERT,
        CA_KEY,
        SERVER_CERT,
        SERVER_KEY,
        CLIENT_CERT,
        CLIENT_KEY,
    ];
    if !opts.force {
        for f in files {
            let p = opts.dir.join(f);
            if p.exists() {
                return Err(PkiError::Exists(p.display().to_string()));
            }
        }
    }
    std::fs::create_dir_all(&opts.dir).map_err(|e| PkiError::Write {
        path: opts.dir.display().to_string(),
        reason: e.to_string(),
    })?;

    // CA
    let ca_key = KeyPair::generate().map_err(gen)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(gen)?;
    ca.distinguished_name = name(&opts.organization, &format!("{} CA", opts.organization));
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.serial_number = Some(serial());
    validity(&mut ca, opts.days.saturating_mul(2));
    let ca_cert = ca.self_signed(&ca_key).map_err(gen)?;
    let issuer = Issuer::from_params(&ca, &ca_key);

    // Server
    let server_key = KeyPair::generate().map_err(gen)?;
    let mut server = CertificateParams::new(Vec::<String>::new()).map_err(gen)?;
    let server_cn = hostnames
        .first()
        .cloned()
        .unwrap_or_else(|| ips[0].to_string());
    server.distinguished_name = name(&opts.organization, &server_cn);
    for h in &hostnames {
        server
            .subject_alt_names
            .push(SanType::DnsName(h.clone().try_into().map_err(gen)?));
    }
    for ip in &ips {
        server.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    server.is_ca = IsCa::ExplicitNoCa;
    server.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.serial_number = Some(serial());
    validity(&mut server, opts.days);
    let server_cert = server.signed_by(&server_key, &issuer).map_err(gen)?;

    // Client
    let client_key = KeyPair::generate().map_err(gen)?;
    let mut client = CertificateParams::new(Vec::<String>::new()).map_err(gen)?;
    client.distinguished_name = name(&opts.organization, &opts.client_cn);
    client.is_ca = IsCa::ExplicitNoCa;
    client.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    client.serial_number = Some(serial());
    validity(&mut client, opts.days);
    let client_cert = client.signed_by(&client_key, &issuer).map_err(gen)?;

    let outputs: [(&str, String, u32); 6] = [
        (CA_KEY, ca_key.serialize_pem(), 0o600),
        (SERVER_KEY, server_key.serialize_pem(), 0o600),
        (CLIENT_KEY, client_key.serialize_pem(), 0o600),
        (CA_CERT, ca_cert.pem(), 0o644),
        (SERVER_CERT, server_cert.pem(), 0o644),
        (CLIENT_CERT, client_cert.pem(), 0o644),
    ];
    let mut written = Vec::new();
    for (file, text, mode) in outputs {
        let text = zeroize::Zeroizing::new(text);
        let path = opts.dir.join(file);
        write_file(&path, text.as_bytes(), mode, opts.force)?;
        written.push(path);
    }
    Ok(PkiFiles { written })
}

fn write_file(path: &Path, bytes: &[u8], mode: u32, force: bool) -> Result<(), PkiError> {
    let werr = |e: std::io::Error| PkiError::Write {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    if force {
        // Replace rather than truncate, so an old, more permissive mode never applies.
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(werr(e)),
        }
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                PkiError::Exists(path.display().to_string())
            } else {
                werr(e)
            }
        })?;
    f.write_all(bytes).map_err(werr)?;
    f.sync_all().map_err(werr)?;
    Ok(())
}
