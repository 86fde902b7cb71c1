//! The service manager with a REAL service process: the `bulkhead` binary
//! re-executed as `svc-idle`. Proves confinement as seen from /proc, and
//! that a seccomp kill or `kill -9` is noticed, reported and restarted while
//! the supervisor keeps going.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipc::idle::{Idle, IdleStartup, IdleToCore};
use ipc::TestAction;
use vmm::services::{ServiceEvent, ServiceHandler, ServiceLink, ServiceManager, ServiceSettings};

struct IdleHandler;

impl ServiceHandler<Idle> for IdleHandler {
    fn startup(&self) -> Result<IdleStartup, String> {
        Ok(IdleStartup {})
    }
    fn on_message(&self, msg: IdleToCore, _link: &ServiceLink<Idle>) -> Result<(), String> {
        Err(format!("unexpected {msg:?}"))
    }
}

type Events = Arc<Mutex<Vec<ServiceEvent>>>;

fn manager() -> (ServiceManager, Events) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let settings = ServiceSettings {
        exe: PathBuf::from(env!("CARGO_BIN_EXE_bulkhead")),
        ..ServiceSettings::default()
    };
    let m = ServiceManager::new(settings, Arc::new(move |e| sink.lock().unwrap().push(e)));
    (m, events)
}

fn wait_event(
    events: &Mutex<Vec<ServiceEvent>>,
    timeout: Duration,
    pred: impl Fn(&ServiceEvent) -> bool,
) -> ServiceEvent {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(e) = events.lock().unwrap().iter().find(|e| pred(e)) {
            return e.clone();
        }
        assert!(
            Instant::now() < deadline,
            "event not seen; got {:?}",
            events.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Err(_) => true,
        Ok(s) => s.contains("State:\tZ"),
    }
}

#[test]
fn real_service_is_confined() {
    let (m, _events) = manager();
    let h = m.start::<Idle, _>("idle0", Arc::new(IdleHandler)).unwrap();
    let pid = h.wait_up(0, Duration::from_secs(20)).expect("service up");

    let st = sandbox::inspect::proc_status(pid).unwrap();
    assert_eq!(st.seccomp, 2, "Seccomp: 2 (filter)");
    assert!(st.no_new_privs, "NoNewPrivs: 1");
    assert_eq!(st.cap_eff, 0, "CapEff: 0000000000000000");
    assert!(st.no_capabilities(), "every capability set empty: {st:?}");
    assert!(st.uid.iter().all(|&u| u != 0), "not root: {:?}", st.uid);

    let mine = sandbox::inspect::own_namespaces().unwrap();
    let theirs = sandbox::inspect::namespaces(pid).unwrap();
    assert_ne!(mine.mnt, theirs.mnt, "mount namespace");
    assert_ne!(mine.net, theirs.net, "net namespace");
    assert_ne!(mine.pid, theirs.pid, "pid namespace");
    assert_ne!(mine.ipc, theirs.ipc, "ipc namespace");
    assert_ne!(mine.uts, theirs.uts, "uts namespace");

    let root = sandbox::inspect::root_entries(pid).unwrap();
    assert!(root.is_empty(), "empty root, got {root:?}");

    let fds = sandbox::inspect::open_fds(pid).unwrap();
    let nums: Vec<i32> = fds.iter().map(|(n, _)| *n).collect();
    assert!(
        nums.iter().all(|&n| n <= 3),
        "only stdio and the IPC fd may be open: {fds:?}"
    );
    assert!(nums.contains(&3), "IPC fd at 3: {fds:?}");
    for var in sandbox::inspect::environment(pid).unwrap() {
        let s = var.to_string_lossy();
        assert!(
            s.starts_with("RUST_LOG="),
            "unexpected environment variable {s:?}"
        );
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert_eq!(cmdline, b"svc-idle\0--ipc-fd\x003\0");
    h.stop();
    assert!(gone(pid));
}

#[test]
fn seccomp_kill_and_sigkill_are_reported_and_restarted() {
    let (m, events) = manager();
    let h = m.start::<Idle, _>("idle1", Arc::new(IdleHandler)).unwrap();
    let pid1 = h.wait_up(0, Duration::from_secs(20)).expect("service up");

    // A forbidden syscall inside the service: death by SIGSYS.
    h.test_trigger(TestAction::ForbiddenSyscall).unwrap();
    let ev = wait_event(
        &events,
        Duration::from_secs(10),
        |e| matches!(e, ServiceEvent::Exited { pid, .. } if *pid == pid1),
    );
    let ServiceEvent::Exited {
        status,
        reason,
        restart_in,
        ..
    } = ev
    else {
        unreachable!()
    };
    assert_eq!(
        status,
        sandbox::ExitStatus::Signaled(libc::SIGSYS),
        "{reason}"
    );
    assert!(reason.contains("seccomp"), "{reason}");
    assert!(restart_in.is_some());
    let pid2 = h.wait_up(pid1, Duration::from_secs(20)).expect("restarted");
    assert_ne!(pid1, pid2);
    assert_eq!(h.restarts(), 1);

    // kill -9 from outside: noticed and restarted too.
    // SAFETY: kill(2) on our own child's pid with a valid signal number.
    assert_eq!(unsafe { libc::kill(pid2, libc::SIGKILL) }, 0);
    let ev = wait_event(
        &events,
        Duration::from_secs(10),
        |e| matches!(e, ServiceEvent::Exited { pid, .. } if *pid == pid2),
    );
    let ServiceEvent::Exited { status, .. } = ev else {
        unreachable!()
    };
    assert_eq!(status, sandbox::ExitStatus::Signaled(libc::SIGKILL));
    let pid3 = h
        .wait_up(pid2, Duration::from_secs(20))
        .expect("restarted again");
    assert_ne!(pid3, pid2);
    h.send(&ipc::idle::CoreToIdle::Ping(7)).unwrap();
    let started = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, ServiceEvent::Started { .. }))
        .count();
    assert_eq!(started, 3);
    h.stop();
    assert!(gone(pid3));
}

#[test]
fn shutdown_all_stops_services() {
    let (m, _events) = manager();
    let h = m.start::<Idle, _>("idle2", Arc::new(IdleHandler)).unwrap();
    let pid = h.wait_up(0, Duration::from_secs(20)).expect("up");
    m.shutdown_all();
    assert_eq!(h.pid(), 0);
    assert!(gone(pid), "service {pid} still exists");
}
