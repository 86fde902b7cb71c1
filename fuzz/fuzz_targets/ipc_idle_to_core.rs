//! Core-side decoder of idle-mode service messages (`ipc::idle::IdleToCore`), with
//! 0..=MAX_FDS fds attached.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    bulkhead_fuzz::decode::<ipc::idle::IdleToCore>(data);
});
