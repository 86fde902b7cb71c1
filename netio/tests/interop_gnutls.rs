//! Interop with real peers: gnutls-cli against a netio TLS server, and a netio
//! TLS client against gnutls-serv, with the certtool PKI (mutual TLS).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use creds::authz::Authz;
use creds::testpki::{self, CLIENT_DN, SERVER_KEY_PASSWORD};
use creds::x509::{Endpoint, X509Material};
use creds::Secret;
use netio::{NetError, ServerOptions, Stream};

fn pki() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| testpki::make(&tempfile::tempdir().unwrap().keep()))
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn gnutls_cli_talks_to_netio_server() {
    let pw = Secret::new(SERVER_KEY_PASSWORD.as_bytes().to_vec());
    let cfg = X509Material::load(&pki().join("server"), Endpoint::Server, true, Some(&pw))
        .unwrap()
        .server_config()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let srv = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let authz = Authz::Simple {
            identity: CLIENT_DN.into(),
        };
        let opts = ServerOptions {
            timeout: Duration::from_secs(10),
            authz: Some(&authz),
        };
        let mut s = Stream::tls_server(OwnedFd::from(tcp), cfg, &opts).unwrap();
        let peer = s.peer().unwrap().clone();
        s.write_all(b"pong from netio\n").unwrap();
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        while s.read(&mut b).unwrap() == 1 && b[0] != b'\n' {
            line.push(b[0]);
        }
        (peer, String::from_utf8(line).unwrap())
    });
    let client = pki().join("client");
    let mut child = Kill(
        Command::new("gnutls-cli")
            .args(["-p", &port.to_string(), "--x509cafile"])
            .arg(client.join("ca-cert.pem"))
            .arg("--x509certfile")
            .arg(client.join("client-cert.pem"))
            .arg("--x509keyfile")
            .arg(client.join("client-key.pem"))
            .arg("127.0.0.1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("gnutls-cli (gnutls-bin)"),
    );
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    let mut line = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !line.contains("pong from netio") {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "gnutls-cli ended early"
        );
        assert!(Instant::now() < deadline);
    }
    child
        .0
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"ping from gnutls-cli\n")
        .unwrap();
    let (peer, got) = srv.join().unwrap();
    assert_eq!(got, "ping from gnutls-cli");
    assert_eq!(peer.dn.as_deref(), Some(CLIENT_DN));
    assert_eq!(peer.authorized, Some(true));
}

#[test]
fn gnutls_cli_without_client_cert_is_refused() {
    let pw = Secret::new(SERVER_KEY_PASSWORD.as_bytes().to_vec());
    let cfg = X509Material::load(&pki().join("server"), Endpoint::Server, true, Some(&pw))
        .unwrap()
        .server_config()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let srv = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        Stream::tls_server(OwnedFd::from(tcp), cfg, &ServerOptions::default()).map(|_| ())
    });
    let out = Command::new("gnutls-cli")
        .args(["-p", &port.to_string(), "--x509cafile"])
        .arg(pki().join("client/ca-cert.pem"))
        .arg("127.0.0.1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let e = srv.join().unwrap().unwrap_err();
    assert!(matches!(e, NetError::MissingClientCert), "{e}");
    assert!(!out.status.success() || String::from_utf8_lossy(&out.stderr).contains("alert"));
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn netio_client_talks_to_gnutls_serv() {
    assert_eq!(
        gnutls_serv_echo("NORMAL"),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
}

#[test]
fn netio_client_talks_to_gnutls_serv_tls12() {
    assert_eq!(
        gnutls_serv_echo("NORMAL:-VERS-TLS1.3"),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
}

fn gnutls_serv_echo(priority: &str) -> Option<rustls::ProtocolVersion> {
    let server = pki().join("server-plainkey");
    let port = free_port();
    let _serv = Kill(
        Command::new("gnutls-serv")
            .args([
                "--echo",
                "--require-client-cert",
                "--verify-client-cert",
                "--priority",
                priority,
                "-p",
                &port.to_string(),
                "--x509cafile",
            ])
            .arg(server.join("ca-cert.pem"))
            .arg("--x509certfile")
            .arg(server.join("server-cert.pem"))
            .arg("--x509keyfile")
            .arg(server.join("server-key.pem"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("gnutls-serv (gnutls-bin)"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let tcp = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(t) => break t,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("gnutls-serv did not listen: {e}"),
        }
    };
    let tls = X509Material::load(&pki().join("client"), Endpoint::Client, true, None)
        .unwrap()
        .client_config("localhost")
        .unwrap();
    let mut s = Stream::tls_client(OwnedFd::from(tcp), &tls, Duration::from_secs(10)).unwrap();
    assert_eq!(
        s.peer().unwrap().dn.as_deref(),
        Some("O=Bulkhead Test,CN=server.test")
    );
    s.write_all(b"echo me\n").unwrap();
    let mut buf = [0u8; 8];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"echo me\n");
    let version = s.tls_version();
    s.close().unwrap();
    version
}
