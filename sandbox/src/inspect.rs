//! Read-only views of another process's confinement, from `/proc/PID/...`.
//! Used by the tests and by the supervisor (e.g. a QMP query) to prove that a
//! service really is confined. Reading `environ`, `fd` and `root` of a
//! service needs ptrace-read access (root, or the supervisor that owns the
//! service's user namespace).

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use crate::SandboxError;

/// Value of field `name` in a `/proc/PID/status` text, trimmed.
pub fn status_field<'a>(status: &'a str, name: &str) -> Option<&'a str> {
    status.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k == name).then(|| v.trim())
    })
}

/// Confinement-relevant fields of `/proc/PID/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStatus {
    /// `Seccomp:` 0 off, 1 strict, 2 filter.
    pub seccomp: u32,
    /// `NoNewPrivs:`.
    pub no_new_privs: bool,
    /// `CapInh`, `CapPrm`, `CapEff`, `CapBnd`, `CapAmb` bitmasks.
    pub cap_inh: u64,
    /// Permitted set.
    pub cap_prm: u64,
    /// Effective set.
    pub cap_eff: u64,
    /// Bounding set.
    pub cap_bnd: u64,
    /// Ambient set.
    pub cap_amb: u64,
    /// Real, effective, saved, fs uid as seen from the reader's namespace.
    pub uid: [u32; 4],
    /// Real, effective, saved, fs gid.
    pub gid: [u32; 4],
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// Number of threads.
    pub threads: u32,
}

impl ProcStatus {
    /// True when every capability set is empty.
    pub fn no_capabilities(&self) -> bool {
        self.cap_inh | self.cap_prm | self.cap_eff | self.cap_bnd | self.cap_amb == 0
    }
}

fn parse_num<T: std::str::FromStr>(status: &str, name: &str) -> Result<T, SandboxError> {
    status_field(status, name)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| SandboxError::Proc(format!("status field {name}")))
}

fn parse_hex(status: &str, name: &str) -> Result<u64, SandboxError> {
    status_field(status, name)
        .and_then(|v| u64::from_str_radix(v, 16).ok())
        .ok_or_else(|| SandboxError::Proc(format!("status field {name}")))
}

fn parse_ids(status: &str, name: &str) -> Result<[u32; 4], SandboxError> {
    let v: Vec<u32> = status_field(status, name)
        .ok_or_else(|| SandboxError::Proc(format!("status field {name}")))?
        .split_whitespace()
        .map(|x| x.parse())
        .collect::<Result<_, _>>()
        .map_err(|_| SandboxError::Proc(format!("status field {name}")))?;
    v.try_into()
        .map_err(|_| SandboxError::Proc(format!("status field {name}")))
}

/// Parses the text of a `/proc/PID/status` file. The kernel writes it, but
/// the service chooses its `Name:` (escaped by the kernel); never panics.
pub fn parse_status(status: &str) -> Result<ProcStatus, SandboxError> {
    Ok(ProcStatus {
        seccomp: parse_num(status, "Seccomp")?,
        no_new_privs: parse_num::<u32>(status, "NoNewPrivs")? == 1,
        cap_inh: parse_hex(status, "CapInh")?,
        cap_prm: parse_hex(status, "CapPrm")?,
        cap_eff: parse_hex(status, "CapEff")?,
        cap_bnd: parse_hex(status, "CapBnd")?,
        cap_amb: parse_hex(status, "CapAmb")?,
        uid: parse_ids(status, "Uid")?,
        gid: parse_ids(status, "Gid")?,
        groups: status_field(status, "Groups")
            .unwrap_or("")
            .split_whitespace()
            .map(|g| g.parse())
            .collect::<Result<_, _>>()
            .map_err(|_| SandboxError::Proc("status field Groups".into()))?,
        threads: parse_num(status, "Threads")?,
    })
}

/// Reads and parses `/proc/PID/status`.
pub fn proc_status(pid: i32) -> Result<ProcStatus, SandboxError> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| SandboxError::io("read /proc/PID/status", e))?;
    parse_status(&text)
}

/// Namespace identities (nsfs inode numbers) of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Namespaces {
    /// Mount namespace.
    pub mnt: u64,
    /// Network namespace.
    pub net: u64,
    /// Pid namespace.
    pub pid: u64,
    /// SysV IPC namespace.
    pub ipc: u64,
    /// Hostname namespace.
    pub uts: u64,
    /// User namespace.
    pub user: u64,
}

fn ns_inode(pid: &str, ns: &str) -> Result<u64, SandboxError> {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/{ns}"))
        .map_err(|e| SandboxError::io("readlink /proc/PID/ns/*", e))?;
    // "mnt:[4026531841]"
    let text = link.to_string_lossy();
    text.rsplit_once('[')
        .and_then(|(_, rest)| rest.strip_suffix(']'))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| SandboxError::Proc(format!("namespace link {text}")))
}

