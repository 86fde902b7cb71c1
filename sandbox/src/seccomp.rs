//! Per-service seccomp allowlists, compiled with `seccompiler`.
//!
//! Two filters are installed, in this order:
//!
//! 1. `clone3 → ENOSYS`, everything else allowed. glibc's `pthread_create`
//!    then falls back to `clone`, whose flags (unlike `clone3`'s, which live in
//!    memory) a BPF filter can inspect.
//! 2. The allowlist of the [`ServiceKind`]; anything else kills the whole
//!    process (`SECCOMP_RET_KILL_PROCESS`, seen by the supervisor as SIGSYS).
//!
//! The kernel runs every installed filter and applies the action with the
//! highest precedence (KILL_PROCESS > ERRNO > ALLOW), so `clone3` (allowed by
//! filter 2) returns ENOSYS, and a syscall missing from filter 2 kills even
//! though filter 1 allows it. Filter 2 is installed last because installing it
//! needs the `seccomp` syscall, which it does not allow.
//!
//! Everything not listed is denied; in particular `open`, `openat`,
//! `openat2`, `creat`, `socket`, `socketpair`, `connect`, `bind`, `listen`,
//! `execve`, `execveat`, `ptrace`, `mount`, `umount2`, `pivot_root`, `kill`,
//! `clone` without `CLONE_THREAD` (no fork), `mmap`/`mprotect` with
//! `PROT_EXEC`, `prctl` other than thread naming, and `ioctl` other than
//! FIONBIO/FIOCLEX/FIONCLEX/FIONREAD/TCGETS (so no TIOCSTI on an inherited
//! terminal).
//!
//! The lists were found by running the `sandbox-probe` workload (threads,
//! locks, channels, sleeps, large allocations, getrandom, poll, pipes,
//! eventfd, file I/O on passed fds) under `strace -f`; see docs/sandbox.md.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use crate::{SandboxError, ServiceKind};

/// An argument restriction on an allowed syscall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgCheck {
    /// Allowed with any arguments.
    Any,
    /// `clone`: only with `CLONE_THREAD` in the flags (threads, never processes).
    ThreadOnly,
    /// `mmap`/`mprotect`: only without `PROT_EXEC` in `prot` (arg 2).
    NoExec,
    /// `prctl`: only `PR_SET_NAME`/`PR_GET_NAME`.
    ThreadName,
    /// `ioctl`: only FIONBIO, FIOCLEX, FIONCLEX, FIONREAD, TCGETS.
    HarmlessIoctl,
}

/// One allowlist entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllowedSyscall {
    /// Syscall name as in `<asm/unistd.h>`.
    pub name: &'static str,
    /// Syscall number on the build architecture.
    pub nr: i64,
    /// Argument restriction.
    pub check: ArgCheck,
}

macro_rules! allow {
    ($name:ident) => {
        allow!($name, ArgCheck::Any)
    };
    ($name:ident, $check:expr) => {
        paste_allow(stringify!($name), libc::$name, $check)
    };
}

const fn paste_allow(name: &'static str, nr: i64, check: ArgCheck) -> AllowedSyscall {
    // `stringify!(SYS_read)` → "SYS_read"; strip the prefix for display.
    let bytes = name.as_bytes();
    let (_, rest) = bytes.split_at(4);
    let name = match std::str::from_utf8(rest) {
        Ok(s) => s,
        Err(_) => name,
    };
    AllowedSyscall { name, nr, check }
}

