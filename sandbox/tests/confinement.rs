//! End-to-end tests of spawn + confine with the `sandbox-probe` stand-in
//! service. They run as root in CI; as an unprivileged user the spawner uses
//! a user namespace, and tests that need root say SKIP and return.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sandbox::inspect;
use sandbox::{ExitStatus, ServiceKind, ServiceProcess, SpawnSpec};

const PROBE: &str = env!("CARGO_BIN_EXE_sandbox-probe");
const TIMEOUT: Duration = Duration::from_secs(20);

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn socketpair() -> (OwnedFd, OwnedFd) {
    let mut sv = [-1; 2];
    // SAFETY: socketpair writes two fds into `sv`.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            sv.as_mut_ptr(),
        )
    };
    assert_eq!(rc, 0, "socketpair");
    // SAFETY: both fds are fresh and owned here.
    unsafe { (OwnedFd::from_raw_fd(sv[0]), OwnedFd::from_raw_fd(sv[1])) }
}

struct Probe {
    child: ServiceProcess,
    ipc: OwnedFd,
}

/// Spawns the probe as a confined service with extra probe arguments.
/// Returns `None` (after printing SKIP) when not root and spawning is
/// impossible (no unprivileged user namespaces).
fn spawn_probe_with(args: &[&str], tweak: impl FnOnce(&mut SpawnSpec)) -> Option<Probe> {
    let (ours, theirs) = socketpair();
    let mut spec = SpawnSpec::service(PROBE, "sandbox-probe", theirs);
    spec.args.extend(args.iter().map(|s| s.to_string()));
    tweak(&mut spec);
    match sandbox::spawn(spec) {
        Ok(child) => Some(Probe { child, ipc: ours }),
        Err(e) if !is_root() => {
            eprintln!("SKIP: not root and spawning a sandboxed child failed: {e}");
            None
        }
        Err(e) => panic!("spawn failed: {e}"),
    }
}

fn spawn_probe(args: &[&str]) -> Option<Probe> {
    spawn_probe_with(args, |_| {})
}

/// Sends a command byte (optionally with an fd) and returns the reply, or
/// `None` if the probe closed the socket (died).
fn cmd_with_fd(p: &Probe, c: u8, fd: Option<RawFd>) -> Option<u8> {
    let ipc = p.ipc.as_raw_fd();
    let mut byte = c;
    let mut iov = libc::iovec {
        iov_base: (&mut byte as *mut u8).cast(),
        iov_len: 1,
    };
    let mut cbuf = [0u64; 4];
    // SAFETY: zeroed msghdr is valid; pointers set below are to live buffers.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(fd) = fd {
        msg.msg_control = cbuf.as_mut_ptr().cast();
        // SAFETY: CMSG_* helpers compute sizes/pointers within `cbuf`.
        unsafe {
            msg.msg_controllen = libc::CMSG_SPACE(4) as usize;
            let h = libc::CMSG_FIRSTHDR(&msg);
            (*h).cmsg_level = libc::SOL_SOCKET;
            (*h).cmsg_type = libc::SCM_RIGHTS;
            (*h).cmsg_len = libc::CMSG_LEN(4) as usize;
            libc::CMSG_DATA(h).cast::<RawFd>().write_unaligned(fd);
        }
    }
    // SAFETY: msg references valid buffers for the duration of the call.
    if unsafe { libc::sendmsg(ipc, &msg, libc::MSG_NOSIGNAL) } != 1 {
        return None;
    }
    let mut pfd = libc::pollfd {
        fd: ipc,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let rc = unsafe { libc::poll(&mut pfd, 1, TIMEOUT.as_millis() as i32) };
    assert_eq!(rc, 1, "probe did not answer within {TIMEOUT:?}");
    let mut r = 0u8;
    // SAFETY: one-byte read into a valid buffer.
    let n = unsafe { libc::read(ipc, (&mut r as *mut u8).cast(), 1) };
    (n == 1).then_some(r)
}

fn cmd(p: &Probe, c: u8) -> Option<u8> {
    cmd_with_fd(p, c, None)
}

fn wait(p: &mut Probe) -> ExitStatus {
    p.child
        .wait_timeout(TIMEOUT)
        .expect("wait")
        .expect("probe did not exit in time")
}

