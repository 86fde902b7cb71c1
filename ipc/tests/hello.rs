//! The handshake: success, and version / kind mismatches reported as clean
//! errors on both sides.

mod common;

use std::os::fd::AsRawFd;
use std::thread;
use std::time::Duration;

use ipc::{
    hello_core, hello_core_timeout, hello_service, hello_service_timeout, Channel, Hello,
    HelloReply, IpcError, ServiceKind, PROTOCOL_VERSION,
};

#[test]
fn matching_kind_and_version_succeeds() {
    for kind in ServiceKind::ALL {
        let (core, svc) = Channel::pair().unwrap();
        let t = thread::spawn(move || hello_service(&svc, kind));
        hello_core(&core, kind).unwrap();
        t.join().unwrap().unwrap();
    }
}

#[test]
fn kind_mismatch_is_an_error_on_both_sides() {
    let (core, svc) = Channel::pair().unwrap();
    let t = thread::spawn(move || hello_service(&svc, ServiceKind::Vnc));
    let core_err = hello_core(&core, ServiceKind::Nbd).unwrap_err();
    let svc_err = t.join().unwrap().unwrap_err();
    for e in [core_err, svc_err] {
        match e {
            IpcError::KindMismatch { expected, got } => {
                assert_eq!((expected, got), (ServiceKind::Nbd, ServiceKind::Vnc));
                assert!(e.to_string().contains("expected a nbd service"), "{e}");
            }
            other => panic!("expected KindMismatch, got {other:?}"),
        }
    }
}

#[test]
fn newer_service_version_is_an_error_on_both_sides() {
    let (core, svc) = Channel::pair().unwrap();
    // A future service whose Hello has a different layout after the version.
    let t = thread::spawn(move || {
        let mut bytes = ipc::to_bytes(&(PROTOCOL_VERSION + 1)).unwrap();
        bytes.extend_from_slice(&[0xff, 0xff, 0x01]);
        common::raw_send(svc.as_raw_fd(), &bytes, &[]).unwrap();
        svc.recv::<HelloReply>().unwrap()
    });
    match hello_core(&core, ServiceKind::Chardev) {
        Err(IpcError::VersionMismatch { local, peer }) => {
            assert_eq!((local, peer), (PROTOCOL_VERSION, PROTOCOL_VERSION + 1));
        }
        other => panic!("expected VersionMismatch, got {other:?}"),
    }
    let reply = t.join().unwrap();
    assert!(!reply.accepted);
    assert_eq!(reply.protocol_version, PROTOCOL_VERSION);
}

#[test]
fn older_core_version_is_an_error_for_the_service() {
    let (core, svc) = Channel::pair().unwrap();
    let t = thread::spawn(move || hello_service(&svc, ServiceKind::Idle));
    let hello: Hello = core.recv().unwrap();
    assert_eq!(hello.protocol_version, PROTOCOL_VERSION);
    core.send(&HelloReply {
        protocol_version: PROTOCOL_VERSION + 7,
        expected: ServiceKind::Idle,
        accepted: false,
    })
    .unwrap();
    match t.join().unwrap() {
        Err(IpcError::VersionMismatch { local, peer }) => {
            assert_eq!((local, peer), (PROTOCOL_VERSION, PROTOCOL_VERSION + 7));
        }
        other => panic!("expected VersionMismatch, got {other:?}"),
    }
}

#[test]
fn unknown_service_kind_and_garbage_are_handshake_errors() {
    for bytes in [
        vec![PROTOCOL_VERSION as u8, 200],
        vec![],
        vec![0xff; 12],
        vec![PROTOCOL_VERSION as u8, 0, 0],
    ] {
        let (core, svc) = Channel::pair().unwrap();
        if bytes.is_empty() {
            // A zero-length datagram reads as EOF.
            drop(svc);
            assert!(hello_core(&core, ServiceKind::Vnc)
                .unwrap_err()
                .is_disconnected());
            continue;
        }
        common::raw_send(svc.as_raw_fd(), &bytes, &[]).unwrap();
        let err = hello_core(&core, ServiceKind::Vnc).unwrap_err();
        assert!(
            matches!(
                err,
                IpcError::Handshake(_) | IpcError::VersionMismatch { .. }
            ),
            "{bytes:?}: {err:?}"
        );
        if let Ok(reply) = svc.recv_timeout::<HelloReply>(Duration::from_secs(1)) {
            assert!(!reply.unwrap().accepted);
        }
    }
}

#[test]
fn silent_peer_times_out() {
    let (core, svc) = Channel::pair().unwrap();
    assert!(matches!(
        hello_core_timeout(&core, ServiceKind::Vnc, Duration::from_millis(50)),
        Err(IpcError::Timeout)
    ));
    // The service side: the core never answers.
    assert!(matches!(
        hello_service_timeout(&svc, ServiceKind::Vnc, Duration::from_millis(50)),
        Err(IpcError::Timeout)
    ));
}

#[test]
fn service_kind_names_parse_back() {
    for kind in ServiceKind::ALL {
        assert_eq!(kind.as_str().parse::<ServiceKind>().unwrap(), kind);
    }
    assert!("bogus".parse::<ServiceKind>().is_err());
}
