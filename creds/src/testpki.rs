//! Test support (feature `test-pki`): a PKI made with **certtool** (gnutls-bin)
//! at test time, following the templates of QEMU's `docs/system/tls.rst`, so the
//! loader and TLS layers are tested against certificates we did not make.
//!
//! Layout under the returned root (each directory is a `tls-creds-x509` dir):
//!
//! | dir | contents |
//! |---|---|
//! | `server/` | CA, CRL revoking `revoked.test`, server cert (RSA) for `localhost`/`server.test`/127.0.0.1, key as **password-protected PKCS#8** ([`SERVER_KEY_PASSWORD`]) |
//! | `server-plainkey/` | same server cert, unencrypted key |
//! | `server-expired/` | server cert valid 2020-2021 |
//! | `client/` | CA, CRL, client cert `C=GB,ST=London,L=City Of London,O=Bulkhead Test,CN=client.test` (ECDSA) |
//! | `client-revoked/` | client cert `revoked.test`, revoked by the CRL |
//! | `client-expired/` | client cert valid 2020-2021 |
//! | `client-otherca/` | client cert issued by an unrelated CA (its `ca-cert.pem` is the real CA) |
//! | `client-nocert/` | only the CA |
//! | `client-wrongca/` | only the unrelated CA (so the server certificate is untrusted) |
//! | `bad-notca/` | `ca-cert.pem` is a certificate without the CA flag |
//! | `bad-purpose/` | server cert with only the TLS client purpose |
//! | `raw/` | every key/cert/template file |

use std::path::{Path, PathBuf};
use std::process::Command;

/// Password of `server/server-key.pem`.
pub const SERVER_KEY_PASSWORD: &str = "s3rv3r-k3y-pw";
/// DN of `client/client-cert.pem` as QEMU shows it (certificate order).
pub const CLIENT_DN: &str = "C=GB,ST=London,L=City Of London,O=Bulkhead Test,CN=client.test";