fn expect_seccomp_kill(args: &[&str], c: u8) {
    let Some(mut p) = spawn_probe(args) else {
        return;
    };
    assert_eq!(cmd(&p, b'i'), Some(b'k'));
    assert_eq!(
        cmd(&p, c),
        None,
        "command {} must kill the probe",
        c as char
    );
    let st = wait(&mut p);
    assert_eq!(st, ExitStatus::Signaled(libc::SIGSYS), "got {st}");
    assert!(st.is_seccomp_violation());
}

#[test]
fn confined_service_shows_full_confinement() {
    // An inheritable (non-CLOEXEC) fd in the supervisor must not leak.
    // SAFETY: plain open of a constant path, closed at the end.
    let leaky = unsafe { libc::open(c"/etc/passwd".as_ptr(), libc::O_RDONLY) };
    assert!(leaky >= 0);
    let Some(mut p) = spawn_probe_with(&[], |s| {
        s.env = vec![("RUST_LOG".into(), "info".into())];
    }) else {
        // SAFETY: closing our own fd.
        unsafe { libc::close(leaky) };
        return;
    };
    // SAFETY: closing our own fd.
    unsafe { libc::close(leaky) };
    // The reply proves confine() has completed.
    assert_eq!(cmd(&p, b'i'), Some(b'k'));
    let pid = p.child.pid();

    let st = inspect::proc_status(pid).unwrap();
    assert_eq!(st.seccomp, 2, "Seccomp");
    assert!(st.no_new_privs, "NoNewPrivs");
    assert_eq!(st.cap_eff, 0, "CapEff");
    assert_eq!(st.cap_prm, 0, "CapPrm");
    assert_eq!(st.cap_inh, 0, "CapInh");
    assert_eq!(st.cap_bnd, 0, "CapBnd");
    assert_eq!(st.cap_amb, 0, "CapAmb");
    assert!(st.uid.iter().all(|&u| u != 0), "uid {:?}", st.uid);
    assert!(st.gid.iter().all(|&g| g != 0), "gid {:?}", st.gid);
    assert!(st.groups.iter().all(|&g| g != 0), "groups {:?}", st.groups);
    if is_root() {
        assert_eq!(st.uid, [65534; 4]);
    }

    let ours = inspect::own_namespaces().unwrap();
    let theirs = inspect::namespaces(pid).unwrap();
    assert_ne!(ours.mnt, theirs.mnt, "mnt");
    assert_ne!(ours.net, theirs.net, "net");
    assert_ne!(ours.pid, theirs.pid, "pid");
    assert_ne!(ours.ipc, theirs.ipc, "ipc");
    assert_ne!(ours.uts, theirs.uts, "uts");
    if !is_root() {
        assert_ne!(ours.user, theirs.user, "user");
    }

    assert_eq!(
        inspect::root_entries(pid).unwrap(),
        Vec::<std::ffi::OsString>::new()
    );

    let fds = inspect::open_fds(pid).unwrap();
    let nums: Vec<i32> = fds.iter().map(|(n, _)| *n).collect();
    assert_eq!(nums, vec![0, 1, 2, 3], "fds {fds:?}");
    for (n, target) in &fds[..3] {
        assert_eq!(target, &PathBuf::from("/dev/null"), "fd {n}");
    }
    assert!(
        fds[3].1.to_string_lossy().starts_with("socket:["),
        "fd 3 is {:?}",
        fds[3].1
    );

    let env = inspect::environment(pid).unwrap();
    assert_eq!(env, vec![std::ffi::OsString::from("RUST_LOG=info")]);

    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    assert!(core.split_whitespace().nth(4) == Some("0"), "{core}");

    assert_eq!(cmd(&p, b'x'), None);
    assert_eq!(wait(&mut p), ExitStatus::Exited(0));
}

#[test]
fn stderr_fd_is_passed_as_fd_2() {
    let mut fds = [-1; 2];
    // SAFETY: pipe2 writes two fds.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: fresh fds owned here.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let pipe_link = std::fs::read_link(format!("/proc/self/fd/{}", w.as_raw_fd())).unwrap();
    let Some(mut p) = spawn_probe_with(&[], |s| s.stderr = Some(w)) else {
        return;
    };
    assert_eq!(cmd(&p, b'i'), Some(b'k'));
    let fds = inspect::open_fds(p.child.pid()).unwrap();
    assert_eq!(fds[2], (2, pipe_link));
    assert_eq!(cmd(&p, b'x'), None);
    assert_eq!(wait(&mut p), ExitStatus::Exited(0));
    drop(r);
}