fn namespaces_of(pid: &str) -> Result<Namespaces, SandboxError> {
    Ok(Namespaces {
        mnt: ns_inode(pid, "mnt")?,
        net: ns_inode(pid, "net")?,
        pid: ns_inode(pid, "pid")?,
        ipc: ns_inode(pid, "ipc")?,
        uts: ns_inode(pid, "uts")?,
        user: ns_inode(pid, "user")?,
    })
}

/// Namespaces of process `pid`.
pub fn namespaces(pid: i32) -> Result<Namespaces, SandboxError> {
    namespaces_of(&pid.to_string())
}

/// Namespaces of the calling process.
pub fn own_namespaces() -> Result<Namespaces, SandboxError> {
    namespaces_of("self")
}

/// Names in the process's root directory (`/proc/PID/root`); empty for a
/// confined service.
pub fn root_entries(pid: i32) -> Result<Vec<OsString>, SandboxError> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/root"))
        .map_err(|e| SandboxError::io("read_dir /proc/PID/root", e))?;
    let mut names = Vec::new();
    for entry in dir {
        let entry = entry.map_err(|e| SandboxError::io("read_dir /proc/PID/root", e))?;
        names.push(entry.file_name());
    }
    names.sort();
    Ok(names)
}

/// Open fds of the process with their link targets (`/dev/null`,
/// `socket:[N]`, ...), sorted by number.
pub fn open_fds(pid: i32) -> Result<Vec<(i32, PathBuf)>, SandboxError> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map_err(|e| SandboxError::io("read_dir /proc/PID/fd", e))?;
    let mut fds = Vec::new();
    for entry in dir {
        let entry = entry.map_err(|e| SandboxError::io("read_dir /proc/PID/fd", e))?;
        let Some(n) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        // A fd may close between listing and readlink; skip it then.
        if let Ok(target) = std::fs::read_link(entry.path()) {
            fds.push((n, target));
        }
    }
    fds.sort();
    Ok(fds)
}

/// The process's environment as `NAME=value` entries.
pub fn environment(pid: i32) -> Result<Vec<OsString>, SandboxError> {
    let bytes = std::fs::read(format!("/proc/{pid}/environ"))
        .map_err(|e| SandboxError::io("read /proc/PID/environ", e))?;
    Ok(parse_environ(&bytes))
}

/// Splits `/proc/PID/environ` content (NUL-separated). The bytes live in the
/// service's own memory, so a compromised service controls them: this never
/// panics and allocates at most a copy of the input.
pub fn parse_environ(bytes: &[u8]) -> Vec<OsString> {
    bytes
        .split(|&b| b == 0)
        .filter(|e| !e.is_empty())
        .map(|e| OsString::from_vec(e.to_vec()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "Name:\tsvc-idle\nUmask:\t0022\nState:\tS (sleeping)\n\
        Uid:\t65534\t65534\t65534\t65534\nGid:\t65534\t65534\t65534\t65534\n\
        Groups:\t\nThreads:\t1\nCapInh:\t0000000000000000\nCapPrm:\t0000000000000000\n\
        CapEff:\t0000000000000000\nCapBnd:\t0000000000000000\nCapAmb:\t0000000000000000\n\
        NoNewPrivs:\t1\nSeccomp:\t2\nSeccomp_filters:\t2\n";

    #[test]
    fn parses_a_confined_status() {
        let s = parse_status(SAMPLE).unwrap();
        assert_eq!(s.seccomp, 2);
        assert!(s.no_new_privs);
        assert!(s.no_capabilities());
        assert_eq!(s.uid, [65534; 4]);
        assert!(s.groups.is_empty());
        assert_eq!(s.threads, 1);
        // "Seccomp" must not match "Seccomp_filters".
        assert_eq!(status_field(SAMPLE, "Seccomp"), Some("2"));
    }

    #[test]
    fn own_status_and_namespaces_are_readable() {
        let s = proc_status(std::process::id() as i32).unwrap();
        assert!(s.threads >= 1);
        let ns = own_namespaces().unwrap();
        assert_eq!(ns, namespaces(std::process::id() as i32).unwrap());
    }

    #[test]
    fn environ_splits_on_nul_and_skips_empty_entries() {
        let v = parse_environ(b"RUST_LOG=info\0\0A=b\xff\0");
        assert_eq!(v.len(), 2);
        assert_eq!(v[0], OsString::from("RUST_LOG=info"));
        assert!(parse_environ(b"").is_empty());
    }

    #[test]
    fn garbage_status_is_an_error() {
        assert!(parse_status("Seccomp:\tx\n").is_err());
        assert!(parse_status("").is_err());
    }
}
