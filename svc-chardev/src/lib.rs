//! `svc-chardev`: the sandboxed socket character-device service (TCP/unix,
//! server/client, reconnect) that terminates TLS for guest serial ports.
//!
//! One process per socket chardev (`docs/architecture.md`). Threads:
//!
//! ```text
//!   main thread (IPC)                      connection thread
//!   recv CoreToChardev ──Data──► outq ───► relay: poll(client fd, wake)
//!        │  Credit / DisconnectClient        client ──Data──► core (SendCredit)
//!        │  BrokerReply ──mpsc──────────►  client role: Broker Connect, reconnect
//!        └─ Shutdown / IPC closed: exit     server role: accept, TLS, authz, relay
//! ```
//! Both directions are credit-bounded ([`ipc::flow`]): at most
//! `STREAM_WINDOW` bytes from the core wait in `outq`; bytes for the core are
//! read from the client only while the core has granted credit, so a slow
//! guest back-pressures the client through TCP and a slow client makes the
//! core drop guest output (see `vmm/src/chardev/socket.rs`).
//!
//! Bytes from the core while no client is connected are dropped at once and
//! their credit returned (QEMU's `tcp_chr_write` also discards them).

mod conn;
mod peer;
mod relay;
mod shared;

use std::process::ExitCode;
use std::sync::Arc;

use ipc::chardev::{ChardevStartup, ChardevToCore, CoreToChardev};
use ipc::Channel;
use sandbox::ServiceKind;

use shared::Shared;

/// The service's entry point (`argv[0] = svc-chardev`), args without argv[0].
pub fn main(args: &[String]) -> ExitCode {
    let ch = match svc_runtime::start(ServiceKind::Chardev, args) {
        Ok(ch) => ch,
        Err(e) => {
            eprintln!("svc-chardev: {e}");
            return ExitCode::from(1);
        }
    };
    let startup = match ch.recv::<CoreToChardev>() {
        Ok(CoreToChardev::Startup(s)) => s,
        Ok(other) => {
            tracing::error!(msg = ?other, "expected Startup first");
            return ExitCode::from(1);
        }
        Err(e) if e.is_disconnected() => return ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "receiving Startup");
            return ExitCode::from(1);
        }
    };
    run(Arc::new(ch), startup)
}

fn run(ch: Arc<Channel>, startup: ChardevStartup) -> ExitCode {
    let id = startup.id.clone();
    let tls = match conn::TlsSetup::from_startup(&startup) {
        Ok(t) => t,
        Err(reason) => {
            tracing::error!(chardev = %id, %reason, "cannot start");
            let _ = ch.send(&ChardevToCore::StartupFailed { reason });
            return ExitCode::from(1);
        }
    };
    let shared = match Shared::new(ch.clone()) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            let reason = format!("eventfd: {e}");
            let _ = ch.send(&ChardevToCore::StartupFailed { reason });
            return ExitCode::from(1);
        }
    };
    let conn = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("chardev-conn".into())
            .spawn(move || conn::run(shared, startup.role, tls, &id))
    };
    if let Err(e) = conn {
        let _ = ch.send(&ChardevToCore::StartupFailed {
            reason: format!("thread: {e}"),
        });
        return ExitCode::from(1);
    }
    match shared::serve_ipc(&shared) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "svc-chardev failed");
            ExitCode::from(1)
        }
    }
}