/// What every Rust std + rustls + poll service needs.
fn base() -> Vec<AllowedSyscall> {
    let mut v = vec![
        // Byte I/O on the IPC socket, passed streams, stderr.
        allow!(SYS_read),
        allow!(SYS_write),
        allow!(SYS_readv),
        allow!(SYS_writev),
        allow!(SYS_recvmsg),
        allow!(SYS_sendmsg),
        allow!(SYS_recvfrom),
        allow!(SYS_sendto),
        allow!(SYS_shutdown),
        allow!(SYS_getsockopt),
        allow!(SYS_setsockopt),
        allow!(SYS_getsockname),
        allow!(SYS_getpeername),
        allow!(SYS_close),
        allow!(SYS_fcntl),
        // Metadata of fds already held (`ipc::Fd` identity, std's io::copy
        // probes); path lookups only see the empty root.
        allow!(SYS_fstat),
        allow!(SYS_newfstatat),
        allow!(SYS_statx),
        allow!(SYS_lseek),
        allow!(SYS_ioctl, ArgCheck::HarmlessIoctl),
        allow!(SYS_ppoll),
        allow!(SYS_pipe2),
        allow!(SYS_eventfd2),
        // Memory.
        allow!(SYS_mmap, ArgCheck::NoExec),
        allow!(SYS_mprotect, ArgCheck::NoExec),
        allow!(SYS_munmap),
        allow!(SYS_mremap),
        allow!(SYS_madvise),
        allow!(SYS_brk),
        // Threads and synchronisation.
        allow!(SYS_clone, ArgCheck::ThreadOnly),
        allow!(SYS_clone3), // turned into ENOSYS by the first filter
        allow!(SYS_futex),
        allow!(SYS_set_robust_list),
        allow!(SYS_rseq),
        allow!(SYS_sched_yield),
        allow!(SYS_sched_getaffinity),
        allow!(SYS_prctl, ArgCheck::ThreadName),
        allow!(SYS_gettid),
        allow!(SYS_getpid),
        // Signals (own threads only: the service is alone in its pid namespace).
        allow!(SYS_rt_sigreturn),
        allow!(SYS_rt_sigprocmask),
        allow!(SYS_rt_sigaction),
        allow!(SYS_sigaltstack),
        allow!(SYS_tgkill),
        allow!(SYS_restart_syscall),
        // Time and randomness.
        allow!(SYS_clock_gettime),
        allow!(SYS_clock_getres),
        allow!(SYS_clock_nanosleep),
        allow!(SYS_nanosleep),
        allow!(SYS_gettimeofday),
        allow!(SYS_getrandom),
        // Exit.
        allow!(SYS_exit),
        allow!(SYS_exit_group),
    ];
    #[cfg(target_arch = "x86_64")]
    v.push(allow!(SYS_poll));
    v
}

/// Listeners are bound by the broker and passed in; the service only accepts.
fn accept() -> Vec<AllowedSyscall> {
    vec![allow!(SYS_accept4)]
}

/// I/O on passed regular-file fds (NBD images, migration `file:` URIs).
fn file_io() -> Vec<AllowedSyscall> {
    vec![
        allow!(SYS_pread64),
        allow!(SYS_pwrite64),
        allow!(SYS_preadv),
        allow!(SYS_pwritev),
        allow!(SYS_ftruncate),
        allow!(SYS_fallocate),
        allow!(SYS_fsync),
        allow!(SYS_fdatasync),
    ]
}

/// The full allowlist of `kind`, sorted by name.
pub fn allowlist(kind: ServiceKind) -> Vec<AllowedSyscall> {
    let mut v = base();
    match kind {
        ServiceKind::Chardev | ServiceKind::Vnc => v.extend(accept()),
        ServiceKind::Nbd | ServiceKind::Migrate => {
            v.extend(accept());
            v.extend(file_io());
        }
        ServiceKind::Idle => {}
    }
    v.sort_by_key(|s| s.name);
    v.dedup_by_key(|s| s.nr);
    v
}

fn arch() -> Result<TargetArch, SandboxError> {
    TargetArch::try_from(std::env::consts::ARCH).map_err(|e| SandboxError::Seccomp(e.to_string()))
}

fn cond(
    arg: u8,
    len: SeccompCmpArgLen,
    op: SeccompCmpOp,
    value: u64,
) -> Result<SeccompRule, SandboxError> {
    let c = SeccompCondition::new(arg, len, op, value)
        .map_err(|e| SandboxError::Seccomp(e.to_string()))?;
    SeccompRule::new(vec![c]).map_err(|e| SandboxError::Seccomp(e.to_string()))
}

fn rules_for(check: ArgCheck) -> Result<Vec<SeccompRule>, SandboxError> {
    use SeccompCmpArgLen::{Dword, Qword};
    Ok(match check {
        ArgCheck::Any => Vec::new(),
        ArgCheck::ThreadOnly => {
            let t = libc::CLONE_THREAD as u64;
            vec![cond(0, Qword, SeccompCmpOp::MaskedEq(t), t)?]
        }
        ArgCheck::NoExec => {
            let x = libc::PROT_EXEC as u64;
            vec![cond(2, Dword, SeccompCmpOp::MaskedEq(x), 0)?]
        }
        ArgCheck::ThreadName => vec![
            cond(0, Dword, SeccompCmpOp::Eq, libc::PR_SET_NAME as u64)?,
            cond(0, Dword, SeccompCmpOp::Eq, libc::PR_GET_NAME as u64)?,
        ],
        ArgCheck::HarmlessIoctl => {
            let mut v = Vec::new();
            for req in [
                libc::FIONBIO,
                libc::FIOCLEX,
                libc::FIONCLEX,
                libc::FIONREAD,
                libc::TCGETS,
            ] {
                v.push(cond(1, Dword, SeccompCmpOp::Eq, req)?);
            }
            v
        }
    })
}

