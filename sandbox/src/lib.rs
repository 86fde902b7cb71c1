//! `sandbox`: spawn-and-confine for Bulkhead service executables.
//!
//! Confinement happens in two halves:
//!
//! * **Supervisor side, [`spawn`]**: `clone3` (fork-like) into new mount, pid,
//!   net, ipc and uts namespaces (plus a user namespace when the supervisor
//!   is not root), parent-death signal, only fds 0-2 (`/dev/null` / chosen
//!   stderr) and the IPC socket at fd 3, an empty environment except what the
//!   caller allows, then `execve` of the service executable (for Bulkhead the
//!   multi-call binary via `/proc/self/exe` with `argv[0] = svc-*`). Returns
//!   a [`ServiceProcess`] with a pidfd to poll, wait on and kill.
//! * **Service side, [`confine()`]**: right after exec and before any
//!   untrusted input: private mounts, `pivot_root` into an empty read-only
//!   tmpfs, neutral hostname, rlimits, `PR_SET_DUMPABLE 0`,
//!   `PR_SET_NO_NEW_PRIVS`, capability bounding/ambient drop, switch to an
//!   unprivileged uid/gid, clear all capabilities, then the per-service
//!   seccomp allowlist ([`seccomp`]) with kill-process as default action.
//!   The ordered step list is in the [`confine`](mod@confine) module docs and
//!   in `docs/sandbox.md`.
//!
//! [`inspect`] reads `/proc/PID/...` so tests and the supervisor can prove a
//! service is confined. `--no-sandbox` is expressed as
//! [`Policy::disabled`] (service side) and [`SpawnSpec::namespaces`] = false
//! (supervisor side); both log a `tracing::warn!`.
//!
//! This crate is independent of `ipc`: it only moves an `OwnedFd` to fd 3.

mod error;
mod policy;
mod process;
mod spawn;

pub mod confine;
pub mod inspect;
pub mod seccomp;

pub use confine::confine;
pub use error::SandboxError;
pub use policy::{Limits, Policy, ServiceKind};
pub use process::{ExitStatus, ServiceProcess};
pub use spawn::{spawn, SpawnSpec, IPC_FD};
