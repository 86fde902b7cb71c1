//! Core-side decoder of svc-vnc messages (`ipc::vnc::VncToCore`), with
//! 0..=MAX_FDS fds attached.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    bulkhead_fuzz::decode::<ipc::vnc::VncToCore>(data);
});
