//! A real rustls (ring provider) TLS 1.3 and TLS 1.2 handshake inside a
//! process confined with each TLS-using service's policy: proves the seccomp
//! allowlists are sufficient for rustls, not only for std.
//!
//! `harness = false`: the test binary re-executes itself through
//! `/proc/self/exe` with `argv[0] = tls-service`, exactly as `bulkhead`
//! starts its services, so it needs its own `main`.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use sandbox::{ExitStatus, Policy, ServiceKind, SpawnSpec};

const KINDS: [&str; 4] = ["chardev", "vnc", "nbd", "migrate"];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.first().map(String::as_str) == Some("tls-service") {
        let kind = match args.get(1).map(String::as_str) {
            Some("chardev") => ServiceKind::Chardev,
            Some("vnc") => ServiceKind::Vnc,
            Some("nbd") => ServiceKind::Nbd,
            Some("migrate") => ServiceKind::Migrate,
            other => panic!("unknown kind {other:?}"),
        };
        service(kind);
        return;
    }
    // libtest-style filter: `cargo test -p sandbox some_other_test` passes a
    // name; run only when unfiltered or when the filter matches.
    let filter = args.iter().skip(1).find(|a| !a.starts_with('-'));
    if filter.is_some_and(|f| !"tls_handshake_under_every_tls_service_policy".contains(f.as_str()))
    {
        println!("tls_under_seccomp: filtered out");
        return;
    }
    for kind in KINDS {
        let (_ours, theirs) = UnixStream::pair().unwrap();
        let mut spec = SpawnSpec::service("/proc/self/exe", "tls-service", theirs.into())
            .with_inherited_stderr()
            .unwrap();
        spec.args = vec![kind.to_owned()];
        let mut p = match sandbox::spawn(spec) {
            Ok(p) => p,
            // SAFETY: geteuid has no preconditions.
            Err(e) if unsafe { libc::geteuid() } != 0 => {
                println!("SKIP: not root and spawning failed: {e}");
                return;
            }
            Err(e) => panic!("spawn: {e}"),
        };
        let st = p
            .wait_timeout(std::time::Duration::from_secs(60))
            .unwrap()
            .expect("TLS service did not finish");
        assert_eq!(st, ExitStatus::Exited(0), "{kind}: {st}");
        println!("test tls_handshake_under_every_tls_service_policy ({kind}) ... ok");
    }
}

fn service(kind: ServiceKind) {
    // Before confine: key generation stands in for "credentials received".
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert = ck.cert.der().clone();
    let key = ck.signing_key.serialize_der();
    let pairs: Vec<(UnixStream, UnixStream)> =
        (0..2).map(|_| UnixStream::pair().unwrap()).collect();

    sandbox::confine(&Policy::for_service(kind)).unwrap();

    // Everything below runs under the kind's seccomp filter.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    for ((s, c), version) in pairs
        .into_iter()
        .zip([&rustls::version::TLS13, &rustls::version::TLS12])
    {
        let server_cfg = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[version])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.clone().into()),
            )
            .unwrap();
        let client_cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        let server = std::thread::Builder::new()
            .name("tls-server".into())
            .spawn(move || {
                let conn = rustls::ServerConnection::new(Arc::new(server_cfg)).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, s);
                let mut buf = [0u8; 5];
                tls.read_exact(&mut buf).unwrap();
                tls.write_all(b"pong!").unwrap();
                tls.flush().unwrap();
                buf
            })
            .unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(Arc::new(client_cfg), name).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, c);
        tls.write_all(b"ping!").unwrap();
        tls.flush().unwrap();
        let mut buf = [0u8; 5];
        tls.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"pong!");
        assert_eq!(&server.join().unwrap(), b"ping!");
        assert_eq!(tls.conn.protocol_version(), Some(version.version));
    }
}
