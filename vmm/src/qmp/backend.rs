//! The machine behind the monitor: the trait the VM core implements, and the
//! plain data types its methods exchange with the QMP/HMP layers.
//!
//! The QMP layer validates arguments, formats replies and keeps per-client
//! state (negotiation, passed fds); everything that touches the VM goes
//! through [`MachineControl`]. State-change events (`STOP`, `RESUME`, `RESET`,
//! `SHUTDOWN`, `POWERDOWN`) are emitted by the implementation through the
//! [`super::EventBus`] it was given, synchronously inside the call, so every
//! client sees them before the command's `{"return": {}}` (as QEMU does).
//!
//! Later command groups (chardev, NBD, migration, VNC) add their own methods
//! here with a default that answers "not supported by this build", so a
//! backend that does not yet implement them still compiles and says so.

use serde_json::{Map, Value};

use super::error::QmpError;
use crate::cli::ObjectSpec;

/// QEMU's `RunState` values that Bulkhead can be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Started with `-S`, never run.
    Prelaunch,
    /// vCPUs running.
    Running,
    /// Stopped by `stop`.
    Paused,
    /// Guest or host asked to shut down.
    Shutdown,
    /// Waiting for an incoming migration.
    InMigrate,
    /// Finished migrating out.
    PostMigrate,
    /// Migration's final stage (vCPUs stopped).
    FinishMigrate,
    /// A vCPU hit an error the VMM cannot recover from.
    InternalError,
    /// The guest reported a panic.
    GuestPanicked,
    /// Paused because of an I/O error.
    IoError,
}

impl RunState {
    /// QEMU's name for the state.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Prelaunch => "prelaunch",
            RunState::Running => "running",
            RunState::Paused => "paused",
            RunState::Shutdown => "shutdown",
            RunState::InMigrate => "inmigrate",
            RunState::PostMigrate => "postmigrate",
            RunState::FinishMigrate => "finish-migrate",
            RunState::InternalError => "internal-error",
            RunState::GuestPanicked => "guest-panicked",
            RunState::IoError => "io-error",
        }
    }

    /// Whether vCPUs are executing.
    pub fn is_running(self) -> bool {
        self == RunState::Running
    }
}

/// `query-kvm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvmInfo {
    /// KVM is in use.
    pub enabled: bool,
    /// KVM is available on the host.
    pub present: bool,
}

/// One vCPU for `query-cpus-fast`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuInfo {
    /// Index (0-based).
    pub cpu_index: u32,
    /// Host thread id (TID) of the vCPU thread.
    pub thread_id: i64,
    /// Socket/core/thread topology ids.
    pub socket_id: u32,
    /// Core id.
    pub core_id: u32,
    /// Thread id within the core.
    pub thread_in_core: u32,
}

/// One drive for `query-block` / `info block`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockInfo {
    /// Drive id (`-drive id=`, or QEMU's default name).
    pub device: String,
    /// QOM path of the device model the drive is attached to.
    pub qdev: Option<String>,
    /// Node name of the block node.
    pub node_name: String,
    /// Image file name (or NBD URI).
    pub file: String,
    /// Format driver (`raw`, `nbd`).
    pub drv: String,
    /// Read-only.
    pub ro: bool,
    /// Size in bytes as seen by the guest.
    pub virtual_size: u64,
    /// Host bytes used (0 when unknown).
    pub actual_size: u64,
}

/// One character device for `query-chardev` / `info chardev`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChardevInfo {
    /// Chardev id.
    pub label: String,
    /// QEMU-style description, e.g. `unix:/tmp/s,server=on`, `null`, `stdio`.
    pub filename: String,
    /// Whether a frontend has it open.
    pub frontend_open: bool,
}

/// A captured screen: packed 8-bit RGB, row-major, `width * height * 3` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Screenshot {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Pixel data.
    pub rgb: Vec<u8>,
}

/// A key in `send-key` / `input-send-event`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyValue {
    /// QEMU "number": a PC set-1 scancode, extended keys as 0x80|code.
    Number(i64),
    /// A QKeyCode name (see [`super::keys::QKEYCODES`]).
    QCode(String),
}

/// A pointer button (QEMU's `InputButton`).
pub const INPUT_BUTTONS: &[&str] = &[
    "left",
    "middle",
    "right",
    "wheel-up",
    "wheel-down",
    "side",
    "extra",
    "wheel-left",
    "wheel-right",
    "touch",
];
/// A pointer axis (QEMU's `InputAxis`).
pub const INPUT_AXES: &[&str] = &["x", "y"];

/// One `input-send-event` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputEvent {
    /// Key press or release.
    Key {
        /// Pressed (true) or released.
        down: bool,
        /// Which key.
        key: KeyValue,
    },
    /// Button press or release (name from [`INPUT_BUTTONS`]).
    Btn {
        /// Pressed (true) or released.
        down: bool,
        /// Button name.
        button: String,
    },
    /// Relative motion on an axis (`x` or `y`).
    Rel {
        /// Axis name.
        axis: String,
        /// Delta.
        value: i64,
    },
    /// Absolute position on an axis, 0..=0x7fff as in QEMU.
    Abs {
        /// Axis name.
        axis: String,
        /// Position.
        value: i64,
    },
}

/// Why the machine is shutting down or resetting (QEMU's `ShutdownCause`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownCause {
    /// `quit` on QMP or HMP.
    HostQmpQuit,
    /// `system_reset` on QMP or HMP.
    HostQmpSystemReset,
    /// SIGINT/SIGTERM/SIGHUP.
    HostSignal,
    /// An internal error.
    HostError,
    /// The guest powered off.
    GuestShutdown,
    /// The guest reset itself (e.g. 0xFE to port 0x64).
    GuestReset,
    /// The guest panicked.
    GuestPanic,
}

