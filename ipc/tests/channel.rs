//! Channel behaviour: fd passing, size limits, malformed input, dead peers,
//! timeouts, sharing between threads.

mod common;

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use ipc::broker::{BrokerError, BrokerReply};
use ipc::chardev::{ChardevRole, ChardevStartup, ChardevToCore, CoreToChardev};
use ipc::idle::{CoreToIdle, IdleToCore};
use ipc::{Bytes, Channel, Fd, IpcError, SocketAddress, MAX_FDS, MAX_MESSAGE_SIZE};

#[test]
fn passed_fd_arrives_usable_and_cloexec() {
    let (core, svc) = Channel::pair().unwrap();
    let (r, w) = pipe();
    core.send(&CoreToChardev::BrokerReply(BrokerReply {
        id: 42,
        result: Ok(Fd::from(w)),
    }))
    .unwrap();
    let CoreToChardev::BrokerReply(BrokerReply { id, result }) = svc.recv().unwrap() else {
        panic!("wrong variant")
    };
    assert_eq!(id, 42);
    let fd = result.unwrap();
    assert!(is_cloexec(&fd), "received fds must be close-on-exec");
    assert_pipe_works(File::from(fd), r);
}

#[test]
fn fd_inside_nested_startup_arrives_usable() {
    let (core, svc) = Channel::pair().unwrap();
    let (r, w) = pipe();
    core.send(&CoreToChardev::Startup(ChardevStartup {
        id: "serial0".into(),
        role: ChardevRole::Server {
            listener: Fd::from(w),
            wait: false,
        },
        tls: None,
        authz: None,
    }))
    .unwrap();
    let CoreToChardev::Startup(s) = svc.recv().unwrap() else {
        panic!("wrong variant")
    };
    let ChardevRole::Server { listener, .. } = s.role else {
        panic!("wrong role")
    };
    assert_pipe_works(File::from(listener), r);
}

