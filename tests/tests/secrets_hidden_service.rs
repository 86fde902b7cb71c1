//! The service half of "secrets never leak": a TLS server chardev whose
//! `server-key.pem` is a password-protected PKCS#8 key (made with certtool,
//! `passwordid=` naming a `secret` read from a file). After a real TLS
//! client (gnutls-cli with a client certificate) has used the key, neither
//! the password nor the decrypted private key shows in the supervisor's or
//! the sandboxed `svc-chardev`'s `/proc/PID/cmdline` and `/proc/PID/environ`,
//! nor anywhere in the whole log (`RUST_LOG=trace`; services log to the
//! supervisor's stderr), and the service is seccomp-confined.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bulkhead_tests::pki::{self, certtool, free_port};
use bulkhead_tests::{bulkhead_bin, have_kvm, have_program, require_peer, Captured, QmpClient};
use serde_json::json;

const T: Duration = Duration::from_secs(30);

/// The key's password: distinctive, so any occurrence is a leak.
const PASSWORD: &str = "kEy-Pa55word-Qv7Zt3";

fn b64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A PKI from `bulkhead pki init` whose `server-key.pem` is then replaced
/// by certtool's password-protected PKCS#8 form of the same key. Returns the
/// decrypted key as certtool prints it back (`certtool -k --password`) and
/// the unencrypted PKCS#8 PEM it was made from.
fn make_pki(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    pki::pki_init(dir);
    let pkcs8 = std::fs::read(dir.join("server-key.pem")).unwrap();
    certtool(
        dir,
        &[
            "--to-p8",
            "--password",
            PASSWORD,
            "--load-privkey",
            "server-key.pem",
            "--outfile",
            "server-key-p8.pem",
        ],
    );
    std::fs::rename(dir.join("server-key-p8.pem"), dir.join("server-key.pem")).unwrap();
    let enc = std::fs::read_to_string(dir.join("server-key.pem")).unwrap();
    assert!(enc.contains("BEGIN ENCRYPTED PRIVATE KEY"), "{enc}");
    let decrypted = certtool(
        dir,
        &["-k", "--password", PASSWORD, "--infile", "server-key.pem"],
    );
    (decrypted, pkcs8)
}

/// The body of the first PEM block labelled `label`, decoded.
fn pem_block(text: &str, label: &str) -> (Vec<String>, Vec<u8>) {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text
        .find(&begin)
        .unwrap_or_else(|| panic!("{begin} in {text}"));
    let body = &text[start + begin.len()..];
    let body = &body[..body.find(&end).unwrap()];
    let lines: Vec<String> = body
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    let pem = format!("{begin}\n{}\n{end}\n", lines.join("\n"));
    let blocks = creds::pem::parse(pem.as_bytes()).unwrap();
    (lines, blocks[0].der.to_vec())
}

/// The private scalar of an EC key (`ECPrivateKey`: version 1, then an
/// OCTET STRING), or the middle 32 bytes of the DER for other key types.
fn secret_core(der: &[u8]) -> Vec<u8> {
    if let Some(i) = der.windows(4).position(|w| w == [0x02, 0x01, 0x01, 0x04]) {
        let len = usize::from(der[i + 4]);
        if len >= 16 && i + 5 + len <= der.len() {
            return der[i + 5..i + 5 + len].to_vec();
        }
    }
    let m = der.len() / 2;
    der[m - 16..m + 16].to_vec()
}

/// Every form in which the password or the decrypted key could leak.
fn needles(key_text: &[u8], pkcs8_text: &[u8]) -> Vec<(String, Vec<u8>)> {
    let text = String::from_utf8_lossy(key_text);
    let label = ["EC PRIVATE KEY", "RSA PRIVATE KEY", "PRIVATE KEY"]
        .into_iter()
        .find(|l| text.contains(&format!("-----BEGIN {l}-----")))
        .unwrap_or_else(|| panic!("no decrypted key in certtool output:\n{text}"));
    let (lines, der) = pem_block(&text, label);
    let core = secret_core(&der);
    let hex = |b: &[u8], sep: &str| {
        b.iter()
            .map(|x| format!("{x:02x}"))
            .collect::<Vec<_>>()
            .join(sep)
    };
    let mut n: Vec<(String, Vec<u8>)> = vec![
        ("password".into(), PASSWORD.as_bytes().to_vec()),
        (
            "password base64".into(),
            b64(PASSWORD.as_bytes()).into_bytes(),
        ),
        ("raw private scalar".into(), core[..16].to_vec()),
        (
            "private scalar hex".into(),
            hex(&core[..12], "").into_bytes(),
        ),
        (
            "private scalar hex (upper)".into(),
            hex(&core[..12], "").to_uppercase().into_bytes(),
        ),
        (
            "private scalar hex:colons".into(),
            hex(&core[..8], ":").into_bytes(),
        ),
        (
            "private scalar as Debug bytes".into(),
            core[..8]
                .iter()
                .map(u8::to_string)
                .collect::<Vec<_>>()
                .join(", ")
                .into_bytes(),
        ),
        (
            "private scalar base64".into(),
            b64(&core).as_bytes()[..20].to_vec(),
        ),
    ];
    // Every whole base64 line of both decrypted PEM forms (SEC1 from
    // certtool, PKCS#8 as the key was before encryption): each holds part
    // of the private scalar or is unique to this key.
    let (p8_lines, _) = pem_block(&String::from_utf8_lossy(pkcs8_text), "PRIVATE KEY");
    for (form, ls) in [(label, &lines), ("PKCS#8", &p8_lines)] {
        for (i, l) in ls.iter().enumerate() {
            if l.len() >= 32 {
                n.push((
                    format!("decrypted {form} PEM line {}", i + 1),
                    l.as_bytes().to_vec(),
                ));
            }
        }
    }
    n
}

