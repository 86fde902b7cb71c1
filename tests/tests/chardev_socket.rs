//! Socket chardevs served by the sandboxed `svc-chardev`, against real TLS
//! peers: `gnutls-cli` as the client of a TLS server chardev on the guest
//! serial port (the seed's scenario), `gnutls-serv` as the server of a
//! client-mode chardev, refused clients (plaintext, wrong CA, no client
//! certificate, authz deny, stalled handshake) that never disturb the next
//! good client, confinement and `kill -9` of the service, and QMP
//! `chardev-add`/`chardev-remove`/`query-chardev`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bulkhead_tests::pki::{self, client_dn, free_port};
use bulkhead_tests::{
    have_kvm, have_program, live_children, require_peer, BulkheadProcess, Captured, QmpClient,
};
use serde_json::{json, Value};

/// [`pki::pki_init`], plus `other-cert.pem` (CN=other.test) when asked.
fn make_pki(dir: &Path, with_other: bool) {
    pki::pki_init(dir);
    if with_other {
        pki::add_other_client(dir);
    }
}

const T: Duration = Duration::from_secs(30);

fn peers_ok(progs: &[&str]) -> bool {
    if !have_kvm() {
        eprintln!("SKIPPED: no /dev/kvm");
        return false;
    }
    progs.iter().all(|p| require_peer(p, have_program(p)))
}

struct Vm {
    p: BulkheadProcess,
    qmp: QmpClient,
    _dir: tempfile::TempDir,
}

fn start_vm(args: &[String]) -> Vm {
    let dir = tempfile::tempdir().unwrap();
    let qmp_path = dir.path().join("qmp.sock");
    let mut all: Vec<String> = vec!["-nodefaults".into()];
    all.extend(args.iter().cloned());
    all.push("-qmp".into());
    all.push(format!("unix:{},server=on,wait=off", qmp_path.display()));
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    let p = BulkheadProcess::start_with_env(&refs, &[("RUST_LOG", "info")]).unwrap();
    let qmp = match QmpClient::connect(&qmp_path, T) {
        Ok(q) => q,
        Err(e) => panic!("QMP: {e}; log:\n{}", p.log.text()),
    };
    Vm { p, qmp, _dir: dir }
}

fn server_vm(pki: &Path, port: u16, extra_objects: &[String], chardev_extra: &str) -> Vm {
    let mut args = vec![
        "-object".to_string(),
        format!(
            "tls-creds-x509,id=tls0,dir={},endpoint=server,verify-peer=on",
            pki.display()
        ),
    ];
    for o in extra_objects {
        args.push("-object".into());
        args.push(o.clone());
    }
    args.extend([
        "-chardev".into(),
        format!("socket,id=s0,host=127.0.0.1,port={port},server=on,wait=off,tls-creds=tls0{chardev_extra}"),
        "-serial".into(),
        "chardev:s0".into(),
    ]);
    start_vm(&args)
}

impl Vm {
    fn chardev(&mut self, id: &str) -> Option<Value> {
        let r = self.qmp.execute("query-chardev", json!({})).unwrap();
        r["return"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["label"] == id)
            .cloned()
    }