#[test]
fn oversize_message_is_refused_on_send() {
    let (core, svc) = Channel::pair().unwrap();
    let big = CoreToChardev::Data(Bytes(vec![7; MAX_MESSAGE_SIZE]));
    match core.send(&big) {
        Err(IpcError::TooLarge { size, max }) => {
            assert!(size > MAX_MESSAGE_SIZE);
            assert_eq!(max, MAX_MESSAGE_SIZE);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // Nothing was sent; the channel still works.
    core.send(&CoreToChardev::Ping(1)).unwrap();
    assert_eq!(svc.recv::<CoreToChardev>().unwrap(), CoreToChardev::Ping(1));
}

#[test]
fn largest_allowed_message_passes() {
    let (core, svc) = Channel::pair().unwrap();
    // 1 tag byte + 3 varint length bytes + payload = MAX_MESSAGE_SIZE.
    let msg = ChardevToCore::Data(Bytes(vec![1; MAX_MESSAGE_SIZE - 4]));
    assert_eq!(ipc::to_bytes(&msg).unwrap().len(), MAX_MESSAGE_SIZE);
    svc.send(&msg).unwrap();
    assert_eq!(core.recv::<ChardevToCore>().unwrap(), msg);
}

#[test]
fn oversize_datagram_is_a_clean_error_on_receive() {
    let (core, svc) = Channel::pair().unwrap();
    let fds = some_fds(3);
    let raws: Vec<_> = fds.iter().map(|f| f.as_raw_fd()).collect();
    raw_send(svc.as_raw_fd(), &vec![0u8; MAX_MESSAGE_SIZE + 1], &raws).unwrap();
    drop(fds);
    match core.recv::<ChardevToCore>() {
        Err(IpcError::Truncated { size, max }) => {
            assert_eq!(size, MAX_MESSAGE_SIZE + 1);
            assert_eq!(max, MAX_MESSAGE_SIZE);
        }
        other => panic!("expected Truncated, got {other:?}"),
    }
    // The next message is unaffected.
    svc.send(&ChardevToCore::Ready).unwrap();
    assert_eq!(core.recv::<ChardevToCore>().unwrap(), ChardevToCore::Ready);
}

#[test]
fn too_many_fds_is_a_clean_error_on_receive() {
    let (core, svc) = Channel::pair().unwrap();
    let fds = some_fds(MAX_FDS + 1);
    let raws: Vec<_> = fds.iter().map(|f| f.as_raw_fd()).collect();
    raw_send(
        svc.as_raw_fd(),
        &ipc::to_bytes(&ChardevToCore::Ready).unwrap(),
        &raws,
    )
    .unwrap();
    match core.recv::<ChardevToCore>() {
        Err(IpcError::ControlTruncated { max }) => assert_eq!(max, MAX_FDS),
        other => panic!("expected ControlTruncated, got {other:?}"),
    }
}

#[test]
fn garbage_truncated_and_trailing_bytes_are_clean_errors() {
    let (core, svc) = Channel::pair().unwrap();
    // Unknown variant.
    raw_send(svc.as_raw_fd(), &[0xee], &[]).unwrap();
    assert!(matches!(
        core.recv::<ChardevToCore>(),
        Err(IpcError::Decode(_))
    ));
    // Truncated: Data claiming 100 bytes, carrying 3.
    raw_send(svc.as_raw_fd(), &[4, 100, 1, 2, 3], &[]).unwrap();
    assert!(matches!(
        core.recv::<ChardevToCore>(),
        Err(IpcError::Decode(_))
    ));
    // Length claiming 2^63 bytes must not allocate or panic.
    let mut huge = vec![4u8];
    huge.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
    raw_send(svc.as_raw_fd(), &huge, &[]).unwrap();
    assert!(matches!(
        core.recv::<ChardevToCore>(),
        Err(IpcError::Decode(_))
    ));
    // Bad UTF-8 in a String.
    raw_send(svc.as_raw_fd(), &[1, 2, 0xff, 0xfe], &[]).unwrap();
    assert!(matches!(
        core.recv::<ChardevToCore>(),
        Err(IpcError::Decode(_))
    ));
    // A valid message followed by extra bytes.
    let mut extra = ipc::to_bytes(&ChardevToCore::Pong(5)).unwrap();
    extra.push(0);
    raw_send(svc.as_raw_fd(), &extra, &[]).unwrap();
    assert!(matches!(
        core.recv::<ChardevToCore>(),
        Err(IpcError::TrailingBytes(1))
    ));
    // Still usable afterwards.
    svc.send(&ChardevToCore::Pong(6)).unwrap();
    assert_eq!(
        core.recv::<ChardevToCore>().unwrap(),
        ChardevToCore::Pong(6)
    );
}

/// `BrokerReply { id: 1, result: Ok(Fd #index) }` as the core would encode it.
fn broker_reply_bytes(index: u8) -> Vec<u8> {
    // CoreToIdle::BrokerReply = variant 4; id varint 1; Ok = 0; fd index.
    vec![4, 1, 0, index]
}

#[test]
fn message_referencing_missing_fd_is_an_error() {
    let (core, svc) = Channel::pair().unwrap();
    let fds = some_fds(1);
    raw_send(
        core.as_raw_fd(),
        &broker_reply_bytes(1),
        &[fds[0].as_raw_fd()],
    )
    .unwrap();
    match svc.recv::<CoreToIdle>() {
        Err(IpcError::MissingFd { index, attached }) => {
            assert_eq!((index, attached), (1, 1));
        }
        other => panic!("expected MissingFd, got {other:?}"),
    }
    raw_send(core.as_raw_fd(), &broker_reply_bytes(0), &[]).unwrap();
    assert!(matches!(
        svc.recv::<CoreToIdle>(),
        Err(IpcError::MissingFd {
            index: 0,
            attached: 0
        })
    ));
    // Index 0 with one fd attached works (the encoding above is right).
    raw_send(
        core.as_raw_fd(),
        &broker_reply_bytes(0),
        &[fds[0].as_raw_fd()],
    )
    .unwrap();
    assert!(matches!(
        svc.recv::<CoreToIdle>(),
        Ok(CoreToIdle::BrokerReply(BrokerReply {
            id: 1,
            result: Ok(_)
        }))
    ));
}

#[test]
fn message_referencing_the_same_fd_twice_is_an_error() {
    // ChardevStartup with a Server role whose listener is index 0, inside a
    // message type with two fds would be needed for a real duplicate; a
    // Vec of Fds does it directly.
    let (a, b) = Channel::pair().unwrap();
    let fds = some_fds(2);
    // Vec<Fd> of length 2: both entries index 0.
    raw_send(
        a.as_raw_fd(),
        &[2, 0, 0],
        &[fds[0].as_raw_fd(), fds[1].as_raw_fd()],
    )
    .unwrap();
    assert!(matches!(
        b.recv::<Vec<Fd>>(),
        Err(IpcError::DuplicateFd { index: 0 })
    ));
    raw_send(
        a.as_raw_fd(),
        &[2, 1, 0],
        &[fds[0].as_raw_fd(), fds[1].as_raw_fd()],
    )
    .unwrap();
    let got = b.recv::<Vec<Fd>>().unwrap();
    assert_eq!(got.len(), 2);
    assert!(got[0] == Fd::new(fds[1].try_clone().unwrap()));
    assert!(got[1] == Fd::new(fds[0].try_clone().unwrap()));
}

#[test]
fn unexpected_fds_are_closed_and_message_still_decodes() {
    let (core, svc) = Channel::pair().unwrap();
    let (r, w) = pipe();
    raw_send(
        svc.as_raw_fd(),
        &ipc::to_bytes(&IdleToCore::Pong(9)).unwrap(),
        &[w.as_raw_fd()],
    )
    .unwrap();
    drop(w);
    assert_eq!(core.recv::<IdleToCore>().unwrap(), IdleToCore::Pong(9));
    // Had the received duplicate of the write end leaked, this read would
    // fail with EWOULDBLOCK instead of seeing EOF.
    set_nonblocking(&r);
    let mut r = r;
    let mut buf = Vec::new();
    std::io::Read::read_to_end(&mut r, &mut buf).unwrap();
    assert!(buf.is_empty());
}

#[test]
fn dead_peer_is_disconnected_for_recv_send_and_timeouts() {
    let (core, svc) = Channel::pair().unwrap();
    svc.send(&IdleToCore::Ready).unwrap();
    drop(svc);
    // Queued data is still delivered, then EOF.
    assert_eq!(core.recv::<IdleToCore>().unwrap(), IdleToCore::Ready);
    assert!(core.recv::<IdleToCore>().unwrap_err().is_disconnected());
    assert!(core
        .recv_timeout::<IdleToCore>(Duration::from_secs(5))
        .unwrap_err()
        .is_disconnected());
    assert!(core.try_recv::<IdleToCore>().unwrap_err().is_disconnected());
    // No SIGPIPE (the test process would die), a clean error instead.
    assert!(core
        .send(&CoreToIdle::Shutdown)
        .unwrap_err()
        .is_disconnected());
    assert!(core
        .send_timeout(&CoreToIdle::Shutdown, Duration::from_secs(1))
        .unwrap_err()
        .is_disconnected());
}

#[test]
fn blocked_recv_wakes_up_when_the_peer_dies() {
    let (core, svc) = Channel::pair().unwrap();
    let t = std::thread::spawn(move || core.recv::<IdleToCore>());
    std::thread::sleep(Duration::from_millis(50));
    drop(svc);
    assert!(t.join().unwrap().unwrap_err().is_disconnected());
}

#[test]
fn recv_timeout_and_try_recv() {
    let (core, svc) = Channel::pair().unwrap();
    assert_eq!(core.try_recv::<IdleToCore>().unwrap(), None);
    let start = Instant::now();
    assert_eq!(
        core.recv_timeout::<IdleToCore>(Duration::from_millis(100))
            .unwrap(),
        None
    );
    assert!(start.elapsed() >= Duration::from_millis(100));
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        svc.send(&IdleToCore::Pong(3)).unwrap();
        svc
    });
    assert_eq!(
        core.recv_timeout::<IdleToCore>(Duration::from_secs(10))
            .unwrap(),
        Some(IdleToCore::Pong(3))
    );
    let svc = t.join().unwrap();
    svc.send(&IdleToCore::Pong(4)).unwrap();
    assert_eq!(
        core.try_recv::<IdleToCore>().unwrap(),
        Some(IdleToCore::Pong(4))
    );
}

