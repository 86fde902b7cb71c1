//! Building blocks of the supervisor's start-up: signals, daemonizing,
//! objects, chardev backends and monitor listeners, the VM configuration,
//! drives and the HMP monitors.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use crate::chardev::file::FileBackend;
use crate::chardev::null::NullBackend;
use crate::chardev::pty::PtyBackend;
use crate::chardev::socket::config::{LogFile, Role as SocketRole};
use crate::chardev::socket::{SocketChardevs, SocketConfig};
use crate::chardev::stdio::StdioBackend;
use crate::chardev::CharBackend;
use crate::cli::{ChardevBackend, ChardevSpec, Config, MonitorMode, SocketAddr};
use crate::devices::platform::{self, PlatformDevices};
use crate::devices::virtio::block::backend::RawFile;
use crate::hmp::monitor::{serve_stream, HmpServer, SessionEnd};
use crate::memory::{MemoryBackend, MemoryConfig};
use crate::objects::ObjectRegistry;
use crate::qmp::backend::{ChardevInfo, MachineControl};
use crate::qmp::{Listener, Registry};
use crate::vm::{Boot, CustomEntry, GuestResetAction, VmConfig};

use super::ExitRequest;

/// Termination signals blocked in every thread and consumed by one waiter.
pub struct SignalSet(libc::sigset_t);

/// Blocks SIGINT, SIGTERM and SIGHUP in this (still single) thread so every
/// thread started later inherits the mask and one thread can `sigwait`.
pub fn block_termination_signals() -> Result<SignalSet> {
    // SAFETY: sigemptyset/sigaddset initialise a local sigset_t;
    // pthread_sigmask reads it. No memory outside the local is touched.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            bail!("pthread_sigmask: {}", std::io::Error::from_raw_os_error(rc));
        }
        Ok(SignalSet(set))
    }
}

/// Whether SIGINT, SIGTERM or SIGHUP is pending (they are blocked until
/// [`forward_signals`] runs).
fn termination_pending() -> bool {
    // SAFETY: sigpending fills a local, zero-initialised sigset_t;
    // sigismember only reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        if libc::sigpending(&mut set) != 0 {
            return false;
        }
        [libc::SIGINT, libc::SIGTERM, libc::SIGHUP]
            .iter()
            .any(|&s| libc::sigismember(&set, s) == 1)
    }
}

/// Turns the first termination signal into an exit request.
pub fn forward_signals(set: SignalSet, exit: Sender<ExitRequest>) {
    let _ = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            let mut sig: libc::c_int = 0;
            // SAFETY: `set` is an initialised sigset_t and `sig` a valid out
            // pointer for the duration of the call.
            let rc = unsafe { libc::sigwait(&set.0, &mut sig) };
            if rc == 0 {
                tracing::info!(signal = sig, "terminating on signal");
                let _ = exit.send(ExitRequest::Signal(sig));
                return;
            }
        });
}

/// The parent side of `-daemonize` waits on this pipe.
pub struct Daemon {
    pipe: std::fs::File,
}

impl Daemon {
    /// Start-up finished: let the parent exit 0 and detach stdio.
    pub fn ready(mut self) {
        let _ = self.pipe.write_all(&[0]);
        if let Ok(null) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
        {
            use std::os::fd::AsRawFd;
            for fd in 0..3 {
                // SAFETY: dup2 onto the standard descriptors of this process.
                unsafe { libc::dup2(null.as_raw_fd(), fd) };
            }
        }
    }

    /// Start-up failed: the parent prints `msg` and exits 1.
    pub fn fail(mut self, msg: &str) {
        let _ = self.pipe.write_all(&[1]);
        let _ = self.pipe.write_all(msg.as_bytes());
    }
}

/// `-daemonize`: forks; the parent waits until the child is ready (exit 0)
/// or failed (prints the error, exit 1). Must run before any thread exists.
pub fn daemonize() -> Result<Daemon> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 writes two fds into the local array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        bail!("pipe: {}", std::io::Error::last_os_error());
    }
    // SAFETY: both fds were just created and are owned here only.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: the process is single-threaded here (checked by the caller's
    // ordering: nothing has spawned a thread yet), so fork is safe.
    match unsafe { libc::fork() } {
        -1 => bail!("fork: {}", std::io::Error::last_os_error()),
        0 => {
            drop(r);
            // SAFETY: setsid has no memory effects.
            unsafe { libc::setsid() };
            Ok(Daemon { pipe: w.into() })
        }
        _child => {
            drop(w);
            let mut f = std::fs::File::from(r);
            let mut buf = Vec::new();
            let _ = f.read_to_end(&mut buf);
            match buf.first() {
                Some(0) => std::process::exit(0),
                Some(_) => {
                    eprintln!("bulkhead: {}", String::from_utf8_lossy(&buf[1..]));
                    std::process::exit(1)
                }
                None => {
                    eprintln!("bulkhead: daemon exited during start-up");
                    std::process::exit(1)
                }
            }
        }
    }
}