#[test]
fn raw_openat_is_killed_with_sigsys() {
    expect_seccomp_kill(&[], b'f');
}

#[test]
fn std_file_open_is_killed_with_sigsys() {
    expect_seccomp_kill(&[], b'o');
}

#[test]
fn socket_is_killed_with_sigsys() {
    expect_seccomp_kill(&[], b's');
}

#[test]
fn executable_mapping_is_killed_with_sigsys() {
    expect_seccomp_kill(&[], b'e');
}

#[test]
fn fork_is_killed_with_sigsys() {
    expect_seccomp_kill(&[], b'c');
}

#[test]
fn terminal_injection_ioctl_is_killed_with_sigsys() {
    expect_seccomp_kill(&[], b't');
}

#[test]
fn prctl_other_than_thread_name_is_killed_with_sigsys() {
    expect_seccomp_kill(&[], b'p');
}

#[test]
fn kill_syscall_is_killed_with_sigsys() {
    expect_seccomp_kill(&[], b'k');
}

#[test]
fn argument_checked_syscalls_pass_without_seccomp() {
    // Control for the three tests above: the same calls do not crash the
    // probe when only the seccomp layer is off, so the kills come from it.
    let Some(mut p) = spawn_probe(&["--no-seccomp"]) else {
        return;
    };
    assert_eq!(cmd(&p, b't'), Some(b'n'), "TIOCSTI on /dev/null fails");
    assert_eq!(cmd(&p, b'p'), Some(b'y'));
    assert_eq!(cmd(&p, b'k'), Some(b'y'));
    assert_eq!(cmd(&p, b'x'), None);
    assert_eq!(wait(&mut p), ExitStatus::Exited(0));
}

#[test]
fn kill_9_is_reported_as_sigkill() {
    let Some(mut p) = spawn_probe(&[]) else {
        return;
    };
    assert_eq!(cmd(&p, b'i'), Some(b'k'));
    assert_eq!(p.child.try_wait().unwrap(), None, "still running");
    // Like `kill -9 PID` from a shell.
    // SAFETY: kill with integer arguments on our own child.
    assert_eq!(unsafe { libc::kill(p.child.pid(), libc::SIGKILL) }, 0);
    let st = wait(&mut p);
    assert_eq!(st, ExitStatus::Signaled(libc::SIGKILL), "got {st}");
    assert!(!st.is_seccomp_violation());
    // Signalling an already-reaped service is a no-op, not an error.
    p.child.kill().unwrap();
}

