//! `svc-chardev`: the sandboxed socket character-device service (TCP/unix,
//! server/client, reconnect) that terminates TLS for guest serial ports.
//!
//! One process per socket chardev (`docs/architecture.md`). Threads:
//!
//! ```text
//!   main thread (IPC)                      connection thread
//!   recv CoreToChardev ──Data──► outq ───► relay: poll(client fd, wake)
//!        │  Credit / DisconnectClient        client ──Data──► core (SendCredit)
//!        │  UpdateAuthz ──Shared::authz──►  (read at each accept)
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

fn run(ch: Arc<Channel>, mut startup: ChardevStartup) -> ExitCode {
    let id = startup.id.clone();
    let tls = conn::TlsSetup::from_startup(&startup);
    // The rustls configuration now holds the key; the raw key bytes from
    // the startup message are zeroized here, not at service exit.
    drop(startup.tls.take());
    let tls = match tls {
        Ok(t) => t,
        Err(reason) => {
            tracing::error!(chardev = %id, %reason, "cannot start");
            let _ = ch.send(&ChardevToCore::StartupFailed { reason });
            return ExitCode::from(1);
        }
    };
    let authz = startup.authz.as_ref().map(creds::wire::authz_from_wire);
    let shared = match Shared::new(ch.clone(), authz) {
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

#[cfg(test)]
mod tests {
    //! The service in-process (no confinement), with the test as the core.

    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::thread::JoinHandle;
    use std::time::Duration;

    use ipc::chardev::{ChardevRole, ChardevStartup, ChardevToCore, CoreToChardev};
    use ipc::{BrokerError, BrokerReply, Channel, Fd, SocketAddress};

    use super::*;

    const T: Duration = Duration::from_secs(10);

    fn start(role: ChardevRole, tls: Option<ipc::TlsMaterial>) -> (Channel, JoinHandle<ExitCode>) {
        let (core, svc) = Channel::pair().unwrap();
        let startup = ChardevStartup {
            id: "t".into(),
            role,
            tls,
            authz: None,
        };
        let t = std::thread::spawn(move || run(Arc::new(svc), startup));
        (core, t)
    }

    /// The next message that is not a `Credit`.
    fn next(core: &Channel) -> ChardevToCore {
        loop {
            match core.recv_timeout::<ChardevToCore>(T).unwrap() {
                Some(ChardevToCore::Credit(_)) => continue,
                Some(m) => return m,
                None => panic!("no message from the service"),
            }
        }
    }

    fn server() -> (Channel, JoinHandle<ExitCode>, u16) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let (core, t) = start(
            ChardevRole::Server {
                listener: Fd::new(l),
                wait: false,
            },
            None,
        );
        assert_eq!(next(&core), ChardevToCore::Ready);
        (core, t, port)
    }

    #[test]
    fn relays_both_ways_and_drops_the_client_on_request() {
        let (core, t, port) = server();
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(T)).unwrap();
        match next(&core) {
            ChardevToCore::ClientConnected { peer, dn } => {
                assert!(peer.starts_with("127.0.0.1:"), "{peer}");
                assert_eq!(dn, None);
            }
            other => panic!("{other:?}"),
        }
        core.send(&CoreToChardev::Data(b"to client".to_vec().into()))
            .unwrap();
        let mut buf = [0u8; 9];
        c.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"to client");
        c.write_all(b"to guest").unwrap();
        assert_eq!(
            next(&core),
            ChardevToCore::Data(b"to guest".to_vec().into())
        );
        core.send(&CoreToChardev::DisconnectClient).unwrap();
        assert_eq!(next(&core), ChardevToCore::ClientDisconnected);
        assert_eq!(c.read(&mut buf).unwrap_or(0), 0, "client sees EOF");
        // The next client is served.
        let _c2 = TcpStream::connect(("127.0.0.1", port)).unwrap();
        assert!(matches!(next(&core), ChardevToCore::ClientConnected { .. }));
        core.send(&CoreToChardev::Shutdown).unwrap();
        assert_eq!(t.join().unwrap(), ExitCode::SUCCESS);
    }

    #[test]
    fn a_core_breaking_flow_control_ends_the_service() {
        let (core, t, _port) = server();
        // The service already holds a full window: more credit is a violation.
        core.send(&CoreToChardev::Credit(1)).unwrap();
        assert_eq!(t.join().unwrap(), ExitCode::from(1));
    }

    #[test]
    fn client_mode_asks_the_broker_and_reports_a_refusal() {
        let addr = SocketAddress::Tcp {
            host: "127.0.0.1".into(),
            port: 9,
        };
        let (core, t) = start(
            ChardevRole::Client {
                addr: addr.clone(),
                reconnect_secs: 0,
            },
            None,
        );
        let ChardevToCore::Broker(req) = next(&core) else {
            panic!("expected a broker request")
        };
        assert_eq!(req.op, ipc::BrokerOp::Connect { addr });
        core.send(&CoreToChardev::BrokerReply(BrokerReply {
            id: req.id,
            result: Err(BrokerError {
                errno: libc::ECONNREFUSED,
                message: "connect 127.0.0.1:9: Connection refused".into(),
            }),
        }))
        .unwrap();
        match next(&core) {
            ChardevToCore::StartupFailed { reason } => {
                assert!(reason.contains("Connection refused"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        drop(core);
        assert_eq!(t.join().unwrap(), ExitCode::SUCCESS);
    }

    #[test]
    fn credentials_for_the_wrong_endpoint_fail_startup() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let tls = ipc::TlsMaterial {
            endpoint: ipc::TlsEndpoint::Client,
            verify_peer: true,
            cert_chain: vec![],
            private_key: None,
            ca_certs: vec![],
            crls: vec![],
            server_name: None,
        };
        let (core, t) = start(
            ChardevRole::Server {
                listener: Fd::new(l),
                wait: false,
            },
            Some(tls),
        );
        assert_eq!(
            next(&core),
            ChardevToCore::StartupFailed {
                reason: "Expecting TLS credentials with a server endpoint".into()
            }
        );
        assert_eq!(t.join().unwrap(), ExitCode::from(1));
    }
}