/// Writes `-pidfile` (QEMU semantics: our pid and a newline).
pub fn write_pidfile(path: &Path) -> Result<()> {
    std::fs::write(path, format!("{}\n", std::process::id()))
        .with_context(|| format!("Failed to write pid file '{}'", path.display()))
}

/// The credential objects (`secret`, `tls-creds-*`, `authz-*`) go to the
/// registry; `memory-backend-*` objects are consumed by [`vm_config`].
pub fn objects(cfg: &Config) -> Result<ObjectRegistry> {
    let mut reg = ObjectRegistry::new();
    for o in &cfg.objects {
        if o.qom_type.starts_with("memory-backend-") {
            continue;
        }
        reg.add(&o.qom_type, &o.id, &o.props, o.from_keyval)
            .map_err(|e| anyhow!("-object {},id={}: {e}", o.qom_type, o.id))?;
    }
    Ok(reg)
}

fn monitor_mode(cfg: &Config, id: &str) -> Option<MonitorMode> {
    cfg.monitors
        .iter()
        .find(|m| m.chardev == id)
        .map(|m| m.mode)
}

/// Chardev backends and monitor listeners, by chardev id.
pub struct Chardevs {
    backends: HashMap<String, Box<dyn CharBackend>>,
    listeners: HashMap<String, Listener>,
    stdio_monitor: Option<String>,
    infos: Vec<ChardevInfo>,
}

fn socket_listener(id: &str, addr: &SocketAddr) -> Result<Listener> {
    match addr {
        SocketAddr::Unix(p) => Listener::bind_unix(p)
            .with_context(|| format!("chardev '{id}': Failed to bind socket to {}", p.display())),
        SocketAddr::Tcp { host, port } => {
            let h = if host.is_empty() { "0.0.0.0" } else { host };
            Listener::bind_tcp(h, *port)
                .with_context(|| format!("chardev '{id}': Failed to bind socket to {h}:{port}"))
        }
        SocketAddr::Fd(fd) => {
            // SAFETY: F_GETFD only inspects the descriptor table.
            if unsafe { libc::fcntl(*fd, libc::F_GETFD) } < 0 {
                bail!("chardev '{id}': fd={fd} is not an open file descriptor");
            }
            // SAFETY: the user handed us this inherited descriptor on the
            // command line for this chardev; nothing else in the process
            // owns it, so we take ownership.
            let owned = unsafe { OwnedFd::from_raw_fd(*fd) };
            Listener::from_fd(owned).with_context(|| format!("chardev '{id}': fd={fd}"))
        }
    }
}

fn describe(spec: &ChardevSpec) -> String {
    match &spec.backend {
        ChardevBackend::Null => "null".into(),
        ChardevBackend::Stdio { .. } => "stdio".into(),
        ChardevBackend::File { path, .. } => format!("file:{}", path.display()),
        ChardevBackend::Pty => "pty".into(),
        ChardevBackend::Socket(s) => {
            let server = if s.server { ",server=on" } else { "" };
            match &s.addr {
                SocketAddr::Unix(p) => format!("unix:{}{server}", p.display()),
                SocketAddr::Tcp { host, port } => format!("tcp:{host}:{port}{server}"),
                SocketAddr::Fd(fd) => format!("fd:{fd}{server}"),
            }
        }
    }
}