    fn wait_filename(&mut self, id: &str, connected: bool) -> String {
        let deadline = Instant::now() + T;
        loop {
            if let Some(c) = self.chardev(id) {
                let f = c["filename"].as_str().unwrap().to_owned();
                if f.starts_with("disconnected:") != connected {
                    return f;
                }
            }
            assert!(
                Instant::now() < deadline,
                "chardev {id} never became connected={connected}; log:\n{}",
                self.p.log.text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn running(&mut self) -> bool {
        let r = self.qmp.execute("query-status", json!({})).unwrap();
        r["return"]["status"] == "running"
    }

    /// The svc-chardev processes that are children of this VM.
    fn service_pids(&self) -> Vec<i32> {
        live_children(self.p.child.id() as i32)
            .into_iter()
            .filter(|(_, argv0)| argv0 == "svc-chardev")
            .map(|(pid, _)| pid)
            .collect()
    }

    fn wait_service(&self, not: i32) -> i32 {
        let deadline = Instant::now() + T;
        loop {
            if let Some(&p) = self.service_pids().iter().find(|&&p| p != not) {
                return p;
            }
            assert!(Instant::now() < deadline, "no svc-chardev process");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A running gnutls-cli.
struct Cli {
    child: Child,
    stdin: ChildStdin,
    out: Captured,
    err: Captured,
}

impl Drop for Cli {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn gnutls_cli(port: u16, ca: &Path, cert: Option<(&Path, &Path)>) -> Cli {
    let mut cmd = Command::new("gnutls-cli");
    cmd.arg("--x509cafile").arg(ca);
    if let Some((c, k)) = cert {
        cmd.arg("--x509certfile").arg(c).arg("--x509keyfile").arg(k);
    }
    cmd.args(["-p", &port.to_string(), "127.0.0.1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("gnutls-cli");
    let out = Captured::spawn_reader(child.stdout.take().unwrap());
    let err = Captured::spawn_reader(child.stderr.take().unwrap());
    let stdin = child.stdin.take().unwrap();
    Cli {
        child,
        stdin,
        out,
        err,
    }
}

impl Cli {
    fn typ(&mut self, s: &str) {
        self.stdin.write_all(s.as_bytes()).unwrap();
        self.stdin.flush().unwrap();
    }
}

/// A good client: sees the guest's prompt and what it types reaches the
/// guest, which echoes it and runs `echo TAG`.
fn good_client(pki: &Path, port: u16, tag: &str) -> Result<()> {
    let mut cli = gnutls_cli(
        port,
        &pki.join("ca-cert.pem"),
        Some((&pki.join("client-cert.pem"), &pki.join("client-key.pem"))),
    );
    let (out, err) = (cli.out.clone(), cli.err.clone());
    let both = || format!("stdout:\n{}\nstderr:\n{}", out.text(), err.text());
    // The handshake may wait behind a stalled client (up to its timeout).
    let hs = cli.out.wait_for("Handshake was completed", T).or_else(|_| {
        cli.err
            .wait_for("Handshake was completed", Duration::from_secs(1))
    });
    if hs.is_err() {
        bail!("no handshake: {}", both());
    }
    let from = cli.out.len();
    cli.typ("\r");
    cli.out
        .wait_for_from(from, "bulkhead> ", T)
        .with_context(|| format!("no prompt: {}", both()))?;
    let from = cli.out.len();
    cli.typ(&format!("echo {tag}\r"));
    cli.out
        .wait_for_from(from, &format!("\n{tag}"), T)
        .with_context(|| format!("no echo: {}", both()))?;
    Ok(())
}

/// The seed's scenario: gnutls-cli with a client certificate sees the
/// guest's serial output and its typing reaches the guest; everything the
/// guest wrote (even before any client) is in the logfile.
#[test]
fn gnutls_cli_talks_to_the_guest_serial_over_tls() {
    if !peers_ok(&["gnutls-cli"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    make_pki(&pki, false);
    let port = free_port();
    let log = dir.path().join("serial.log");
    let mut vm = server_vm(&pki, port, &[], &format!(",logfile={}", log.display()));
    let f = vm.wait_filename("s0", false);
    assert_eq!(f, format!("disconnected:tcp:127.0.0.1:{port},server=on"));
    good_client(&pki, port, "hi").unwrap();
    // The banner was written before any client: dropped on the socket
    // (as QEMU does) but recorded in the logfile.
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("Bulkhead test guest"), "logfile: {text:?}");
    assert!(text.contains("echo hi"), "logfile: {text:?}");
    let c = vm.chardev("s0").unwrap();
    assert_eq!(c["frontend-open"], true);
    assert!(vm.running());
}

/// Refused clients, each followed by a good client on the same VM and the
/// same service process.
#[test]
fn refused_clients_never_disturb_the_next_one() {
    if !peers_ok(&["gnutls-cli", "certtool"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    make_pki(&pki, true);
    let pki2 = dir.path().join("pki2");
    make_pki(&pki2, false);
    let dn = client_dn(&pki.join("client-cert.pem"));
    let port = free_port();
    let mut vm = server_vm(
        &pki,
        port,
        // QEMU option syntax: a comma inside a value is doubled.
        &[format!(
            "authz-simple,id=auth0,identity={}",
            dn.replace(',', ",,")
        )],
        ",tls-authz=auth0",
    );
    vm.wait_filename("s0", false);
    let pid = vm.wait_service(0);
    good_client(&pki, port, "first").unwrap();

    let ca = pki.join("ca-cert.pem");
    let cases: Vec<(&str, &str)> = vec![
        ("plaintext", "not speaking TLS"),
        ("wrong-ca", "not signed by a trusted CA"),
        ("no-cert", "sent no certificate"),
        ("authz-deny", "not authorized by tls-authz"),
        ("stall", "timed out"),
    ];
    for (i, (case, want)) in cases.into_iter().enumerate() {
        let from = vm.p.log.len();
        let t0 = Instant::now();
        let mut _cli = None;
        let mut _tcp = None;
        match case {
            "plaintext" => {
                let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                s.write_all(b"hello, this is not TLS\r\n").unwrap();
                _tcp = Some(s);
            }
            "wrong-ca" => {
                _cli = Some(gnutls_cli(
                    port,
                    &ca,
                    Some((&pki2.join("client-cert.pem"), &pki2.join("client-key.pem"))),
                ))
            }
            "no-cert" => _cli = Some(gnutls_cli(port, &ca, None)),
            "authz-deny" => {
                _cli = Some(gnutls_cli(
                    port,
                    &ca,
                    Some((&pki.join("other-cert.pem"), &pki.join("other-key.pem"))),
                ))
            }
            "stall" => _tcp = Some(TcpStream::connect(("127.0.0.1", port)).unwrap()),
            _ => unreachable!(),
        }
        let at =
            vm.p.log
                .wait_for_from(from, "connection refused", T)
                .unwrap_or_else(|e| panic!("{case}: not refused: {e}"));
        let line_end = vm.p.log.text()[at..]
            .find('\n')
            .map_or(vm.p.log.len(), |n| at + n);
        let line = &vm.p.log.text()[from..line_end];
        assert!(line.contains(want), "{case}: expected {want:?} in {line:?}");
        if case == "stall" {
            assert!(
                t0.elapsed() >= Duration::from_secs(9),
                "stalled handshake cut after {:?}",
                t0.elapsed()
            );
        }
        if let Some(mut s) = _tcp.take() {
            // The service closed the refused connection.
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut b = [0u8; 64];
            let n = s.read(&mut b).unwrap_or(0);
            assert_eq!(n, 0, "{case}: the refused socket should be closed");
        }
        drop(_cli);
        good_client(&pki, port, &format!("good{i}"))
            .unwrap_or_else(|e| panic!("good client after {case}: {e}"));
        assert!(vm.running(), "VM still running after {case}");
    }
    assert_eq!(
        vm.service_pids(),
        vec![pid],
        "same service process throughout"
    );
}

/// `gnutls-serv --echo` (mutual TLS) on `port`, and what it receives
/// (it reports `received cmd: ...` on stderr; stdbuf because its stdio is
/// block-buffered on a pipe). Waits until it listens.
fn gnutls_serv(pki: &Path, port: u16) -> (Child, Captured) {
    let mut serv = Command::new("stdbuf")
        .args([
            "-oL",
            "-eL",
            "gnutls-serv",
            "--echo",
            "--require-client-cert",
            "--verify-client-cert",
            "-p",
            &port.to_string(),
            "--x509cafile",
        ])
        .arg(pki.join("ca-cert.pem"))
        .arg("--x509certfile")
        .arg(pki.join("server-cert.pem"))
        .arg("--x509keyfile")
        .arg(pki.join("server-key.pem"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gnutls-serv");
    let out = Captured::spawn_reader(serv.stderr.take().unwrap());
    out.wait_for("listening on IPv4", T).unwrap();
    (serv, out)
}

/// Client mode against gnutls-serv (mutual TLS): the guest's output arrives
/// at the server; when the server goes away the chardev reconnects
/// (`reconnect=1`) to its successor.
#[test]
fn client_mode_reaches_gnutls_serv_and_reconnects() {
    if !peers_ok(&["gnutls-serv"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    make_pki(&pki, false);
    let port = free_port();
    let (mut serv, out) = gnutls_serv(&pki, port);
    // -S: connect first, then let the guest boot and print its banner.
    let mut vm = start_vm(&[
        "-S".into(),
        "-object".into(),
        format!(
            "tls-creds-x509,id=tlsc,dir={},endpoint=client,verify-peer=on",
            pki.display()
        ),
        "-chardev".into(),
        format!("socket,id=c0,host=127.0.0.1,port={port},server=off,reconnect=1,tls-creds=tlsc"),
        "-serial".into(),
        "chardev:c0".into(),
    ]);
    let f = vm.wait_filename("c0", true);
    assert!(f.starts_with(&format!("tcp:127.0.0.1:{port} <-> ")), "{f}");
    vm.qmp.execute("cont", json!({})).unwrap();
    out.wait_for("Bulkhead test guest", T)
        .unwrap_or_else(|e| panic!("{e}; log:\n{}", vm.p.log.text()));
    // (The echo server sends the banner back as typed input; the guest's
    // answers go round until the server stops.)
    let _ = serv.kill();
    let _ = serv.wait();
    vm.wait_filename("c0", false);

    let (mut serv2, out2) = gnutls_serv(&pki, port);
    vm.wait_filename("c0", true);
    // A reset makes the guest print its banner again, to the new server.
    vm.qmp.execute("system_reset", json!({})).unwrap();
    out2.wait_for("Bulkhead test guest", T)
        .unwrap_or_else(|e| panic!("after reconnect: {e}; log:\n{}", vm.p.log.text()));
    let _ = serv2.kill();
    let _ = serv2.wait();
    assert!(vm.running());
}

/// The service is confined like every service; `kill -9` leaves the VM
/// running, the service comes back and a new client connects.
#[test]
fn service_is_confined_and_survives_kill_9() {
    if !peers_ok(&["gnutls-cli"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    make_pki(&pki, false);
    let port = free_port();
    let mut vm = server_vm(&pki, port, &[], "");
    let pid = vm.wait_service(0);

    let st = sandbox::inspect::proc_status(pid).unwrap();
    assert_eq!(st.seccomp, 2, "Seccomp: 2 (filter)");
    assert!(st.no_new_privs, "NoNewPrivs: 1");
    assert!(st.no_capabilities(), "every capability set empty: {st:?}");
    assert!(st.uid.iter().all(|&u| u != 0), "not root: {:?}", st.uid);
    let mine = sandbox::inspect::own_namespaces().unwrap();
    let theirs = sandbox::inspect::namespaces(pid).unwrap();
    assert_ne!(mine.mnt, theirs.mnt, "mount namespace");
    assert_ne!(mine.net, theirs.net, "net namespace");
    assert_ne!(mine.pid, theirs.pid, "pid namespace");
    assert!(sandbox::inspect::root_entries(pid).unwrap().is_empty());
    for var in sandbox::inspect::environment(pid).unwrap() {
        assert!(var.to_string_lossy().starts_with("RUST_LOG="), "{var:?}");
    }
    // No file is open: only stdio, the IPC socket, the listener, an eventfd.
    for (n, target) in sandbox::inspect::open_fds(pid).unwrap() {
        let t = target.to_string_lossy();
        assert!(
            n <= 2 || t.starts_with("socket:") || t.starts_with("anon_inode:"),
            "unexpected fd {n} -> {t}"
        );
    }

    good_client(&pki, port, "before").unwrap();
    // SAFETY: kill(2) of the service process this test found.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let pid2 = vm.wait_service(pid);
    assert_ne!(pid2, pid);
    assert!(vm.running(), "the VM keeps running");
    vm.wait_filename("s0", false);
    good_client(&pki, port, "after").unwrap();
    assert!(vm.running());
}

/// `chardev-add` of a TLS server socket at run time, `query-chardev`,
/// `chardev-remove`, and QEMU-shaped errors.
#[test]
fn chardev_add_tls_socket_at_run_time() {
    if !peers_ok(&["gnutls-cli"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    make_pki(&pki, false);
    let mut vm = start_vm(&[]);
    let r = vm
        .qmp
        .execute(
            "object-add",
            json!({"qom-type": "tls-creds-x509", "id": "tls1",
                   "dir": pki.display().to_string(), "endpoint": "server", "verify-peer": true}),
        )
        .unwrap();
    assert!(r.get("return").is_some(), "{r}");
    let port = free_port();
    let add = json!({"id": "s1", "backend": {"type": "socket", "data": {
        "addr": {"type": "inet", "data": {"host": "127.0.0.1", "port": port.to_string()}},
        "server": true, "wait": false, "tls-creds": "tls1"}}});
    let r = vm.qmp.execute("chardev-add", add.clone()).unwrap();
    assert_eq!(r["return"], json!({}), "{r}");
    let f = vm.wait_filename("s1", false);
    assert_eq!(f, format!("disconnected:tcp:127.0.0.1:{port},server=on"));
    assert_eq!(vm.chardev("s1").unwrap()["frontend-open"], false);

    let cli = gnutls_cli(
        port,
        &pki.join("ca-cert.pem"),
        Some((&pki.join("client-cert.pem"), &pki.join("client-key.pem"))),
    );
    cli.out.wait_for("Handshake was completed", T).unwrap();
    let f = vm.wait_filename("s1", true);
    assert!(
        f.starts_with(&format!("tcp:127.0.0.1:{port},server=on <-> 127.0.0.1:")),
        "{f}"
    );
    drop(cli);

    let err = |r: Value| -> (String, String) {
        (
            r["error"]["class"].as_str().unwrap_or("").to_owned(),
            r["error"]["desc"].as_str().unwrap_or("").to_owned(),
        )
    };
    let generic = |d: &str| ("GenericError".to_owned(), d.to_owned());
    assert_eq!(
        err(vm.qmp.execute("chardev-add", add.clone()).unwrap()),
        generic("Chardev with id 's1' already exists")
    );
    assert_eq!(
        err(vm.qmp.execute("chardev-add", json!({"id": "x"})).unwrap()),
        generic("Parameter 'backend' is missing")
    );
    assert_eq!(
        err(vm
            .qmp
            .execute(
                "chardev-add",
                json!({"id": "x", "backend": {"type": "nope", "data": {}}})
            )
            .unwrap()),
        generic("Parameter 'type' does not accept value 'nope'")
    );
    let p2 = free_port().to_string();
    assert_eq!(
        err(vm
            .qmp
            .execute(
                "chardev-add",
                json!({"id": "x", "backend": {"type": "socket", "data": {
                "addr": {"type": "inet", "data": {"host": "127.0.0.1", "port": p2}},
                "tls-creds": "nosuch"}}})
            )
            .unwrap()),
        generic("Failed to add chardev 'x': No TLS credentials with id 'nosuch'")
    );
    assert_eq!(
        err(vm
            .qmp
            .execute(
                "chardev-add",
                json!({"id": "x", "backend": {"type": "socket", "data": {
                "addr": {"type": "inet", "data": {"host": "127.0.0.1", "port": 5}}}}})
            )
            .unwrap()),
        generic("Invalid parameter type for 'backend.data.addr.data.port', expected: string")
    );
    assert!(
        vm.chardev("x").is_none(),
        "failed adds leave nothing behind"
    );

    // HMP sees it too.
    let r = vm
        .qmp
        .execute(
            "human-monitor-command",
            json!({"command-line": "info chardev"}),
        )
        .unwrap();
    assert!(
        r["return"]
            .as_str()
            .unwrap_or("")
            .contains("s1: filename=disconnected:tcp:")
            || r["return"]
                .as_str()
                .unwrap_or("")
                .contains("s1: filename=tcp:"),
        "{r}"
    );

    // HMP chardev-add / chardev-remove take the -chardev syntax.
    let p3 = free_port();
    let hmp = |vm: &mut Vm, line: String| -> String {
        let r = vm
            .qmp
            .execute("human-monitor-command", json!({"command-line": line}))
            .unwrap();
        r["return"]
            .as_str()
            .unwrap_or_else(|| panic!("{r}"))
            .to_owned()
    };
    assert_eq!(
        hmp(
            &mut vm,
            format!("chardev-add socket,id=h1,host=127.0.0.1,port={p3},server=on,wait=off")
        ),
        ""
    );
    assert_eq!(
        vm.wait_filename("h1", false),
        format!("disconnected:tcp:127.0.0.1:{p3},server=on")
    );
    assert_eq!(hmp(&mut vm, "chardev-remove h1".into()), "");
    assert!(vm.chardev("h1").is_none());

    // The credentials are in use by s1: object-del refuses them (QEMU's
    // error), until the chardev is gone.
    assert_eq!(
        err(vm.qmp.execute("object-del", json!({"id": "tls1"})).unwrap()),
        generic("object 'tls1' is in use, can not be deleted")
    );
    let r = vm
        .qmp
        .execute("chardev-remove", json!({"id": "s1"}))
        .unwrap();
    assert_eq!(r["return"], json!({}), "{r}");
    assert!(vm.chardev("s1").is_none());
    let r = vm.qmp.execute("object-del", json!({"id": "tls1"})).unwrap();
    assert_eq!(r["return"], json!({}), "{r}");
    assert_eq!(
        err(vm.qmp.execute("object-del", json!({"id": "tls1"})).unwrap()),
        generic("object 'tls1' not found")
    );
    let deadline = Instant::now() + T;
    while TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(
            Instant::now() < deadline,
            "listener still open after remove"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        err(vm
            .qmp
            .execute("chardev-remove", json!({"id": "s1"}))
            .unwrap()),
        generic("Chardev 's1' not found")
    );
    assert!(vm.running());
}

/// `wait=on`: start-up blocks (no monitor yet, guest not started) until
/// the first client passes TLS; then everything proceeds.
#[test]
fn wait_on_holds_start_up_until_a_client_connects() {
    if !peers_ok(&["gnutls-cli"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    make_pki(&pki, false);
    let port = free_port();
    let qmp_path = dir.path().join("qmp.sock");
    let args = [
        "-nodefaults".to_string(),
        "-object".into(),
        format!(
            "tls-creds-x509,id=tls0,dir={},endpoint=server,verify-peer=on",
            pki.display()
        ),
        "-chardev".into(),
        format!("socket,id=s0,host=127.0.0.1,port={port},server=on,wait=on,tls-creds=tls0"),
        "-serial".into(),
        "chardev:s0".into(),
        "-qmp".into(),
        format!("unix:{},server=on,wait=off", qmp_path.display()),
    ];
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let p = BulkheadProcess::start(&refs).unwrap();
    p.log
        .wait_for(
            &format!("QEMU waiting for connection on: disconnected:tcp:127.0.0.1:{port},server=on"),
            T,
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !qmp_path.exists(),
        "the monitor must wait for the client too"
    );
    good_client(&pki, port, "waited").unwrap();
    let mut qmp = QmpClient::connect(&qmp_path, T).unwrap();
    let r = qmp.execute("query-status", json!({})).unwrap();
    assert_eq!(r["return"]["status"], "running", "{r}");

    // Nobody connects: SIGTERM still ends the waiting start-up.
    let port2 = free_port().to_string();
    let args2: Vec<String> = args
        .iter()
        .map(|a| a.replace(&format!("port={port},"), &format!("port={port2},")))
        .filter(|a| !a.contains("qmp.sock"))
        .collect();
    let refs2: Vec<&str> = args2
        .iter()
        .map(String::as_str)
        .filter(|a| *a != "-qmp")
        .collect();
    let mut p2 = BulkheadProcess::start(&refs2).unwrap();
    p2.log
        .wait_for("QEMU waiting for connection on:", T)
        .unwrap();
    // SAFETY: kill(2) of the child this test started.
    let rc = unsafe { libc::kill(p2.child.id() as i32, libc::SIGTERM) };
    assert_eq!(rc, 0);
    let st = p2.wait_exit(Duration::from_secs(5)).unwrap();
    assert!(!st.success(), "{st:?}");
}

/// `-serial tcp:...` and `-serial unix:...` shorthands without TLS: the
/// same service, plain byte streams.
#[test]
fn serial_tcp_and_unix_shorthands_work_without_tls() {
    if !peers_ok(&[]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let sock = dir.path().join("serial.sock");
    for (i, serial) in [
        format!("tcp:127.0.0.1:{port},server=on,wait=off"),
        format!("unix:{},server=on,wait=off", sock.display()),
    ]
    .into_iter()
    .enumerate()
    {
        let mut vm = start_vm(&["-serial".into(), serial.clone()]);
        vm.wait_filename("serial0", false);
        let mut s: Box<dyn ReadWrite> = if i == 0 {
            let t = TcpStream::connect(("127.0.0.1", port)).unwrap();
            t.set_read_timeout(Some(T)).unwrap();
            Box::new(t)
        } else {
            let u = std::os::unix::net::UnixStream::connect(&sock).unwrap();
            u.set_read_timeout(Some(T)).unwrap();
            Box::new(u)
        };
        vm.wait_filename("serial0", true);
        s.write_all(b"echo shorthand\r").unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        let deadline = Instant::now() + T;
        while !String::from_utf8_lossy(&got).contains("\nshorthand") {
            assert!(Instant::now() < deadline, "{serial}: got {got:?}");
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "{serial}: closed; got {got:?}");
            got.extend_from_slice(&buf[..n]);
        }
        if i == 1 {
            vm.qmp.execute("quit", json!({})).unwrap();
            vm.p.wait_exit(T).unwrap();
            assert!(!sock.exists(), "the unix socket file is removed at exit");
        }
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// Client mode without `reconnect=`: a peer that is not there is a start-up
/// error (and a `chardev-add` error), as in QEMU.
#[test]
fn client_mode_without_reconnect_fails_when_nobody_listens() {
    if !peers_ok(&[]) {
        return;
    }
    let port = free_port();
    let mut p = BulkheadProcess::start(&[
        "-nodefaults",
        "-chardev",
        &format!("socket,id=c0,host=127.0.0.1,port={port},server=off"),
        "-serial",
        "chardev:c0",
    ])
    .unwrap();
    let st = p.wait_exit(T).unwrap();
    assert!(!st.success());
    p.log
        .wait_for(
            &format!("chardev 'c0': Failed to connect to '127.0.0.1:{port}'"),
            T,
        )
        .unwrap();

    let mut vm = start_vm(&[]);
    let r = vm
        .qmp
        .execute(
            "chardev-add",
            json!({"id": "c1", "backend": {"type": "socket", "data": {
                "addr": {"type": "inet", "data": {"host": "127.0.0.1", "port": port.to_string()}},
                "server": false}}}),
        )
        .unwrap();
    let desc = r["error"]["desc"].as_str().unwrap_or_default();
    assert!(
        desc.starts_with(&format!(
            "Failed to add chardev 'c1': Failed to connect to '127.0.0.1:{port}'"
        )),
        "{r}"
    );
    assert!(vm.chardev("c1").is_none());
    assert!(vm.running());
}
