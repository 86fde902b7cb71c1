//! QMP: the QEMU Machine Protocol server, compatible with QEMU 7.2 clients
//! (libvirt, `qemu.qmp`, qmp-shell).
//!
//! Layers, bottom up:
//! * [`stream`]: cuts the byte stream into complete JSON values, bounded;
//! * [`json`]: parses one value with QEMU's error texts;
//! * [`dispatch`]: negotiation state machine, request checks, command table;
//! * [`schema`]: per-command argument schema and validation;
//! * [`commands`]: one module per command group, calling [`MachineControl`];
//! * [`server`]: listeners, a thread per client, fd passing, events;
//! * [`wire`]: reply/event/greeting lines in QEMU's layout.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # fn demo(vm: Arc<dyn vmm::qmp::MachineControl>) -> std::io::Result<()> {
//! use vmm::qmp::{Listener, Server};
//! let handle = Server::start(vec![Listener::bind_unix("/tmp/qmp.sock")?], vm)?;
//! handle.emit_event("POWERDOWN", None);
//! handle.shutdown();
//! # Ok(()) }
//! ```

pub mod backend;
pub mod commands;
pub mod dispatch;
pub mod error;
pub mod events;
pub mod fds;
pub mod image;
pub mod json;
pub mod keys;
pub mod schema;
pub mod server;
pub mod stream;
pub mod wire;

pub use backend::{
    BlockInfo, ChardevInfo, CpuInfo, InputEvent, KeyValue, KvmInfo, MachineControl, RunState,
    Screenshot, ShutdownCause,
};
pub use dispatch::{Command, Ctx, Flow, Registry, Session};
pub use error::{ErrorClass, QmpError};
pub use events::EventBus;
pub use server::{Listener, Server, ServerHandle};