impl Chardevs {
    /// Opens every chardev of `cfg`; socket chardevs for serial ports
    /// start their svc-chardev and are kept in `sockets`.
    pub fn open(cfg: &Config, objects: &ObjectRegistry, sockets: &SocketChardevs) -> Result<Self> {
        let mut me = Chardevs {
            backends: HashMap::new(),
            listeners: HashMap::new(),
            stdio_monitor: None,
            infos: Vec::new(),
        };
        for spec in &cfg.chardevs {
            let id = spec.id.as_str();
            if spec.logfile.is_some() && !matches!(spec.backend, ChardevBackend::Socket(_)) {
                bail!("chardev '{id}': logfile= is not supported by this build yet");
            }
            let mut filename = describe(spec);
            match (monitor_mode(cfg, id), &spec.backend) {
                (Some(_), ChardevBackend::Socket(s)) => {
                    if !s.server {
                        bail!("chardev '{id}': a monitor needs server=on");
                    }
                    if s.tls_creds.is_some() {
                        bail!(
                            "chardev '{id}': TLS on monitor sockets is not supported by this build"
                        );
                    }
                    me.listeners
                        .insert(id.to_owned(), socket_listener(id, &s.addr)?);
                }
                (Some(MonitorMode::Readline), ChardevBackend::Stdio { .. }) => {
                    me.stdio_monitor = Some(id.to_owned());
                }
                (Some(mode), other) => {
                    bail!(
                        "chardev '{id}': a {} monitor on a '{}' chardev is not supported by this build",
                        if mode == MonitorMode::Control { "QMP" } else { "HMP" },
                        describe(&ChardevSpec { backend: other.clone(), ..spec.clone() })
                    );
                }
                (None, ChardevBackend::Socket(s)) => {
                    // Served by its own sandboxed svc-chardev
                    // (crate::chardev::socket); listed by `sockets`.
                    let logfile = spec.logfile.as_ref().map(|p| LogFile {
                        path: p.clone(),
                        append: spec.logappend,
                    });
                    let conf = SocketConfig::new(id, s, logfile, objects)
                        .map_err(|e| anyhow!("chardev '{id}': {e}"))?;
                    let wait = matches!(conf.role, SocketRole::Server { wait: true, .. });
                    sockets
                        .add(conf)
                        .map_err(|e| anyhow!("chardev '{id}': {e}"))?;
                    if wait {
                        let name = sockets.with(id, |c| c.filename()).unwrap_or_default();
                        eprintln!("bulkhead: QEMU waiting for connection on: {name}");
                        // In slices, so a termination signal (blocked in
                        // every thread, served later by `forward_signals`)
                        // still ends a start-up nobody connects to.
                        while !sockets
                            .with(id, |c| c.wait_connected(Some(Duration::from_millis(200))))
                            .unwrap_or(true)
                        {
                            if termination_pending() {
                                bail!("chardev '{id}': terminated while waiting for a connection");
                            }
                        }
                    }
                    continue;
                }
                (None, backend) => {
                    let b: Box<dyn CharBackend> = match backend {
                        ChardevBackend::Null => Box::new(NullBackend),
                        ChardevBackend::Stdio { .. } => {
                            Box::new(StdioBackend::new().context("chardev stdio")?)
                        }
                        ChardevBackend::File { path, append } => Box::new(
                            FileBackend::open(path, *append)
                                .with_context(|| format!("Could not open '{}'", path.display()))?,
                        ),
                        ChardevBackend::Pty => {
                            let p = PtyBackend::open().context("chardev pty")?;
                            eprintln!(
                                "char device redirected to {} (label {id})",
                                p.path().display()
                            );
                            filename = format!("pty:{}", p.path().display());
                            Box::new(p)
                        }
                        ChardevBackend::Socket(_) => unreachable!("handled above"),
                    };
                    me.backends.insert(id.to_owned(), b);
                }
            }
            me.infos.push(ChardevInfo {
                label: id.to_owned(),
                filename,
                frontend_open: monitor_mode(cfg, id).is_some()
                    || cfg.serials.iter().any(|s| s == id),
            });
        }
        Ok(me)
    }

    /// `query-chardev` rows.
    pub fn infos(&self) -> Vec<ChardevInfo> {
        self.infos.clone()
    }

    /// Takes the backend of chardev `id` (for a serial port).
    pub fn take_backend(&mut self, id: &str) -> Option<Box<dyn CharBackend>> {
        self.backends.remove(id)
    }

    /// Takes the listeners of every monitor of `mode`.
    pub fn take_monitor_listeners(
        &mut self,
        cfg: &Config,
        mode: MonitorMode,
    ) -> Result<Vec<Listener>> {
        Ok(cfg
            .monitors
            .iter()
            .filter(|m| m.mode == mode)
            .filter_map(|m| self.listeners.remove(&m.chardev))
            .collect())
    }
}

