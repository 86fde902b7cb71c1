//! Service half: [`confine`] runs right after `execve`, before the service
//! reads a single byte of untrusted input (Firecracker-jailer style, but done
//! by the service itself because a dynamically linked binary needs its loader
//! and libraries until exec has completed).
//!
//! Ordered steps (each depends on privileges the later ones remove):
//!
//! 1. Refuse if the process has more than one thread (capabilities and ids
//!    are per thread).
//! 2. Read `/proc/self/uid_map`/`gid_map` to learn whether the target
//!    unprivileged id exists in this user namespace (last use of the old root).
//! 3. `unshare(CLONE_NEWNS | CLONE_NEWUTS)`: guarantees the mount and hostname
//!    changes below stay private even if the spawner did not create
//!    namespaces (nested inside the spawner's when it did).
//! 4. `mount("/", MS_REC | MS_PRIVATE)`: no propagation to or from the host
//!    (steps 4-6 are skipped only when `Policy::empty_root` is off).
//! 5. Mount a tiny tmpfs (4 KiB, 16 inodes) on `/tmp`, `chdir` into it,
//!    `pivot_root(".", ".")`, `umount2(".", MNT_DETACH)`: the old root is
//!    detached and the new root is empty.
//! 6. Bind-remount `/` read-only, nosuid, nodev, noexec; `chdir("/")`;
//!    check that `/` has no entries.
//! 7. `sethostname` to a neutral name (policy, default `localhost`).
//! 8. rlimits, soft = hard = min(policy, current hard): `RLIMIT_CORE` 0,
//!    `RLIMIT_MEMLOCK` 0, `RLIMIT_NOFILE`, `RLIMIT_NPROC`, `RLIMIT_AS` and
//!    `RLIMIT_DATA` (policy; svc-migrate adds guest RAM).
//! 9. `PR_SET_DUMPABLE 0` (no core, no ptrace by same-uid processes).
//! 10. `PR_SET_NO_NEW_PRIVS 1`.
//! 11. Drop the whole capability bounding set (needs `CAP_SETPCAP`, so before
//!     the uid switch) and clear the ambient set.
//! 12. When euid is 0 and the target id (default 65534) is mapped:
//!     `setgroups([])`, `setresgid`, `setresuid`, then re-arm
//!     `PR_SET_PDEATHSIG(SIGKILL)` (the kernel clears it on a uid change).
//!     In a user namespace made by an unprivileged supervisor only the
//!     supervisor's own uid is mapped, as 0; the service stays ns-root, which
//!     is the unprivileged supervisor uid outside, with no capabilities.
//! 13. Clear effective, permitted and inheritable capabilities; verify all
//!     five sets are empty.
//! 14. Install the per-service seccomp filters (`seccomp` module), TSYNC,
//!     default action kill-process.

use crate::{seccomp, Policy, SandboxError};

const MAX_CAP_INDEX: libc::c_ulong = 63;

fn check(rc: libc::c_int, what: &'static str) -> Result<(), SandboxError> {
    if rc != 0 {
        return Err(SandboxError::last_os(what));
    }
    Ok(())
}

