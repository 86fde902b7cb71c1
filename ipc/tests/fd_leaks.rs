//! No fd leaks on any path, measured by counting `/proc/self/fd`.
//!
//! This binary holds a single test so that no other test thread opens or
//! closes fds while it counts.

mod common;

use std::os::fd::{AsRawFd, OwnedFd};

use common::*;
use ipc::broker::BrokerReply;
use ipc::chardev::{ChardevToCore, CoreToChardev};
use ipc::idle::{CoreToIdle, IdleToCore};
use ipc::{Channel, Fd, IpcError, ServiceKind, MAX_FDS, MAX_MESSAGE_SIZE};

/// Runs `f` and checks the process has exactly as many fds afterwards.
fn no_leak(what: &str, f: impl FnOnce()) {
    let before = open_fds();
    f();
    let after = open_fds();
    assert_eq!(before, after, "{what}: {before} fds before, {after} after");
}

fn raws(fds: &[OwnedFd]) -> Vec<i32> {
    fds.iter().map(|f| f.as_raw_fd()).collect()
}

#[test]
fn no_fd_leaks_on_any_path() {
    // Warm up thread-locals and lazily opened things outside the counts.
    {
        let (a, b) = Channel::pair().unwrap();
        a.send(&IdleToCore::Ready).unwrap();
        let _: IdleToCore = b.recv().unwrap();
    }

    no_leak("channel pair", || {
        let _pair = Channel::pair().unwrap();
    });

    no_leak("fd round trip", || {
        let (a, b) = Channel::pair().unwrap();
        let (r, w) = pipe();
        a.send(&CoreToIdle::BrokerReply(BrokerReply {
            id: 1,
            result: Ok(Fd::from(w)),
        }))
        .unwrap();
        let got: CoreToIdle = b.recv().unwrap();
        drop(got);
        drop(r);
    });

    no_leak("oversize datagram with fds", || {
        let (a, b) = Channel::pair().unwrap();
        let fds = some_fds(3);
        raw_send(a.as_raw_fd(), &vec![1; MAX_MESSAGE_SIZE + 100], &raws(&fds)).unwrap();
        drop(fds);
        assert!(matches!(
            b.recv::<IdleToCore>(),
            Err(IpcError::Truncated { .. })
        ));
    });

    no_leak("too many fds (MSG_CTRUNC)", || {
        let (a, b) = Channel::pair().unwrap();
        let fds = some_fds(MAX_FDS + 5);
        raw_send(a.as_raw_fd(), &[0], &raws(&fds)).unwrap();
        drop(fds);
        assert!(matches!(
            b.recv::<IdleToCore>(),
            Err(IpcError::ControlTruncated { .. })
        ));
    });

    no_leak("garbage with fds", || {
        let (a, b) = Channel::pair().unwrap();
        let fds = some_fds(4);
        raw_send(a.as_raw_fd(), &[0xee, 1, 2, 3], &raws(&fds)).unwrap();
        drop(fds);
        assert!(b.recv::<ChardevToCore>().is_err());
    });

    no_leak("missing and duplicate fd index", || {
        let (a, b) = Channel::pair().unwrap();
        let fds = some_fds(2);
        raw_send(a.as_raw_fd(), &[4, 1, 0, 5], &raws(&fds)).unwrap();
        assert!(matches!(
            b.recv::<CoreToIdle>(),
            Err(IpcError::MissingFd { .. })
        ));
        raw_send(a.as_raw_fd(), &[3, 0, 0, 1], &raws(&fds)).unwrap();
        assert!(matches!(
            b.recv::<Vec<Fd>>(),
            Err(IpcError::DuplicateFd { .. })
        ));
    });

    no_leak("fd taken, then decode fails later in the message", || {
        let (a, b) = Channel::pair().unwrap();
        let fds = some_fds(2);
        // CoreToChardev::Startup { id: "x", role: Server { listener: #0, <cut>
        raw_send(a.as_raw_fd(), &[0, 1, b'x', 0, 0], &raws(&fds)).unwrap();
        assert!(matches!(
            b.recv::<CoreToChardev>(),
            Err(IpcError::Decode(_))
        ));
    });

    no_leak("unexpected fds with a valid message", || {
        let (a, b) = Channel::pair().unwrap();
        let fds = some_fds(MAX_FDS);
        let bytes = ipc::to_bytes(&ChardevToCore::Pong(1)).unwrap();
        raw_send(a.as_raw_fd(), &bytes, &raws(&fds)).unwrap();
        assert_eq!(b.recv::<ChardevToCore>().unwrap(), ChardevToCore::Pong(1));
    });

    no_leak("hello with fds attached", || {
        let (core, svc) = Channel::pair().unwrap();
        let fds = some_fds(3);
        let bytes = ipc::to_bytes(&ipc::Hello {
            protocol_version: ipc::PROTOCOL_VERSION,
            service: ServiceKind::Idle,
        })
        .unwrap();
        raw_send(svc.as_raw_fd(), &bytes, &raws(&fds)).unwrap();
        ipc::hello_core(&core, ServiceKind::Idle).unwrap();
    });

    no_leak("receiver dies with fds in flight", || {
        let (a, b) = Channel::pair().unwrap();
        let fds = some_fds(3);
        raw_send(a.as_raw_fd(), &[0], &raws(&fds)).unwrap();
        drop(fds);
        drop(b);
        assert!(a.send(&IdleToCore::Ready).unwrap_err().is_disconnected());
    });

    no_leak("try_recv and recv_timeout paths", || {
        let (a, b) = Channel::pair().unwrap();
        assert!(b.try_recv::<IdleToCore>().unwrap().is_none());
        let fds = some_fds(2);
        raw_send(a.as_raw_fd(), &[0xfe], &raws(&fds)).unwrap();
        assert!(b
            .recv_timeout::<IdleToCore>(std::time::Duration::from_secs(1))
            .is_err());
    });

    no_leak("from_bytes on random input with random fds", || {
        // A small deterministic generator: no extra dependency.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..2000 {
            let len = (next() % 64) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let nfds = (next() % 4) as usize;
            let _ = ipc::from_bytes::<CoreToChardev>(&bytes, some_fds(nfds));
            let _ = ipc::from_bytes::<Vec<Fd>>(&bytes, some_fds(nfds));
        }
    });
}
