//! Secret values never show in the supervisor's argv, environment or log
//! output, whether they come from a file, an encrypted `data=` (QEMU's
//! keyid/iv scheme) or QMP `object-add`, even at the most verbose log level.

use std::time::Duration;

use bulkhead_tests::{have_kvm, BulkheadProcess, QmpClient};
use serde_json::json;

const T: Duration = Duration::from_secs(60);

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

#[test]
fn secret_values_stay_out_of_proc_and_logs() {
    if !have_kvm() {
        eprintln!("SKIPPED: no /dev/kvm");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file_secret = "file-secret-Zq81x";
    let qmp_secret = "qmp-secret-Hw27c";
    let enc_secret = "enc-secret-Pp93k";
    std::fs::write(dir.path().join("s.txt"), file_secret).unwrap();
    // A 32-byte master key and an AES-256-CBC encrypted secret, made with
    // the real openssl command line as QEMU's docs do.
    let key = [7u8; 32];
    std::fs::write(dir.path().join("master.key"), key).unwrap();
    let iv = [9u8; 16];
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let out = std::process::Command::new("openssl")
        .args([
            "enc",
            "-aes-256-cbc",
            "-a",
            "-A",
            "-K",
            &hex(&key),
            "-iv",
            &hex(&iv),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(enc_secret.as_bytes())?;
            c.wait_with_output()
        });
    let Ok(out) = out else {
        bulkhead_tests::require_peer("openssl", false);
        return;
    };
    let ciphertext = String::from_utf8(out.stdout).unwrap();

    let sock = dir.path().join("qmp.sock");
    let args = [
        "-nodefaults".to_string(),
        "-serial".into(),
        "null".into(),
        "-object".into(),
        format!("secret,id=s0,file={}", dir.path().join("s.txt").display()),
        "-object".into(),
        format!(
            "secret,id=master,file={},format=raw",
            dir.path().join("master.key").display()
        ),
        "-object".into(),
        format!(
            "secret,id=s1,keyid=master,iv={},format=base64,data={}",
            b64(&iv),
            ciphertext.trim()
        ),
        "-qmp".into(),
        format!("unix:{},server=on,wait=off", sock.display()),
    ];
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut vm = BulkheadProcess::start_with_env(&argv, &[("RUST_LOG", "trace")]).unwrap();
    let mut qmp = QmpClient::connect(&sock, T).unwrap();
    let r = qmp
        .execute(
            "object-add",
            json!({"qom-type": "secret", "id": "s2", "data": qmp_secret}),
        )
        .unwrap();
    assert_eq!(r, json!({"return": {}}), "{r}");
    // A bad one: the error must not echo the value either.
    let r = qmp
        .execute(
            "object-add",
            json!({"qom-type": "secret", "id": "s3", "data": qmp_secret, "format": "base64"}),
        )
        .unwrap();
    assert!(r.get("error").is_some(), "{r}");
    assert!(
        !r.to_string().contains(qmp_secret),
        "error echoes the secret: {r}"
    );
    // Duplicate id: QEMU's error.
    let r = qmp
        .execute(
            "object-add",
            json!({"qom-type": "secret", "id": "s2", "data": "x"}),
        )
        .unwrap();
    assert_eq!(r["error"]["class"], "GenericError", "{r}");

    let pid = vm.child.id();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    for s in [file_secret, qmp_secret, enc_secret] {
        let needle = s.as_bytes();
        assert!(
            !cmdline.windows(needle.len()).any(|w| w == needle),
            "{s} in cmdline"
        );
        assert!(
            !environ.windows(needle.len()).any(|w| w == needle),
            "{s} in environ"
        );
    }
    qmp.execute("quit", json!({})).unwrap();
    vm.wait_exit(T).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let log = vm.log.text();
    assert!(
        log.contains("object created") || log.contains("TRACE") || log.contains("DEBUG"),
        "verbose log expected: {log}"
    );
    for s in [file_secret, qmp_secret, enc_secret] {
        assert!(!log.contains(s), "{s} appears in the log:\n{log}");
    }
}
