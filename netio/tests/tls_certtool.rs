//! TLS channels between netio servers and clients built from a certtool-made
//! PKI, over real socketpairs: success with the client DN exposed, and one
//! distinct error per failure cause.

use std::io::{IoSlice, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use creds::authz::Authz;
use creds::testpki::{self, CLIENT_DN, SERVER_KEY_PASSWORD};
use creds::x509::{Endpoint, X509LoadOptions, X509Material};
use creds::Secret;
use netio::{NetError, ServerOptions, Stream};

fn pki() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| testpki::make(&tempfile::tempdir().unwrap().keep()))
}

fn server_material(dir: &str, verify_peer: bool) -> X509Material {
    // Decrypting the PKCS#8 key runs 600 000 PBKDF2 rounds: do it once.
    static SERVER: OnceLock<X509Material> = OnceLock::new();
    if dir == "server" {
        let mut m = SERVER.get_or_init(|| load_server(dir, true)).clone();
        m.verify_peer = verify_peer;
        return m;
    }
    load_server(dir, verify_peer)
}

fn load_server(dir: &str, verify_peer: bool) -> X509Material {
    let pw = Secret::new(SERVER_KEY_PASSWORD.as_bytes().to_vec());
    X509Material::load_with(&X509LoadOptions {
        dir: &pki().join(dir),
        endpoint: Endpoint::Server,
        verify_peer,
        password: Some(&pw),
        sanity_check: dir == "server",
    })
    .unwrap()
}

fn client_material(dir: &str) -> X509Material {
    X509Material::load_with(&X509LoadOptions {
        dir: &pki().join(dir),
        endpoint: Endpoint::Client,
        verify_peer: true,
        password: None,
        sanity_check: false, // some of these peers are deliberately broken
    })
    .unwrap()
}

fn pair() -> (OwnedFd, OwnedFd) {
    let (a, b) = UnixStream::pair().unwrap();
    (a.into(), b.into())
}

const T: Duration = Duration::from_secs(5);

/// Run a handshake; returns (server result, client result).
fn run(
    server: X509Material,
    authz: Option<Authz>,
    client: X509Material,
    hostname: &str,
) -> (Result<Stream, NetError>, Result<Stream, NetError>) {
    let (sfd, cfd) = pair();
    let cfg = server.server_config().unwrap();
    let srv = std::thread::spawn(move || {
        let opts = ServerOptions {
            timeout: T,
            authz: authz.as_ref(),
        };
        Stream::tls_server(sfd, cfg, &opts)
    });
    let tls = client.client_config(hostname).unwrap();
    let c = Stream::tls_client(cfd, &tls, T);
    (srv.join().unwrap(), c)
}

#[test]
fn handshake_succeeds_and_exposes_client_dn() {
    let authz = Authz::Simple {
        identity: CLIENT_DN.into(),
    };
    let (sfd, cfd) = pair();
    let cfg = server_material("server", true).server_config().unwrap();
    let srv = std::thread::spawn(move || {
        let mut s = Stream::tls_server(
            sfd,
            cfg,
            &ServerOptions {
                timeout: T,
                authz: Some(&authz),
            },
        )
        .unwrap();
        let peer = s.peer().unwrap().clone();
        let mut buf = [0u8; 11];
        s.read_exact(&mut buf).unwrap();
        s.write_all_vectored(&mut [IoSlice::new(b"pong "), IoSlice::new(&buf)])
            .unwrap();
        s.close().unwrap();
        peer
    });
    let tls = client_material("client")
        .client_config("localhost")
        .unwrap();
    let mut c = Stream::tls_client(cfd, &tls, T).unwrap();
    assert!(c.is_tls());
    c.write_all(b"hello world").unwrap();
    let mut reply = Vec::new();
    c.read_to_end(&mut reply).unwrap();
    assert_eq!(reply, b"pong hello world");
    let peer = srv.join().unwrap();
    assert_eq!(peer.dn.as_deref(), Some(CLIENT_DN));
    assert_eq!(peer.authorized, Some(true));
    // The client sees the server's DN.
    assert_eq!(
        c.peer().unwrap().dn.as_deref(),
        Some("O=Bulkhead Test,CN=server.test")
    );
}

