//! Interop with QEMU itself: a QEMU TLS chardev server (gnutls, QEMU's own
//! tls-creds-x509 loading and sanity check) serving its monitor, reached by a
//! netio TLS client. QEMU's `authz-simple` is given the DN exactly as
//! `creds::dn` formats it, which proves our DN format is QEMU's: the same DN
//! in `certtool -i`'s (reversed) order is refused by QEMU.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use creds::pki::{init, PkiOptions};
use creds::x509::{Endpoint, X509Material};
use netio::Stream;

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn qemu_tls_monitor(dir: &Path, identity: &str) -> (Kill, u16) {
    let port = free_port();
    let child = Command::new("qemu-system-x86_64")
        .args(["-machine", "none", "-display", "none", "-nodefaults", "-object"])
        .arg(format!("tls-creds-x509,id=tls0,dir={},endpoint=server,verify-peer=on", dir.display()))
        .arg("-object")
        .arg(format!("authz-simple,id=auth0,identity={}", identity.replace(',', ",,")))
        .arg("-chardev")
        .arg(format!(
            "socket,id=mon0,host=127.0.0.1,port={port},server=on,wait=off,tls-creds=tls0,tls-authz=auth0"
        ))
        .args(["-mon", "chardev=mon0,mode=readline"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qemu-system-x86_64 (qemu-system-x86)");
    (Kill(child), port)
}

fn connect(port: u16) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(t) => return t,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("QEMU did not listen on {port}: {e}"),
        }
    }
}

/// Connect with TLS and read what QEMU's monitor says (until it closes or we
/// have the banner).
fn talk(port: u16, material: &X509Material) -> Result<String, String> {
    let tls = material
        .client_config("127.0.0.1")
        .map_err(|e| e.to_string())?;
    let tcp = connect(port);
    let mut s = Stream::tls_client(OwnedFd::from(tcp), &tls, Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&got).contains("monitor") {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("{e} (after {:?})", String::from_utf8_lossy(&got))),
        }
    }
    Ok(String::from_utf8_lossy(&got).into_owned())
}

#[test]
fn qemu_accepts_pki_init_and_our_dn_format() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = PkiOptions::new(dir.path());
    o.organization = "Bulkhead Test".into();
    o.client_cn = "client.test".into();
    init(&o).unwrap();
    let client = X509Material::load(dir.path(), Endpoint::Client, true, None).unwrap();
    let dn = creds::dn::subject_dn(&client.cert_chain[0]).unwrap();
    assert_eq!(dn, "O=Bulkhead Test,CN=client.test");

    // Our DN: QEMU authorizes the client and serves its monitor.
    let (_q, port) = qemu_tls_monitor(dir.path(), &dn);
    let banner = talk(port, &client).expect("QEMU accepted the TLS client");
    assert!(
        banner.contains("QEMU") && banner.contains("monitor"),
        "{banner:?}"
    );

    // The reversed (certtool -i / RFC 4514) order: QEMU's authz refuses it.
    let (_q, port) = qemu_tls_monitor(dir.path(), "CN=client.test,O=Bulkhead Test");
    let r = talk(port, &client);
    eprintln!("reversed DN: {r:?}");
    assert!(
        r.as_ref().map_or(true, |b| !b.contains("monitor")),
        "QEMU should refuse: {r:?}"
    );
}
