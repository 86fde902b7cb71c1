//! `pki init` output checked by certtool and openssl, loaded by the creds
//! loader, and used for a rustls handshake between the made configs.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use creds::pki::{init, PkiError, PkiOptions};
use creds::x509::{Endpoint, X509Material};

fn make(dir: &std::path::Path) -> PkiOptions {
    let mut o = PkiOptions::new(dir);
    o.hostnames = vec!["vmhost.example".into(), "localhost".into()];
    o.ips = vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
    o.client_cn = "migration-client".into();
    o.organization = "Bulkhead Test".into();
    init(&o).unwrap();
    o
}

#[test]
fn verified_by_certtool_and_openssl() {
    let dir = tempfile::tempdir().unwrap();
    make(dir.path());
    for cert in ["server-cert.pem", "client-cert.pem"] {
        let out = Command::new("certtool")
            .args([
                "--verify",
                "--load-ca-certificate",
                "ca-cert.pem",
                "--infile",
                cert,
            ])
            .current_dir(dir.path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("Chain verification output: Verified"),
            "{cert}: {text}"
        );
        let out = Command::new("openssl")
            .args(["verify", "-CAfile", "ca-cert.pem", cert])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{cert}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Purposes as openssl sees them.
    let purpose = |cert: &str, p: &str| {
        Command::new("openssl")
            .args(["verify", "-CAfile", "ca-cert.pem", "-purpose", p, cert])
            .current_dir(dir.path())
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(purpose("server-cert.pem", "sslserver"));
    assert!(!purpose("server-cert.pem", "sslclient"));
    assert!(purpose("client-cert.pem", "sslclient"));
    assert!(!purpose("client-cert.pem", "sslserver"));
    // Extensions as certtool prints them.
    let info = |cert: &str| {
        let o = Command::new("certtool")
            .args(["-i", "--infile", cert])
            .current_dir(dir.path())
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let ca = info("ca-cert.pem");
    assert!(ca.contains("Certificate Authority (CA): TRUE"), "{ca}");
    assert!(
        ca.contains("Certificate signing") && ca.contains("CRL signing"),
        "{ca}"
    );
    let srv = info("server-cert.pem");
    assert!(
        srv.contains("DNSname: vmhost.example")
            && srv.contains("IPAddress: 127.0.0.1")
            && srv.contains("IPAddress: ::1"),
        "{srv}"
    );
    assert!(
        srv.contains("TLS WWW Server")
            && srv.contains("Digital signature")
            && srv.contains("Key encipherment"),
        "{srv}"
    );
    let cli = info("client-cert.pem");
    assert!(
        cli.contains("TLS WWW Client") && cli.contains("CN=migration-client"),
        "{cli}"
    );
}

#[test]
fn key_modes_and_no_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = make(dir.path());
    for key in ["ca-key.pem", "server-key.pem", "client-key.pem"] {
        let mode = std::fs::metadata(dir.path().join(key))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{key}");
    }
    let before = std::fs::read(dir.path().join("ca-cert.pem")).unwrap();
    let e = init(&o).unwrap_err();
    assert!(matches!(e, PkiError::Exists(_)), "{e}");
    assert!(e.to_string().contains("--force"));
    assert_eq!(
        std::fs::read(dir.path().join("ca-cert.pem")).unwrap(),
        before,
        "nothing overwritten"
    );
    // An old permissive key file is replaced, not reused, with force.
    std::fs::set_permissions(
        dir.path().join("server-key.pem"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    o.force = true;
    init(&o).unwrap();
    assert_ne!(
        std::fs::read(dir.path().join("ca-cert.pem")).unwrap(),
        before
    );
    let mode = std::fs::metadata(dir.path().join("server-key.pem"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn loaded_by_creds_and_handshakes() {
    let dir = tempfile::tempdir().unwrap();
    make(dir.path());
    let server = X509Material::load(dir.path(), Endpoint::Server, true, None).unwrap();
    let client = X509Material::load(dir.path(), Endpoint::Client, true, None).unwrap();
    let dn = creds::dn::subject_dn(&client.cert_chain[0]).unwrap();
    assert_eq!(dn, "O=Bulkhead Test,CN=migration-client");
    // In-memory rustls handshake between the two configs.
    let mut s = rustls::ServerConnection::new(server.server_config().unwrap()).unwrap();
    let tls = client.client_config("vmhost.example").unwrap();
    let mut c = rustls::ClientConnection::new(tls.config, tls.server_name).unwrap();
    for _ in 0..10 {
        let mut buf = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            s.read_tls(&mut &buf[..]).unwrap();
            s.process_new_packets().unwrap();
        }
        let mut buf = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            c.read_tls(&mut &buf[..]).unwrap();
            c.process_new_packets().unwrap();
        }
    }
    assert!(!s.is_handshaking() && !c.is_handshaking());
    let peer = s.peer_certificates().unwrap()[0].as_ref().to_vec();
    assert_eq!(creds::dn::subject_dn(&peer).unwrap(), dn);
}

#[test]
fn bad_hostname_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = PkiOptions::new(dir.path());
    o.hostnames = vec!["bad host".into()];
    assert!(matches!(init(&o), Err(PkiError::BadHostname(_))));
}