#[test]
fn large_vectored_transfer() {
    let (sfd, cfd) = pair();
    let cfg = server_material("server", true).server_config().unwrap();
    let srv = std::thread::spawn(move || {
        let mut s = Stream::tls_server(sfd, cfg, &ServerOptions::default()).unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        got
    });
    let tls = client_material("client")
        .client_config("127.0.0.1")
        .unwrap();
    let mut c = Stream::tls_client(cfd, &tls, T).unwrap();
    let a = vec![1u8; 300_000];
    let b = vec![2u8; 123_457];
    c.write_all_vectored(&mut [IoSlice::new(&a), IoSlice::new(&b)])
        .unwrap();
    c.close().unwrap();
    let got = srv.join().unwrap();
    assert_eq!(got.len(), a.len() + b.len());
    assert!(got[..a.len()].iter().all(|&x| x == 1) && got[a.len()..].iter().all(|&x| x == 2));
}

#[test]
fn tls_hostname_override() {
    // Connecting by some address, but checking the name the user gave (tls-hostname).
    let (s, c) = run(
        server_material("server", true),
        None,
        client_material("client"),
        "server.test",
    );
    s.unwrap();
    c.unwrap();
}

#[test]
fn hostname_mismatch() {
    let (_s, c) = run(
        server_material("server", true),
        None,
        client_material("client"),
        "wrong.example",
    );
    let e = c.unwrap_err();
    assert!(
        matches!(&e, NetError::HostnameMismatch(h) if h == "wrong.example"),
        "{e}"
    );
    assert!(e.to_string().contains("tls-hostname"), "{e}");
}

#[test]
fn wrong_ca_on_client_side() {
    let (_s, c) = run(
        server_material("server", true),
        None,
        client_material("client-wrongca"),
        "localhost",
    );
    let e = c.unwrap_err();
    assert!(matches!(e, NetError::Untrusted), "{e}");
}

#[test]
fn client_cert_from_other_ca_rejected() {
    let (s, c) = run(
        server_material("server", true),
        None,
        client_material("client-otherca"),
        "localhost",
    );
    let e = s.unwrap_err();
    assert!(matches!(e, NetError::Untrusted), "{e}");
    assert_peer_rejected(c, "unknown CA");
}

#[test]
fn revoked_client_rejected() {
    let (s, c) = run(
        server_material("server", true),
        None,
        client_material("client-revoked"),
        "localhost",
    );
    let e = s.unwrap_err();
    assert!(matches!(e, NetError::Revoked), "{e}");
    assert!(e.to_string().contains("revoked"));
    assert_peer_rejected(c, "revoked");
}

#[test]
fn expired_client_rejected() {
    let (s, _c) = run(
        server_material("server", true),
        None,
        client_material("client-expired"),
        "localhost",
    );
    let e = s.unwrap_err();
    assert!(matches!(e, NetError::Expired), "{e}");
}

#[test]
fn expired_server_rejected() {
    let (_s, c) = run(
        server_material("server-expired", true),
        None,
        client_material("client"),
        "localhost",
    );
    let e = c.unwrap_err();
    assert!(matches!(e, NetError::Expired), "{e}");
}

#[test]
fn missing_client_cert_with_verify_peer() {
    let (s, c) = run(
        server_material("server", true),
        None,
        client_material("client-nocert"),
        "localhost",
    );
    let e = s.unwrap_err();
    assert!(matches!(e, NetError::MissingClientCert), "{e}");
    assert!(e.to_string().contains("verify-peer=on"));
    assert_peer_rejected(c, "requires a client certificate");
}

#[test]
fn verify_peer_off_accepts_anonymous_client() {
    let (s, c) = run(
        server_material("server", false),
        None,
        client_material("client-nocert"),
        "localhost",
    );
    let s = s.unwrap();
    c.unwrap();
    assert_eq!(s.peer().unwrap().dn, None);
}

