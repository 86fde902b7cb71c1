//! `sandbox-probe`: a stand-in service for the sandbox tests.
//!
//! Service role (`sandbox-probe --ipc-fd 3 [--kind K] [--no-seccomp]
//! [--no-sandbox] [--port N]`): calls [`sandbox::confine()`] first, then serves one-byte
//! commands read with `recvmsg` from fd 3, answering one byte:
//!
//! | cmd | action | reply |
//! |-----|--------|-------|
//! | `i` | nothing | `k` |
//! | `o` | `open("/etc/passwd")` through std | `y` opened / `n` failed |
//! | `f` | raw `openat` syscall (forbidden) | `y` / `n` (or SIGSYS) |
//! | `s` | `socket(AF_INET)` + connect 127.0.0.1:`--port` | `y` / `n` |
//! | `e` | anonymous `mmap` with `PROT_EXEC` | `y` / `n` |
//! | `c` | `fork()` | `y` forked / `n` |
//! | `w` | std workload: threads, locks, channels, sleeps, big allocations, getrandom, pipes, poll, eventfd | `k` |
//! | `r` | takes the fd passed with the command (SCM_RIGHTS), fstat + pwrite + pread + fsync on it | `k` / `n` |
//! | `t` | `ioctl(0, TIOCSTI)` | `y` / `n` |
//! | `p` | `prctl(PR_SET_DUMPABLE, 1)` | `y` / `n` |
//! | `k` | `kill(getpid(), 0)` | `y` / `n` |
//! | `h` | answer, then sleep forever (ignores the socket) | `k` |
//! | `x` | exit(0) | — |
//!
//! `sandbox-probe allowlist` prints the seccomp allowlist of every kind.
//!
//! Launcher role (`sandbox-probe launch [--drop-to-uid U] [--no-clone3]
//! [-- service args]`):
//! spawns a confined service-role probe through [`sandbox::spawn`], prints
//! `pid N`, then obeys stdin lines: `send C` (prints `reply R`), `wait`
//! (prints `status ...`), `exit` (exits at once, leaving the service to its
//! parent-death signal).

use std::io::{BufRead, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use sandbox::{Policy, ServiceKind, SpawnSpec};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("launch") {
        launcher(&args[2..]);
    } else if args.get(1).map(String::as_str) == Some("allowlist") {
        for kind in ServiceKind::ALL {
            let list: Vec<String> = sandbox::seccomp::allowlist(kind)
                .iter()
                .map(|s| match s.check {
                    sandbox::seccomp::ArgCheck::Any => s.name.to_owned(),
                    check => format!("{}[{check:?}]", s.name),
                })
                .collect();
            println!("{kind} ({}): {}", list.len(), list.join(" "));
        }
    } else {
        service(&args[1..]);
    }
}

fn arg_value<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn die(msg: &str) -> ! {
    eprintln!("sandbox-probe: {msg}");
    std::process::exit(2)
}

