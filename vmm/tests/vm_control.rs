//! Pause/resume while the built-in guest dirties memory, state save/restore
//! round trip on the paused VM, and reset.

use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use vm_memory::{Bytes, GuestAddress};
use vmm::boot::STATUS_PAGE_GPA;
use vmm::chardev::capture::{capture, CaptureHandle};
use vmm::vm::{RunState, Vm, VmConfig, VmEvent};

const T: Duration = Duration::from_secs(20);

fn heartbeat(vm: &Vm) -> u64 {
    vm.memory()
        .read_obj::<u64>(GuestAddress(STATUS_PAGE_GPA + 8))
        .unwrap()
}

fn wait_heartbeat_above(vm: &Vm, v: u64) -> u64 {
    let deadline = Instant::now() + T;
    loop {
        let h = heartbeat(vm);
        if h > v {
            return h;
        }
        assert!(Instant::now() < deadline, "heartbeat stuck at {h}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn next_event(rx: &Receiver<VmEvent>) -> VmEvent {
    rx.recv_timeout(T).expect("event")
}

fn boot_to_prompt(smp: u8) -> (Vm, CaptureHandle, Receiver<VmEvent>, usize) {
    let (backend, serial) = capture().unwrap();
    let mut cfg = VmConfig::builtin(128 << 20, Box::new(backend));
    cfg.smp = smp;
    let vm = Vm::new(cfg).unwrap();
    let rx = vm.subscribe();
    vm.start().unwrap();
    assert_eq!(next_event(&rx), VmEvent::Resume);
    let at = serial
        .wait_for("bulkhead> ", 0, T)
        .unwrap_or_else(|| panic!("no prompt: {}", serial.text()));
    (vm, serial, rx, at)
}

#[test]
fn vm_pause_freezes_guest_and_resume_continues() {
    let (vm, serial, rx, at) = boot_to_prompt(2);
    let tids = vm.vcpu_thread_ids();
    assert_eq!(tids.len(), 2);
    assert!(tids.iter().all(|&t| t > 0) && tids[0] != tids[1]);
    serial.send(b"dirty 4\r").unwrap();
    serial
        .wait_for("dirty: 4 MiB", at, T)
        .expect("dirtier did not start");
    let h0 = wait_heartbeat_above(&vm, 0);
    for _ in 0..3 {
        let t = Instant::now();
        vm.pause();
        eprintln!("pause took {:?}", t.elapsed());
        assert_eq!(vm.run_state(), RunState::Paused);
        assert_eq!(next_event(&rx), VmEvent::Stop);
        let h1 = heartbeat(&vm);
        assert!(h1 >= h0);
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(heartbeat(&vm), h1, "guest ran while paused");
        vm.resume().unwrap();
        assert_eq!(next_event(&rx), VmEvent::Resume);
        wait_heartbeat_above(&vm, h1);
    }
    let mark = serial.output().len();
    serial.send(b"q").unwrap();
    let at = serial
        .wait_for("dirty: stopped after", mark, T)
        .expect("dirtier did not stop");
    serial.wait_for("bulkhead> ", at, T).unwrap();
    // Pausing twice and resuming twice is harmless.
    vm.pause();
    vm.pause();
    vm.resume().unwrap();
    vm.resume().unwrap();
}

fn json_diff(path: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, v) in x {
                json_diff(
                    &format!("{path}.{k}"),
                    v,
                    y.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                json_diff(&format!("{path}[{i}]"), v, w, out);
            }
        }
        _ if a != b => out.push(format!("{path}: {a} != {b}")),
        _ => {}
    }
}