impl ShutdownCause {
    /// QEMU's name for the cause (the events' `reason`).
    pub fn as_str(self) -> &'static str {
        match self {
            ShutdownCause::HostQmpQuit => "host-qmp-quit",
            ShutdownCause::HostQmpSystemReset => "host-qmp-system-reset",
            ShutdownCause::HostSignal => "host-signal",
            ShutdownCause::HostError => "host-error",
            ShutdownCause::GuestShutdown => "guest-shutdown",
            ShutdownCause::GuestReset => "guest-reset",
            ShutdownCause::GuestPanic => "guest-panic",
        }
    }

    /// Whether the guest caused it (the events' `guest` member).
    pub fn is_guest(self) -> bool {
        matches!(
            self,
            ShutdownCause::GuestShutdown | ShutdownCause::GuestReset | ShutdownCause::GuestPanic
        )
    }
}

fn unsupported(what: &str) -> QmpError {
    QmpError::generic(format!("{what} is not supported by this build"))
}

/// What the monitor needs from the VM. Implemented by the VM core; tests use
/// a fake. Every method may be called from any client thread concurrently.
pub trait MachineControl: Send + Sync {
    /// `-name`, if given.
    fn name(&self) -> Option<String>;
    /// Current run state.
    fn query_status(&self) -> RunState;
    /// Pause all vCPUs; emits `STOP` if they were running. Stopping a
    /// stopped VM succeeds without an event.
    fn stop(&self) -> Result<(), QmpError>;
    /// Resume all vCPUs; emits `RESUME` if they were not running.
    fn cont(&self) -> Result<(), QmpError>;
    /// Reset the machine; emits `RESET` (guest false, host-qmp-system-reset).
    fn system_reset(&self) -> Result<(), QmpError>;
    /// Ask the guest to power down (ACPI-less: the platform's power button);
    /// emits `POWERDOWN`.
    fn system_powerdown(&self) -> Result<(), QmpError>;
    /// Request process exit; emits `SHUTDOWN` (guest false, host-qmp-quit)
    /// and returns at once. The QMP server then sends the return, closes
    /// every connection and removes its unix socket files; the caller's main
    /// loop exits after [`super::ServerHandle::shutdown`].
    fn quit(&self) -> Result<(), QmpError>;
    /// KVM state.
    fn query_kvm(&self) -> KvmInfo;
    /// vCPUs.
    fn query_cpus(&self) -> Vec<CpuInfo>;
    /// Drives.
    fn query_block(&self) -> Vec<BlockInfo>;
    /// Character devices.
    fn query_chardev(&self) -> Vec<ChardevInfo>;
    /// Capture the display (`device`/`head` as in QEMU's screendump).
    fn screendump(&self, device: Option<&str>, head: Option<u32>) -> Result<Screenshot, QmpError>;
    /// Press the keys in order, hold them `hold_time_ms`, release in reverse.
    fn send_key(&self, keys: &[KeyValue], hold_time_ms: u32) -> Result<(), QmpError>;
    /// Inject input events (to the console `device`/`head` if given). The
    /// command layer already answers "VM not running" when no `device` is
    /// named; with a `device`, resolve it first (DeviceNotFound), then
    /// refuse with "VM not running" unless running, as QEMU does.
    fn input_send_event(
        &self,
        device: Option<&str>,
        head: Option<u32>,
        events: &[InputEvent],
    ) -> Result<(), QmpError>;
    /// Create a user-creatable object (`secret`, `tls-creds-x509`, ...).
    fn object_add(&self, spec: ObjectSpec) -> Result<(), QmpError> {
        let _ = spec;
        Err(unsupported("object-add"))
    }
    /// Delete an object; QEMU's error for an unknown id is
    /// "object 'ID' not found".
    fn object_del(&self, id: &str) -> Result<(), QmpError> {
        Err(QmpError::generic(format!("object '{id}' not found")))
    }
    /// `chardev-add`: create chardev `spec.id`. Returns QEMU's
    /// `ChardevReturn` (`{}`, or `{"pty": PATH}` for a pty).
    fn chardev_add(&self, spec: crate::cli::ChardevSpec) -> Result<Value, QmpError> {
        let _ = spec;
        Err(unsupported("chardev-add"))
    }
    /// `chardev-remove`; QEMU's errors: "Chardev 'ID' not found",
    /// "Chardev 'ID' is busy".
    fn chardev_remove(&self, id: &str) -> Result<(), QmpError> {
        Err(QmpError::generic(format!("Chardev '{id}' not found")))
    }
}

/// Converts an `object-add` argument object into an [`ObjectSpec`].
pub fn object_spec_from_args(mut args: Map<String, Value>) -> Result<ObjectSpec, QmpError> {
    let qom_type = match args.remove("qom-type") {
        Some(Value::String(s)) => s,
        Some(_) => {
            return Err(QmpError::generic(
                "Invalid parameter type for 'qom-type', expected: string",
            ))
        }
        None => return Err(QmpError::missing("qom-type")),
    };
    let id = match args.remove("id") {
        Some(Value::String(s)) => s,
        Some(_) => {
            return Err(QmpError::generic(
                "Invalid parameter type for 'id', expected: string",
            ))
        }
        None => return Err(QmpError::missing("id")),
    };
    Ok(ObjectSpec {
        qom_type,
        id,
        props: args,
        from_keyval: false,
    })
}
