//! `svc-runtime`: the common start-up of every Bulkhead service process.
//!
//! A service is the `bulkhead` binary re-executed under a `svc-*` name
//! (`docs/architecture.md`). Its `main` calls [`start`] first, which, in this
//! order and before any byte from IPC or the network is read:
//!
//! 1. parses `--ipc-fd N` (and the debugging switch `--no-sandbox`);
//! 2. sets up `tracing` output on stderr (`RUST_LOG` is the only variable the
//!    supervisor passes through);
//! 3. confines the process with its kind's [`sandbox::Policy`]
//!    (`sandbox::confine`: empty root, no capabilities, no_new_privs,
//!    rlimits, seccomp allowlist);
//! 4. claims the IPC socket and answers the supervisor's handshake.
//!
//! The service then receives its `Startup` message (configuration and
//! credentials, once) and runs its own loop; [`handle_test_trigger`] serves
//! the test-only misbehaviour requests every family carries.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use ipc::{Channel, IpcError, TestAction};
use sandbox::{Policy, ServiceKind};

/// Errors of the common start-up.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// Bad command line (only the supervisor starts services).
    #[error("{argv0}: {msg} (services are started by the bulkhead supervisor)")]
    Usage {
        /// The service's argv[0].
        argv0: String,
        /// What was wrong.
        msg: String,
    },
    /// Confinement failed: the service must not run unconfined.
    #[error("confinement failed: {0}")]
    Sandbox(#[from] sandbox::SandboxError),
    /// The IPC handshake or a message failed.
    #[error("ipc: {0}")]
    Ipc(#[from] IpcError),
    /// The first message was not `Startup`.
    #[error("expected a Startup message first, got {0}")]
    NoStartup(String),
}

/// Arguments every service takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceArgs {
    /// The IPC socket's fd number (`--ipc-fd`).
    pub ipc_fd: RawFd,
    /// `--no-sandbox`: run unconfined (debugging only, loudly logged).
    pub no_sandbox: bool,
}

/// Parses `--ipc-fd N [--no-sandbox]` (args without argv[0]).
pub fn parse_args(argv0: &str, args: &[String]) -> Result<ServiceArgs, RuntimeError> {
    let usage = |msg: String| RuntimeError::Usage {
        argv0: argv0.to_owned(),
        msg,
    };
    let mut ipc_fd = None;
    let mut no_sandbox = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--ipc-fd" => {
                let v = it
                    .next()
                    .ok_or_else(|| usage("--ipc-fd needs a value".into()))?;
                let fd: RawFd = v
                    .parse()
                    .map_err(|_| usage(format!("--ipc-fd: '{v}' is not an fd number")))?;
                if fd < 3 {
                    return Err(usage(format!("--ipc-fd: {fd} is a standard stream")));
                }
                ipc_fd = Some(fd);
            }
            "--no-sandbox" => no_sandbox = true,
            other => return Err(usage(format!("unknown argument '{other}'"))),
        }
    }
    Ok(ServiceArgs {
        ipc_fd: ipc_fd.ok_or_else(|| usage("--ipc-fd is required".into()))?,
        no_sandbox,
    })
}

/// Installs a `tracing` subscriber writing to stderr, filtered by `RUST_LOG`
/// (default `info`), each line prefixed with the service name.
pub fn init_logging(kind: ServiceKind) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(false)
        .try_init();
    tracing::debug!(service = %kind, "logging ready");
}

/// Maps the sandbox's kind to the IPC handshake's kind.
pub fn ipc_kind(kind: ServiceKind) -> ipc::ServiceKind {
    match kind {
        ServiceKind::Chardev => ipc::ServiceKind::Chardev,
        ServiceKind::Nbd => ipc::ServiceKind::Nbd,
        ServiceKind::Vnc => ipc::ServiceKind::Vnc,
        ServiceKind::Migrate => ipc::ServiceKind::Migrate,
        ServiceKind::Idle => ipc::ServiceKind::Idle,
    }
}

