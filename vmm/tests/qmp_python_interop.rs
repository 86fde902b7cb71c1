//! Interop with the real `qemu.qmp` Python library (tests/python/qmp_interop.py)
//! against the QMP server with a fake VM. Skips loudly when python3 lacks
//! qemu.qmp, unless BULKHEAD_REQUIRE_PEERS is set.

mod qmp_support;

use std::path::PathBuf;
use std::process::Command;

use vmm::qmp::{EventBus, Listener, Registry, RunState, Server};

fn have_qemu_qmp() -> bool {
    Command::new("python3")
        .args(["-c", "import qemu.qmp"])
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn qmp_python_qemu_qmp_library_interop() {
    if !have_qemu_qmp() {
        if std::env::var_os("BULKHEAD_REQUIRE_PEERS").is_some() {
            panic!("python3 module qemu.qmp is required (pip install qemu.qmp)");
        }
        eprintln!("SKIPPED: python3 lacks qemu.qmp; set BULKHEAD_REQUIRE_PEERS=1 to fail instead");
        return;
    }
    let path = qmp_support::sock_path("py");
    let bus = EventBus::new();
    let vm = qmp_support::FakeVm::new(bus.clone(), RunState::Running);
    let mut h = Server::start_with(
        vec![Listener::bind_unix(&path).unwrap()],
        vm.clone(),
        bus,
        Registry::standard(),
    )
    .unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/python/qmp_interop.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(&path)
        .arg("--quit")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "qmp_interop.py failed");
    assert!(stdout.contains("ALL PASSED"));
    h.wait();
    assert!(h.quit_requested());
    assert_eq!(vm.rec.lock().unwrap().quits, 1);
}

#[test]
fn qmp_python_qmp_shell_interop() {
    if !have_qemu_qmp() {
        if std::env::var_os("BULKHEAD_REQUIRE_PEERS").is_some() {
            panic!("python3 module qemu.qmp is required (pip install qemu.qmp)");
        }
        eprintln!("SKIPPED: python3 lacks qemu.qmp; set BULKHEAD_REQUIRE_PEERS=1 to fail instead");
        return;
    }
    use std::io::Write;
    use std::process::Stdio;
    let path = qmp_support::sock_path("shell");
    let bus = EventBus::new();
    let vm = qmp_support::FakeVm::new(bus.clone(), RunState::Prelaunch);
    let _h = Server::start_with(
        vec![Listener::bind_unix(&path).unwrap()],
        vm,
        bus,
        Registry::standard(),
    )
    .unwrap();
    let run = |hmp: bool, input: &str| {
        let mut cmd = Command::new("python3");
        cmd.args(["-m", "qemu.qmp.qmp_shell"]);
        if hmp {
            cmd.arg("-H");
        }
        let mut child = cmd
            .arg(&path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = run(false, "query-status\ncont\nquery-name\n");
    assert!(out.contains("Connected to QEMU 7.2.22"), "{out}");
    assert!(
        out.contains(
            r#"{"return": {"running": false, "singlestep": false, "status": "prelaunch"}}"#
        ),
        "{out}"
    );
    assert!(out.contains(r#"{"return": {"name": "testvm"}}"#), "{out}");
    let out = run(true, "info status\n");
    assert!(out.contains("VM status: running"), "{out}");
}
