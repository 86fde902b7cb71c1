//! QEMU-style command line: `bulkhead -name vm -m 512M -smp 2 -qmp unix:...`.
//!
//! Options are `-opt [value]` (also `--opt`; `-opt=value` is not QEMU syntax
//! and is rejected as QEMU does). Values use QemuOpts syntax ([`opts`]).
//! Every option this build does not implement is rejected with a message
//! naming it, in QEMU's style (`-foo: invalid option`); the binary prints
//! `bulkhead: <error>` and exits 1. Nothing is silently ignored.
//!
//! `-qmp`, `-monitor` and `-serial` create chardevs (`compat_monitorN`,
//! `serialN`) exactly like QEMU, so everything that talks is a
//! [`ChardevSpec`] in [`Config::chardevs`] and monitors/serials refer to
//! chardev ids.

use std::ffi::OsString;
use std::path::PathBuf;

pub mod chardev;
pub mod machine;
pub mod object;
pub mod opts;

pub use chardev::{ChardevBackend, ChardevSpec, LegacyChardev, SocketAddr, SocketChardev};
pub use object::{DeviceSpec, ObjectSpec};

/// A command-line error; print it as `bulkhead: {error}` and exit 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{context}{message}")]
pub struct CliError {
    /// `-opt value: ` prefix (empty for errors not tied to one option).
    pub context: String,
    /// What is wrong.
    pub message: String,
}

impl CliError {
    fn at(opt: &str, value: Option<&str>, message: impl Into<String>) -> Self {
        let context = match value {
            Some(v) => format!("-{opt} {v}: "),
            None => format!("-{opt}: "),
        };
        CliError {
            context,
            message: message.into(),
        }
    }

    fn global(message: impl Into<String>) -> Self {
        CliError {
            context: String::new(),
            message: message.into(),
        }
    }
}

/// What the process should do.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Action {
    /// Run the VM.
    #[default]
    Run,
    /// Print this text to stdout and exit 0 (`--version`, `-h`, `-machine help`).
    Print(String),
}

/// How a monitor speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonitorMode {
    /// QMP (JSON).
    Control,
    /// HMP (text).
    Readline,
}

/// A monitor on a chardev.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorSpec {
    /// `-mon id=`, if given.
    pub id: Option<String>,
    /// Chardev id it runs on.
    pub chardev: String,
    /// Protocol.
    pub mode: MonitorMode,
    /// Pretty-print JSON: `pretty=off` only (`pretty=on` is rejected).
    pub pretty: bool,
}

/// Where an NBD drive connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NbdDrive {
    /// TCP host (or unix path in `path`).
    pub host: Option<String>,
    /// TCP port (default 10809).
    pub port: u16,
    /// Unix socket path.
    pub path: Option<PathBuf>,
    /// Export name.
    pub export: Option<String>,
    /// `tls-creds-x509` object id.
    pub tls_creds: Option<String>,
    /// TLS host name to check (defaults to `host`).
    pub tls_hostname: Option<String>,
}

/// A `-drive`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriveSpec {
    /// Id (`-drive id=`), or QEMU's default `virtio<N>`-style name.
    pub id: String,
    /// Image file (for file-backed drives).
    pub file: Option<PathBuf>,
    /// Format (`raw` only).
    pub format: String,
    /// Interface: `virtio` (the default here) or `none` (for `-device`).
    pub interface: String,
    /// Read-only.
    pub readonly: bool,
    /// NBD client settings when `driver=nbd` or `file=nbd://...` is used.
    pub nbd: Option<NbdDrive>,
    /// Cache mode (`writeback`, `none`, `writethrough`, `directsync`, `unsafe`).
    pub cache: Option<String>,
    /// Discard policy (`ignore`/`off` or `unmap`/`on`).
    pub discard: Option<String>,
}

/// What the VNC server shows on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VncDisplay {
    /// `-vnc none`: server started without a listener (set later).
    None,
    /// TCP `host:display` (port 5900 + display).
    Tcp {
        /// Host (empty = any).
        host: String,
        /// Display number.
        display: u16,
    },
    /// Unix socket.
    Unix(PathBuf),
}