/// Steps 1-4 of the module docs. `args` excludes argv[0].
pub fn start(kind: ServiceKind, args: &[String]) -> Result<Channel, RuntimeError> {
    let parsed = parse_args(kind.argv0(), args)?;
    init_logging(kind);
    let policy = if parsed.no_sandbox {
        tracing::warn!(
            service = %kind,
            "*** --no-sandbox: this service runs UNCONFINED (no namespaces, no seccomp, \
             full capabilities). Debugging only; never use it in production. ***"
        );
        Policy::disabled(kind)
    } else {
        Policy::for_service(kind)
    };
    // Claim the fd before confining so that the rlimit on open files cannot
    // race with it; nothing is read from it until confinement is done.
    let fd = claim_fd(parsed.ipc_fd)?;
    sandbox::confine(&policy)?;
    let ch = Channel::from_fd_checked(fd)?;
    ipc::hello_service(&ch, ipc_kind(kind))?;
    tracing::debug!(service = %kind, "handshake done");
    Ok(ch)
}

fn claim_fd(fd: RawFd) -> Result<OwnedFd, RuntimeError> {
    // SAFETY: F_GETFD only inspects the descriptor table entry.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(RuntimeError::Usage {
            argv0: "service".into(),
            msg: format!("--ipc-fd {fd} is not open"),
        });
    }
    // SAFETY: the supervisor started this process with `fd` open for us and
    // nothing else in this process refers to it; we take sole ownership.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Serves a test-only `TestTrigger`. Used by the sandbox and supervisor
/// tests to prove that a misbehaving service is contained and restarted.
pub fn handle_test_trigger(action: TestAction) {
    match action {
        TestAction::ForbiddenSyscall => {
            tracing::warn!("test trigger: making a forbidden syscall (socket)");
            // SAFETY: socket(2) takes no pointers; under seccomp the kernel
            // kills the process before it returns.
            let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
            // Only reached without a sandbox.
            tracing::error!(fd, "forbidden syscall was allowed: sandbox is off");
            if fd >= 0 {
                // SAFETY: we own the fd just created.
                unsafe { libc::close(fd) };
            }
        }
        TestAction::Panic => panic!("test trigger: panic requested by the supervisor"),
        TestAction::Hang => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
    }
}

/// The idle service (`svc-idle`): full start-up and confinement, then only
/// the common messages. Used by the sandbox and supervisor tests and the IPC
/// benchmark. Returns the process exit code.
pub fn idle_main(args: &[String]) -> std::process::ExitCode {
    use ipc::idle::{CoreToIdle, IdleToCore};
    let ch = match start(ServiceKind::Idle, args) {
        Ok(ch) => ch,
        Err(e) => {
            eprintln!("svc-idle: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    let run = || -> Result<(), RuntimeError> {
        match ch.recv::<CoreToIdle>()? {
            CoreToIdle::Startup(_) => ch.send(&IdleToCore::Ready)?,
            other => return Err(RuntimeError::NoStartup(format!("{other:?}"))),
        }
        loop {
            match ch.recv::<CoreToIdle>() {
                Ok(CoreToIdle::Ping(n)) => ch.send(&IdleToCore::Pong(n))?,
                Ok(CoreToIdle::TestTrigger(a)) => handle_test_trigger(a),
                Ok(CoreToIdle::Shutdown) => return Ok(()),
                Ok(CoreToIdle::Startup(_)) => {
                    tracing::warn!("ignoring a second Startup");
                }
                Ok(CoreToIdle::BrokerReply(r)) => {
                    tracing::debug!(id = r.id, ok = r.result.is_ok(), "broker reply");
                }
                Err(e) if e.is_disconnected() => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    };
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // The supervisor went away (stop, or its own exit): not an error.
        Err(RuntimeError::Ipc(e)) if e.is_disconnected() => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "svc-idle failed");
            std::process::ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn args_parse() {
        assert_eq!(
            parse_args("svc-idle", &s(&["--ipc-fd", "3"])).unwrap(),
            ServiceArgs {
                ipc_fd: 3,
                no_sandbox: false
            }
        );
        assert!(
            parse_args("svc-idle", &s(&["--ipc-fd", "3", "--no-sandbox"]))
                .unwrap()
                .no_sandbox
        );
        for bad in [
            &[][..],
            &["--ipc-fd"][..],
            &["--ipc-fd", "x"][..],
            &["--ipc-fd", "1"][..],
            &["--ipc-fd", "3", "--bogus"][..],
        ] {
            let e = parse_args("svc-idle", &s(bad)).unwrap_err().to_string();
            assert!(e.starts_with("svc-idle: "), "{e}");
        }
    }
}