fn certtool(args: &[&str], dir: &Path) {
    let out = Command::new("certtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run certtool (gnutls-bin)");
    assert!(
        out.status.success(),
        "certtool {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn template(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

fn key(raw: &Path, name: &str, ecdsa: bool) {
    let mut args = vec!["--generate-privkey", "--outfile", name];
    if ecdsa {
        args.extend(["--key-type", "ecdsa"]);
    }
    certtool(&args, raw);
}

fn issue(raw: &Path, ca: &str, key_file: &str, tmpl: &str, out: &str) {
    certtool(
        &[
            "--generate-certificate",
            "--load-ca-certificate",
            &format!("{ca}-cert.pem"),
            "--load-ca-privkey",
            &format!("{ca}-key.pem"),
            "--load-privkey",
            key_file,
            "--template",
            tmpl,
            "--outfile",
            out,
        ],
        raw,
    );
}

fn copy(raw: &Path, root: &Path, dir: &str, files: &[(&str, &str)]) {
    let d = root.join(dir);
    std::fs::create_dir_all(&d).unwrap();
    for (from, to) in files {
        std::fs::copy(raw.join(from), d.join(to)).unwrap();
    }
}

/// Build the PKI under `root` (which must exist). Takes about a second.
pub fn make(root: &Path) -> PathBuf {
    let raw = root.join("raw");
    std::fs::create_dir_all(&raw).unwrap();
    let r = raw.as_path();
    // CA (QEMU docs: cn, ca, cert_signing_key; plus crl_signing_key for the CRL).
    template(
        r,
        "ca.info",
        "cn = Bulkhead Test CA\nca\ncert_signing_key\ncrl_signing_key\nexpiration_days = 3650\n",
    );
    key(r, "ca-key.pem", false);
    certtool(
        &[
            "--generate-self-signed",
            "--load-privkey",
            "ca-key.pem",
            "--template",
            "ca.info",
            "--outfile",
            "ca-cert.pem",
        ],
        r,
    );
    template(
        r,
        "other.info",
        "cn = Unrelated CA\nca\ncert_signing_key\nexpiration_days = 3650\n",
    );
    key(r, "other-key.pem", true);
    certtool(
        &[
            "--generate-self-signed",
            "--load-privkey",
            "other-key.pem",
            "--template",
            "other.info",
            "--outfile",
            "other-cert.pem",
        ],
        r,
    );
    // Server (QEMU docs' server template).
    template(
        r,
        "server.info",
        "organization = Bulkhead Test\ncn = server.test\ndns_name = server.test\ndns_name = localhost\n\
         ip_address = 127.0.0.1\ntls_www_server\nencryption_key\nsigning_key\nexpiration_days = 365\n",
    );
    key(r, "server-key.pem", false);
    issue(r, "ca", "server-key.pem", "server.info", "server-cert.pem");
    certtool(
        &[
            "--to-p8",
            "--password",
            SERVER_KEY_PASSWORD,
            "--load-privkey",
            "server-key.pem",
            "--outfile",
            "server-key-p8.pem",
        ],
        r,
    );
    template(
        r,
        "server-expired.info",
        "organization = Bulkhead Test\ncn = server.test\ndns_name = localhost\nip_address = 127.0.0.1\n\
         tls_www_server\nencryption_key\nsigning_key\n\
         activation_date = \"2020-01-01 00:00:00\"\nexpiration_date = \"2021-01-01 00:00:00\"\n",
    );
    issue(
        r,
        "ca",
        "server-key.pem",
        "server-expired.info",
        "server-expired-cert.pem",
    );
    template(
        r,
        "purpose.info",
        "cn = server.test\ndns_name = localhost\ntls_www_client\nsigning_key\nencryption_key\n",
    );
    issue(
        r,
        "ca",
        "server-key.pem",
        "purpose.info",
        "server-purpose-cert.pem",
    );
    template(
        r,
        "notca.info",
        "cn = Not A CA\nsigning_key\nexpiration_days = 365\n",
    );
    certtool(
        &[
            "--generate-self-signed",
            "--load-privkey",
            "other-key.pem",
            "--template",
            "notca.info",
            "--outfile",
            "notca.pem",
        ],
        r,
    );
    // Clients (QEMU docs' client template).
    let client = |cn: &str, extra: &str| {
        format!(
            "country = GB\nstate = London\nlocality = City Of London\norganization = Bulkhead Test\ncn = {cn}\n\
             tls_www_client\nencryption_key\nsigning_key\n{extra}"
        )
    };
    template(
        r,
        "client.info",
        &client("client.test", "expiration_days = 365\n"),
    );
    key(r, "client-key.pem", true);
    issue(r, "ca", "client-key.pem", "client.info", "client-cert.pem");
    template(
        r,
        "revoked.info",
        &client("revoked.test", "expiration_days = 365\n"),
    );
    key(r, "revoked-key.pem", true);
    issue(
        r,
        "ca",
        "revoked-key.pem",
        "revoked.info",
        "revoked-cert.pem",
    );
    template(
        r,
        "client-expired.info",
        &client("expired.test", "activation_date = \"2020-01-01 00:00:00\"\nexpiration_date = \"2021-01-01 00:00:00\"\n"),
    );
    issue(
        r,
        "ca",
        "client-key.pem",
        "client-expired.info",
        "client-expired-cert.pem",
    );
    template(
        r,
        "client-other.info",
        &client("other.test", "expiration_days = 365\n"),
    );
    issue(
        r,
        "other",
        "client-key.pem",
        "client-other.info",
        "client-other-cert.pem",
    );
    // CRL revoking revoked.test.
    template(r, "crl.info", "crl_next_update = 30\ncrl_number = 1\n");
    certtool(
        &[
            "--generate-crl",
            "--load-ca-privkey",
            "ca-key.pem",
            "--load-ca-certificate",
            "ca-cert.pem",
            "--load-certificate",
            "revoked-cert.pem",
            "--template",
            "crl.info",
            "--outfile",
            "ca-crl.pem",
        ],
        r,
    );
    let ca = ("ca-cert.pem", "ca-cert.pem");
    let crl = ("ca-crl.pem", "ca-crl.pem");
    copy(
        r,
        root,
        "server",
        &[
            ca,
            crl,
            ("server-cert.pem", "server-cert.pem"),
            ("server-key-p8.pem", "server-key.pem"),
        ],
    );
    copy(
        r,
        root,
        "server-plainkey",
        &[
            ca,
            crl,
            ("server-cert.pem", "server-cert.pem"),
            ("server-key.pem", "server-key.pem"),
        ],
    );
    copy(
        r,
        root,
        "server-expired",
        &[
            ca,
            ("server-expired-cert.pem", "server-cert.pem"),
            ("server-key.pem", "server-key.pem"),
        ],
    );
    copy(
        r,
        root,
        "client",
        &[
            ca,
            crl,
            ("client-cert.pem", "client-cert.pem"),
            ("client-key.pem", "client-key.pem"),
        ],
    );
    copy(
        r,
        root,
        "client-revoked",
        &[
            ca,
            ("revoked-cert.pem", "client-cert.pem"),
            ("revoked-key.pem", "client-key.pem"),
        ],
    );
    copy(
        r,
        root,
        "client-expired",
        &[
            ca,
            ("client-expired-cert.pem", "client-cert.pem"),
            ("client-key.pem", "client-key.pem"),
        ],
    );
    copy(
        r,
        root,
        "client-otherca",
        &[
            ca,
            ("client-other-cert.pem", "client-cert.pem"),
            ("client-key.pem", "client-key.pem"),
        ],
    );
    copy(r, root, "client-nocert", &[ca]);
    copy(
        r,
        root,
        "client-wrongca",
        &[("other-cert.pem", "ca-cert.pem")],
    );
    copy(
        r,
        root,
        "bad-notca",
        &[
            ("notca.pem", "ca-cert.pem"),
            ("server-cert.pem", "server-cert.pem"),
            ("server-key.pem", "server-key.pem"),
        ],
    );
    copy(
        r,
        root,
        "bad-purpose",
        &[
            ca,
            ("server-purpose-cert.pem", "server-cert.pem"),
            ("server-key.pem", "server-key.pem"),
        ],
    );
    root.to_path_buf()
}