fn compile(filter: SeccompFilter) -> Result<BpfProgram, SandboxError> {
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| SandboxError::Seccomp(e.to_string()))
}

/// Compiles the two BPF programs for `kind` (plus `extra` unconditionally
/// allowed syscall numbers), in installation order.
pub fn compile_filters(kind: ServiceKind, extra: &[i64]) -> Result<Vec<BpfProgram>, SandboxError> {
    let arch = arch()?;
    let enosys: BTreeMap<i64, Vec<SeccompRule>> =
        [(libc::SYS_clone3, Vec::new())].into_iter().collect();
    let first = SeccompFilter::new(
        enosys,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .map_err(|e| SandboxError::Seccomp(e.to_string()))?;

    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for s in allowlist(kind) {
        rules.insert(s.nr, rules_for(s.check)?);
    }
    for &nr in extra {
        rules.insert(nr, Vec::new());
    }
    let second = SeccompFilter::new(
        rules,
        SeccompAction::KillProcess,
        SeccompAction::Allow,
        arch,
    )
    .map_err(|e| SandboxError::Seccomp(e.to_string()))?;
    Ok(vec![compile(first)?, compile(second)?])
}

/// Installs the filters of `kind` on every thread of the calling process
/// (TSYNC). Irreversible. Sets `PR_SET_NO_NEW_PRIVS` as a side effect.
pub fn install(kind: ServiceKind, extra: &[i64]) -> Result<(), SandboxError> {
    for prog in compile_filters(kind, extra)? {
        seccompiler::apply_filter_all_threads(&prog)
            .map_err(|e| SandboxError::Seccomp(e.to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MUST_DENY: &[(&str, libc::c_long)] = &[
        ("openat", libc::SYS_openat),
        ("openat2", libc::SYS_openat2),
        ("socket", libc::SYS_socket),
        ("socketpair", libc::SYS_socketpair),
        ("connect", libc::SYS_connect),
        ("bind", libc::SYS_bind),
        ("listen", libc::SYS_listen),
        ("execve", libc::SYS_execve),
        ("execveat", libc::SYS_execveat),
        ("ptrace", libc::SYS_ptrace),
        ("mount", libc::SYS_mount),
        ("umount2", libc::SYS_umount2),
        ("pivot_root", libc::SYS_pivot_root),
        ("unshare", libc::SYS_unshare),
        ("setns", libc::SYS_setns),
        ("kill", libc::SYS_kill),
        ("seccomp", libc::SYS_seccomp),
        ("bpf", libc::SYS_bpf),
        ("io_uring_setup", libc::SYS_io_uring_setup),
        ("process_vm_readv", libc::SYS_process_vm_readv),
        ("memfd_create", libc::SYS_memfd_create),
    ];

    #[test]
    fn no_kind_allows_a_forbidden_syscall() {
        for kind in ServiceKind::ALL {
            let list = allowlist(kind);
            for (name, nr) in MUST_DENY {
                assert!(!list.iter().any(|s| s.nr == *nr), "{kind} allows {name}");
            }
            #[cfg(target_arch = "x86_64")]
            for nr in [
                libc::SYS_open,
                libc::SYS_creat,
                libc::SYS_fork,
                libc::SYS_vfork,
            ] {
                assert!(!list.iter().any(|s| s.nr == nr), "{kind} allows {nr}");
            }
        }
    }

    #[test]
    fn names_are_stripped_and_unique() {
        for kind in ServiceKind::ALL {
            let list = allowlist(kind);
            assert!(list.iter().any(|s| s.name == "read"));
            let mut nrs: Vec<_> = list.iter().map(|s| s.nr).collect();
            nrs.dedup();
            assert_eq!(nrs.len(), list.len());
        }
    }

    #[test]
    fn per_kind_lists_differ_where_they_should() {
        let has = |k, name| allowlist(k).iter().any(|s| s.name == name);
        assert!(has(ServiceKind::Nbd, "pwrite64"));
        assert!(has(ServiceKind::Migrate, "pwrite64"));
        assert!(!has(ServiceKind::Vnc, "pwrite64"));
        assert!(!has(ServiceKind::Chardev, "ftruncate"));
        assert!(has(ServiceKind::Chardev, "accept4"));
        assert!(!has(ServiceKind::Idle, "accept4"));
    }

    #[test]
    fn every_kind_compiles() {
        for kind in ServiceKind::ALL {
            let progs = compile_filters(kind, &[]).expect("compile");
            assert_eq!(progs.len(), 2);
            assert!(progs.iter().all(|p| !p.is_empty()));
        }
    }
}