fn service(args: &[String]) {
    let fd: RawFd = arg_value(args, "--ipc-fd")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| die("missing --ipc-fd"));
    let kind = match arg_value(args, "--kind").unwrap_or("idle") {
        "idle" => ServiceKind::Idle,
        "chardev" => ServiceKind::Chardev,
        "nbd" => ServiceKind::Nbd,
        "vnc" => ServiceKind::Vnc,
        "migrate" => ServiceKind::Migrate,
        other => die(&format!("unknown kind {other}")),
    };
    let port: u16 = arg_value(args, "--port")
        .and_then(|v| v.parse().ok())
        .unwrap_or(9);
    let mut policy = Policy::for_service(kind);
    if args.iter().any(|a| a == "--no-seccomp") {
        policy.seccomp = false;
    }
    if args.iter().any(|a| a == "--no-sandbox") {
        policy = Policy::disabled(kind);
    }
    if let Err(e) = sandbox::confine(&policy) {
        die(&format!("confine: {e}"));
    }
    loop {
        let (cmd, passed) = match recv_cmd(fd) {
            Some(c) => c,
            None => std::process::exit(0),
        };
        let reply = match cmd {
            b'i' => b'k',
            b'o' => yes(std::fs::File::open("/etc/passwd").is_ok()),
            b'f' => {
                // SAFETY: raw openat with a constant path; the fd is closed.
                let r = unsafe {
                    libc::syscall(
                        libc::SYS_openat,
                        libc::AT_FDCWD,
                        c"/etc/passwd".as_ptr(),
                        libc::O_RDONLY | libc::O_CLOEXEC,
                    )
                };
                if r >= 0 {
                    // SAFETY: closing the fd we just opened.
                    unsafe { libc::close(r as RawFd) };
                }
                yes(r >= 0)
            }
            b's' => yes(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()),
            b'e' => {
                // SAFETY: anonymous mapping, unmapped again if it succeeded.
                let p = unsafe {
                    libc::mmap(
                        std::ptr::null_mut(),
                        4096,
                        libc::PROT_READ | libc::PROT_EXEC,
                        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                        -1,
                        0,
                    )
                };
                if p != libc::MAP_FAILED {
                    // SAFETY: unmapping the mapping made above.
                    unsafe { libc::munmap(p, 4096) };
                }
                yes(p != libc::MAP_FAILED)
            }
            b'c' => {
                // SAFETY: the child only calls _exit.
                let pid = unsafe { libc::fork() };
                if pid == 0 {
                    // SAFETY: exit the forked child immediately.
                    unsafe { libc::_exit(0) };
                }
                yes(pid > 0)
            }
            b'w' => {
                workload();
                b'k'
            }
            b'r' => match passed {
                Some(file) => yes(file_io(file)),
                None => b'n',
            },
            b't' => {
                // TIOCSTI would push input into a terminal; fd 0 is /dev/null,
                // so without seccomp this fails harmlessly with ENOTTY.
                let c = b'x';
                // SAFETY: ioctl with a pointer to a live byte.
                let r = unsafe { libc::ioctl(0, libc::TIOCSTI, &c as *const u8) };
                yes(r == 0)
            }
            b'p' => {
                // SAFETY: prctl with integer arguments only.
                let r = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) };
                yes(r == 0)
            }
            b'k' => {
                // SAFETY: kill(2) of our own pid (1 in our pid namespace) with
                // signal 0 only checks permission.
                let r = unsafe { libc::kill(libc::getpid(), 0) };
                yes(r == 0)
            }
            b'h' => {
                // Answer, then stop serving: only a signal ends us now.
                // SAFETY: one-byte write from a valid buffer.
                unsafe { libc::write(fd, [b'k'].as_ptr().cast(), 1) };
                loop {
                    std::thread::sleep(std::time::Duration::from_secs(3600));
                }
            }
            b'x' => std::process::exit(0),
            _ => b'?',
        };
        // SAFETY: one-byte write from a valid buffer.
        if unsafe { libc::write(fd, [reply].as_ptr().cast(), 1) } != 1 {
            std::process::exit(3);
        }
    }
}

fn yes(b: bool) -> u8 {
    if b {
        b'y'
    } else {
        b'n'
    }
}

/// Receives one command byte and at most one passed fd.
fn recv_cmd(fd: RawFd) -> Option<(u8, Option<OwnedFd>)> {
    let mut byte = 0u8;
    let mut iov = libc::iovec {
        iov_base: (&mut byte as *mut u8).cast(),
        iov_len: 1,
    };
    let mut cbuf = [0u64; 8]; // aligned, room for one SCM_RIGHTS fd
                              // SAFETY: zeroed msghdr is valid; fields set below point at live buffers.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cbuf);
    // SAFETY: msg points at valid iov and control buffers for the call.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n <= 0 {
        return None;
    }
    let mut passed = None;
    // SAFETY: walking the control buffer the kernel just filled, with the
    // libc CMSG helpers, bounded by msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let p = libc::CMSG_DATA(c).cast::<RawFd>();
                let n = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize)
                    / std::mem::size_of::<RawFd>();
                for i in 0..n {
                    let f = OwnedFd::from_raw_fd(p.add(i).read_unaligned());
                    if passed.is_none() {
                        passed = Some(f);
                    }
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Some((byte, passed))
}

fn file_io(fd: OwnedFd) -> bool {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::from(fd);
    let Ok(meta) = file.metadata() else {
        return false;
    };
    let mut buf = [0u8; 5];
    file.write_all_at(b"probe", meta.len()).is_ok()
        && file.read_exact_at(&mut buf, meta.len()).is_ok()
        && &buf == b"probe"
        && file.sync_all().is_ok()
}