/// Confines the calling (single-threaded) service process according to
/// `policy`. Irreversible. With a disabled policy only logs a loud warning.
pub fn confine(policy: &Policy) -> Result<(), SandboxError> {
    if !policy.enabled {
        tracing::warn!(
            service = %policy.kind,
            "SANDBOX DISABLED (--no-sandbox): this service keeps the supervisor's \
             filesystem, network, privileges and all syscalls"
        );
        return Ok(());
    }
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| SandboxError::io("read /proc/self/status", e))?;
    let threads = crate::inspect::status_field(&status, "Threads").unwrap_or("?");
    if threads != "1" {
        return Err(SandboxError::Invalid(format!(
            "confine must run before any thread is started (threads: {threads})"
        )));
    }

    // SAFETY: geteuid has no preconditions.
    let switch_user = unsafe { libc::geteuid() } == 0 && target_mapped(policy.user)?;

    check(
        // SAFETY: unshare takes only flags.
        unsafe { libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWUTS) },
        "unshare(CLONE_NEWNS|CLONE_NEWUTS)",
    )?;
    if policy.empty_root {
        empty_root()?;
    }
    set_hostname(&policy.hostname)?;
    set_limits(policy)?;
    check(
        // SAFETY: prctl with integer arguments only.
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) },
        "prctl(PR_SET_DUMPABLE, 0)",
    )?;
    check(
        // SAFETY: prctl with integer arguments only.
        unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) },
        "prctl(PR_SET_NO_NEW_PRIVS)",
    )?;
    drop_bounding_and_ambient()?;
    if switch_user {
        switch_to(policy.user)?;
        check(
            // The kernel clears the parent-death signal on every euid/egid
            // change (commit_creds), so arm it again. If the supervisor died in
            // the two syscalls between, the service still sees EOF on its IPC
            // socket and must exit on it (every service treats a dead peer as
            // fatal).
            // SAFETY: prctl with integer arguments only.
            unsafe {
                libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0,
                    0,
                    0,
                )
            },
            "prctl(PR_SET_PDEATHSIG) after uid switch",
        )?;
    }
    clear_capabilities()?;
    if policy.seccomp {
        seccomp::install(policy.kind, &policy.extra_syscalls)?;
    } else {
        tracing::warn!(service = %policy.kind, "SANDBOX WEAKENED: seccomp filter disabled");
    }
    tracing::debug!(service = %policy.kind, switched_user = switch_user, "service confined");
    Ok(())
}

/// Whether `uid`/`gid` appear in this user namespace's id maps.
fn target_mapped((uid, gid): (u32, u32)) -> Result<bool, SandboxError> {
    let mapped = |file: &str, id: u32| -> Result<bool, SandboxError> {
        let text = std::fs::read_to_string(file).map_err(|e| SandboxError::io("read id map", e))?;
        Ok(text.lines().any(|line| {
            let f: Vec<u64> = line
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            f.len() == 3 && f[0] <= u64::from(id) && u64::from(id) < f[0] + f[2]
        }))
    };
    Ok(mapped("/proc/self/uid_map", uid)? && mapped("/proc/self/gid_map", gid)?)
}

fn empty_root() -> Result<(), SandboxError> {
    let null = std::ptr::null::<libc::c_char>();
    check(
        // SAFETY: mount with a constant path and null source/type/data.
        unsafe {
            libc::mount(
                null,
                c"/".as_ptr(),
                null,
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            )
        },
        "mount(/, MS_REC|MS_PRIVATE)",
    )?;
    check(
        // SAFETY: constant NUL-terminated strings; the kernel copies them.
        unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                c"/tmp".as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                c"size=4096,nr_inodes=16,mode=0555".as_ptr().cast(),
            )
        },
        "mount tmpfs on /tmp",
    )?;
    // SAFETY: constant path.
    check(unsafe { libc::chdir(c"/tmp".as_ptr()) }, "chdir(/tmp)")?;
    // pivot_root(".", "."): the old root ends up mounted on top of the new
    // one at "/", and is then detached (see pivot_root(2), NOTES).
    // SAFETY: constant paths.
    let rc = unsafe { libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) };
    check(rc as libc::c_int, "pivot_root")?;
    check(
        // SAFETY: constant path.
        unsafe { libc::umount2(c".".as_ptr(), libc::MNT_DETACH) },
        "umount2(old root, MNT_DETACH)",
    )?;
    // SAFETY: constant path.
    check(unsafe { libc::chdir(c"/".as_ptr()) }, "chdir(/)")?;
    check(
        // SAFETY: constant path, null source/type/data.
        unsafe {
            libc::mount(
                null,
                c"/".as_ptr(),
                null,
                libc::MS_REMOUNT
                    | libc::MS_BIND
                    | libc::MS_RDONLY
                    | libc::MS_NOSUID
                    | libc::MS_NODEV
                    | libc::MS_NOEXEC,
                std::ptr::null(),
            )
        },
        "remount / read-only",
    )?;
    // Sanity: the new root must be empty.
    let mut dir = std::fs::read_dir("/").map_err(|e| SandboxError::io("read_dir(/)", e))?;
    if dir.next().is_some() {
        return Err(SandboxError::Invalid("new root is not empty".into()));
    }
    Ok(())
}

