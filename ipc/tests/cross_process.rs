//! Two real processes: this test binary re-runs itself as the "service"
//! (selected by an environment variable) with one end of a channel
//! inherited as a plain fd number, like a spawned service.
//!
//! Shows, across processes: the handshake, Ping/Pong, an fd passed inside a
//! message arriving usable in the other process, and a peer killed with
//! SIGKILL seen as `Disconnected` by both `recv` and `send` (no hang, no
//! SIGPIPE). `harness = false`: the process is single-threaded, so clearing
//! close-on-exec on the child's fd before spawning races with nothing.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Child, Command, ExitCode};
use std::time::Duration;

use ipc::idle::{CoreToIdle, IdleToCore};
use ipc::{hello_core, hello_service, BrokerReply, Channel, Fd, IpcError, ServiceKind, TestAction};

const CHILD_FD_ENV: &str = "IPC_CROSS_PROCESS_CHILD_FD";

/// The service side: answers pings, writes into passed fds, hangs on demand.
fn child(fd: i32) -> ExitCode {
    // SAFETY: the parent passed us this descriptor number; it is open and
    // nothing else in this process owns it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let ch = Channel::from_fd_checked(owned).expect("inherited fd is a SEQPACKET socket");
    hello_service(&ch, ServiceKind::Idle).expect("handshake");
    loop {
        match ch.recv::<CoreToIdle>() {
            Ok(CoreToIdle::Ping(n)) => ch.send(&IdleToCore::Pong(n)).unwrap(),
            Ok(CoreToIdle::BrokerReply(BrokerReply { id, result: Ok(fd) })) => {
                let mut f = File::from(fd);
                writeln!(f, "written by pid {}", std::process::id()).unwrap();
                drop(f);
                ch.send(&IdleToCore::Pong(id)).unwrap();
            }
            Ok(CoreToIdle::TestTrigger(TestAction::Hang)) => loop {
                std::thread::sleep(Duration::from_secs(1));
            },
            Ok(CoreToIdle::Shutdown) | Err(IpcError::Disconnected) => return ExitCode::SUCCESS,
            other => panic!("child: unexpected {other:?}"),
        }
    }
}

/// Spawns the child with one end of a fresh pair; returns the other end.
fn spawn_child() -> (Channel, Child) {
    let (core, svc) = Channel::pair().unwrap();
    // SAFETY: F_SETFD on our own descriptor; single-threaded process.
    assert_eq!(unsafe { libc::fcntl(svc.as_raw_fd(), libc::F_SETFD, 0) }, 0);
    let child = Command::new(std::env::current_exe().unwrap())
        .env(CHILD_FD_ENV, svc.as_raw_fd().to_string())
        .spawn()
        .unwrap();
    drop(svc);
    (core, child)
}

fn pipe() -> (File, File) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two new descriptors into the array.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both are fresh and owned by nobody else.
    unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) }
}

fn handshake_ping_and_fd_passing() {
    let (core, mut child) = spawn_child();
    hello_core(&core, ServiceKind::Idle).unwrap();
    for i in 0..100 {
        core.send(&CoreToIdle::Ping(i)).unwrap();
        assert_eq!(core.recv::<IdleToCore>().unwrap(), IdleToCore::Pong(i));
    }
    let (mut r, w) = pipe();
    core.send(&CoreToIdle::BrokerReply(BrokerReply {
        id: 77,
        result: Ok(Fd::from(w)),
    }))
    .unwrap();
    assert_eq!(core.recv::<IdleToCore>().unwrap(), IdleToCore::Pong(77));
    let mut text = String::new();
    r.read_to_string(&mut text).unwrap();
    assert_eq!(text, format!("written by pid {}\n", child.id()));
    core.send(&CoreToIdle::Shutdown).unwrap();
    assert!(child.wait().unwrap().success());
    assert!(core.recv::<IdleToCore>().unwrap_err().is_disconnected());
}

fn killed_peer_is_disconnected() {
    let (core, mut child) = spawn_child();
    hello_core(&core, ServiceKind::Idle).unwrap();
    core.send(&CoreToIdle::TestTrigger(TestAction::Hang))
        .unwrap();
    // The child hangs: nothing arrives.
    assert_eq!(
        core.recv_timeout::<IdleToCore>(Duration::from_millis(200))
            .unwrap(),
        None
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let got = core.recv_timeout::<IdleToCore>(Duration::from_secs(10));
    assert!(matches!(got, Err(IpcError::Disconnected)), "{got:?}");
    // Sending to the dead peer: an error, not SIGPIPE.
    assert!(core
        .send(&CoreToIdle::Ping(1))
        .unwrap_err()
        .is_disconnected());
}

fn main() -> ExitCode {
    if let Ok(fd) = std::env::var(CHILD_FD_ENV) {
        return child(fd.parse().expect("fd number"));
    }
    let tests: [(&str, fn()); 2] = [
        (
            "handshake_ping_and_fd_passing",
            handshake_ping_and_fd_passing,
        ),
        ("killed_peer_is_disconnected", killed_peer_is_disconnected),
    ];
    println!("\nrunning {} tests", tests.len());
    let mut failed = 0;
    for (name, f) in tests {
        let ok = std::panic::catch_unwind(f).is_ok();
        println!("test {name} ... {}", if ok { "ok" } else { "FAILED" });
        failed += usize::from(!ok);
    }
    let passed = tests.len() - failed;
    println!(
        "\ntest result: {}. {passed} passed; {failed} failed; 0 ignored; 0 measured; 0 filtered out\n",
        if failed == 0 { "ok" } else { "FAILED" }
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