/// A `-vnc` option (served by svc-vnc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VncSpec {
    /// Listener.
    pub display: VncDisplay,
    /// `tls-creds-x509` object id.
    pub tls_creds: Option<String>,
    /// `authz-*` object id for the client certificate.
    pub tls_authz: Option<String>,
    /// `secret` object id holding the VNC password.
    pub password_secret: Option<String>,
    /// `password=on`: require a password (set later with `set_password`).
    pub password: bool,
    /// Websocket listener: `on` (port 5700+display) or a port / host:port.
    pub websocket: Option<String>,
    /// Allow lossy encodings.
    pub lossy: bool,
    /// Share policy: `allow-exclusive`, `force-shared` or `ignore`.
    pub share: Option<String>,
}

/// `-incoming`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// `defer`: wait for `migrate-incoming`.
    Defer,
    /// `tcp:HOST:PORT`.
    Tcp {
        /// Host.
        host: String,
        /// Port.
        port: u16,
    },
    /// `unix:PATH`.
    Unix(PathBuf),
    /// `fd:N`.
    Fd(i32),
    /// `exec:CMD`.
    Exec(String),
    /// `file:PATH`.
    File(PathBuf),
}

/// The parsed command line.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    /// What to do.
    pub action: Action,
    /// `-name guest=NAME`.
    pub name: Option<String>,
    /// `-name debug-threads=on`: name vCPU threads.
    pub debug_threads: bool,
    /// Guest RAM in bytes (`-m`, QEMU default 128 MiB).
    pub memory: u64,
    /// vCPUs (`-smp`).
    pub cpus: u32,
    /// `-S`: do not start vCPUs.
    pub start_paused: bool,
    /// `-machine` type as given (`bulkhead`, `pc`, `q35`, ...).
    pub machine: String,
    /// `-machine memory-backend=ID`.
    pub memory_backend: Option<String>,
    /// `-machine dump-guest-core=on|off`.
    pub dump_guest_core: Option<bool>,
    /// `-nodefaults`.
    pub nodefaults: bool,
    /// `-no-user-config`.
    pub no_user_config: bool,
    /// `-msg timestamp=on`.
    pub msg_timestamp: bool,
    /// `-nographic`.
    pub nographic: bool,
    /// `-display none` (or `-nographic`).
    pub display_none: bool,
    /// All chardevs, explicit and implied.
    pub chardevs: Vec<ChardevSpec>,
    /// Serial ports in order, as chardev ids.
    pub serials: Vec<String>,
    /// `-serial none` was given.
    pub serial_none: bool,
    /// Monitors (QMP and HMP).
    pub monitors: Vec<MonitorSpec>,
    /// `-monitor none` was given.
    pub monitor_none: bool,
    /// Drives.
    pub drives: Vec<DriveSpec>,
    /// `-kernel`.
    pub kernel: Option<PathBuf>,
    /// `-initrd`.
    pub initrd: Option<PathBuf>,
    /// `-append`.
    pub append: Option<String>,
    /// `-object`s in order.
    pub objects: Vec<ObjectSpec>,
    /// `-device`s in order.
    pub devices: Vec<DeviceSpec>,
    /// `-vnc`.
    pub vnc: Option<VncSpec>,
    /// `-incoming`.
    pub incoming: Option<Incoming>,
    /// `-daemonize`.
    pub daemonize: bool,
    /// `-pidfile`.
    pub pidfile: Option<PathBuf>,
    /// `-D logfile`.
    pub logfile: Option<PathBuf>,
}

impl Config {
    /// The chardev with this id.
    pub fn chardev(&self, id: &str) -> Option<&ChardevSpec> {
        self.chardevs.iter().find(|c| c.id == id)
    }

    /// QMP monitors.
    pub fn qmp_monitors(&self) -> impl Iterator<Item = &MonitorSpec> {
        self.monitors
            .iter()
            .filter(|m| m.mode == MonitorMode::Control)
    }

    /// HMP monitors.
    pub fn hmp_monitors(&self) -> impl Iterator<Item = &MonitorSpec> {
        self.monitors
            .iter()
            .filter(|m| m.mode == MonitorMode::Readline)
    }
}