fn set_hostname(name: &str) -> Result<(), SandboxError> {
    check(
        // Runs only after `unshare(CLONE_NEWUTS)`: never renames the host.
        // SAFETY: `name` is valid for `len` bytes; the kernel copies it.
        unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) },
        "sethostname",
    )
}

fn set_limits(policy: &Policy) -> Result<(), SandboxError> {
    let l = &policy.limits;
    let mut want: Vec<(libc::__rlimit_resource_t, u64, &'static str)> = vec![
        (libc::RLIMIT_CORE, 0, "setrlimit(RLIMIT_CORE)"),
        (libc::RLIMIT_MEMLOCK, 0, "setrlimit(RLIMIT_MEMLOCK)"),
        (libc::RLIMIT_NOFILE, l.nofile, "setrlimit(RLIMIT_NOFILE)"),
        (libc::RLIMIT_NPROC, l.nproc, "setrlimit(RLIMIT_NPROC)"),
    ];
    if let Some(bytes) = l.address_space {
        want.push((libc::RLIMIT_AS, bytes, "setrlimit(RLIMIT_AS)"));
        want.push((libc::RLIMIT_DATA, bytes, "setrlimit(RLIMIT_DATA)"));
    }
    for (resource, value, what) in want {
        let mut cur = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into `cur`.
        check(unsafe { libc::getrlimit(resource, &mut cur) }, what)?;
        let v = value.min(cur.rlim_max);
        let new = libc::rlimit {
            rlim_cur: v,
            rlim_max: v,
        };
        // SAFETY: setrlimit reads `new`.
        check(unsafe { libc::setrlimit(resource, &new) }, what)?;
    }
    Ok(())
}

fn drop_bounding_and_ambient() -> Result<(), SandboxError> {
    for cap in 0..=MAX_CAP_INDEX {
        // SAFETY: prctl with integer arguments only.
        let has = unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap, 0, 0, 0) };
        if has < 0 {
            break; // EINVAL: beyond the kernel's last capability
        }
        if has == 1 {
            check(
                // SAFETY: prctl with integer arguments only.
                unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) },
                "prctl(PR_CAPBSET_DROP)",
            )?;
        }
    }
    caps::clear(None, caps::CapSet::Ambient).map_err(|e| SandboxError::Caps(e.to_string()))
}

fn switch_to((uid, gid): (u32, u32)) -> Result<(), SandboxError> {
    check(
        // SAFETY: setgroups with an empty list reads no memory.
        unsafe { libc::setgroups(0, std::ptr::null()) },
        "setgroups([])",
    )?;
    // SAFETY: integer arguments only.
    check(unsafe { libc::setresgid(gid, gid, gid) }, "setresgid")?;
    // SAFETY: integer arguments only.
    check(unsafe { libc::setresuid(uid, uid, uid) }, "setresuid")?;
    // Dropping root must be irreversible.
    // SAFETY: integer arguments only.
    if unsafe { libc::setresuid(0, 0, 0) } == 0 {
        return Err(SandboxError::Invalid("uid 0 could be regained".into()));
    }
    Ok(())
}

fn clear_capabilities() -> Result<(), SandboxError> {
    use caps::CapSet;
    for set in [CapSet::Effective, CapSet::Permitted, CapSet::Inheritable] {
        caps::clear(None, set).map_err(|e| SandboxError::Caps(e.to_string()))?;
    }
    for set in [
        CapSet::Effective,
        CapSet::Permitted,
        CapSet::Inheritable,
        CapSet::Ambient,
    ] {
        let left = caps::read(None, set).map_err(|e| SandboxError::Caps(e.to_string()))?;
        if !left.is_empty() {
            return Err(SandboxError::Caps(format!("{set:?} set not empty")));
        }
    }
    for cap in 0..=MAX_CAP_INDEX {
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap, 0, 0, 0) } == 1 {
            return Err(SandboxError::Caps("bounding set not empty".into()));
        }
    }
    Ok(())
}
