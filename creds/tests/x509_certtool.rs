//! `tls-creds-x509` loading against a PKI made by certtool (QEMU docs' templates):
//! encrypted PKCS#8 key via `passwordid`, CRL, sanity-check errors naming the
//! file, rustls configs built from (serialized) material, and the DN format.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use creds::testpki::{self, CLIENT_DN, SERVER_KEY_PASSWORD};
use creds::x509::{Endpoint, X509Error, X509LoadOptions, X509Material};
use creds::Secret;

fn pki() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        testpki::make(&dir)
    })
}

/// `server/` loaded once: its key decryption costs 600 000 PBKDF2 rounds.
fn server() -> &'static X509Material {
    static M: OnceLock<X509Material> = OnceLock::new();
    M.get_or_init(|| {
        X509Material::load(
            &pki().join("server"),
            Endpoint::Server,
            true,
            Some(&password()),
        )
        .unwrap()
    })
}

fn password() -> Secret {
    Secret::new(SERVER_KEY_PASSWORD.as_bytes().to_vec())
}

#[test]
fn server_with_encrypted_pkcs8_key_loads() {
    let m = server().clone();
    assert_eq!(m.cert_chain.len(), 1);
    assert_eq!(m.crls.len(), 1);
    assert!(m.key.is_some());
    m.server_config().unwrap();
    // The debug form names no key bytes.
    let d = format!("{m:?}");
    assert!(d.contains("redacted"), "{d}");
}

#[test]
fn encrypted_key_needs_right_password() {
    let dir = pki().join("server");
    let e = X509Material::load(&dir, Endpoint::Server, true, None).unwrap_err();
    assert!(matches!(e, X509Error::KeyNeedsPassword(_)), "{e}");
    assert!(
        e.to_string().contains("server-key.pem") && e.to_string().contains("passwordid"),
        "{e}"
    );
    let wrong = Secret::new(b"not-the-password".to_vec());
    let e = X509Material::load(&dir, Endpoint::Server, true, Some(&wrong)).unwrap_err();
    assert!(matches!(e, X509Error::KeyDecrypt { .. }), "{e}");
    assert!(e.to_string().contains("wrong password"), "{e}");
    assert!(!e.to_string().contains("not-the-password"));
}

#[test]
fn certtool_pkcs8_variants() {
    // What `certtool --to-p8 --pkcs-cipher X` emits, and how we answer.
    let raw = pki().join("raw");
    for (cipher, ok) in [
        ("aes-128", true),
        ("aes-192", true),
        ("aes-256", true),
        ("3des-pkcs12", false),
        ("3des", false),
    ] {
        let out = format!("key-{cipher}.pem");
        let st = std::process::Command::new("certtool")
            .args([
                "--to-p8",
                "--password",
                "pw",
                "--pkcs-cipher",
                cipher,
                "--load-privkey",
                "server-key.pem",
                "--outfile",
                &out,
            ])
            .current_dir(&raw)
            .output()
            .unwrap();
        assert!(st.status.success());
        let dir = tempfile::tempdir().unwrap();
        for f in ["ca-cert.pem", "server-cert.pem"] {
            std::fs::copy(raw.join(f), dir.path().join(f)).unwrap();
        }
        std::fs::copy(raw.join(&out), dir.path().join("server-key.pem")).unwrap();
        let pw = Secret::new(b"pw".to_vec());
        let r = X509Material::load(dir.path(), Endpoint::Server, false, Some(&pw));
        if ok {
            r.unwrap();
        } else {
            let e = r.unwrap_err().to_string();
            assert!(
                e.contains("unsupported PKCS#8 encryption") && e.contains("--pkcs-cipher aes-256"),
                "{cipher}: {e}"
            );
        }
    }
}

#[test]
fn client_loads_with_and_without_cert() {
    let m = X509Material::load(&pki().join("client"), Endpoint::Client, true, None).unwrap();
    assert!(m.key.is_some());
    let tls = m.client_config("localhost").unwrap();
    assert_eq!(format!("{:?}", tls.server_name), "DnsName(\"localhost\")");
    let m = X509Material::load(&pki().join("client-nocert"), Endpoint::Client, true, None).unwrap();
    assert!(m.key.is_none() && m.cert_chain.is_empty());
    m.client_config("127.0.0.1").unwrap();
}

#[test]
fn material_survives_serialization() {
    // The supervisor sends this to the service; the service builds configs from it.
    let m = server().clone();
    let bytes = serde_json::to_vec(&m).unwrap();
    let back: X509Material = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(back, m);
    back.server_config().unwrap();
}

#[test]
fn material_and_secrets_survive_postcard() {
    // The IPC wire format (postcard), for the service's startup message.
    let m = server().clone();
    let bytes = postcard::to_allocvec(&m).unwrap();
    let back: X509Material = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(back, m);
    back.server_config().unwrap();
    let s = password();
    let back: Secret = postcard::from_bytes(&postcard::to_allocvec(&s).unwrap()).unwrap();
    assert_eq!(back, s);
    let a = creds::Authz::List(
        creds::AuthzList::from_json(
            r#"{"rules":[{"match":"C=GB,*","policy":"allow","format":"glob"}]}"#,
            "t",
        )
        .unwrap(),
    );
    let back: creds::Authz = postcard::from_bytes(&postcard::to_allocvec(&a).unwrap()).unwrap();
    assert_eq!(back, a);
    // Truncated input is an error, not a panic.
    assert!(postcard::from_bytes::<X509Material>(&bytes[..bytes.len() / 2]).is_err());
}

