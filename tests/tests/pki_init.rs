//! `bulkhead pki init` through the real binary; the output is checked by the
//! real peers certtool and openssl.

use std::process::Command;

use bulkhead_tests::{bulkhead_bin, have_program, require_peer};

#[test]
fn pki_init_verified_by_certtool_and_openssl() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("pki");
    let out = Command::new(bulkhead_bin())
        .args(["pki", "init"])
        .arg(&d)
        .args([
            "--hostname",
            "localhost",
            "--ip",
            "127.0.0.1",
            "--client-cn",
            "client.test",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in [
        "ca-cert.pem",
        "server-cert.pem",
        "server-key.pem",
        "client-cert.pem",
        "client-key.pem",
    ] {
        assert!(d.join(f).exists(), "{f} missing");
    }
    use std::os::unix::fs::PermissionsExt;
    for f in ["server-key.pem", "client-key.pem"] {
        let mode = std::fs::metadata(d.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f} mode");
    }

    // Refuses to overwrite without --force, naming the file.
    let again = Command::new(bulkhead_bin())
        .args(["pki", "init"])
        .arg(&d)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    if require_peer("certtool", have_program("certtool")) {
        for cert in ["server-cert.pem", "client-cert.pem"] {
            let v = Command::new("certtool")
                .arg("--verify")
                .arg("--load-ca-certificate")
                .arg(d.join("ca-cert.pem"))
                .arg("--infile")
                .arg(d.join(cert))
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&v.stdout);
            assert!(
                v.status.success() && text.contains("Verified"),
                "certtool {cert}: {text}"
            );
        }
    }
    if require_peer("openssl", have_program("openssl")) {
        for (cert, purpose) in [
            ("server-cert.pem", "sslserver"),
            ("client-cert.pem", "sslclient"),
        ] {
            let v = Command::new("openssl")
                .args(["verify", "-purpose", purpose, "-CAfile"])
                .arg(d.join("ca-cert.pem"))
                .arg(d.join(cert))
                .output()
                .unwrap();
            assert!(
                v.status.success(),
                "openssl {cert}: {}",
                String::from_utf8_lossy(&v.stderr)
            );
        }
        let host = Command::new("openssl")
            .args([
                "x509",
                "-noout",
                "-checkhost",
                "localhost",
                "-checkip",
                "127.0.0.1",
                "-in",
            ])
            .arg(d.join("server-cert.pem"))
            .output()
            .unwrap();
        let t = String::from_utf8_lossy(&host.stdout);
        assert!(
            t.contains("does match certificate") && !t.contains("NOT match"),
            "{t}"
        );
    }
    // The creds loader accepts the result as server and client credentials.
    for ep in [creds::x509::Endpoint::Server, creds::x509::Endpoint::Client] {
        creds::x509::X509Material::load(&d, ep, true, None)
            .unwrap_or_else(|e| panic!("creds loader rejects pki init output as {ep:?}: {e}"));
    }
}

#[test]
fn pki_bad_arguments_exit_1() {
    let out = Command::new(bulkhead_bin())
        .args(["pki", "init", "/tmp/x", "--ip", "notanip"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--ip"));
}
