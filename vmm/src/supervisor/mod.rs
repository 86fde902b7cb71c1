//! The per-VM supervisor: turns a parsed QEMU-style command line into a
//! running machine with its monitors and services, and runs until `quit`,
//! a guest shutdown or a signal.
//!
//! ```text
//!  cli::Config ──► objects (secret, tls-creds-x509, authz-*, memory-backend-*)
//!              ──► chardev backends (stdio, file, null, pty) + monitor listeners
//!              ──► Vm (memory backend, vCPUs, boot) + platform devices
//!              ──► QMP server(s), HMP monitor(s) over one `Control` backend
//!              ──► service manager (sandboxed svc-* processes)
//!  main thread: waits for an exit request (quit, guest exit/shutdown,
//!  SIGINT/SIGTERM/SIGHUP), then tears everything down in reverse order.
//! ```

mod control;
mod setup;

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;

use anyhow::{Context, Result};

use crate::chardev::socket::SocketChardevs;
use crate::cli::{Action, Config};
use crate::qmp::{EventBus, Registry, Server, ShutdownCause};
use crate::services::{ServiceEvent, ServiceManager, ServiceSettings};
use crate::vm::VmEvent;

pub use control::Control;

/// Why the supervisor is ending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitRequest {
    /// `quit` on a monitor.
    Quit,
    /// The guest wrote `code` to the debug-exit port.
    GuestExit(u32),
    /// The guest powered off (or the power button did it).
    GuestShutdown,
    /// A termination signal.
    Signal(i32),
    /// The VM hit an unrecoverable error.
    InternalError(String),
}

/// Runs the VM described by `cfg`; returns the process exit code.
pub fn run(cfg: Config) -> Result<i32> {
    if let Action::Print(text) = &cfg.action {
        print!("{text}");
        return Ok(0);
    }
    let signals = setup::block_termination_signals()?;
    let mut daemon = if cfg.daemonize {
        Some(setup::daemonize()?)
    } else {
        None
    };
    let result = start_and_serve(&cfg, signals, &mut daemon);
    if let Err(e) = &result {
        if let Some(d) = daemon.take() {
            d.fail(&format!("{e:#}"));
        }
    }
    result
}

fn start_and_serve(
    cfg: &Config,
    signals: setup::SignalSet,
    daemon: &mut Option<setup::Daemon>,
) -> Result<i32> {
    let (exit_tx, exit_rx) = mpsc::channel::<ExitRequest>();
    let bus = EventBus::new();

    let objects = setup::objects(cfg)?;
    let services = {
        let bus = bus.clone();
        Arc::new(ServiceManager::new(
            ServiceSettings {
                // Debugging only: BULKHEAD_NO_SANDBOX=1 runs services
                // unconfined (the manager and each service log it loudly).
                sandbox: std::env::var_os("BULKHEAD_NO_SANDBOX").is_none(),
                ..ServiceSettings::default()
            },
            Arc::new(move |ev| emit_service_event(&bus, ev)),
        ))
    };
    let sockets = Arc::new(SocketChardevs::new(services.clone()));
    let mut chardevs = setup::Chardevs::open(cfg, &objects, &sockets)?;
    let vm_cfg = setup::vm_config(cfg, &mut chardevs, &sockets)?;
    let vm = crate::vm::Vm::new(vm_cfg).context("cannot create the VM")?;
    let devices = crate::devices::platform::attach(&vm, setup::drives(cfg)?)
        .context("cannot attach devices")?;

    let control = Arc::new(Control::new(
        cfg,
        vm,
        devices,
        objects,
        chardevs.infos(),
        sockets.clone(),
        bus.clone(),
        exit_tx.clone(),
    ));
    forward_vm_events(&control, &bus, exit_tx.clone());
    watch_authz_files(&control);

    let qmp_listeners = chardevs.take_monitor_listeners(cfg, crate::cli::MonitorMode::Control)?;
    let qmp = if qmp_listeners.is_empty() {
        None
    } else {
        Some(
            Server::start_with(
                qmp_listeners,
                control.clone(),
                bus.clone(),
                Registry::standard(),
            )
            .context("cannot start the QMP server")?,
        )
    };
    let hmp = setup::start_hmp(cfg, &mut chardevs, control.clone(), exit_tx.clone())?;

    if let Some(p) = &cfg.pidfile {
        setup::write_pidfile(p)?;
    }
    if !cfg.start_paused {
        control.start_vcpus().context("cannot start the vCPUs")?;
    }
    if let Some(d) = daemon.take() {
        d.ready();
    }
    setup::forward_signals(signals, exit_tx.clone());
    drop(exit_tx);

    let req = exit_rx.recv().unwrap_or_else(|_| {
        tracing::error!("every exit-request sender is gone; shutting down");
        ExitRequest::Quit
    });
    tracing::info!(?req, "supervisor exiting");
    let code = match &req {
        ExitRequest::Quit | ExitRequest::GuestShutdown => 0,
        ExitRequest::GuestExit(c) => *c as i32,
        ExitRequest::Signal(_) => {
            bus.shutdown(ShutdownCause::HostSignal);
            0
        }
        ExitRequest::InternalError(_) => 1,
    };

    // Teardown in reverse order.
    control.vm().shutdown(match req {
        ExitRequest::Signal(_) => "host-signal",
        ExitRequest::Quit => "host-qmp-quit",
        _ => "guest-shutdown",
    });
    sockets.stop_all();
    services.shutdown_all();
    if let Some(q) = qmp {
        q.shutdown();
    }
    if let Some(h) = hmp {
        h.shutdown();
    }
    drop(chardevs);
    crate::chardev::stdio::restore_terminal();
    if let Some(p) = &cfg.pidfile {
        let _ = std::fs::remove_file(p);
    }
    Ok(code)
}