#[test]
fn authz_denies_other_dn() {
    let authz = Authz::Simple {
        identity: "C=GB,O=Bulkhead Test,CN=someone.else".into(),
    };
    let (s, _c) = run(
        server_material("server", true),
        Some(authz),
        client_material("client"),
        "localhost",
    );
    let e = s.unwrap_err();
    assert!(
        matches!(&e, NetError::AuthzDenied(dn) if dn == CLIENT_DN),
        "{e}"
    );
    // An authz list with a glob allows it.
    let list = creds::AuthzList::from_json(
        r#"{"policy":"deny","rules":[{"match":"C=GB,*,CN=client.test","policy":"allow","format":"glob"}]}"#,
        "test",
    )
    .unwrap();
    let (s, _c) = run(
        server_material("server", true),
        Some(Authz::List(list)),
        client_material("client"),
        "localhost",
    );
    assert_eq!(s.unwrap().peer().unwrap().authorized, Some(true));
}

#[test]
fn handshake_timeout() {
    let (sfd, cfd) = pair();
    let cfg = server_material("server", true).server_config().unwrap();
    let t0 = Instant::now();
    let opts = ServerOptions {
        timeout: Duration::from_millis(300),
        authz: None,
    };
    let e = Stream::tls_server(sfd, cfg.clone(), &opts).unwrap_err();
    assert!(matches!(e, NetError::HandshakeTimeout(_)), "{e}");
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    drop(cfd);
    // A peer that sends the first byte of a ClientHello and stalls also times out.
    let (sfd, cfd) = pair();
    let mut c = UnixStream::from(cfd);
    c.write_all(&[0x16, 0x03, 0x01]).unwrap();
    let e = Stream::tls_server(sfd, cfg, &opts).unwrap_err();
    assert!(matches!(e, NetError::HandshakeTimeout(_)), "{e}");
}

#[test]
fn plaintext_client_on_tls_port() {
    let (sfd, cfd) = pair();
    let cfg = server_material("server", true).server_config().unwrap();
    let mut c = UnixStream::from(cfd);
    c.write_all(b"RFB 003.008\n").unwrap();
    let e = Stream::tls_server(sfd, cfg, &ServerOptions::default()).unwrap_err();
    assert!(matches!(e, NetError::NotTls), "{e}");
}

#[test]
fn tls_client_to_plaintext_server() {
    let (sfd, cfd) = pair();
    let mut s = UnixStream::from(sfd);
    let t = std::thread::spawn(move || {
        s.write_all(b"NBDMAGIC plaintext server here\r\n").unwrap();
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    });
    let tls = client_material("client")
        .client_config("localhost")
        .unwrap();
    let e = Stream::tls_client(cfd, &tls, T).unwrap_err();
    assert!(matches!(e, NetError::NotTls), "{e}");
    t.join().unwrap();
}

#[test]
fn starttls_upgrade_after_plain_negotiation() {
    // NBD/VeNCrypt style: plaintext first, then TLS on the same stream.
    let (sfd, cfd) = pair();
    let cfg = server_material("server", true).server_config().unwrap();
    let srv = std::thread::spawn(move || {
        let mut s = Stream::plain(sfd);
        let mut hello = [0u8; 8];
        s.read_exact(&mut hello).unwrap();
        assert_eq!(&hello, b"STARTTLS");
        s.write_all(b"OK").unwrap();
        let mut s = s.start_tls_server(cfg, &ServerOptions::default()).unwrap();
        s.write_all(b"secure").unwrap();
        s.peer().unwrap().dn.clone()
    });
    let mut c = Stream::plain(cfd);
    c.write_all(b"STARTTLS").unwrap();
    let mut ok = [0u8; 2];
    c.read_exact(&mut ok).unwrap();
    let tls = client_material("client")
        .client_config("localhost")
        .unwrap();
    let mut c = c.start_tls_client(&tls, T).unwrap();
    let mut buf = [0u8; 6];
    c.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"secure");
    assert_eq!(srv.join().unwrap().as_deref(), Some(CLIENT_DN));
}

/// TLS 1.3: the client finishes its handshake before the server checks the
/// client certificate, so the rejection arrives as an alert on the first read.
fn assert_peer_rejected(c: Result<Stream, NetError>, want: &str) {
    let text = match c {
        Err(e) => e.to_string(),
        Ok(mut s) => {
            let mut b = [0u8; 1];
            let e = s.read(&mut b).unwrap_err();
            e.into_inner().map(|i| i.to_string()).unwrap_or_default()
        }
    };
    assert!(text.contains("rejected") && text.contains(want), "{text}");
}