/// Options Bulkhead knows; `true` = takes an argument.
const OPTIONS: &[(&str, bool)] = &[
    ("name", true),
    ("m", true),
    ("smp", true),
    ("S", false),
    ("machine", true),
    ("M", true),
    ("accel", true),
    ("enable-kvm", false),
    ("nodefaults", false),
    ("no-user-config", false),
    ("msg", true),
    ("nographic", false),
    ("display", true),
    ("serial", true),
    ("chardev", true),
    ("mon", true),
    ("qmp", true),
    ("monitor", true),
    ("drive", true),
    ("kernel", true),
    ("initrd", true),
    ("append", true),
    ("object", true),
    ("vnc", true),
    ("incoming", true),
    ("daemonize", false),
    ("pidfile", true),
    ("D", true),
    ("version", false),
    ("h", false),
    ("help", false),
    ("device", true),
];

/// Real QEMU options this build does not implement (clearer message).
const QEMU_ONLY: &[&str] = &[
    "cpu",
    "uuid",
    "no-shutdown",
    "no-reboot",
    "boot",
    "rtc",
    "global",
    "sandbox",
    "overcommit",
    "no-hpet",
    "blockdev",
    "netdev",
    "nic",
    "net",
    "audiodev",
    "usb",
    "usbdevice",
    "vga",
    "spice",
    "bios",
    "L",
    "k",
    "full-screen",
    "cdrom",
    "hda",
    "hdb",
    "fda",
    "snapshot",
    "loadvm",
    "numa",
    "icount",
    "gdb",
    "s",
    "d",
    "trace",
    "qmp-pretty",
    "parallel",
    "virtfs",
    "fsdev",
    "watchdog",
    "action",
    "mem-path",
    "mem-prealloc",
    "readconfig",
    "writeconfig",
    "runas",
    "chroot",
    "semihosting",
    "plugin",
    "compat",
    "add-fd",
    "set",
    "fw_cfg",
    "smbios",
    "acpitable",
    "tpmdev",
    "preconfig",
    "only-migratable",
    "rtc-td-hack",
    "no-acpi",
    "pflash",
    "mtdblock",
    "sd",
    "old-param",
    "iscsi",
    "seed",
    "async-teardown",
    "xen-domid",
    "alt-grab",
    "ctrl-grab",
];

