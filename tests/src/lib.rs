//! Helpers for Bulkhead's end-to-end tests: locate (and build if needed) the
//! real `bulkhead` binary, start it with a QEMU-style command line, and talk
//! to it through its serial port (stdio), its QMP socket and its services.
//!
//! Real peers (qemu.qmp, gnutls-cli, qemu-nbd, ...) are installed by
//! `.ci/run`. A test whose peer is missing skips with a loud message, unless
//! `BULKHEAD_REQUIRE_PEERS` is set (CI sets it), in which case it fails.

pub mod pki;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

/// Path of the `bulkhead` binary of the current build profile, building it
/// when `cargo test -p bulkhead-tests` runs without it.
pub fn bulkhead_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("BULKHEAD_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/<test-exe> -> target/<profile>/bulkhead
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps");
    let bin = profile_dir.join("bulkhead");
    static BUILD: Mutex<()> = Mutex::new(());
    let _g = BUILD.lock().unwrap_or_else(|p| p.into_inner());
    // `cargo test --workspace` builds the binary first; `cargo test -p
    // bulkhead-tests` does not, so build it when it is missing or older
    // than any source file of the workspace.
    if !bin.exists() || sources_newer_than(&bin) {
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.args(["build", "-p", "vmm", "--bin", "bulkhead"]);
        if release {
            cmd.arg("--release");
        }
        let st = cmd.status().expect("run cargo build");
        assert!(st.success(), "cargo build of bulkhead failed");
    }
    bin
}

fn newest_mtime(dir: &Path, newest: &mut std::time::SystemTime) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name();
        if name == "target" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        if p.is_dir() {
            newest_mtime(&p, newest);
        } else if p
            .extension()
            .is_some_and(|x| x == "rs" || x == "toml" || x == "ld")
        {
            if let Ok(m) = e.metadata().and_then(|m| m.modified()) {
                *newest = (*newest).max(m);
            }
        }
    }
}

fn sources_newer_than(bin: &Path) -> bool {
    let Ok(built) = std::fs::metadata(bin).and_then(|m| m.modified()) else {
        return true;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut newest = std::time::SystemTime::UNIX_EPOCH;
    for dir in [
        "vmm",
        "ipc",
        "sandbox",
        "creds",
        "netio",
        "svc-runtime",
        "svc-chardev",
        "svc-nbd",
        "svc-vnc",
        "svc-migrate",
        "guest",
    ] {
        newest_mtime(&root.join(dir), &mut newest);
    }
    newest > built
}

/// Live (not zombie) child processes of `parent`, with their argv[0]: how
/// the tests find the `svc-*` processes a supervisor spawned.
pub fn live_children(parent: i32) -> Vec<(i32, String)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) S ppid ...": comm may contain spaces and parentheses.
        let Some(after) = stat.rfind(')').and_then(|i| stat.get(i + 2..)) else {
            continue;
        };
        let ppid = after.split(' ').nth(1).and_then(|p| p.parse::<i32>().ok());
        if ppid != Some(parent) || after.starts_with('Z') {
            continue;
        }
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let argv0 = cmd.split(|&b| b == 0).next().unwrap_or_default();
        out.push((pid, String::from_utf8_lossy(argv0).into_owned()));
    }
    out
}

/// A real `qemu-system-x86_64 -S -display none -machine none -nodefaults`
/// with QMP on the unix socket `qmp`: the reference the side-by-side tests
/// compare our replies with. Killed and reaped on drop.
pub struct ReferenceQemu(Child);

impl ReferenceQemu {
    /// Starts it (the socket appears shortly after; connect with retries).
    pub fn start(qmp: &Path) -> std::io::Result<Self> {
        Command::new("qemu-system-x86_64")
            .args([
                "-S",
                "-display",
                "none",
                "-machine",
                "none",
                "-nodefaults",
                "-qmp",
            ])
            .arg(format!("unix:{},server=on,wait=off", qmp.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(ReferenceQemu)
    }
}

impl Drop for ReferenceQemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether the named program is on PATH.
pub fn have_program(name: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|d| {
            let p = d.join(name);
            p.is_file()
        })
    })
}

/// Returns true when the test may run; false (after a loud message) when a
/// peer is missing and peers are not required.
pub fn require_peer(name: &str, present: bool) -> bool {
    if present {
        return true;
    }
    if std::env::var_os("BULKHEAD_REQUIRE_PEERS").is_some() {
        panic!("required peer {name} is missing (run .ci/run to install peers)");
    }
    eprintln!("SKIPPED: peer {name} is not installed (run .ci/run); set BULKHEAD_REQUIRE_PEERS=1 to fail instead");
    false
}

/// Whether the machine lets us run KVM guests.
pub fn have_kvm() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// Text collected from a child's output stream, with a condition variable so
/// tests can wait for a pattern.
#[derive(Clone, Default)]
pub struct Captured {
    inner: Arc<(Mutex<Vec<u8>>, Condvar)>,
}