/// What a typical std + poll service does, so the allowlist can be derived
/// under `strace -f` and then checked under seccomp.
fn workload() {
    use std::collections::HashMap;
    use std::sync::{mpsc, Arc, Condvar, Mutex};
    use std::time::{Duration, Instant, SystemTime};

    let shared = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
    let (tx, rx) = mpsc::channel();
    let mut handles = Vec::new();
    for i in 0..4u32 {
        let shared = Arc::clone(&shared);
        let tx = tx.clone();
        let h = std::thread::Builder::new()
            .name(format!("worker-{i}"))
            .spawn(move || {
                let mut big: Vec<u8> = vec![i as u8; 8 << 20]; // mmap'd
                big.resize(32 << 20, 1); // mremap
                let sum: u64 = big.iter().step_by(4096).map(|&b| u64::from(b)).sum();
                drop(big); // munmap
                let (lock, cv) = &*shared;
                lock.lock().unwrap_or_else(|e| e.into_inner()).push(i);
                cv.notify_all();
                std::thread::sleep(Duration::from_millis(2));
                let _ = tx.send(sum);
            })
            .expect("spawn worker");
        handles.push(h);
    }
    drop(tx);
    {
        let (lock, cv) = &*shared;
        let mut g = lock.lock().unwrap_or_else(|e| e.into_inner());
        while g.len() < 4 {
            g = cv
                .wait_timeout(g, Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
    let total: u64 = rx.iter().sum();
    for h in handles {
        let _ = h.join();
    }
    std::thread::scope(|s| {
        s.spawn(|| std::hint::black_box(total));
    });
    let mut map: HashMap<u64, Instant> = HashMap::new(); // RandomState → getrandom
    map.insert(total, Instant::now());
    let _ = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH);

    // pipe + poll + eventfd, as a poll loop with a wake-up channel would.
    let mut p = [-1; 2];
    // SAFETY: pipe2/eventfd/poll/read/write/close on fds created here.
    unsafe {
        if libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) == 0 {
            libc::write(p[1], b"z".as_ptr().cast(), 1);
            let mut pfd = libc::pollfd {
                fd: p[0],
                events: libc::POLLIN,
                revents: 0,
            };
            libc::poll(&mut pfd, 1, 100);
            let mut b = [0u8; 1];
            libc::read(p[0], b.as_mut_ptr().cast(), 1);
            libc::close(p[0]);
            libc::close(p[1]);
        }
        let e = libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK);
        if e >= 0 {
            libc::close(e);
        }
    }
    let _ = std::io::stderr().write_all(b"");
}

fn launcher(args: &[String]) {
    if let Some(uid) = arg_value(args, "--drop-to-uid").and_then(|v| v.parse::<u32>().ok()) {
        // SAFETY: integer/null arguments; results checked.
        let ok = unsafe {
            libc::setgroups(0, std::ptr::null()) == 0
                && libc::setresgid(uid, uid, uid) == 0
                && libc::setresuid(uid, uid, uid) == 0
        };
        if !ok {
            die("cannot drop to the requested uid");
        }
    }
    if args.iter().any(|a| a == "--no-clone3") {
        // Like a container runtime's seccomp profile: clone3 → ENOSYS, so
        // the spawner must fall back to clone(2).
        let rules = [(libc::SYS_clone3, Vec::new())].into_iter().collect();
        let filter = seccompiler::SeccompFilter::new(
            rules,
            seccompiler::SeccompAction::Allow,
            seccompiler::SeccompAction::Errno(libc::ENOSYS as u32),
            std::env::consts::ARCH
                .try_into()
                .unwrap_or_else(|_| die("arch")),
        )
        .unwrap_or_else(|e| die(&e.to_string()));
        let prog: seccompiler::BpfProgram = filter.try_into().unwrap_or_else(|_| die("bpf"));
        seccompiler::apply_filter(&prog).unwrap_or_else(|e| die(&e.to_string()));
    }
    let service_args: Vec<String> = match args.iter().position(|a| a == "--") {
        Some(i) => args[i + 1..].to_vec(),
        None => Vec::new(),
    };
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
    if rc != 0 {
        die("socketpair");
    }
    // SAFETY: both fds are fresh and owned here.
    let (ours, theirs) = unsafe { (OwnedFd::from_raw_fd(sv[0]), OwnedFd::from_raw_fd(sv[1])) };
    let mut spec = SpawnSpec::service("/proc/self/exe", "sandbox-probe", theirs)
        .with_inherited_stderr()
        .unwrap_or_else(|e| die(&e.to_string()));
    spec.args.extend(service_args);
    let mut child = sandbox::spawn(spec).unwrap_or_else(|e| die(&format!("spawn: {e}")));
    let mut out = std::io::stdout();
    let _ = writeln!(out, "pid {}", child.pid());
    let _ = out.flush();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let line = line.trim();
        if let Some(c) = line.strip_prefix("send ") {
            let b = c.as_bytes().first().copied().unwrap_or(b'i');
            let mut r = [0u8; 1];
            // SAFETY: one-byte write/read on our socket end with valid buffers.
            let got = unsafe {
                libc::write(ours.as_raw_fd(), [b].as_ptr().cast(), 1) == 1
                    && libc::read(ours.as_raw_fd(), r.as_mut_ptr().cast(), 1) == 1
            };
            let reply = if got {
                (r[0] as char).to_string()
            } else {
                "EOF".into()
            };
            let _ = writeln!(out, "reply {reply}");
        } else if line == "wait" {
            match child.wait() {
                Ok(s) => match s.signal() {
                    Some(sig) => {
                        let _ = writeln!(out, "status signal {sig}");
                    }
                    None => {
                        let _ = writeln!(out, "status {s}");
                    }
                },
                Err(e) => {
                    let _ = writeln!(out, "status error {e}");
                }
            }
        } else if line == "exit" {
            let _ = out.flush();
            // Leave without dropping `child`: the service must die of its
            // parent-death signal, not of our Drop.
            std::process::exit(0);
        }
        let _ = out.flush();
    }
    std::process::exit(0);
}
