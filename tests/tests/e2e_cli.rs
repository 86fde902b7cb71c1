//! The libvirt-facing parts of the command line, end to end through the real
//! binary: `-daemonize` with `-pidfile`, `-D logfile`, a QMP monitor on a
//! pre-opened listening fd (`-chardev socket,fd=N` + `-mon`), file-backed
//! guest RAM through `-object memory-backend-file` + `-machine
//! memory-backend=`, and the no-argument demo mode `cargo run` uses.

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bulkhead_tests::{bulkhead_bin, have_kvm, BulkheadProcess, QmpClient};
use serde_json::json;

const T: Duration = Duration::from_secs(60);

fn kvm() -> bool {
    if have_kvm() {
        return true;
    }
    assert!(
        std::env::var_os("BULKHEAD_REQUIRE_PEERS").is_none(),
        "/dev/kvm is required"
    );
    eprintln!("SKIPPED: no usable /dev/kvm");
    false
}

fn pid_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map(|s| !s.contains("State:\tZ"))
        .unwrap_or(false)
}

#[test]
fn daemonize_pidfile_and_logfile() {
    if !kvm() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("qmp.sock");
    let pidfile = dir.path().join("vm.pid");
    let logfile = dir.path().join("vm.log");
    let out = Command::new(bulkhead_bin())
        .args([
            "-daemonize",
            "-nodefaults",
            "-serial",
            "null",
            "-name",
            "daemon-test",
        ])
        .arg("-pidfile")
        .arg(&pidfile)
        .arg("-D")
        .arg(&logfile)
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", sock.display()))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    // The parent returns once the daemon is ready.
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "logs go to -D, not stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(pid_alive(pid));
    let mut qmp = QmpClient::connect(&sock, T).unwrap();
    let r = qmp.execute("query-name", json!({})).unwrap();
    assert_eq!(r["return"]["name"], "daemon-test");
    assert_eq!(
        qmp.execute("quit", json!({})).unwrap(),
        json!({"return": {}})
    );
    let deadline = Instant::now() + T;
    while pid_alive(pid) {
        assert!(Instant::now() < deadline, "daemon still running");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!pidfile.exists(), "pidfile removed at exit");
    let log = std::fs::read_to_string(&logfile).unwrap();
    assert!(
        log.contains("supervisor exiting"),
        "log file content: {log}"
    );
}

#[test]
fn daemonize_reports_start_up_errors_to_the_parent() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bulkhead_bin())
        .args(["-daemonize", "-nodefaults", "-serial", "null", "-drive"])
        .arg(format!(
            "file={},format=raw,if=virtio",
            dir.path().join("missing.img").display()
        ))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("missing.img"), "{err}");
}