#[test]
fn vm_state_round_trip_on_paused_vm() {
    let (vm, serial, _rx, at) = boot_to_prompt(2);
    serial.send(b"dirty 2\r").unwrap();
    serial.wait_for("dirty: 2 MiB", at, T).unwrap();
    wait_heartbeat_above(&vm, 0);
    assert!(
        vm.save_state().is_err(),
        "state of a running VM must be refused"
    );
    vm.pause();
    let s1 = vm.save_state().unwrap();
    assert_eq!(s1.vcpus.len(), 2);
    assert!(!s1.vcpus[0].msrs.is_empty());
    assert_eq!(s1.devices.len(), 1);
    assert_eq!(s1.devices[0].id, "serial0");
    // Through serde (what migration sends), then back into KVM.
    let json = serde_json::to_string(&s1).unwrap();
    let back: vmm::state::MachineState = serde_json::from_str(&json).unwrap();
    vm.restore_state(&back).unwrap();
    let s2 = vm.save_state().unwrap();
    let strip = |s: &vmm::state::MachineState| {
        let mut s = s.clone();
        // KVM_SET_PIT2 restarts each channel's count at the host's "now".
        for ch in s.vm.pit.channels.iter_mut() {
            ch.count_load_time = 0;
        }
        let mut v = serde_json::to_value(&s).unwrap();
        // kvmclock and the TSC keep counting in the host while paused.
        v["vm"]["clock"] = serde_json::Value::Null;
        for c in v["vcpus"].as_array_mut().unwrap() {
            let msrs = c["msrs"].as_array_mut().unwrap();
            msrs.retain(|m| m["index"] != 0x10);
        }
        v
    };
    let mut diffs = Vec::new();
    json_diff("", &strip(&s1), &strip(&s2), &mut diffs);
    assert!(diffs.is_empty(), "state changed across restore: {diffs:?}");
    assert_eq!(s1.vcpus[0].regs.rip, s2.vcpus[0].regs.rip);
    // Untrusted state: an MSR this VM does not save, or a wrong vCPU count,
    // is refused before anything is written.
    let mut bad = s1.clone();
    bad.vcpus[0].msrs.push(vmm::state::MsrValue {
        index: 0xdead_beef,
        data: 0,
    });
    assert!(vm.restore_state(&bad).is_err());
    let mut bad = s1.clone();
    bad.vcpus.pop();
    assert!(vm.restore_state(&bad).is_err());
    let mut bad = s1.clone();
    bad.devices[0].data = b"{not json".to_vec();
    assert!(vm.restore_state(&bad).is_err());
    let mut bad = s1.clone();
    bad.devices.clear();
    assert!(
        vm.restore_state(&bad).is_err(),
        "missing device state accepted"
    );
    // The restored guest keeps working.
    let h = heartbeat(&vm);
    vm.resume().unwrap();
    wait_heartbeat_above(&vm, h);
    let mark = serial.output().len();
    serial.send(b"x").unwrap();
    let at = serial.wait_for("stopped after", mark, T).unwrap();
    serial.wait_for("bulkhead> ", at, T).unwrap();
    serial.send(b"echo alive\r").unwrap();
    serial.wait_for("alive\r\n", at, T).unwrap();
}

#[test]
fn vm_reset_reboots_guest() {
    let (vm, serial, rx, at) = boot_to_prompt(1);
    vm.reset().unwrap();
    assert!(
        matches!(next_event(&rx), VmEvent::Reset { reason } if reason == "host-qmp-system-reset")
    );
    assert_eq!(vm.run_state(), RunState::Running);
    let at = serial
        .wait_for("Bulkhead test guest v", at, T)
        .expect("no banner after reset");
    serial.wait_for("bulkhead> ", at, T).unwrap();
    serial.send(b"exit 0\r").unwrap();
    loop {
        if let VmEvent::GuestExit(c) = next_event(&rx) {
            assert_eq!(c, 0);
            break;
        }
    }
    assert_eq!(vm.run_state(), RunState::Shutdown);
    // After a guest exit, reset brings it back to prelaunch and cont boots again.
    vm.reset().unwrap();
    assert_eq!(vm.run_state(), RunState::Prelaunch);
    let mark = serial.output().len();
    vm.resume().unwrap();
    serial
        .wait_for("bulkhead> ", mark, T)
        .expect("no prompt after reset from shutdown");
}

