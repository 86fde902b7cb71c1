//! [`ServiceProcess`]: a handle on a spawned service (pid + pidfd).
//!
//! The pidfd is obtained atomically with the child (`CLONE_PIDFD`), so it can
//! never refer to a recycled pid. It becomes readable when the service exits,
//! so the supervisor can `poll` it next to its IPC channels
//! ([`ServiceProcess::pidfd`]), then collect the status with
//! [`ServiceProcess::try_wait`].

use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use crate::SandboxError;

/// `idtype_t` value for `waitid` on a pidfd (Linux 5.4).
const P_PIDFD: libc::idtype_t = 3;

/// How a service ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// It called `exit(code)`.
    Exited(i32),
    /// A signal killed it (`SIGSYS` = seccomp violation, `SIGKILL` = killed
    /// by the supervisor, the OOM killer or parent death).
    Signaled(i32),
}

impl ExitStatus {
    /// The killing signal, if any.
    pub fn signal(self) -> Option<i32> {
        match self {
            ExitStatus::Signaled(s) => Some(s),
            ExitStatus::Exited(_) => None,
        }
    }

    /// True when the seccomp filter killed the service.
    pub fn is_seccomp_violation(self) -> bool {
        self == ExitStatus::Signaled(libc::SIGSYS)
    }

    /// True for `exit(0)`.
    pub fn success(self) -> bool {
        self == ExitStatus::Exited(0)
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ExitStatus::Exited(c) => write!(f, "exited with code {c}"),
            ExitStatus::Signaled(libc::SIGSYS) => {
                f.write_str("killed by SIGSYS (seccomp violation)")
            }
            ExitStatus::Signaled(libc::SIGKILL) => f.write_str("killed by SIGKILL"),
            ExitStatus::Signaled(s) => write!(f, "killed by signal {s}"),
        }
    }
}

/// A running (or exited, not yet dropped) service. Dropping the handle kills
/// and reaps the service if it has not been reaped yet, so a supervisor that
/// unwinds never leaves services behind.
#[derive(Debug)]
pub struct ServiceProcess {
    pid: i32,
    pidfd: OwnedFd,
    status: Option<ExitStatus>,
}

impl ServiceProcess {
    pub(crate) fn new(pid: i32, pidfd: OwnedFd) -> Self {
        ServiceProcess {
            pid,
            pidfd,
            status: None,
        }
    }

    /// The service's pid in the supervisor's pid namespace.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The pidfd; `POLLIN` on it means the service exited.
    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// The status once collected.
    pub fn status(&self) -> Option<ExitStatus> {
        self.status
    }

    fn waitid(&mut self, nohang: bool) -> Result<Option<ExitStatus>, SandboxError> {
        if let Some(s) = self.status {
            return Ok(Some(s));
        }
        let flags = libc::WEXITED | if nohang { libc::WNOHANG } else { 0 };
        loop {
            // SAFETY: an all-zero siginfo_t is a valid value (plain C struct).
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: waitid writes only into `info`, which outlives the call;
            // the pidfd is owned by self and open.
            let rc = unsafe {
                libc::waitid(
                    P_PIDFD,
                    self.pidfd.as_raw_fd() as libc::id_t,
                    &mut info,
                    flags,
                )
            };
            if rc != 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(SandboxError::io("waitid(P_PIDFD)", e));
            }
            // SAFETY: waitid succeeded, so `info` holds SIGCHLD data (or
            // zeroes with WNOHANG and no exited child, si_pid == 0).
            let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
            if pid == 0 {
                return Ok(None);
            }
            let st = match info.si_code {
                libc::CLD_EXITED => ExitStatus::Exited(status),
                _ => ExitStatus::Signaled(status), // CLD_KILLED / CLD_DUMPED
            };
            self.status = Some(st);
            return Ok(Some(st));
        }
    }

    /// Collects the exit status if the service has exited; never blocks.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, SandboxError> {
        self.waitid(true)
    }

    /// Blocks until the service exits.
    pub fn wait(&mut self) -> Result<ExitStatus, SandboxError> {
        match self.waitid(false)? {
            Some(s) => Ok(s),
            None => Err(SandboxError::Invalid(
                "waitid returned without a status".into(),
            )),
        }
    }

    /// Waits at most `timeout` (polling the pidfd); `None` if still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>, SandboxError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_wait()? {
                return Ok(Some(s));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let mut pfd = libc::pollfd {
                fd: self.pidfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
            // SAFETY: one valid pollfd that outlives the call.
            let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
            if rc < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(SandboxError::io("poll(pidfd)", e));
                }
            }
        }
    }

    /// Sends `sig` through the pidfd (cannot hit a recycled pid). Sending to
    /// a service that already exited is not an error.
    pub fn signal(&self, sig: i32) -> Result<(), SandboxError> {
        if self.status.is_some() {
            return Ok(());
        }
        // SAFETY: pidfd_send_signal with a valid pidfd, a null siginfo and
        // zero flags touches no memory of ours.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.pidfd.as_raw_fd(),
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ESRCH) {
                return Ok(()); // exited, not yet reaped
            }
            return Err(SandboxError::io("pidfd_send_signal", e));
        }
        Ok(())
    }

    /// `SIGKILL`s the service (does not reap; call [`Self::wait`]).
    pub fn kill(&self) -> Result<(), SandboxError> {
        self.signal(libc::SIGKILL)
    }
}

impl AsRawFd for ServiceProcess {
    fn as_raw_fd(&self) -> RawFd {
        self.pidfd.as_raw_fd()
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.kill();
            let _ = self.wait();
        }
    }
}
