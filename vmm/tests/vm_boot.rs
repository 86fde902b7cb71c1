//! VM-level tests: boot raw code and the built-in guest through the library
//! API, talk to its shell over a captured serial backend.

use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Duration;

use vmm::chardev::capture::{capture, CaptureHandle};
use vmm::vm::{Boot, RunState, Vm, VmConfig, VmEvent};

const T: Duration = Duration::from_secs(20);

fn wait_event(rx: &Receiver<VmEvent>, want: impl Fn(&VmEvent) -> bool) -> VmEvent {
    let deadline = std::time::Instant::now() + T;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(ev) if want(&ev) => return ev,
            Ok(_) => continue,
            Err(e) => panic!("no matching event: {e}"),
        }
    }
}

fn builtin(mem: u64) -> (Vm, CaptureHandle, Receiver<VmEvent>) {
    let (backend, handle) = capture().unwrap();
    let t = std::time::Instant::now();
    let vm = Vm::new(VmConfig::builtin(mem, Box::new(backend))).unwrap();
    eprintln!("Vm::new({} MiB) took {:?}", mem >> 20, t.elapsed());
    let rx = vm.subscribe();
    (vm, handle, rx)
}

#[test]
fn vm_raw_code_exits_with_status() {
    // mov eax, 42; mov dx, 0x501; out dx, eax; 1: hlt; jmp 1b
    let code = vec![
        0xb8, 42, 0, 0, 0, 0x66, 0xba, 0x01, 0x05, 0xef, 0xf4, 0xeb, 0xfd,
    ];
    let cfg = VmConfig {
        boot: Boot::Raw {
            gpa: 0x10_0000,
            bytes: Arc::new(code),
            entry: 0x10_0000,
        },
        ..VmConfig::builtin(64 << 20, Box::new(vmm::chardev::null::NullBackend))
    };
    let vm = Vm::new(cfg).unwrap();
    let rx = vm.subscribe();
    assert_eq!(vm.run_state(), RunState::Prelaunch);
    vm.start().unwrap();
    assert_eq!(
        wait_event(&rx, |e| matches!(e, VmEvent::GuestExit(_))),
        VmEvent::GuestExit(42)
    );
    assert_eq!(vm.run_state(), RunState::Shutdown);
    assert!(vm.resume().is_err());
}

#[test]
fn vm_builtin_banner_echo_exit() {
    let (vm, serial, rx) = builtin(256 << 20);
    vm.start().unwrap();
    let t0 = std::time::Instant::now();
    let at = serial
        .wait_for("Bulkhead test guest v", 0, T)
        .unwrap_or_else(|| panic!("no banner: {:?}", serial.text()));
    let at = serial.wait_for("bulkhead> ", at, T).expect("no prompt");
    eprintln!("banner+prompt after {:?}", t0.elapsed());
    serial.send(b"echo hello\r").unwrap();
    // The typed text is echoed, then the command prints its argument.
    let at = serial
        .wait_for("echo hello\r\n", at, T)
        .expect("no input echo");
    let at = serial.wait_for("hello\r\n", at, T).expect("no echo output");
    serial
        .wait_for("bulkhead> ", at, T)
        .expect("no second prompt");
    serial.send(b"exit 3\r").unwrap();
    assert_eq!(
        wait_event(&rx, |e| matches!(e, VmEvent::GuestExit(_))),
        VmEvent::GuestExit(3)
    );
}

#[test]
fn vm_long_input_line_survives_fifo_flow_control() {
    // 150 characters in one write: more than the UART's 64-byte FIFO, so the
    // input thread must wait for the guest to drain it.
    let (vm, serial, _rx) = builtin(64 << 20);
    vm.start().unwrap();
    let at = serial.wait_for("bulkhead> ", 0, T).unwrap();
    let text: String = (0..150).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    serial.send(format!("echo {text}\r").as_bytes()).unwrap();
    let at = serial
        .wait_for(&format!("echo {text}\r\n"), at, T)
        .unwrap_or_else(|| panic!("{:?}", serial.text()));
    serial
        .wait_for(&format!("{text}\r\n"), at, T)
        .expect("command output");
}

#[test]
fn vm_triple_fault_resets_or_shuts_down() {
    // ud2 with no IDT: #UD -> #GP -> #DF -> triple fault.
    let code = Arc::new(vec![0x0f, 0x0b]);
    let raw = Boot::Raw {
        gpa: 0x10_0000,
        bytes: code,
        entry: 0x10_0000,
    };
    let cfg = VmConfig {
        boot: raw.clone(),
        guest_reset: vmm::vm::GuestResetAction::Shutdown,
        ..VmConfig::builtin(32 << 20, Box::new(vmm::chardev::null::NullBackend))
    };
    let vm = Vm::new(cfg).unwrap();
    let rx = vm.subscribe();
    vm.start().unwrap();
    let ev = wait_event(&rx, |e| matches!(e, VmEvent::Shutdown { .. }));
    assert!(matches!(ev, VmEvent::Shutdown { reason } if reason.starts_with("guest-reset")));
    assert_eq!(vm.run_state(), RunState::Shutdown);
    drop(vm);
    // Default action: the machine resets (and faults again, and resets...).
    let cfg = VmConfig {
        boot: raw,
        ..VmConfig::builtin(32 << 20, Box::new(vmm::chardev::null::NullBackend))
    };
    let vm = Vm::new(cfg).unwrap();
    let rx = vm.subscribe();
    vm.start().unwrap();
    for _ in 0..2 {
        wait_event(&rx, |e| matches!(e, VmEvent::Reset { .. }));
    }
    assert_eq!(vm.run_state(), RunState::Running);
    vm.pause();
}