/// utime + stime of one thread, in clock ticks.
fn thread_cpu_ticks(tid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
    // Fields after the ")" of the command name: state is field 3; utime 14, stime 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn vm_idle_guest_sleeps() {
    // At the prompt the guest waits in hlt for the UART interrupt: its vCPU
    // thread must not burn CPU (no polling loop of port reads).
    let (vm, serial, _rx, at) = boot_to_prompt(1);
    let tid = vm.vcpu_thread_ids()[0];
    let before = thread_cpu_ticks(tid);
    std::thread::sleep(Duration::from_millis(1000));
    let used = thread_cpu_ticks(tid) - before;
    eprintln!("idle vCPU used {used} ticks in 1 s");
    assert!(
        used < 10,
        "idle vCPU thread used {used} ticks (of ~100) in 1 s"
    );
    serial.send(b"echo awake\r").unwrap();
    serial.wait_for("awake\r\n", at, T).unwrap();
}

#[test]
fn vm_pause_resume_reset_hammered_from_threads() {
    // Many pause/resume cycles racing with resets and event readers: every
    // pause returns with the vCPUs parked (heartbeat frozen), nothing hangs.
    let (vm, serial, _rx, at) = boot_to_prompt(2);
    serial.send(b"dirty 1\r").unwrap();
    serial.wait_for("dirty: 1 MiB", at, T).unwrap();
    wait_heartbeat_above(&vm, 0);
    let vm = std::sync::Arc::new(vm);
    let v2 = vm.clone();
    let resetter = std::thread::spawn(move || {
        for _ in 0..5 {
            v2.reset().unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let t = Instant::now();
    for _ in 0..200 {
        vm.pause();
        let h = heartbeat(&vm);
        std::thread::yield_now();
        // A racing reset may zero the status page meanwhile; a running
        // guest would have moved the counter on instead.
        let now = heartbeat(&vm);
        assert!(now == h || now == 0, "guest ran while paused: {h} -> {now}");
        vm.resume().unwrap();
    }
    resetter.join().unwrap();
    eprintln!("200 pause/resume cycles with 5 resets: {:?}", t.elapsed());
    // Still a working guest afterwards (the resets rebooted it to the prompt).
    let mark = serial.output().len();
    serial.send(b"\r").unwrap();
    serial
        .wait_for("bulkhead> ", mark, T)
        .expect("guest dead after the storm");
}

#[test]
fn vm_powerdown_is_up_to_the_guest() {
    // The built-in guest honours the button, at the prompt and while busy.
    for busy in [false, true] {
        let (vm, serial, rx, at) = boot_to_prompt(1);
        if busy {
            serial.send(b"dirty 1\r").unwrap();
            serial.wait_for("dirty: 1 MiB", at, T).unwrap();
        }
        vm.request_powerdown();
        assert_eq!(next_event(&rx), VmEvent::Powerdown);
        assert_eq!(
            next_event(&rx),
            VmEvent::Shutdown {
                reason: "guest-shutdown".into()
            }
        );
        assert_eq!(vm.run_state(), RunState::Shutdown);
        serial
            .wait_for("power button pressed: powering off", at, T)
            .unwrap();
    }
    // A guest that ignores it keeps running (jmp $).
    let code = std::sync::Arc::new(vec![0xeb, 0xfe]);
    let cfg = VmConfig {
        boot: vmm::vm::Boot::Raw {
            gpa: 0x10_0000,
            bytes: code,
            entry: 0x10_0000,
        },
        ..VmConfig::builtin(32 << 20, Box::new(vmm::chardev::null::NullBackend))
    };
    let vm = Vm::new(cfg).unwrap();
    let rx = vm.subscribe();
    vm.start().unwrap();
    assert_eq!(next_event(&rx), VmEvent::Resume);
    vm.request_powerdown();
    assert_eq!(next_event(&rx), VmEvent::Powerdown);
    assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
    assert_eq!(vm.run_state(), RunState::Running);
}