#[test]
fn qmp_on_a_preopened_listening_fd_as_libvirt_starts_it() {
    if !kvm() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("monitor.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let raw = listener.as_raw_fd();
    let mut cmd = Command::new(bulkhead_bin());
    cmd.args([
        "-nodefaults",
        "-no-user-config",
        "-msg",
        "timestamp=on",
        "-accel",
        "kvm",
        "-serial",
        "null",
        "-chardev",
        "socket,id=charmonitor,fd=23,server=on,wait=off",
        "-mon",
        "chardev=charmonitor,id=monitor,mode=control",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    // SAFETY: in the child between fork and exec only dup2 runs, which is
    // async-signal-safe; `raw` stays open in the parent for the duration.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(raw, 23) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    drop(listener);
    let mut qmp = QmpClient::connect(&path, T).unwrap();
    assert_eq!(qmp.greeting["QMP"]["version"]["qemu"]["major"], 7);
    let r = qmp.execute("query-status", json!({})).unwrap();
    assert_eq!(r["return"]["status"], "running", "{r}");
    qmp.execute("quit", json!({})).unwrap();
    let st = child.wait().unwrap();
    assert!(st.success());
}

#[test]
fn file_backed_guest_ram_through_memory_backend_object() {
    if !kvm() {
        return;
    }
    let dir = tempfile::tempdir_in("/dev/shm").unwrap_or_else(|_| tempfile::tempdir().unwrap());
    let obj = format!(
        "memory-backend-file,id=mem0,size=128M,mem-path={},share=on",
        dir.path().display()
    );
    let mut vm = BulkheadProcess::start(&[
        "-nodefaults",
        "-serial",
        "stdio",
        "-m",
        "128M",
        "-object",
        &obj,
        "-machine",
        "pc,memory-backend=mem0",
    ])
    .unwrap();
    let at = vm.serial.wait_for("bulkhead> ", T).unwrap();
    vm.type_serial("memtest 4\r").unwrap();
    vm.serial.wait_for_from(at, "checksum", T).unwrap();
    vm.type_serial("exit 0\r").unwrap();
    assert_eq!(vm.wait_exit(T).unwrap().code(), Some(0));

    // A missing backend is named.
    let out = Command::new(bulkhead_bin())
        .args(["-machine", "memory-backend=nope", "-nodefaults"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
}

#[test]
fn no_arguments_boot_the_demo_vm_and_print_its_qmp_path() {
    if !kvm() {
        return;
    }
    let mut vm = BulkheadProcess::start(&[]).unwrap();
    let end = vm.log.wait_for("QMP socket: ", T).unwrap();
    let at_nl = vm.log.wait_for_from(end, "\n", T).unwrap();
    let path = vm.log.text()[end..at_nl - 1].trim().to_string();
    vm.serial.wait_for("bulkhead> ", T).unwrap();
    let mut qmp = QmpClient::connect(Path::new(&path), T).unwrap();
    let r = qmp.execute("query-name", json!({})).unwrap();
    assert_eq!(r["return"]["name"], "bulkhead-demo");
    qmp.execute("quit", json!({})).unwrap();
    assert_eq!(vm.wait_exit(T).unwrap().code(), Some(0));
    assert!(!Path::new(&path).exists());
}

fn test_kernel() -> Option<std::path::PathBuf> {
    let p = std::env::var_os("BULKHEAD_TEST_KERNEL")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/bulkhead/kernel/vmlinuz"))
        })?;
    if p.exists() {
        return Some(p);
    }
    assert!(
        std::env::var_os("BULKHEAD_REQUIRE_KERNEL").is_none(),
        "BULKHEAD_REQUIRE_KERNEL is set but {} is missing (scripts/fetch-test-kernel)",
        p.display()
    );
    eprintln!("SKIPPED: no test kernel (run scripts/fetch-test-kernel)");
    None
}

#[test]
fn kernel_direct_boot_loads_a_real_bzimage_and_rejects_non_kernels() {
    if !kvm() {
        return;
    }
    // Not a kernel: a clear start-up error.
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk");
    std::fs::write(&junk, vec![0x5au8; 8192]).unwrap();
    let out = Command::new(bulkhead_bin())
        .args(["-nodefaults", "-serial", "null", "-kernel"])
        .arg(&junk)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("kernel"), "{err}");

    // A real Debian bzImage is loaded (this host cannot run Linux, so the VM
    // stays stopped with -S; the loader's placement is unit-tested).
    let Some(kernel) = test_kernel() else { return };
    let sock = dir.path().join("qmp.sock");
    let qmp_arg = format!("unix:{},server=on,wait=off", sock.display());
    let k = kernel.display().to_string();
    let mut vm = BulkheadProcess::start(&[
        "-S",
        "-nodefaults",
        "-serial",
        "null",
        "-m",
        "512M",
        "-kernel",
        &k,
        "-append",
        "console=ttyS0 panic=-1",
        "-qmp",
        &qmp_arg,
    ])
    .unwrap();
    let mut qmp = QmpClient::connect(&sock, T).unwrap();
    let r = qmp.execute("query-status", json!({})).unwrap();
    assert_eq!(r["return"]["status"], "prelaunch", "{r}");
    qmp.execute("quit", json!({})).unwrap();
    assert_eq!(vm.wait_exit(T).unwrap().code(), Some(0));
}