#[test]
fn send_timeout_gives_up_when_the_peer_does_not_read() {
    let (core, _svc) = Channel::pair().unwrap();
    let msg = CoreToChardev::Data(Bytes(vec![0; 16 * 1024]));
    let mut sent = 0;
    loop {
        match core.send_timeout(&msg, Duration::from_millis(20)) {
            Ok(()) => sent += 1,
            Err(IpcError::Timeout) => break,
            Err(e) => panic!("unexpected error {e}"),
        }
        assert!(sent < 100_000, "the socket never filled up");
    }
    assert!(sent > 0);
}

#[test]
fn channel_is_shared_between_threads() {
    let (a, b) = Channel::pair().unwrap();
    let a = Arc::new(a);
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let a = Arc::clone(&a);
            std::thread::spawn(move || {
                for i in 0..500u64 {
                    a.send(&IdleToCore::Pong(t << 32 | i)).unwrap();
                }
            })
        })
        .collect();
    let mut seen = vec![0u64; 4];
    for _ in 0..2000 {
        let IdleToCore::Pong(v) = b.recv().unwrap() else {
            panic!("wrong variant")
        };
        let t = (v >> 32) as usize;
        // Per-sender order is preserved.
        assert_eq!(v & 0xffff_ffff, seen[t]);
        seen[t] += 1;
    }
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(seen, vec![500; 4]);
}