fn memory_config(cfg: &Config) -> Result<MemoryConfig> {
    let Some(id) = &cfg.memory_backend else {
        return Ok(MemoryConfig::memfd(cfg.memory));
    };
    let o = cfg
        .objects
        .iter()
        .find(|o| &o.id == id)
        .ok_or_else(|| anyhow!("Memory backend '{id}' not found"))?;
    let text = |k: &str| {
        o.props.get(k).map(|v| {
            v.as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| v.to_string())
        })
    };
    let flag = |k: &str| -> Result<bool> {
        match text(k).as_deref() {
            None => Ok(false),
            Some("on" | "yes" | "true") => Ok(true),
            Some("off" | "no" | "false") => Ok(false),
            Some(v) => bail!(
                "-object {},id={id}: Parameter '{k}' expects 'on' or 'off', not '{v}'",
                o.qom_type
            ),
        }
    };
    let size = match text("size") {
        Some(s) => crate::cli::opts::parse_size("size", &s, 0)
            .map_err(|e| anyhow!("-object {},id={id}: {e}", o.qom_type))?,
        None => bail!(
            "-object {},id={id}: can't create backend with size 0",
            o.qom_type
        ),
    };
    if size != cfg.memory && cfg.memory != 128 << 20 {
        bail!(
            "Memory backend '{id}' size {size} does not match -m size {}",
            cfg.memory
        );
    }
    let backend = match o.qom_type.as_str() {
        "memory-backend-memfd" => MemoryBackend::Memfd {
            hugetlb: flag("hugetlb")?,
        },
        "memory-backend-ram" => MemoryBackend::Ram,
        "memory-backend-file" => MemoryBackend::File {
            mem_path: PathBuf::from(text("mem-path").ok_or_else(|| {
                anyhow!("-object memory-backend-file,id={id}: Parameter 'mem-path' is missing")
            })?),
            share: flag("share")?,
        },
        other => bail!("'{other}' is not a memory backend type"),
    };
    Ok(MemoryConfig { size, backend })
}

/// The VM core's configuration.
pub fn vm_config(
    cfg: &Config,
    chardevs: &mut Chardevs,
    sockets: &SocketChardevs,
) -> Result<VmConfig> {
    if cfg.cpus == 0 || cfg.cpus > 255 {
        bail!(
            "-smp {}: Invalid SMP CPUs {}. The max CPUs supported by machine 'bulkhead' is 255",
            cfg.cpus,
            cfg.cpus
        );
    }
    if cfg.serials.len() > 1 {
        bail!("-serial: only one serial port (COM1) is supported by this machine");
    }
    let mut serials = cfg.serials.clone();
    if serials.is_empty() && !cfg.serial_none && !cfg.nodefaults && chardevs.stdio_monitor.is_none()
    {
        // QEMU's -nographic default: the serial port on stdio.
        chardevs.backends.insert(
            "serial0".into(),
            Box::new(StdioBackend::new().context("chardev stdio")?),
        );
        chardevs.infos.push(ChardevInfo {
            label: "serial0".into(),
            filename: "stdio".into(),
            frontend_open: true,
        });
        serials.push("serial0".into());
    }
    let serial = match serials.first() {
        Some(id) => Some(match sockets.attach(id) {
            Some(b) => Box::new(b.with_context(|| format!("chardev '{id}': logfile"))?)
                as Box<dyn CharBackend>,
            None => chardevs
                .take_backend(id)
                .ok_or_else(|| anyhow!("-serial chardev:{id}: chardev \"{id}\" not found"))?,
        }),
        None => None,
    };
    let boot = match &cfg.kernel {
        None => {
            if cfg.initrd.is_some() || cfg.append.is_some() {
                bail!("-initrd and -append need -kernel");
            }
            Boot::Builtin
        }
        Some(kernel) => {
            let kernel = kernel.clone();
            let initrd = cfg.initrd.clone();
            let cmdline = cfg.append.clone().unwrap_or_default();
            // Check the files now so a bad path is a start-up error.
            std::fs::metadata(&kernel)
                .with_context(|| format!("could not open kernel file '{}'", kernel.display()))?;
            if let Some(i) = &initrd {
                std::fs::metadata(i)
                    .with_context(|| format!("could not open initrd file '{}'", i.display()))?;
            }
            Boot::Custom(Arc::new(move |mem| {
                let s = crate::loader::load_linux_paths(mem, &kernel, initrd.as_deref(), &cmdline)
                    .map_err(|e| e.to_string())?;
                if s.protocol == crate::loader::BootProtocol::Pvh {
                    // PVH enters in 32-bit protected mode; the core's boot
                    // vCPU setup is long mode only.
                    return Err(format!(
                        "{}: PVH kernels are not supported yet; use a bzImage or a 64-bit ELF vmlinux",
                        kernel.display()
                    ));
                }
                Ok(CustomEntry {
                    rip: s.cpu.rip,
                    rsi: s.cpu.rsi,
                    rdi: 0,
                })
            }))
        }
    };
    Ok(VmConfig {
        mem: memory_config(cfg)?,
        smp: cfg.cpus as u8,
        boot,
        serial,
        guest_reset: GuestResetAction::Reset,
    })
}