/// How often `authz-listfile` files with `refresh=on` are checked.
const AUTHZ_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// Polls `authz-listfile` files (`refresh=on`; a `stat` each per second)
/// and pushes changed rules to the services using them. Ends when the
/// [`Control`] is gone.
fn watch_authz_files(control: &Arc<Control>) {
    let weak = Arc::downgrade(control);
    let _ = std::thread::Builder::new()
        .name("authz-refresh".into())
        .spawn(move || loop {
            std::thread::sleep(AUTHZ_POLL);
            match weak.upgrade() {
                Some(c) => c.refresh_authz_files(),
                None => return,
            }
        });
}

/// Guest-initiated VM events become QMP events and exit requests. Host
/// initiated ones (`stop`, `cont`, `system_reset`, `quit`) are emitted by
/// [`Control`] synchronously, before the command's return, as QEMU does.
fn forward_vm_events(control: &Arc<Control>, bus: &EventBus, exit: mpsc::Sender<ExitRequest>) {
    let rx = control.vm().subscribe();
    let bus = bus.clone();
    let _ = std::thread::Builder::new()
        .name("vm-events".into())
        .spawn(move || {
            for ev in rx {
                match ev {
                    VmEvent::Reset { reason } if reason.starts_with("guest") => {
                        bus.reset(ShutdownCause::GuestReset)
                    }
                    VmEvent::Shutdown { reason } if reason.starts_with("guest") => {
                        bus.shutdown(ShutdownCause::GuestShutdown);
                        let _ = exit.send(ExitRequest::GuestShutdown);
                    }
                    VmEvent::GuestExit(code) => {
                        bus.shutdown(ShutdownCause::GuestShutdown);
                        let _ = exit.send(ExitRequest::GuestExit(code));
                    }
                    VmEvent::InternalError(msg) => {
                        tracing::error!(%msg, "VM internal error; vCPUs stopped");
                        bus.stop();
                    }
                    _ => {}
                }
            }
        });
}

fn emit_service_event(bus: &EventBus, ev: ServiceEvent) {
    match ev {
        ServiceEvent::Started {
            name,
            kind,
            pid,
            restarts,
        } => bus.emit(
            "SERVICE_STARTED",
            Some(serde_json::json!({
                "service": name, "kind": kind.argv0(), "pid": pid, "restarts": restarts,
            })),
        ),
        ServiceEvent::Exited {
            name,
            kind,
            pid,
            status,
            reason,
            restart_in,
        } => {
            let mut data = serde_json::json!({
                "service": name, "kind": kind.argv0(), "pid": pid,
                "reason": reason, "status": status.to_string(),
                "restart": restart_in.is_some(),
            });
            if let Some(sig) = status.signal() {
                data["signal"] = sig.into();
            }
            if let Some(d) = restart_in {
                data["restart-delay-ms"] = (d.as_millis() as u64).into();
            }
            bus.emit("SERVICE_EXITED", Some(data));
        }
    }
}

/// The arguments `cargo run --release` (no arguments) turns into: the
/// built-in guest with its serial console on stdio and a QMP socket in the
/// runtime directory, whose path is printed.
pub fn demo_args() -> (Vec<std::ffi::OsString>, PathBuf) {
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let qmp = dir.join(format!("bulkhead-demo-{}.qmp", std::process::id()));
    let args = [
        "-name",
        "bulkhead-demo",
        "-m",
        "256M",
        "-serial",
        "stdio",
        "-qmp",
    ]
    .iter()
    .map(Into::into)
    .chain(std::iter::once(
        format!("unix:{},server=on,wait=off", qmp.display()).into(),
    ))
    .collect();
    (args, qmp)
}