/// `--version` text.
pub fn version_text() -> String {
    let (a, b, c) = crate::qmp::wire::QEMU_VERSION;
    format!(
        "bulkhead {} (QEMU-compatible command line, QMP schema of QEMU {a}.{b}.{c})\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// `-h` text.
pub fn help_text() -> String {
    let mut s = version_text();
    s.push_str(
        "usage: bulkhead [options]\n\n\
-name [guest=]NAME[,debug-threads=on|off]\n\
-m [size=]SIZE          guest RAM (plain number = MiB; suffixes K, M, G, T)\n\
-smp [cpus=]N           number of vCPUs\n\
-S                      do not start vCPUs until 'cont'\n\
-machine|-M [type=]NAME[,accel=kvm][,memory-backend=ID]  (bulkhead, pc, q35, microvm)\n\
-accel kvm | -enable-kvm\n\
-nodefaults  -no-user-config  -msg timestamp=on|off\n\
-nographic  -display none\n\
-serial stdio|null|none|pty|file:PATH|chardev:ID|tcp:HOST:PORT[,server=on,wait=off]|unix:PATH[,...]\n\
-chardev null|stdio|file|pty|socket,id=ID[,path=|host=,port=|fd=][,server=on][,wait=off][,telnet=on]\n\
         [,reconnect=SECS][,tls-creds=ID][,tls-authz=ID][,logfile=PATH]\n\
-mon chardev=ID[,mode=control|readline][,pretty=on|off]\n\
-qmp unix:PATH,server=on,wait=off | tcp:HOST:PORT,server=on,wait=off   (may repeat)\n\
-monitor stdio|none|unix:PATH,server=on,wait=off\n\
-drive file=IMG[,format=raw][,if=virtio|none][,readonly=on][,id=ID]\n\
-drive driver=nbd,host=H,port=P[,export=NAME][,tls-creds=ID]\n\
-kernel FILE  -initrd FILE  -append CMDLINE\n\
-object TYPE,id=ID[,prop=value...] | -object '{\"qom-type\":TYPE,\"id\":ID,...}'\n\
-device virtio-blk-device,drive=ID | isa-serial,chardev=ID  (or JSON)\n\
-vnc HOST:DISPLAY|unix:PATH|none[,tls-creds=ID][,tls-authz=ID][,password-secret=ID]\n\
     [,websocket=on|PORT][,lossy=on][,share=allow-exclusive|force-shared|ignore]\n\
-incoming defer|tcp:HOST:PORT|unix:PATH|fd:N|exec:CMD|file:PATH\n\
-daemonize  -pidfile FILE  -D LOGFILE\n\
-version  -h\n",
    );
    s
}

struct Parser {
    cfg: Config,
    monitor_count: usize,
    drive_count: usize,
}

fn os_to_string(a: &OsString) -> Result<String, CliError> {
    a.to_str().map(str::to_string).ok_or_else(|| {
        CliError::global(format!(
            "{}: argument is not valid UTF-8",
            a.to_string_lossy()
        ))
    })
}

/// Parses `args` (without the program name).
pub fn parse(args: &[OsString]) -> Result<Config, CliError> {
    let mut p = Parser {
        cfg: Config {
            memory: 128 << 20,
            cpus: 1,
            machine: "bulkhead".into(),
            ..Config::default()
        },
        monitor_count: 0,
        drive_count: 0,
    };
    let mut i = 0;
    while i < args.len() {
        let raw = os_to_string(&args[i])?;
        i += 1;
        let Some(stripped) = raw.strip_prefix('-') else {
            // QEMU treats a bare word as a disk image (-hda); we do not.
            return Err(CliError::global(format!(
                "{raw}: invalid option (bare disk images are not supported; use -drive)"
            )));
        };
        let name = stripped.strip_prefix('-').unwrap_or(stripped);
        let Some(&(_, takes_arg)) = OPTIONS.iter().find(|(n, _)| *n == name) else {
            if QEMU_ONLY.contains(&name) {
                return Err(CliError::at(
                    name,
                    None,
                    "option not supported by this build",
                ));
            }
            return Err(CliError::global(format!("{raw}: invalid option")));
        };
        let value = if takes_arg {
            if i >= args.len() {
                return Err(CliError::at(name, None, "requires an argument"));
            }
            let v = os_to_string(&args[i])?;
            i += 1;
            Some(v)
        } else {
            None
        };
        p.option(name, value.as_deref())
            .map_err(|m| CliError::at(name, value.as_deref(), m))?;
        if p.cfg.action != Action::Run {
            return Ok(p.cfg);
        }
    }
    p.finish()?;
    Ok(p.cfg)
}

impl Parser {
    fn option(&mut self, name: &str, v: Option<&str>) -> Result<(), String> {
        let v = v.unwrap_or("");
        let c = &mut self.cfg;
        match name {
            "version" => c.action = Action::Print(version_text()),
            "h" | "help" => c.action = Action::Print(help_text()),
            "S" => c.start_paused = true,
            "enable-kvm" => {}
            "nodefaults" => c.nodefaults = true,
            "no-user-config" => c.no_user_config = true,
            "nographic" => {
                c.nographic = true;
                c.display_none = true;
            }
            "daemonize" => c.daemonize = true,
            "name" => {
                let mut o = opts::parse(v, Some("guest"))?;
                c.name = o.take("guest");
                if o.take("process").is_some() {
                    return Err("Parameter 'process' is not supported by this build".into());
                }
                c.debug_threads = o.take_bool("debug-threads")?.unwrap_or(false);
                o.finish()?;
            }
            "m" => {
                let mut o = opts::parse(v, Some("size"))?;
                if let Some(size) = o.take_size("size", 20)? {
                    c.memory = size;
                }
                if o.get("maxmem").is_some() || o.get("slots").is_some() {
                    return Err(
                        "memory hotplug (slots/maxmem) is not supported by this build".into(),
                    );
                }
                o.finish()?;
                if c.memory < (2 << 20) {
                    return Err(format!(
                        "Invalid RAM size {}: at least 2 MiB is needed",
                        c.memory
                    ));
                }
            }
            "smp" => {
                let mut o = opts::parse(v, Some("cpus"))?;
                let cpus = o
                    .take_u64("cpus")
                    .map_err(|_| "Parameter 'smp.cpus' expects a number".to_string())?;
                let topo: Vec<Option<u64>> = ["sockets", "dies", "cores", "threads", "maxcpus"]
                    .iter()
                    .map(|k| o.take_u64(k))
                    .collect::<Result<_, _>>()?;
                if let Some((k, _)) = o.clone().into_pairs().first() {
                    return Err(format!("Parameter 'smp.{k}' is unexpected"));
                }
                let product = topo[0].unwrap_or(1)
                    * topo[1].unwrap_or(1)
                    * topo[2].unwrap_or(1)
                    * topo[3].unwrap_or(1);
                let n = cpus
                    .or(topo[4])
                    .unwrap_or(if topo[..4].iter().any(Option::is_some) {
                        product
                    } else {
                        1
                    });
                if n == 0 {
                    return Err("CPU topology parameters must be greater than zero".into());
                }
                if let Some(max) = topo[4] {
                    if max != n {
                        return Err(
                            "CPU hotplug (maxcpus > cpus) is not supported by this build".into(),
                        );
                    }
                }
                if n > machine::MAX_CPUS as u64 {
                    return Err(format!(
                        "Invalid SMP CPUs {n}. The max CPUs supported by machine 'bulkhead' is {}",
                        machine::MAX_CPUS
                    ));
                }
                c.cpus = n as u32;
            }
            "machine" | "M" => {
                let mut o = opts::parse(v, Some("type"))?;
                if let Some(t) = o.take("type") {
                    if t == "help" || t == "?" {
                        c.action = Action::Print(machine::help_text());
                        return Ok(());
                    }
                    if !machine::is_known_machine(&t) {
                        return Err("unsupported machine type\nUse -machine help to list supported machines".into());
                    }
                    c.machine = t;
                }
                if let Some(a) = o.take("accel") {
                    check_accel(&a)?;
                }
                c.memory_backend = o.take("memory-backend").or(c.memory_backend.take());
                if let Some(d) = o.take_bool("dump-guest-core")? {
                    c.dump_guest_core = Some(d);
                }
                // Devices Bulkhead's machine does not have: only "off" is true.
                for k in ["usb", "vmport", "smm", "hpet", "graphics", "sata", "pit"] {
                    if let Some(on) = o.take_bool(k)? {
                        if on && k != "pit" && k != "graphics" {
                            return Err(format!(
                                "Property '{k}=on' is not supported by this machine"
                            ));
                        }
                    }
                }
                if let Some(ki) = o.take("kernel-irqchip") {
                    if ki != "on" && ki != "split" {
                        return Err(
                            "kernel-irqchip must be on (the irqchip is always in KVM)".into()
                        );
                    }
                }
                if let Some(k) = o.clone().into_pairs().first() {
                    return Err(format!("Property '{}.{}' not found", c.machine, k.0));
                }
            }
            "accel" => {
                let mut o = opts::parse(v, Some("accel"))?;
                let a = o.take("accel").ok_or("Parameter 'accel' is missing")?;
                check_accel(&a)?;
                o.finish()?;
            }
            "msg" => {
                let mut o = opts::parse(v, None)?;
                c.msg_timestamp = o.take_bool("timestamp")?.unwrap_or(false);
                if o.take_bool("guest-name")?.is_some() {
                    return Err("Parameter 'guest-name' is not supported by this build".into());
                }
                o.finish()?;
            }
            "display" => {
                let mut o = opts::parse(v, Some("type"))?;
                match o.take("type").as_deref() {
                    Some("none") => c.display_none = true,
                    Some(t) => return Err(format!("Display '{t}' is not available.")),
                    None => return Err("Parameter 'type' is missing".into()),
                }
                o.finish()?;
            }
            "serial" => match chardev::parse_legacy(v)? {
                LegacyChardev::None => c.serial_none = true,
                LegacyChardev::Ref(id) => c.serials.push(id),
                LegacyChardev::Backend(backend) => {
                    let id = format!("serial{}", c.serials.len());
                    c.chardevs.push(ChardevSpec {
                        id: id.clone(),
                        backend,
                        logfile: None,
                        logappend: false,
                    });
                    c.serials.push(id);
                }
            },
            "chardev" => {
                let spec = chardev::parse_chardev(v)?;
                if c.chardev(&spec.id).is_some() {
                    return Err(format!(
                        "attempt to add duplicate property '{}' to object (type 'container')",
                        spec.id
                    ));
                }
                c.chardevs.push(spec);
            }
            "mon" => {
                let mut o = opts::parse(v, Some("chardev"))?;
                let chardev = o.take("chardev").ok_or("Parameter 'chardev' is missing")?;
                let mode = match o.take("mode").as_deref() {
                    None | Some("readline") => MonitorMode::Readline,
                    Some("control") => MonitorMode::Control,
                    Some(m) => return Err(format!("unknown monitor mode '{m}'")),
                };
                let pretty = o.take_bool("pretty")?.unwrap_or(false);
                if pretty {
                    return Err("pretty=on is not supported by this build".into());
                }
                let id = o.take("id");
                o.finish()?;
                c.monitors.push(MonitorSpec {
                    id,
                    chardev,
                    mode,
                    pretty,
                });
            }
            "qmp" | "monitor" => {
                let mode = if name == "qmp" {
                    MonitorMode::Control
                } else {
                    MonitorMode::Readline
                };
                match chardev::parse_legacy(v)? {
                    LegacyChardev::None => {
                        if name == "monitor" {
                            c.monitor_none = true;
                        }
                    }
                    LegacyChardev::Ref(id) => c.monitors.push(MonitorSpec {
                        id: None,
                        chardev: id,
                        mode,
                        pretty: false,
                    }),
                    LegacyChardev::Backend(backend) => {
                        let id = format!("compat_monitor{}", self.monitor_count);
                        self.monitor_count += 1;
                        c.chardevs.push(ChardevSpec {
                            id: id.clone(),
                            backend,
                            logfile: None,
                            logappend: false,
                        });
                        c.monitors.push(MonitorSpec {
                            id: None,
                            chardev: id,
                            mode,
                            pretty: false,
                        });
                    }
                }
            }
            "drive" => {
                let d = parse_drive(v, self.drive_count)?;
                self.drive_count += 1;
                if c.drives.iter().any(|x| x.id == d.id) {
                    return Err(format!("Duplicate ID '{}' for drive", d.id));
                }
                c.drives.push(d);
            }
            "kernel" => c.kernel = Some(v.into()),
            "initrd" => c.initrd = Some(v.into()),
            "append" => c.append = Some(v.into()),
            "pidfile" => c.pidfile = Some(v.into()),
            "D" => c.logfile = Some(v.into()),
            "object" => {
                let o = object::parse_object(v)?;
                if c.objects.iter().any(|x| x.id == o.id) {
                    return Err(format!(
                        "attempt to add duplicate property '{}' to object (type 'container')",
                        o.id
                    ));
                }
                c.objects.push(o);
            }
            "device" => c.devices.push(object::parse_device(v)?),
            "vnc" => c.vnc = Some(parse_vnc(v)?),
            "incoming" => c.incoming = Some(parse_incoming(v)?),
            other => return Err(format!("internal: unhandled option {other}")),
        }
        Ok(())
    }

    /// Cross-option checks (references must exist).
    fn finish(&mut self) -> Result<(), CliError> {
        let c = &self.cfg;
        for m in &c.monitors {
            if c.chardev(&m.chardev).is_none() {
                return Err(CliError::at(
                    "mon",
                    Some(&format!("chardev={}", m.chardev)),
                    format!("chardev \"{}\" not found", m.chardev),
                ));
            }
        }
        for s in &c.serials {
            if c.chardev(s).is_none() {
                return Err(CliError::at(
                    "serial",
                    Some(&format!("chardev:{s}")),
                    format!("chardev \"{s}\" not found"),
                ));
            }
        }
        let mut used: Vec<&str> = Vec::new();
        for id in c
            .monitors
            .iter()
            .map(|m| m.chardev.as_str())
            .chain(c.serials.iter().map(String::as_str))
        {
            if used.contains(&id) {
                return Err(CliError::global(format!(
                    "chardev '{id}' is already in use (mux=on is not supported)"
                )));
            }
            used.push(id);
        }
        if let Some(mb) = &c.memory_backend {
            let Some(obj) = c.objects.iter().find(|o| &o.id == mb) else {
                return Err(CliError::global(format!("Memory backend '{mb}' not found")));
            };
            if !obj.qom_type.starts_with("memory-backend-") {
                return Err(CliError::global(format!(
                    "Memory backend '{mb}' is not a memory backend"
                )));
            }
        }
        for d in &c.devices {
            if let Some(Some(drive)) = d.props.get("drive").map(|v| v.as_str()) {
                if !c.drives.iter().any(|x| x.id == drive) {
                    return Err(CliError::at(
                        "device",
                        Some(&d.driver),
                        format!("Property '{}.drive' can't find value '{drive}'", d.driver),
                    ));
                }
            }
            if let Some(Some(ch)) = d.props.get("chardev").map(|v| v.as_str()) {
                if c.chardev(ch).is_none() {
                    return Err(CliError::at(
                        "device",
                        Some(&d.driver),
                        format!("Property '{}.chardev' can't find value '{ch}'", d.driver),
                    ));
                }
            }
        }
        if c.daemonize
            && c.chardevs
                .iter()
                .any(|ch| matches!(ch.backend, ChardevBackend::Stdio { .. }))
        {
            return Err(CliError::global(
                "-nographic, -serial stdio or -monitor stdio cannot be used with -daemonize",
            ));
        }
        Ok(())
    }
}

fn check_accel(a: &str) -> Result<(), String> {
    for acc in a.split(':') {
        if acc != "kvm" {
            return Err(format!(
                "invalid accelerator {acc} (this build only supports kvm)"
            ));
        }
    }
    Ok(())
}

fn parse_drive(v: &str, index: usize) -> Result<DriveSpec, String> {
    let mut o = opts::parse(v, None)?;
    let file = o.take("file");
    let driver = o.take("driver");
    let format = o.take("format");
    let interface = o.take("if").unwrap_or_else(|| "virtio".into());
    if interface != "virtio" && interface != "none" {
        return Err(format!(
            "if={interface} is not supported by this build (use if=virtio)"
        ));
    }
    let readonly = o.take_bool("readonly")?.unwrap_or(false);
    let id = o.take("id").unwrap_or_else(|| format!("virtio{index}"));
    let cache = o.take("cache");
    if let Some(cm) = &cache {
        if !["writeback", "none", "writethrough", "directsync", "unsafe"].contains(&cm.as_str()) {
            return Err(format!("invalid cache option '{cm}'"));
        }
    }
    let discard = o.take("discard");
    if let Some(d) = &discard {
        if !["ignore", "off", "unmap", "on"].contains(&d.as_str()) {
            return Err(format!("Invalid discard option '{d}'"));
        }
    }
    if let Some(m) = o.take("media") {
        if m != "disk" {
            return Err(format!("media={m} is not supported by this build"));
        }
    }
    if let Some(s) = o.take_bool("snapshot")? {
        if s {
            return Err("snapshot=on is not supported by this build".into());
        }
    }
    let is_nbd = driver.as_deref() == Some("nbd")
        || format.as_deref() == Some("nbd")
        || file
            .as_deref()
            .is_some_and(|f| f.starts_with("nbd:") || f.starts_with("nbd+"));
    let (file, nbd, format) = if is_nbd {
        let mut n = NbdDrive {
            host: o.take("host"),
            port: 10809,
            path: o.take("path").map(PathBuf::from),
            export: o.take("export"),
            tls_creds: o.take("tls-creds"),
            tls_hostname: o.take("tls-hostname"),
        };
        if let Some(p) = o.take("port") {
            n.port = p
                .parse()
                .map_err(|_| format!("Parameter 'port' expects a port number, got '{p}'"))?;
        }
        if let Some(f) = &file {
            parse_nbd_uri(f, &mut n)?;
        }
        if n.host.is_none() && n.path.is_none() {
            return Err("NBD server address missing".into());
        }
        (None, Some(n), "raw".to_string())
    } else {
        if let Some(d) = &driver {
            if d != "raw" && d != "file" {
                return Err(format!(
                    "Unknown driver '{d}' (this build supports raw and nbd)"
                ));
            }
        }
        let format = format
            .or(driver.filter(|d| d == "raw"))
            .unwrap_or_else(|| "raw".into());
        if format != "raw" {
            return Err(format!(
                "Unknown driver '{format}' (this build supports format=raw)"
            ));
        }
        let file = file.ok_or("drive: no file= given")?;
        (Some(PathBuf::from(file)), None, format)
    };
    if let Some((k, _)) = o.clone().into_pairs().first() {
        return Err(format!(
            "Block format '{format}' does not support the option '{k}'"
        ));
    }
    Ok(DriveSpec {
        id,
        file,
        format,
        interface,
        readonly,
        nbd,
        cache,
        discard,
    })
}

/// `nbd://host[:port]/export`, `nbd+unix:///export?socket=PATH`,
/// `nbd:host:port[:exportname=NAME]`.
fn parse_nbd_uri(f: &str, n: &mut NbdDrive) -> Result<(), String> {
    let bad = || format!("invalid NBD URI '{f}'");
    if let Some(rest) = f.strip_prefix("nbd://") {
        let (hp, export) = rest.split_once('/').unwrap_or((rest, ""));
        let (host, port) = match hp.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().map_err(|_| bad())?),
            None => (hp.to_string(), 10809),
        };
        n.host = Some(host);
        n.port = port;
        if !export.is_empty() {
            n.export = Some(export.to_string());
        }
    } else if let Some(rest) = f.strip_prefix("nbd+unix://") {
        let (path_part, query) = rest.split_once('?').ok_or_else(bad)?;
        let sock = query.strip_prefix("socket=").ok_or_else(bad)?;
        n.path = Some(sock.into());
        let export = path_part.trim_start_matches('/');
        if !export.is_empty() {
            n.export = Some(export.to_string());
        }
    } else if let Some(rest) = f.strip_prefix("nbd:") {
        let mut parts = rest.split(':');
        match parts.next() {
            Some("unix") => n.path = Some(parts.next().ok_or_else(bad)?.into()),
            Some(h) => {
                n.host = Some(h.to_string());
                n.port = parts.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
            }
            None => return Err(bad()),
        }
        for p in parts {
            if let Some(e) = p.strip_prefix("exportname=") {
                n.export = Some(e.to_string());
            } else {
                return Err(bad());
            }
        }
    } else {
        return Err(bad());
    }
    Ok(())
}

