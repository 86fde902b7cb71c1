//! Supervisor half: create a service process with `clone3` and `execve` it.
//!
//! ```text
//!  supervisor (spawn)                         child (async-signal-safe only)
//!  ──────────────────                         ──────────────────────────────
//!  build CStrings, argv/envp arrays,
//!  open /dev/null, pipes, own pidfd
//!  clone3(NEWNS|NEWPID|NEWNET|NEWIPC|NEWUTS
//!         [|NEWUSER if not root] | CLONE_PIDFD) ─►  prctl(PDEATHSIG, SIGKILL)
//!                                               parent already gone? → _exit
//!  [not root] write setgroups=deny,             read(sync) ◄── waits for maps
//!             uid_map "0 uid 1", gid_map
//!  write(sync, 1) ────────────────────────────► unblock + default all signals
//!                                               fds → 0,1: /dev/null, 2: stderr,
//!                                               3: IPC; close_range(4.., CLOEXEC)
//!  read(err pipe) ◄── EOF on exec success ───── execve(exe, argv, allowlisted env)
//!                 ◄── (step, errno) on failure   (on failure: write, _exit(127))
//!  → ServiceProcess { pid, pidfd }
//! ```
//!
//! The child is a fork-like copy of the calling thread of a (typically
//! multi-threaded) process, so between `clone3` and `execve` it only makes
//! raw system calls: no allocation, no locks, no panics. Everything it needs
//! is prepared before the clone.
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that spawned the child exits,
//! so call [`spawn`] from a thread that lives as long as the service should
//! (the supervisor's main or service-manager thread).
//!
//! File descriptors 0 and 1 of the service are `/dev/null`; fd 2 is
//! [`SpawnSpec::stderr`] or `/dev/null`; fd 3 is the IPC socket ([`IPC_FD`]).
//! Nothing else survives `execve`.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::{SandboxError, ServiceProcess};

/// The fd number at which every service finds its IPC socket.
pub const IPC_FD: RawFd = 3;

/// What to start. Build with [`SpawnSpec::service`] and adjust fields.
#[derive(Debug)]
pub struct SpawnSpec {
    /// Executable to `execve` (`/proc/self/exe` for the multi-call binary).
    pub exe: PathBuf,
    /// `argv[0]`, which selects the service role (`svc-chardev`, ...).
    pub argv0: String,
    /// Further arguments. They are visible in `/proc`: never put secrets here.
    pub args: Vec<String>,
    /// The service end of the IPC socketpair; becomes fd [`IPC_FD`].
    pub ipc_fd: OwnedFd,
    /// The complete environment of the service (nothing is inherited).
    pub env: Vec<(String, String)>,
    /// Create the new namespaces (on by default; off only for `--no-sandbox`).
    pub namespaces: bool,
    /// Becomes fd 2; `None` means `/dev/null`.
    pub stderr: Option<OwnedFd>,
}

impl SpawnSpec {
    /// A service spawn with arguments `--ipc-fd 3`, empty environment,
    /// namespaces on and stderr to `/dev/null`.
    pub fn service(exe: impl Into<PathBuf>, argv0: impl Into<String>, ipc_fd: OwnedFd) -> Self {
        SpawnSpec {
            exe: exe.into(),
            argv0: argv0.into(),
            args: vec!["--ipc-fd".to_owned(), IPC_FD.to_string()],
            ipc_fd,
            env: Vec::new(),
            namespaces: true,
            stderr: None,
        }
    }

    /// Copies the named variables that are set in the current environment
    /// (e.g. `["RUST_LOG"]`) into [`SpawnSpec::env`].
    pub fn with_env_from_current(mut self, names: &[&str]) -> Self {
        for name in names {
            if let Ok(value) = std::env::var(name) {
                self.env.push(((*name).to_owned(), value));
            }
        }
        self
    }

    /// Sends the service's stderr to a duplicate of the caller's stderr.
    pub fn with_inherited_stderr(mut self) -> Result<Self, SandboxError> {
        // SAFETY: F_DUPFD_CLOEXEC on our own stderr returns a new fd (or -1)
        // and touches no memory.
        let dup = unsafe { libc::fcntl(libc::STDERR_FILENO, libc::F_DUPFD_CLOEXEC, 0) };
        if dup < 0 {
            return Err(SandboxError::last_os("dup(stderr)"));
        }
        // SAFETY: `dup` is a fresh fd we exclusively own.
        self.stderr = Some(unsafe { OwnedFd::from_raw_fd(dup) });
        Ok(self)
    }
}

/// Child-side steps, reported back by number on failure.
#[derive(Clone, Copy)]
#[repr(u32)]
enum Step {
    Pdeathsig = 1,
    Sync,
    Signals,
    Fds,
    CloseRange,
    Exec,
}