/// The supervisor, its stderr going to a file so the log is checked as raw
/// bytes (a lossy decode could hide a leaked binary key).
struct Supervisor {
    child: Child,
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Live children of `parent`, with their argv0.
fn children(parent: u32) -> Vec<(u32, String)> {
    bulkhead_tests::live_children(parent as i32)
        .into_iter()
        .map(|(pid, argv0)| (pid as u32, argv0))
        .collect()
}

/// The readable memory of `pid` (regions the kernel refuses to read, such
/// as `[vvar]`, are skipped), or `None` when this user may not read it.
fn process_memory(pid: u32) -> Option<Vec<(String, Vec<u8>)>> {
    use std::os::unix::fs::FileExt;
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mem = match File::open(format!("/proc/{pid}/mem")) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return None,
        Err(e) => panic!("/proc/{pid}/mem: {e}"),
    };
    let mut out = Vec::new();
    for line in maps.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(range), Some(perms)) = (f.first(), f.get(1)) else {
            continue;
        };
        if !perms.starts_with('r') {
            continue;
        }
        let (a, b) = range.split_once('-').unwrap();
        let a = u64::from_str_radix(a, 16).unwrap();
        let b = u64::from_str_radix(b, 16).unwrap();
        let mut buf = vec![0u8; usize::try_from(b - a).unwrap()];
        if mem.read_exact_at(&mut buf, a).is_ok() {
            out.push((line.to_string(), buf));
        }
    }
    Some(out)
}

fn assert_clean(what: &str, data: &[u8], needles: &[(String, Vec<u8>)]) {
    for (name, n) in needles {
        if let Some(at) = data.windows(n.len()).position(|w| w == n) {
            let shown = if data.len() <= 1 << 16 {
                String::from_utf8_lossy(data).into_owned()
            } else {
                let s = at.saturating_sub(256);
                String::from_utf8_lossy(&data[s..(at + n.len() + 256).min(data.len())]).into_owned()
            };
            panic!(
                "SECRET LEAK: the {name} ({:?}) appears in {what} at byte {at}:\n{shown}",
                String::from_utf8_lossy(n)
            );
        }
    }
}