impl Captured {
    /// Start a thread that appends everything `r` yields.
    pub fn spawn_reader(mut r: impl Read + Send + 'static) -> Self {
        let c = Captured::default();
        let c2 = c.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match r.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let (m, cv) = &*c2.inner;
                        m.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .extend_from_slice(&buf[..n]);
                        cv.notify_all();
                    }
                }
            }
        });
        c
    }

    /// Everything captured so far, lossily decoded.
    pub fn text(&self) -> String {
        let (m, _) = &*self.inner;
        String::from_utf8_lossy(&m.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }

    /// Wait until the captured text contains `pat` after byte `from`;
    /// returns the byte offset just past the match.
    pub fn wait_for_from(&self, from: usize, pat: &str, timeout: Duration) -> Result<usize> {
        let (m, cv) = &*self.inner;
        let deadline = Instant::now() + timeout;
        let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if g.len() > from {
                let hay = &g[from..];
                if let Some(i) = find(hay, pat.as_bytes()) {
                    return Ok(from + i + pat.len());
                }
            }
            let now = Instant::now();
            if now >= deadline {
                bail!(
                    "timed out after {timeout:?} waiting for {pat:?}; got:\n{}",
                    String::from_utf8_lossy(&g)
                );
            }
            g = cv
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Wait for `pat` anywhere in the output.
    pub fn wait_for(&self, pat: &str, timeout: Duration) -> Result<usize> {
        self.wait_for_from(0, pat, timeout)
    }

    /// Bytes captured so far.
    pub fn len(&self) -> usize {
        let (m, _) = &*self.inner;
        m.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether nothing was captured yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A running `bulkhead` process with serial on stdio and its stderr captured.
pub struct BulkheadProcess {
    /// The child process.
    pub child: Child,
    stdin: Option<ChildStdin>,
    /// Serial output (stdout).
    pub serial: Captured,
    /// Log output (stderr).
    pub log: Captured,
}

impl BulkheadProcess {
    /// Start `bulkhead` with `args` (serial defaults to stdio when the caller
    /// passes `-serial stdio` or nothing).
    pub fn start(args: &[&str]) -> Result<Self> {
        Self::start_with_env(args, &[])
    }

    /// Like `start`, with extra environment variables.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Result<Self> {
        let mut cmd = Command::new(bulkhead_bin());
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().context("spawn bulkhead")?;
        let serial = Captured::spawn_reader(child.stdout.take().expect("stdout"));
        let log = Captured::spawn_reader(child.stderr.take().expect("stderr"));
        let stdin = child.stdin.take();
        Ok(Self {
            child,
            stdin,
            serial,
            log,
        })
    }

    /// Type bytes on the serial console.
    pub fn type_serial(&mut self, s: &str) -> Result<()> {
        let w = self.stdin.as_mut().ok_or_else(|| anyhow!("stdin closed"))?;
        w.write_all(s.as_bytes())?;
        w.flush()?;
        Ok(())
    }

    /// Wait for the process to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait()? {
                return Ok(st);
            }
            if Instant::now() >= deadline {
                bail!(
                    "bulkhead did not exit within {timeout:?}; log:\n{}",
                    self.log.text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for BulkheadProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal QMP client for tests (the Python `qemu.qmp` library is used for
/// the interop tests; this one keeps Rust tests self-contained).
pub struct QmpClient {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    /// Events received while waiting for replies.
    pub events: Vec<Value>,
    /// The greeting.
    pub greeting: Value,
}

impl QmpClient {
    /// Connect to a QMP unix socket (retrying until it exists), read the
    /// greeting and negotiate capabilities.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Self> {
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(e).with_context(|| format!("connect {}", path.display())),
            }
        };
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let writer = stream.try_clone()?;
        let mut c = QmpClient {
            reader: BufReader::new(stream),
            writer,
            events: Vec::new(),
            greeting: Value::Null,
        };
        c.greeting = c.read_value()?;
        let r = c.execute("qmp_capabilities", json!({}))?;
        if r.get("return").is_none() {
            bail!("negotiation failed: {r}");
        }
        Ok(c)
    }

    fn read_value(&mut self) -> Result<Value> {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line)?;
        if n == 0 {
            bail!("QMP connection closed");
        }
        Ok(serde_json::from_str(line.trim_end())?)
    }

    /// Send a raw line and return the next non-event reply.
    pub fn raw(&mut self, text: &str) -> Result<Value> {
        // One write: after `quit` the server may close as soon as it has
        // parsed the request, so a trailing newline sent separately could
        // meet a closed socket.
        let mut line = Vec::with_capacity(text.len() + 1);
        line.extend_from_slice(text.as_bytes());
        line.push(b'\n');
        self.writer.write_all(&line)?;
        loop {
            let v = self.read_value()?;
            if v.get("event").is_some() {
                self.events.push(v);
            } else {
                return Ok(v);
            }
        }
    }

    /// Execute a command; returns the whole reply object.
    pub fn execute(&mut self, cmd: &str, args: Value) -> Result<Value> {
        let req = json!({"execute": cmd, "arguments": args});
        self.raw(&req.to_string())
    }

    /// Wait for an event with the given name (already received or new).
    pub fn wait_event(&mut self, name: &str, timeout: Duration) -> Result<Value> {
        if let Some(i) = self.events.iter().position(|e| e["event"] == name) {
            return Ok(self.events.remove(i));
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("no {name} event within {timeout:?}");
            }
            self.reader.get_ref().set_read_timeout(Some(left))?;
            let v = self.read_value();
            self.reader
                .get_ref()
                .set_read_timeout(Some(Duration::from_secs(30)))?;
            let v = v?;
            if v["event"] == name {
                return Ok(v);
            }
            if v.get("event").is_some() {
                self.events.push(v);
            }
        }
    }
}