/// Opens the drives' images.
pub fn drives(cfg: &Config) -> Result<Vec<platform::DriveSpec>> {
    let mut out = Vec::new();
    for d in &cfg.drives {
        if d.nbd.is_some() {
            bail!(
                "-drive {}: driver=nbd is served by svc-nbd, which this build does not include yet",
                d.id
            );
        }
        let Some(file) = &d.file else {
            bail!(
                "-drive id={}: A block device must be specified for \"file\"",
                d.id
            );
        };
        if d.format != "raw" {
            bail!(
                "-drive {}: format '{}' is not supported (raw only)",
                file.display(),
                d.format
            );
        }
        let backend = RawFile::open(file, d.readonly).with_context(|| {
            format!(
                "-drive file={}: Could not open '{}'",
                file.display(),
                file.display()
            )
        })?;
        out.push(platform::DriveSpec {
            backend: Arc::new(backend),
            read_only: d.readonly,
            serial: d.id.clone(),
        });
    }
    Ok(out)
}

/// A drive as `query-block` shows it.
#[derive(Debug, Clone)]
pub struct DriveInfo {
    pub id: String,
    pub file: String,
    pub slot: u64,
    pub read_only: bool,
    pub size: u64,
    pub actual_size: u64,
}

/// `query-block` rows for the attached drives.
pub fn drive_infos(cfg: &Config, devices: &PlatformDevices) -> Vec<DriveInfo> {
    use std::os::unix::fs::MetadataExt;
    cfg.drives
        .iter()
        .zip(0..devices.drives.len() as u64)
        .map(|(d, slot)| {
            let file = d
                .file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            let meta = d.file.as_ref().and_then(|p| std::fs::metadata(p).ok());
            DriveInfo {
                id: d.id.clone(),
                file,
                slot,
                read_only: d.readonly,
                size: meta.as_ref().map_or(0, |m| m.len()),
                actual_size: meta.as_ref().map_or(0, |m| m.blocks() * 512),
            }
        })
        .collect()
}

/// A running HMP monitor (socket server or stdio session).
pub enum Hmp {
    /// Socket listeners.
    Server(HmpServer),
    /// A session on stdio (ends with the process).
    Stdio,
}

impl Hmp {
    /// Stops the monitor.
    pub fn shutdown(self) {
        if let Hmp::Server(s) = self {
            s.shutdown();
        }
    }
}

/// Starts the HMP monitors.
pub fn start_hmp(
    cfg: &Config,
    chardevs: &mut Chardevs,
    control: Arc<dyn MachineControl>,
    exit: Sender<ExitRequest>,
) -> Result<Option<Hmp>> {
    let listeners = chardevs.take_monitor_listeners(cfg, MonitorMode::Readline)?;
    if !listeners.is_empty() {
        let server = HmpServer::start(listeners, control, Arc::new(Registry::standard()))
            .context("cannot start the HMP monitor")?;
        return Ok(Some(Hmp::Server(server)));
    }
    if chardevs.stdio_monitor.is_some() {
        std::thread::Builder::new()
            .name("hmp-stdio".into())
            .spawn(move || {
                let end = serve_stream(
                    std::io::stdin(),
                    std::io::stdout(),
                    &*control,
                    &Registry::standard(),
                );
                if matches!(end, Ok(SessionEnd::Quit)) {
                    let _ = exit.send(ExitRequest::Quit);
                }
            })
            .context("cannot start the HMP monitor")?;
        return Ok(Some(Hmp::Stdio));
    }
    Ok(None)
}