const STEP_NAMES: [&str; 7] = [
    "?",
    "prctl(PR_SET_PDEATHSIG)",
    "wait for uid/gid maps",
    "reset signals",
    "arrange fds 0-3",
    "close_range",
    "execve",
];

/// `struct clone_args` (version 0 layout, 64 bytes).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
}

const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;

/// Everything the child touches, prepared before the clone.
struct ChildCtx {
    exe: CString,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    /// Sources for fds 0, 1, 2, 3.
    targets: [RawFd; 4],
    sync_r: RawFd,
    sync_w: RawFd,
    err_r: RawFd,
    err_w: RawFd,
    parent_pidfd: RawFd,
    /// Highest signal number, read before the clone.
    sigrtmax: libc::c_int,
    /// A user namespace is being created (parent writes the id maps).
    userns: bool,
}

fn cstring(what: &str, s: &[u8]) -> Result<CString, SandboxError> {
    CString::new(s).map_err(|_| SandboxError::Invalid(format!("{what} contains a NUL byte")))
}

fn pipe() -> Result<(OwnedFd, OwnedFd), SandboxError> {
    let mut fds = [-1; 2];
    // SAFETY: pipe2 writes two fds into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(SandboxError::last_os("pipe2"));
    }
    // SAFETY: both fds are fresh and owned only here.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Starts the service described by `spec`. Returns once `execve` succeeded
/// (or with the child-side error if it did not).
pub fn spawn(spec: SpawnSpec) -> Result<ServiceProcess, SandboxError> {
    if !spec.namespaces {
        tracing::warn!(
            service = %spec.argv0,
            "SANDBOX WEAKENED: spawning service WITHOUT namespaces (--no-sandbox); \
             it shares the host's mount, pid, network, ipc and uts namespaces"
        );
    }

    // --- Everything allocated before clone. ---
    let exe = cstring("executable path", spec.exe.as_os_str().as_bytes())?;
    let mut argv_c = vec![cstring("argv[0]", spec.argv0.as_bytes())?];
    for a in &spec.args {
        argv_c.push(cstring("argument", a.as_bytes())?);
    }
    let mut env_c = Vec::with_capacity(spec.env.len());
    for (k, v) in &spec.env {
        if k.is_empty() || k.contains('=') {
            return Err(SandboxError::Invalid(format!(
                "bad environment variable name {k:?}"
            )));
        }
        env_c.push(cstring(
            "environment variable",
            format!("{k}={v}").as_bytes(),
        )?);
    }
    let mut argv: Vec<*const libc::c_char> = argv_c.iter().map(|c| c.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env_c.iter().map(|c| c.as_ptr()).collect();
    envp.push(std::ptr::null());

    // SAFETY: plain open of a constant path; the result is checked.
    let devnull = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if devnull < 0 {
        return Err(SandboxError::last_os("open /dev/null"));
    }
    // SAFETY: fresh fd owned only here.
    let devnull = unsafe { OwnedFd::from_raw_fd(devnull) };
    let stderr_src = spec
        .stderr
        .as_ref()
        .map_or(devnull.as_raw_fd(), |f| f.as_raw_fd());

    let (sync_r, sync_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    // SAFETY: pidfd_open of our own pid; result checked.
    let own = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) };
    if own < 0 {
        return Err(SandboxError::last_os("pidfd_open(self)"));
    }
    // SAFETY: fresh fd (pidfds are close-on-exec) owned only here.
    let parent_pidfd = unsafe { OwnedFd::from_raw_fd(own as RawFd) };

    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    // SAFETY: getegid has no preconditions.
    let egid = unsafe { libc::getegid() };
    let userns = spec.namespaces && euid != 0;

    let ctx = ChildCtx {
        exe,
        argv,
        envp,
        targets: [
            devnull.as_raw_fd(),
            devnull.as_raw_fd(),
            stderr_src,
            spec.ipc_fd.as_raw_fd(),
        ],
        sync_r: sync_r.as_raw_fd(),
        sync_w: sync_w.as_raw_fd(),
        err_r: err_r.as_raw_fd(),
        err_w: err_w.as_raw_fd(),
        parent_pidfd: parent_pidfd.as_raw_fd(),
        sigrtmax: libc::SIGRTMAX(),
        userns,
    };

    let mut flags = libc::CLONE_PIDFD as u64;
    if spec.namespaces {
        flags |= (libc::CLONE_NEWNS
            | libc::CLONE_NEWPID
            | libc::CLONE_NEWNET
            | libc::CLONE_NEWIPC
            | libc::CLONE_NEWUTS) as u64;
        if userns {
            flags |= libc::CLONE_NEWUSER as u64;
        }
    }
    let mut child_pidfd: libc::c_int = -1;
    let pid = clone_fork_like(flags, &mut child_pidfd)?;
    if pid == 0 {
        // SAFETY: we are the freshly cloned child; `ctx` was fully prepared
        // before the clone and child_main only makes raw syscalls.
        unsafe { child_main(&ctx) }
    }
    // SAFETY: CLONE_PIDFD stored a fresh pidfd (close-on-exec) for the child.
    let pidfd = unsafe { OwnedFd::from_raw_fd(child_pidfd) };
    let mut process = ServiceProcess::new(pid, pidfd);
    // Keep our copy of `sync_r` until the release byte is written: with a
    // reader left, a child that already died cannot turn that write into
    // EPIPE/SIGPIPE for the supervisor.
    drop(err_w);

    let mut report = [0u8; 8];
    if userns {
        // Wait for the child's "ready for maps" report (all zeroes).
        let n = read_full(err_r.as_raw_fd(), &mut report);
        if n != 8 || report != [0u8; 8] {
            return Err(child_report(&mut process, n, report));
        }
        // On error, dropping `process` kills and reaps the child.
        write_id_maps(pid, euid, egid)?;
    }
    // Release the child. A failed write means it already died; the error pipe
    // below tells us why.
    // SAFETY: writes one byte from a valid buffer to our pipe end.
    let _ = unsafe { libc::write(sync_w.as_raw_fd(), [1u8].as_ptr().cast(), 1) };
    drop(sync_w);
    drop(sync_r);

    let n = read_full(err_r.as_raw_fd(), &mut report);
    drop(ctx);
    drop(argv_c);
    drop(env_c);
    if n == 0 {
        // EOF: execve succeeded (the pipe was close-on-exec).
        return Ok(process);
    }
    Err(child_report(&mut process, n, report))
}

