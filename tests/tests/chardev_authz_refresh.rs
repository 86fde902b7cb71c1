//! `authz-listfile,refresh=on` reaches a running `svc-chardev`: a TLS
//! server chardev starts with a list file that denies the client's DN
//! (`gnutls-cli` is refused); the file is rewritten to allow it and, with
//! the same service process, the next `gnutls-cli` gets the guest's prompt
//! while a certificate the new list does not name is still refused. A
//! service restarted afterwards (`kill -9`) starts with the current rules.

use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bulkhead_tests::pki::{self, client_dn, free_port};
use bulkhead_tests::{
    have_kvm, have_program, live_children, require_peer, BulkheadProcess, Captured, QmpClient,
};
use serde_json::json;

const T: Duration = Duration::from_secs(30);

fn peers_ok(progs: &[&str]) -> bool {
    if !have_kvm() {
        eprintln!("SKIPPED: no /dev/kvm");
        return false;
    }
    progs.iter().all(|p| require_peer(p, have_program(p)))
}

/// Replaces the list file the way an administrator's tool would: a new
/// file renamed over the old one (a new inode, so the change is seen even
/// within one mtime tick).
fn write_acl(path: &Path, allow_dn: Option<&str>) {
    let rules = match allow_dn {
        Some(dn) => json!([{"match": dn, "policy": "allow"}]),
        None => json!([{"match": "CN=nobody", "policy": "allow"}]),
    };
    let text = json!({"policy": "deny", "rules": rules}).to_string();
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The svc-chardev processes that are live children of `parent`.
fn service_pids(parent: i32) -> Vec<i32> {
    live_children(parent)
        .into_iter()
        .filter(|(_, argv0)| argv0 == "svc-chardev")
        .map(|(pid, _)| pid)
        .collect()
}

fn wait_service(parent: i32, not: i32) -> i32 {
    let deadline = Instant::now() + T;
    loop {
        if let Some(&p) = service_pids(parent).iter().find(|&&p| p != not) {
            return p;
        }
        assert!(Instant::now() < deadline, "no svc-chardev process");
        std::thread::sleep(Duration::from_millis(50));
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

fn gnutls_cli(pki: &Path, port: u16, who: &str) -> Cli {
    let mut child = Command::new("gnutls-cli")
        .arg("--x509cafile")
        .arg(pki.join("ca-cert.pem"))
        .arg("--x509certfile")
        .arg(pki.join(format!("{who}-cert.pem")))
        .arg("--x509keyfile")
        .arg(pki.join(format!("{who}-key.pem")))
        .args(["-p", &port.to_string(), "127.0.0.1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gnutls-cli");
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

/// `client` sees the guest's prompt after typing CR, and its typing
/// reaches the guest (`echo TAG`).
fn good_client(pki: &Path, port: u16, tag: &str) -> Result<()> {
    use std::io::Write;
    let mut cli = gnutls_cli(pki, port, "client");
    let (out, err) = (cli.out.clone(), cli.err.clone());
    let both = || format!("stdout:\n{}\nstderr:\n{}", out.text(), err.text());
    let hs = cli.out.wait_for("Handshake was completed", T).or_else(|_| {
        cli.err
            .wait_for("Handshake was completed", Duration::from_secs(1))
    });
    if hs.is_err() {
        bail!("no handshake: {}", both());
    }
    let from = cli.out.len();
    cli.stdin.write_all(b"\r")?;
    cli.stdin.flush()?;
    cli.out
        .wait_for_from(from, "bulkhead> ", T)
        .with_context(|| format!("no prompt: {}", both()))?;
    let from = cli.out.len();
    cli.stdin.write_all(format!("echo {tag}\r").as_bytes())?;
    cli.stdin.flush()?;
    cli.out
        .wait_for_from(from, &format!("\n{tag}"), T)
        .with_context(|| format!("no echo: {}", both()))?;
    Ok(())
}

/// `who` connects and the service refuses it as not authorized (checked in
/// the supervisor's log, which carries the service's `ClientRejected`).
fn refused(vm: &BulkheadProcess, pki: &Path, port: u16, who: &str) {
    let from = vm.log.len();
    let cli = gnutls_cli(pki, port, who);
    let at = vm
        .log
        .wait_for_from(from, "connection refused", T)
        .unwrap_or_else(|e| panic!("{who}: not refused: {e}\nlog:\n{}", vm.log.text()));
    let text = vm.log.text();
    let line_end = text[at..].find('\n').map_or(text.len(), |n| at + n);
    let line = &text[from..line_end];
    assert!(
        line.contains("not authorized by tls-authz"),
        "{who}: expected an authz refusal in {line:?}"
    );
    drop(cli);
}

#[test]
fn authz_listfile_refresh_reaches_the_running_service() {
    if !peers_ok(&["gnutls-cli", "certtool"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    pki::pki_init(&pki);
    pki::add_other_client(&pki);
    let dn = client_dn(&pki.join("client-cert.pem"));
    let acl = dir.path().join("acl.json");
    write_acl(&acl, None);
    let port = free_port();
    let qmp_path = dir.path().join("qmp.sock");
    let args = [
        "-nodefaults".to_string(),
        "-object".into(),
        format!(
            "tls-creds-x509,id=tls0,dir={},endpoint=server,verify-peer=on",
            pki.display()
        ),
        "-object".into(),
        format!("authz-listfile,id=auth0,filename={},refresh=on", acl.display()),
        "-chardev".into(),
        format!(
            "socket,id=s0,host=127.0.0.1,port={port},server=on,wait=off,tls-creds=tls0,tls-authz=auth0"
        ),
        "-serial".into(),
        "chardev:s0".into(),
        "-qmp".into(),
        format!("unix:{},server=on,wait=off", qmp_path.display()),
    ];
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let vm = BulkheadProcess::start_with_env(&refs, &[("RUST_LOG", "info")]).unwrap();
    let mut qmp = QmpClient::connect(&qmp_path, T)
        .unwrap_or_else(|e| panic!("QMP: {e}; log:\n{}", vm.log.text()));
    let parent = vm.child.id() as i32;
    let pid = wait_service(parent, 0);

    // 1. The list denies the client.
    refused(&vm, &pki, port, "client");

    // 2. Allow it; the supervisor's watcher notices within ~1 s and the
    //    running service takes the new rules.
    let from = vm.log.len();
    let t0 = Instant::now();
    write_acl(&acl, Some(&dn));
    vm.log
        .wait_for_from(from, "tls-authz rules sent to the service", T)
        .unwrap_or_else(|e| panic!("no refresh: {e}\nlog:\n{}", vm.log.text()));
    let noticed = t0.elapsed();
    assert!(noticed < Duration::from_secs(5), "refresh took {noticed:?}");
    // The service logs when it applied the rules; then a new client works.
    vm.log
        .wait_for_from(from, "tls-authz rules updated", T)
        .unwrap_or_else(|e| panic!("service did not apply: {e}\nlog:\n{}", vm.log.text()));
    good_client(&pki, port, "allowed").unwrap();
    // A certificate the new list does not name is still refused.
    refused(&vm, &pki, port, "other");
    good_client(&pki, port, "again").unwrap();
    assert_eq!(
        service_pids(parent),
        vec![pid],
        "the same service process applied the new rules"
    );

    // 3. A restarted service starts with the current (refreshed) rules.
    // SAFETY: kill(2) of our own VM's service child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let pid2 = wait_service(parent, pid);
    assert_ne!(pid2, pid);
    let deadline = Instant::now() + T;
    loop {
        match good_client(&pki, port, "restarted") {
            Ok(()) => break,
            Err(e) if Instant::now() < deadline => {
                eprintln!("retrying after restart: {e:#}");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("after restart: {e:#}\nlog:\n{}", vm.log.text()),
        }
    }
    let r = qmp.execute("query-status", json!({})).unwrap();
    assert_eq!(r["return"]["status"], "running");
}