#[test]
fn fd_cannot_be_encoded_outside_a_channel() {
    let (_r, w) = pipe();
    let msg = CoreToIdle::BrokerReply(BrokerReply {
        id: 1,
        result: Ok(Fd::from(w)),
    });
    assert!(matches!(
        ipc::to_bytes(&msg),
        Err(IpcError::FdOutsideChannel)
    ));
    let no_fd = CoreToIdle::BrokerReply(BrokerReply {
        id: 1,
        result: Err(BrokerError {
            errno: 13,
            message: "denied".into(),
        }),
    });
    assert!(ipc::to_bytes(&no_fd).is_ok());
}

#[test]
fn more_than_max_fds_is_refused_on_send() {
    let (a, _b) = Channel::pair().unwrap();
    let fds: Vec<Fd> = some_fds(MAX_FDS + 1).into_iter().map(Fd::new).collect();
    assert!(matches!(
        a.send(&fds),
        Err(IpcError::TooManyFds { count, max }) if count == MAX_FDS + 1 && max == MAX_FDS
    ));
    let fds: Vec<Fd> = some_fds(MAX_FDS).into_iter().map(Fd::new).collect();
    a.send(&fds).unwrap();
}

#[test]
fn from_fd_checked_accepts_seqpacket_only() {
    let (a, _b) = Channel::pair().unwrap();
    let ch = Channel::from_fd_checked(a.into_fd()).unwrap();
    assert!(is_cloexec(&ch));
    let (r, _w) = pipe();
    assert!(Channel::from_fd_checked(OwnedFd::from(r)).is_err());
}

#[test]
fn broker_connect_request_roundtrip() {
    let (core, svc) = Channel::pair().unwrap();
    let req = ChardevToCore::Broker(ipc::BrokerRequest {
        id: 3,
        op: ipc::BrokerOp::Connect {
            addr: SocketAddress::Tcp {
                host: "127.0.0.1".into(),
                port: 4444,
            },
        },
    });
    svc.send(&req).unwrap();
    assert_eq!(core.recv::<ChardevToCore>().unwrap(), req);
}