/// Turns a failure report of `n` bytes from the child into an error, after
/// reaping the child (which exits right after reporting).
fn child_report(process: &mut ServiceProcess, n: usize, report: [u8; 8]) -> SandboxError {
    let _ = process.kill();
    let _ = process.wait();
    if n != 8 {
        return SandboxError::ChildSetup {
            step: "exec report",
            source: std::io::Error::other("child died before exec"),
        };
    }
    let step = u32::from_ne_bytes([report[0], report[1], report[2], report[3]]) as usize;
    let errno = i32::from_ne_bytes([report[4], report[5], report[6], report[7]]);
    SandboxError::ChildSetup {
        step: STEP_NAMES.get(step).copied().unwrap_or("?"),
        source: std::io::Error::from_raw_os_error(errno),
    }
}

/// Reads until `buf` is full or EOF; returns the byte count (EINTR retried).
fn read_full(fd: RawFd, buf: &mut [u8]) -> usize {
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: reads into the unfilled tail of `buf`.
        let n = unsafe { libc::read(fd, buf[got..].as_mut_ptr().cast(), buf.len() - got) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            break;
        }
        if n == 0 {
            break;
        }
        got += n as usize;
    }
    got
}

/// `clone3` without a new stack (fork semantics), falling back to `clone`
/// where `clone3` is unavailable (old kernel or a container seccomp profile).
fn clone_fork_like(flags: u64, pidfd_out: &mut libc::c_int) -> Result<i32, SandboxError> {
    let args = CloneArgs {
        flags,
        pidfd: pidfd_out as *mut libc::c_int as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    // SAFETY: clone3 with no stack duplicates the calling thread like fork;
    // `args` and `pidfd_out` are valid for the call. The child branch is
    // handled by the caller, which only runs async-signal-safe code.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if rc >= 0 {
        return Ok(rc as i32);
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() != Some(libc::ENOSYS) {
        return Err(SandboxError::io("clone3", e));
    }
    // Legacy clone: with CLONE_PIDFD the pidfd is stored through the
    // parent_tid argument (third on every architecture); child_tid and tls
    // are zero so their order does not matter.
    // SAFETY: as above; a null stack means "share the (copied) stack".
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags as libc::c_ulong) | libc::SIGCHLD as libc::c_ulong,
            0usize,
            pidfd_out as *mut libc::c_int,
            0usize,
            0usize,
        )
    };
    if rc < 0 {
        return Err(SandboxError::last_os("clone"));
    }
    Ok(rc as i32)
}