fn parse_vnc(v: &str) -> Result<VncSpec, String> {
    let mut o = opts::parse(v, Some("vnc"))?;
    let disp = o.take("vnc").ok_or("Parameter 'vnc' is missing")?;
    let display = if disp == "none" {
        VncDisplay::None
    } else if let Some(p) = disp.strip_prefix("unix:") {
        VncDisplay::Unix(p.into())
    } else {
        let (host, d) = disp
            .rsplit_once(':')
            .ok_or_else(|| format!("Failed to parse VNC display '{disp}'"))?;
        let display: u16 = d
            .parse()
            .map_err(|_| format!("can't convert to a number: {d}"))?;
        if display > 59635 {
            return Err(format!("display number {display} is too large"));
        }
        VncDisplay::Tcp {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            display,
        }
    };
    let spec = VncSpec {
        display,
        tls_creds: o.take("tls-creds"),
        tls_authz: o.take("tls-authz"),
        password_secret: o.take("password-secret"),
        password: o.take_bool("password")?.unwrap_or(false),
        websocket: o.take("websocket"),
        lossy: o.take_bool("lossy")?.unwrap_or(false),
        share: o.take("share"),
    };
    if let Some(s) = &spec.share {
        if !["allow-exclusive", "force-shared", "ignore"].contains(&s.as_str()) {
            return Err(format!("unknown vnc share= option '{s}'"));
        }
    }
    if spec.tls_authz.is_some() && spec.tls_creds.is_none() {
        return Err("'tls-authz' requires 'tls-creds'".into());
    }
    if let Some(k) = o.clone().into_pairs().first() {
        let known_unsupported = [
            "sasl",
            "acl",
            "reverse",
            "to",
            "x509",
            "x509verify",
            "tls",
            "key-delay-ms",
            "audiodev",
            "power-control",
            "connections",
            "display",
            "head",
        ];
        if known_unsupported.contains(&k.0.as_str()) {
            return Err(format!(
                "Parameter '{}' is not supported by this build",
                k.0
            ));
        }
    }
    o.finish()?;
    Ok(spec)
}

fn parse_incoming(v: &str) -> Result<Incoming, String> {
    let bad = || format!("unknown migration protocol: {v}");
    if v == "defer" {
        return Ok(Incoming::Defer);
    }
    let (scheme, rest) = v.split_once(':').ok_or_else(bad)?;
    Ok(match scheme {
        "tcp" => {
            let addr = rest.split(',').next().unwrap_or("");
            let (h, p) = addr.rsplit_once(':').ok_or_else(bad)?;
            Incoming::Tcp {
                host: h.trim_start_matches('[').trim_end_matches(']').to_string(),
                port: p.parse().map_err(|_| bad())?,
            }
        }
        "unix" if !rest.is_empty() => Incoming::Unix(rest.into()),
        "fd" => Incoming::Fd(rest.parse().map_err(|_| bad())?),
        "exec" if !rest.is_empty() => Incoming::Exec(rest.into()),
        "file" if !rest.is_empty() => Incoming::File(rest.into()),
        _ => return Err(bad()),
    })
}
