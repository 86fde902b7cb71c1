//! Test PKIs made the way users make them: `bulkhead pki init` (CA, a
//! server certificate for localhost/127.0.0.1, a client certificate
//! CN=client.test) and certtool for anything extra.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::bulkhead_bin;

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Runs certtool in `dir`; panics with its stderr on failure; returns stdout.
pub fn certtool(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("certtool")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "certtool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `bulkhead pki init DIR --hostname localhost --ip 127.0.0.1 --client-cn
/// client.test`.
pub fn pki_init(dir: &Path) {
    let st = Command::new(bulkhead_bin())
        .args(["pki", "init"])
        .arg(dir)
        .args([
            "--hostname",
            "localhost",
            "--ip",
            "127.0.0.1",
            "--client-cn",
            "client.test",
        ])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "bulkhead pki init");
}

/// Adds `other-key.pem` / `other-cert.pem` (CN=other.test, a client
/// certificate from the same CA) with certtool.
pub fn add_other_client(dir: &Path) {
    std::fs::write(
        dir.join("other.tmpl"),
        "organization = \"Bulkhead\"\ncn = \"other.test\"\ntls_www_client\nsigning_key\nexpiration_days = 2\n",
    )
    .unwrap();
    certtool(dir, &["--generate-privkey", "--outfile", "other-key.pem"]);
    certtool(
        dir,
        &[
            "--generate-certificate",
            "--load-privkey",
            "other-key.pem",
            "--load-ca-certificate",
            "ca-cert.pem",
            "--load-ca-privkey",
            "ca-key.pem",
            "--template",
            "other.tmpl",
            "--outfile",
            "other-cert.pem",
        ],
    );
}

/// The subject DN of `cert` as tls-authz sees it.
pub fn client_dn(cert: &Path) -> String {
    let pem = std::fs::read(cert).unwrap();
    let blocks = creds::pem::parse(&pem).unwrap();
    creds::dn::subject_dn(&blocks[0].der).unwrap()
}
