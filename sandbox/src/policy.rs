//! What a service is allowed: one [`Policy`] per [`ServiceKind`].
//!
//! The policy is built inside the service from its own kind (the service
//! knows what it is from `argv[0]`), so a compromised supervisor message
//! cannot widen it. Fields are public so the supervisor-side caller can adjust
//! sizes (e.g. add the guest RAM size to svc-migrate's address-space limit)
//! before the service calls [`crate::confine()`].

use std::fmt;

/// The service roles Bulkhead runs. `Idle` is a do-nothing role for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceKind {
    /// `svc-chardev`: socket chardev byte streams (+TLS).
    Chardev,
    /// `svc-nbd`: NBD server on passed image fds and NBD client.
    Nbd,
    /// `svc-vnc`: RFB/VeNCrypt/websocket server reading a read-only VRAM map.
    Vnc,
    /// `svc-migrate`: live migration, maps all of guest RAM.
    Migrate,
    /// Test role: std only, no service-specific syscalls.
    Idle,
}

impl ServiceKind {
    /// Every kind, for tests and documentation generators.
    pub const ALL: [ServiceKind; 5] = [
        ServiceKind::Chardev,
        ServiceKind::Nbd,
        ServiceKind::Vnc,
        ServiceKind::Migrate,
        ServiceKind::Idle,
    ];

    /// The conventional `argv[0]` of the service (`svc-chardev`, ...).
    pub fn argv0(self) -> &'static str {
        match self {
            ServiceKind::Chardev => "svc-chardev",
            ServiceKind::Nbd => "svc-nbd",
            ServiceKind::Vnc => "svc-vnc",
            ServiceKind::Migrate => "svc-migrate",
            ServiceKind::Idle => "svc-idle",
        }
    }

    /// Parses an `argv[0]` (a bare name or a path ending in it).
    pub fn from_argv0(argv0: &str) -> Option<Self> {
        let base = argv0.rsplit('/').next().unwrap_or(argv0);
        ServiceKind::ALL.into_iter().find(|k| k.argv0() == base)
    }
}

impl fmt::Display for ServiceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.argv0())
    }
}

/// Resource limits applied by [`crate::confine()`] (soft = hard).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// `RLIMIT_NOFILE`: highest fd number + 1 the service may hold.
    pub nofile: u64,
    /// `RLIMIT_NPROC`: threads (fork is forbidden by seccomp anyway). Counted
    /// per uid across the host, so every service of every VM running as the
    /// same uid shares it (default 1024; give each VM its own
    /// [`Policy::user`] to make it per VM).
    pub nproc: u64,
    /// `RLIMIT_AS` and `RLIMIT_DATA` in bytes; `None` leaves them unlimited.
    /// glibc reserves 64 MiB of address space per malloc arena, so keep this
    /// generous; svc-migrate must add the guest RAM size.
    pub address_space: Option<u64>,
}

/// How a service confines itself. Build with [`Policy::for_service`].
#[derive(Debug, Clone)]
pub struct Policy {
    /// Which allowlist and limits apply.
    pub kind: ServiceKind,
    /// `false` only for `--no-sandbox` debugging ([`Policy::disabled`]):
    /// `confine` then does nothing but log a warning.
    pub enabled: bool,
    /// Private mounts, `pivot_root` into an empty read-only tmpfs.
    pub empty_root: bool,
    /// Hostname set inside the service's UTS namespace.
    pub hostname: String,
    /// `(uid, gid)` to switch to when the service runs as root and that id is
    /// mapped in its user namespace. Default `(65534, 65534)`.
    pub user: (u32, u32),
    /// Resource limits.
    pub limits: Limits,
    /// Install the per-kind seccomp allowlist (default action: kill process).
    pub seccomp: bool,
    /// Extra syscall numbers to allow without argument checks (escape hatch
    /// for a service that proves it needs one; prefer extending the kind's list).
    pub extra_syscalls: Vec<i64>,
}

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;

impl Policy {
    /// The default, fully-on policy for `kind`.
    pub fn for_service(kind: ServiceKind) -> Self {
        let (nofile, address_space) = match kind {
            ServiceKind::Chardev => (128, 2 * GIB),
            ServiceKind::Nbd => (256, 4 * GIB),
            ServiceKind::Vnc => (256, 4 * GIB),
            // Caller adds guest RAM with `with_extra_address_space`.
            ServiceKind::Migrate => (128, 4 * GIB),
            ServiceKind::Idle => (32, GIB),
        };
        Policy {
            kind,
            enabled: true,
            empty_root: true,
            hostname: "localhost".to_owned(),
            user: (65534, 65534),
            limits: Limits {
                nofile,
                nproc: 1024,
                address_space: Some(address_space),
            },
            seccomp: true,
            extra_syscalls: Vec::new(),
        }
    }

    /// `--no-sandbox`: nothing is confined. [`crate::confine()`] logs a loud
    /// warning when given this policy.
    pub fn disabled(kind: ServiceKind) -> Self {
        Policy {
            enabled: false,
            empty_root: false,
            seccomp: false,
            ..Policy::for_service(kind)
        }
    }

    /// Grows the address-space limit by `bytes` (guest RAM for svc-migrate,
    /// VRAM for svc-vnc, ...). No effect when the limit is off.
    pub fn with_extra_address_space(mut self, bytes: u64) -> Self {
        if let Some(limit) = self.limits.address_space.as_mut() {
            *limit = limit.saturating_add(bytes);
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv0_round_trips_for_every_kind() {
        for kind in ServiceKind::ALL {
            assert_eq!(ServiceKind::from_argv0(kind.argv0()), Some(kind));
            let path = format!("/usr/bin/{}", kind.argv0());
            assert_eq!(ServiceKind::from_argv0(&path), Some(kind));
        }
        assert_eq!(ServiceKind::from_argv0("bulkhead"), None);
        assert_eq!(ServiceKind::from_argv0(""), None);
    }

    #[test]
    fn disabled_policy_turns_everything_off() {
        let p = Policy::disabled(ServiceKind::Vnc);
        assert!(!p.enabled && !p.empty_root && !p.seccomp);
        assert!(Policy::for_service(ServiceKind::Vnc).enabled);
    }

    #[test]
    fn extra_address_space_adds_and_saturates() {
        let p = Policy::for_service(ServiceKind::Migrate).with_extra_address_space(GIB);
        assert_eq!(p.limits.address_space, Some(5 * GIB));
        let p = p.with_extra_address_space(u64::MAX);
        assert_eq!(p.limits.address_space, Some(u64::MAX));
    }
}