fn write_id_maps(pid: i32, uid: u32, gid: u32) -> Result<(), SandboxError> {
    let w = |file: &str, data: String| {
        std::fs::write(format!("/proc/{pid}/{file}"), data)
            .map_err(|e| SandboxError::io("write user namespace id map", e))
    };
    w("setgroups", "deny".to_owned())?;
    w("uid_map", format!("0 {uid} 1\n"))?;
    w("gid_map", format!("0 {gid} 1\n"))?;
    Ok(())
}

/// Reports `step` and the current errno to the parent and exits.
///
/// # Safety
/// Only for the cloned child; async-signal-safe.
unsafe fn child_fail(err_w: RawFd, step: Step) -> ! {
    let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    let mut msg = [0u8; 8];
    msg[..4].copy_from_slice(&(step as u32).to_ne_bytes());
    msg[4..].copy_from_slice(&errno.to_ne_bytes());
    // SAFETY: write(2) and _exit(2) are async-signal-safe; `msg` is valid.
    unsafe {
        libc::write(err_w, msg.as_ptr().cast(), msg.len());
        libc::_exit(127)
    }
}

/// The child between clone and execve. Raw syscalls only.
///
/// # Safety
/// Must only run in the freshly cloned child of [`spawn`].
unsafe fn child_main(ctx: &ChildCtx) -> ! {
    // SAFETY: (whole body) every call below is an async-signal-safe system
    // call wrapper operating on fds and memory prepared before the clone.
    unsafe {
        libc::close(ctx.sync_w);
        libc::close(ctx.err_r);
        let mut err_w = ctx.err_w;

        if libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ) != 0
        {
            child_fail(err_w, Step::Pdeathsig);
        }
        // If the supervisor died before PDEATHSIG was armed, nothing would
        // ever kill us: its pidfd is readable once it has exited.
        let mut pfd = libc::pollfd {
            fd: ctx.parent_pidfd,
            events: libc::POLLIN,
            revents: 0,
        };
        if libc::poll(&mut pfd, 1, 0) != 0 {
            libc::_exit(127);
        }

        // The parent (not root) writes /proc/<us>/{uid,gid}_map; those files
        // belong to root while we are non-dumpable, which we inherited if the
        // supervisor made itself non-dumpable. execve recomputes the flag and
        // `confine` clears it again.
        if ctx.userns {
            if libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) != 0 {
                child_fail(err_w, Step::Sync);
            }
            // "Ready for maps": an all-zero report (step 0).
            let ready = [0u8; 8];
            if libc::write(err_w, ready.as_ptr().cast(), ready.len()) != 8 {
                child_fail(err_w, Step::Sync);
            }
        }
        // Wait until the parent wrote our uid/gid maps (or simply released us).
        let mut b = 0u8;
        loop {
            let n = libc::read(ctx.sync_r, (&mut b as *mut u8).cast(), 1);
            if n == 1 {
                break;
            }
            if n < 0 && *libc::__errno_location() == libc::EINTR {
                continue;
            }
            if n == 0 {
                libc::_exit(127); // parent gave up
            }
            child_fail(err_w, Step::Sync);
        }
        libc::close(ctx.sync_r);

        // Signals: execve keeps the mask and SIG_IGN dispositions (Rust's
        // runtime ignores SIGPIPE), so reset both.
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        if libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) != 0 {
            child_fail(err_w, Step::Signals);
        }
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        for sig in 1..=ctx.sigrtmax {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                // EINVAL for libc-reserved signals is fine.
                libc::sigaction(sig, &dfl, std::ptr::null_mut());
            }
        }

        // Fds: first move every source (and the error pipe) above 3 so that
        // placing one cannot clobber another, then dup2 into 0..=3 (dup2
        // clears close-on-exec), then mark everything >= 4 close-on-exec.
        let moved = libc::fcntl(err_w, libc::F_DUPFD_CLOEXEC, 4);
        if moved < 0 {
            child_fail(err_w, Step::Fds);
        }
        err_w = moved;
        let mut high = [-1; 4];
        for (i, &src) in ctx.targets.iter().enumerate() {
            high[i] = libc::fcntl(src, libc::F_DUPFD_CLOEXEC, 4);
            if high[i] < 0 {
                child_fail(err_w, Step::Fds);
            }
        }
        for (target, &src) in high.iter().enumerate() {
            if libc::dup2(src, target as RawFd) < 0 {
                child_fail(err_w, Step::Fds);
            }
        }
        if libc::syscall(libc::SYS_close_range, 4u32, u32::MAX, CLOSE_RANGE_CLOEXEC) != 0 {
            child_fail(err_w, Step::CloseRange);
        }

        libc::execve(ctx.exe.as_ptr(), ctx.argv.as_ptr(), ctx.envp.as_ptr());
        child_fail(err_w, Step::Exec)
    }
}