#[test]
fn key_password_and_private_key_stay_out_of_service_proc_and_logs() {
    if !have_kvm() {
        eprintln!("SKIPPED: no /dev/kvm");
        return;
    }
    if !["certtool", "gnutls-cli"]
        .iter()
        .all(|p| require_peer(p, have_program(p)))
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let (decrypted, pkcs8) = make_pki(&pki);
    let needles = needles(&decrypted, &pkcs8);
    let pwfile = dir.path().join("key.pw");
    std::fs::write(&pwfile, PASSWORD).unwrap();
    let sock = dir.path().join("qmp.sock");
    let logpath = dir.path().join("stderr.log");
    let port = free_port();

    let args = [
        "-nodefaults".to_string(),
        "-object".into(),
        format!("secret,id=sec0,file={}", pwfile.display()),
        "-object".into(),
        format!(
            "tls-creds-x509,id=tls0,dir={},endpoint=server,verify-peer=on,passwordid=sec0",
            pki.display()
        ),
        "-chardev".into(),
        format!("socket,id=s0,host=127.0.0.1,port={port},server=on,wait=off,tls-creds=tls0"),
        "-serial".into(),
        "chardev:s0".into(),
        "-qmp".into(),
        format!("unix:{},server=on,wait=off", sock.display()),
    ];
    let mut sup = Supervisor {
        child: Command::new(bulkhead_bin())
            .args(&args)
            .env("RUST_LOG", "trace")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&logpath).unwrap())
            .spawn()
            .unwrap(),
    };
    let log = || std::fs::read(&logpath).unwrap();
    let mut qmp = QmpClient::connect(&sock, T)
        .unwrap_or_else(|e| panic!("QMP: {e}; log:\n{}", String::from_utf8_lossy(&log())));
    let sup_pid = sup.child.id();

    // The sandboxed service that holds the key.
    let deadline = Instant::now() + T;
    let svc_pid = loop {
        if let Some((p, _)) = children(sup_pid)
            .into_iter()
            .find(|(_, a)| a == "svc-chardev")
        {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "no svc-chardev child; log:\n{}",
            String::from_utf8_lossy(&log())
        );
        std::thread::sleep(Duration::from_millis(50));
    };

    // One real mutual-TLS client, so the service really signs with the key,
    // and data flows both ways.
    let mut cli = Command::new("gnutls-cli")
        .arg("--x509cafile")
        .arg(pki.join("ca-cert.pem"))
        .arg("--x509certfile")
        .arg(pki.join("client-cert.pem"))
        .arg("--x509keyfile")
        .arg(pki.join("client-key.pem"))
        .args(["-p", &port.to_string(), "127.0.0.1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = Captured::spawn_reader(cli.stdout.take().unwrap());
    let err = Captured::spawn_reader(cli.stderr.take().unwrap());
    let both = || format!("stdout:\n{}\nstderr:\n{}", out.text(), err.text());
    out.wait_for("Handshake was completed", T)
        .or_else(|_| err.wait_for("Handshake was completed", Duration::from_secs(1)))
        .unwrap_or_else(|_| panic!("no TLS handshake: {}", both()));
    let mut stdin = cli.stdin.take().unwrap();
    let from = out.len();
    stdin.write_all(b"echo keyused\r").unwrap();
    stdin.flush().unwrap();
    out.wait_for_from(from, "\nkeyused", T)
        .unwrap_or_else(|e| panic!("no echo through the TLS chardev: {e}; {}", both()));

    // The service is confined (seccomp filter mode) and, like the
    // supervisor and any other child, shows neither the password nor the
    // key in its argv or environment.
    let status = std::fs::read_to_string(format!("/proc/{svc_pid}/status")).unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.split_whitespace().eq(["Seccomp:", "2"])),
        "svc-chardev is not seccomp-filtered:\n{status}"
    );
    // The supervisor decrypts the key: the password is never sent to the
    // service, so not even the service's memory holds it. The raw key bytes
    // of the startup message are zeroized once the TLS configuration is
    // built, so the plain scalar is not left in the service's heap either.
    match process_memory(svc_pid) {
        Some(regions) => {
            let maps: Vec<&str> = regions.iter().map(|(m, _)| m.as_str()).collect();
            assert!(maps.iter().any(|m| m.contains("[heap]")), "{maps:#?}");
            for (map, data) in &regions {
                let pw: Vec<_> = needles
                    .iter()
                    .filter(|(n, _)| n.starts_with("password") || n.starts_with("raw private"))
                    .cloned()
                    .collect();
                assert_clean(&format!("svc-chardev memory ({map})"), data, &pw);
            }
        }
        None => eprintln!("NOT CHECKED: cannot read /proc/{svc_pid}/mem as this user"),
    }
    let mut procs = vec![(sup_pid, "bulkhead".to_string())];
    procs.extend(children(sup_pid));
    assert!(procs.iter().any(|&(p, _)| p == svc_pid), "{procs:?}");
    for (pid, name) in &procs {
        for f in ["cmdline", "environ"] {
            let data = std::fs::read(format!("/proc/{pid}/{f}"))
                .unwrap_or_else(|e| panic!("/proc/{pid}/{f} ({name}): {e}"));
            if f == "cmdline" {
                assert!(!data.is_empty(), "{name} has an empty cmdline");
            }
            assert_clean(&format!("/proc/{pid}/{f} of {name}"), &data, &needles);
        }
    }

    let _ = cli.kill();
    let _ = cli.wait();
    let r = qmp.execute("quit", json!({})).unwrap();
    assert_eq!(r, json!({"return": {}}), "{r}");
    let deadline = Instant::now() + T;
    let st = loop {
        if let Some(st) = sup.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "bulkhead did not exit after quit"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(st.success(), "exit status {st}");

    // The whole log, supervisor and service, at trace level. It must really
    // be verbose and really contain the service's lines, or the check below
    // would prove nothing.
    let log = log();
    let text = String::from_utf8_lossy(&log);
    assert!(text.contains("TRACE") || text.contains("DEBUG"), "{text}");
    assert!(text.contains("svc-chardev"), "no service lines in:\n{text}");
    assert_clean(
        "the log (stderr) of bulkhead and svc-chardev",
        &log,
        &needles,
    );
}