#[test]
fn wrong_endpoint_refused() {
    let m = X509Material::load(&pki().join("client"), Endpoint::Client, true, None).unwrap();
    let e = m.server_config().unwrap_err().to_string();
    assert_eq!(e, "These credentials are for a TLS client, not a server");
}

fn load_err(dir: &str, endpoint: Endpoint) -> String {
    let pw = password();
    X509Material::load(&pki().join(dir), endpoint, true, Some(&pw))
        .unwrap_err()
        .to_string()
}

#[test]
fn sanity_check_expired_names_file() {
    let e = load_err("server-expired", Endpoint::Server);
    assert!(
        e.starts_with("The certificate ")
            && e.ends_with("server-expired/server-cert.pem has expired"),
        "{e}"
    );
    let e = load_err("client-expired", Endpoint::Client);
    assert!(
        e.ends_with("client-expired/client-cert.pem has expired"),
        "{e}"
    );
    // With the check off (the peer in handshake tests) it loads.
    X509Material::load_with(&X509LoadOptions {
        dir: &pki().join("client-expired"),
        endpoint: Endpoint::Client,
        verify_peer: true,
        password: None,
        sanity_check: false,
    })
    .unwrap();
}

#[test]
fn sanity_check_ca_not_a_ca() {
    let e = load_err("bad-notca", Endpoint::Server);
    assert!(
        e.contains("bad-notca/ca-cert.pem basic constraints do not show a CA"),
        "{e}"
    );
}

#[test]
fn sanity_check_wrong_purpose() {
    let e = load_err("bad-purpose", Endpoint::Server);
    assert!(
        e.contains("bad-purpose/server-cert.pem purpose does not allow use with a TLS server"),
        "{e}"
    );
}

#[test]
fn sanity_check_chain_and_revocation() {
    let e = load_err("client-otherca", Endpoint::Client);
    assert!(
        e.contains("client-otherca/client-cert.pem failed validation against"),
        "{e}"
    );
    assert!(e.contains("known issuer"), "{e}");
    // Our own revoked certificate, with the CRL present.
    let dir = tempfile::tempdir().unwrap();
    for f in ["ca-cert.pem", "client-cert.pem", "client-key.pem"] {
        std::fs::copy(pki().join("client-revoked").join(f), dir.path().join(f)).unwrap();
    }
    std::fs::copy(
        pki().join("server/ca-crl.pem"),
        dir.path().join("ca-crl.pem"),
    )
    .unwrap();
    let e = X509Material::load(dir.path(), Endpoint::Client, true, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("has been revoked"), "{e}");
}

#[test]
fn missing_files_named() {
    let dir = tempfile::tempdir().unwrap();
    let e = X509Material::load(dir.path(), Endpoint::Server, true, None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("ca-cert.pem") && e.contains("No such file"),
        "{e}"
    );
    std::fs::copy(
        pki().join("server/ca-cert.pem"),
        dir.path().join("ca-cert.pem"),
    )
    .unwrap();
    let e = X509Material::load(dir.path(), Endpoint::Server, true, None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("server-cert.pem") && e.contains("required for endpoint=server"),
        "{e}"
    );
    std::fs::copy(
        pki().join("client/client-cert.pem"),
        dir.path().join("client-cert.pem"),
    )
    .unwrap();
    let e = X509Material::load(dir.path(), Endpoint::Client, true, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("must both be present"), "{e}");
    // A mismatched key.
    std::fs::copy(
        pki().join("raw/revoked-key.pem"),
        dir.path().join("client-key.pem"),
    )
    .unwrap();
    let e = X509Material::load(dir.path(), Endpoint::Client, true, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("do not match"), "{e}");
}

#[test]
fn dh_params_accepted() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["ca-cert.pem", "server-cert.pem", "server-key.pem"] {
        std::fs::copy(pki().join("server-plainkey").join(f), dir.path().join(f)).unwrap();
    }
    std::fs::write(
        dir.path().join("dh-params.pem"),
        "-----BEGIN DH PARAMETERS-----\nMAA=\n-----END DH PARAMETERS-----\n",
    )
    .unwrap();
    X509Material::load(dir.path(), Endpoint::Server, false, None)
        .unwrap()
        .server_config()
        .unwrap();
}

#[test]
fn dn_matches_gnutls_certificate_order() {
    let der = X509Material::load(&pki().join("client"), Endpoint::Client, true, None)
        .unwrap()
        .cert_chain[0]
        .clone();
    let dn = creds::dn::subject_dn(&der).unwrap();
    assert_eq!(dn, CLIENT_DN);
    // certtool -i prints RFC 4514 (reversed) order: our DN is its reverse.
    let out = std::process::Command::new("certtool")
        .args(["-i", "--infile", "client-cert.pem"])
        .current_dir(pki().join("client"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let subject = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Subject: "))
        .unwrap();
    let mut parts: Vec<&str> = subject.split(',').collect();
    parts.reverse();
    assert_eq!(parts.join(","), dn, "certtool says {subject}");
}
