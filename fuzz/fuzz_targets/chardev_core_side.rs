//! The supervisor side of a socket chardev driven by a hostile svc-chardev:
//! the input is a sequence of operations, each either a `ChardevToCore`
//! message (postcard, as `Channel::recv` decodes it, no fds) fed to the
//! handler, or a UART action (guest output, UART reads input, service
//! restart). Checked: no panic, the input queue never exceeds the credit
//! window, guest output never blocks, bytes come out in order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmm::chardev::socket::Harness;
use vmm::chardev::CharBackend;

fuzz_target!(|data: &[u8]| {
    let Ok(mut h) = Harness::new() else { return };
    let mut rest = data;
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        match op % 4 {
            0 => {
                // A message: a length byte, then that many bytes.
                let Some((&len, tail)) = rest.split_first() else { break };
                let n = (len as usize).min(tail.len());
                let (msg, tail) = tail.split_at(n);
                rest = tail;
                if let Ok(m) = ipc::from_bytes::<ipc::chardev::ChardevToCore>(msg, Vec::new()) {
                    let _ = h.message(m);
                }
            }
            1 => {
                let n = usize::from(op / 4) * 97;
                h.backend().write(&vec![b'g'; n]).expect("guest output never fails");
            }
            2 => {
                let mut buf = [0u8; 64];
                let want = (usize::from(op / 4) % 64) + 1;
                match h.backend().read_input(&mut buf[..want]) {
                    Ok(n) => assert!(n > 0 && n <= want),
                    Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock),
                }
            }
            _ => h.restart(),
        }
        assert!(h.buffered_input() <= ipc::flow::STREAM_WINDOW as usize);
    }
});