#[test]
fn handle_kill_and_pidfd_report_exit() {
    let Some(mut p) = spawn_probe(&[]) else {
        return;
    };
    assert_eq!(cmd(&p, b'i'), Some(b'k'));
    assert_eq!(
        p.child.wait_timeout(Duration::from_millis(50)).unwrap(),
        None
    );
    p.child.kill().unwrap();
    // The pidfd becomes readable once the service has exited.
    let mut pfd = libc::pollfd {
        fd: p.child.pidfd().as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    assert_eq!(unsafe { libc::poll(&mut pfd, 1, 10_000) }, 1);
    assert_eq!(
        p.child.try_wait().unwrap(),
        Some(ExitStatus::Signaled(libc::SIGKILL))
    );
    assert_eq!(p.child.status(), Some(ExitStatus::Signaled(libc::SIGKILL)));
}

#[test]
fn std_workload_survives_every_service_allowlist() {
    for kind in ["idle", "chardev", "nbd", "vnc", "migrate"] {
        let Some(mut p) = spawn_probe(&["--kind", kind]) else {
            return;
        };
        assert_eq!(cmd(&p, b'w'), Some(b'k'), "workload under {kind}");
        assert_eq!(cmd(&p, b'w'), Some(b'k'), "second workload under {kind}");
        assert_eq!(cmd(&p, b'i'), Some(b'k'));
        assert_eq!(cmd(&p, b'x'), None);
        assert_eq!(wait(&mut p), ExitStatus::Exited(0), "{kind}");
    }
}

#[test]
fn passed_file_io_is_allowed_only_for_file_services() {
    let path = std::env::temp_dir().join(format!("sandbox-fileio-{}", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    for kind in ["nbd", "migrate"] {
        let Some(mut p) = spawn_probe(&["--kind", kind]) else {
            return;
        };
        assert_eq!(
            cmd_with_fd(&p, b'r', Some(file.as_raw_fd())),
            Some(b'y'),
            "{kind}"
        );
        assert_eq!(cmd(&p, b'x'), None);
        assert_eq!(wait(&mut p), ExitStatus::Exited(0));
    }
    for kind in ["idle", "chardev", "vnc"] {
        let Some(mut p) = spawn_probe(&["--kind", kind]) else {
            return;
        };
        assert_eq!(
            cmd_with_fd(&p, b'r', Some(file.as_raw_fd())),
            None,
            "{kind}"
        );
        assert_eq!(wait(&mut p), ExitStatus::Signaled(libc::SIGSYS), "{kind}");
    }
}

#[test]
fn without_seccomp_the_empty_root_and_network_namespace_still_isolate() {
    // Things that work from here...
    assert!(std::fs::File::open("/etc/passwd").is_ok());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    assert!(std::net::TcpStream::connect(listener.local_addr().unwrap()).is_ok());
    // ...fail inside even with the seccomp layer switched off.
    let Some(mut p) = spawn_probe(&["--no-seccomp", "--port", &port]) else {
        return;
    };
    assert_eq!(cmd(&p, b'o'), Some(b'n'), "file outside is not reachable");
    assert_eq!(cmd(&p, b'f'), Some(b'n'), "raw openat finds nothing");
    assert_eq!(cmd(&p, b's'), Some(b'n'), "host loopback is not reachable");
    let st = inspect::proc_status(p.child.pid()).unwrap();
    assert_eq!(st.seccomp, 0);
    assert_eq!(st.cap_eff, 0);
    assert_eq!(cmd(&p, b'x'), None);
    assert_eq!(wait(&mut p), ExitStatus::Exited(0));
}

#[test]
fn no_sandbox_switch_really_disables_confinement() {
    let Some(mut p) = spawn_probe_with(&["--no-sandbox"], |s| s.namespaces = false) else {
        return;
    };
    assert_eq!(cmd(&p, b'o'), Some(b'y'));
    let pid = p.child.pid();
    assert_eq!(inspect::proc_status(pid).unwrap().seccomp, 0);
    assert_eq!(
        inspect::namespaces(pid).unwrap().net,
        inspect::own_namespaces().unwrap().net
    );
    assert!(!inspect::root_entries(pid).unwrap().is_empty());
    assert_eq!(cmd(&p, b'x'), None);
    assert_eq!(wait(&mut p), ExitStatus::Exited(0));
}

#[test]
fn exec_failure_is_reported_with_the_step() {
    let (_ours, theirs) = socketpair();
    let spec = SpawnSpec::service("/nonexistent/bulkhead", "svc-idle", theirs);
    match sandbox::spawn(spec) {
        Err(sandbox::SandboxError::ChildSetup { step, source }) => {
            assert_eq!(step, "execve");
            assert_eq!(source.raw_os_error(), Some(libc::ENOENT));
        }
        Err(e) if !is_root() => eprintln!("SKIP: {e}"),
        other => panic!("expected an execve error, got {other:?}"),
    }
}

#[test]
fn invalid_spec_is_rejected_before_cloning() {
    let (_ours, theirs) = socketpair();
    let mut spec = SpawnSpec::service(PROBE, "sandbox-probe", theirs);
    spec.env = vec![("A=B".into(), "x".into())];
    assert!(matches!(
        sandbox::spawn(spec),
        Err(sandbox::SandboxError::Invalid(_))
    ));
    let (_ours, theirs) = socketpair();
    let mut spec = SpawnSpec::service(PROBE, "sandbox-probe", theirs);
    spec.args.push("nul\0byte".into());
    assert!(matches!(
        sandbox::spawn(spec),
        Err(sandbox::SandboxError::Invalid(_))
    ));
}

#[test]
fn confine_refuses_a_multithreaded_caller_and_disabled_policy_is_a_no_op() {
    // Disabled: returns Ok without touching this (test) process.
    sandbox::confine(&sandbox::Policy::disabled(ServiceKind::Idle)).unwrap();
    // Enabled: this test binary has several threads, so confine must refuse
    // before changing anything.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let t = std::thread::spawn(move || rx.recv());
    let err = sandbox::confine(&sandbox::Policy::for_service(ServiceKind::Idle)).unwrap_err();
    assert!(err.to_string().contains("thread"), "{err}");
    drop(tx);
    let _ = t.join();
    assert_eq!(
        inspect::proc_status(std::process::id() as i32)
            .unwrap()
            .seccomp,
        0
    );
}

/// Runs `sandbox-probe launch` and talks to it line by line.
struct Launcher {
    child: std::process::Child,
    out: BufReader<std::process::ChildStdout>,
}

impl Launcher {
    fn start(args: &[&str]) -> Option<(Launcher, i32)> {
        let mut child = Command::new(PROBE)
            .arg("launch")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let Some(pid) = line
            .trim()
            .strip_prefix("pid ")
            .and_then(|p| p.parse().ok())
        else {
            let _ = child.wait();
            if !is_root() {
                eprintln!("SKIP: launcher could not spawn: {line:?}");
                return None;
            }
            panic!("launcher said {line:?}");
        };
        Some((Launcher { child, out }, pid))
    }

    fn say(&mut self, line: &str) -> String {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
        if line == "exit" {
            return String::new();
        }
        let mut reply = String::new();
        self.out.read_line(&mut reply).unwrap();
        reply.trim().to_owned()
    }
}

#[test]
fn parent_death_kills_the_service() {
    // Become a subreaper so the orphaned service is reparented to us and we
    // can collect how it died.
    // SAFETY: prctl with integer arguments.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(rc, 0);
    let Some((mut l, pid)) = Launcher::start(&[]) else {
        return;
    };
    // After `h` the probe no longer reads its socket, so only the
    // parent-death signal can end it (not EOF on the IPC socket).
    assert_eq!(l.say("send h"), "reply k");
    l.say("exit");
    assert!(l.child.wait().unwrap().success());

    let deadline = Instant::now() + TIMEOUT;
    let mut status = 0;
    loop {
        // SAFETY: waitpid writes into `status`.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            break;
        }
        assert!(r == 0, "waitpid: {}", std::io::Error::last_os_error());
        if Instant::now() > deadline {
            // Do not leave the orphan behind, then fail.
            // SAFETY: kill/waitpid on the orphan reparented to us.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            panic!("service {pid} outlived its parent");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(libc::WIFSIGNALED(status), "status {status:#x}");
    assert_eq!(libc::WTERMSIG(status), libc::SIGKILL);
}

#[test]
fn unprivileged_supervisor_confines_through_a_user_namespace() {
    if !is_root() {
        eprintln!("SKIP: needs root to drop to uid 65534 first");
        return;
    }
    let Some((mut l, pid)) = Launcher::start(&["--drop-to-uid", "65534"]) else {
        return;
    };
    assert_eq!(l.say("send i"), "reply k");
    let st = inspect::proc_status(pid).unwrap();
    assert_eq!(st.uid, [65534; 4], "ns-root maps to the supervisor's uid");
    assert_eq!(st.seccomp, 2);
    assert!(st.no_new_privs && st.no_capabilities());
    let ours = inspect::own_namespaces().unwrap();
    let theirs = inspect::namespaces(pid).unwrap();
    assert_ne!(ours.user, theirs.user);
    assert_ne!(ours.mnt, theirs.mnt);
    assert_ne!(ours.net, theirs.net);
    assert_ne!(ours.pid, theirs.pid);
    assert!(inspect::root_entries(pid).unwrap().is_empty());
    assert_eq!(l.say("send w"), "reply k");
    assert_eq!(l.say("send f"), "reply EOF");
    assert_eq!(l.say("wait"), format!("status signal {}", libc::SIGSYS));
    l.say("exit");
    let _ = l.child.wait();
}

#[test]
fn spawner_falls_back_to_clone_without_clone3() {
    // The launcher hides clone3 (ENOSYS) from itself, as Docker's default
    // seccomp profile does, then spawns: the legacy clone path must give the
    // same confined service and a working pidfd.
    let Some((mut l, pid)) = Launcher::start(&["--no-clone3"]) else {
        return;
    };
    assert_eq!(l.say("send i"), "reply k");
    let st = inspect::proc_status(pid).unwrap();
    assert_eq!(st.seccomp, 2);
    assert!(st.no_new_privs && st.no_capabilities());
    assert_ne!(
        inspect::namespaces(pid).unwrap().pid,
        inspect::own_namespaces().unwrap().pid
    );
    assert_eq!(l.say("send w"), "reply k");
    assert_eq!(l.say("send s"), "reply EOF");
    assert_eq!(l.say("wait"), format!("status signal {}", libc::SIGSYS));
    l.say("exit");
    let _ = l.child.wait();
}
