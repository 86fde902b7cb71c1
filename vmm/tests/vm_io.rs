//! Port I/O exits are completed before a vCPU parks, so state saved while
//! paused never loses or replays an access.

use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vmm::devices::bus::BusDevice;
use vmm::vm::{Boot, Vm, VmConfig};

struct SlowPort {
    reads: Sender<()>,
}

impl BusDevice for SlowPort {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        let _ = self.reads.send(());
        // Long enough for the test thread to request a pause meanwhile.
        std::thread::sleep(Duration::from_millis(150));
        data.copy_from_slice(&0xabcd_u32.to_le_bytes()[..data.len()]);
    }
    fn write(&mut self, _offset: u64, _data: &[u8]) {}
}

#[test]
fn vm_pause_completes_pending_port_read() {
    // mov dx, 0x600; in eax, dx; jmp $
    let code = vec![0x66, 0xba, 0x00, 0x06, 0xed, 0xeb, 0xfe];
    let entry = 0x10_0000;
    let cfg = VmConfig {
        boot: Boot::Raw {
            gpa: entry,
            bytes: Arc::new(code),
            entry,
        },
        ..VmConfig::builtin(32 << 20, Box::new(vmm::chardev::null::NullBackend))
    };
    let vm = Vm::new(cfg).unwrap();
    let (tx, rx) = channel();
    vm.add_pio_device(0x600, 4, Arc::new(Mutex::new(SlowPort { reads: tx })))
        .unwrap();
    vm.start().unwrap();
    rx.recv_timeout(Duration::from_secs(20))
        .expect("guest never read the port");
    vm.pause();
    let s = vm.save_state().unwrap();
    assert_eq!(
        s.vcpus[0].regs.rip,
        entry + 5,
        "IN not completed before pause"
    );
    assert_eq!(s.vcpus[0].regs.rax & 0xffff_ffff, 0xabcd);
    assert!(rx.try_recv().is_err(), "port read twice");
}
