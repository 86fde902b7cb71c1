//! The real `bulkhead` binary (built-in guest running) driven by the real
//! `qemu.qmp` library: tests/python/qmp_interop.py end to end, then the
//! process must exit 0 after `quit`. Skips loudly without KVM or qemu.qmp,
//! unless BULKHEAD_REQUIRE_PEERS is set.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn skip(why: &str) {
    if std::env::var_os("BULKHEAD_REQUIRE_PEERS").is_some() {
        panic!("{why}");
    }
    eprintln!("SKIPPED: {why}; set BULKHEAD_REQUIRE_PEERS=1 to fail instead");
}

#[test]
fn qmp_python_against_real_binary() {
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return skip("/dev/kvm is not usable");
    }
    if !Command::new("python3")
        .args(["-c", "import qemu.qmp"])
        .status()
        .is_ok_and(|s| s.success())
    {
        return skip("python3 lacks qemu.qmp");
    }
    let sock = std::env::temp_dir().join(format!("bh-qmp-bin-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&sock);
    let mut vm = Command::new(env!("CARGO_BIN_EXE_bulkhead"))
        .args(["-name", "testvm", "-display", "none", "-nodefaults", "-qmp"])
        .arg(format!("unix:{},server=on,wait=off", sock.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sock.exists() {
        if Instant::now() > deadline || vm.try_wait().unwrap().is_some() {
            let _ = vm.kill();
            let out = vm.wait_with_output().unwrap();
            panic!(
                "bulkhead did not create its QMP socket: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/python/qmp_interop.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(&sock)
        .arg("--quit")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        let _ = vm.kill();
    }
    assert!(
        out.status.success() && stdout.contains("ALL PASSED"),
        "qmp_interop.py failed"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = vm.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "bulkhead did not exit after quit"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        status.success(),
        "bulkhead exit status after quit: {status:?}"
    );
    assert!(!sock.exists());
}
