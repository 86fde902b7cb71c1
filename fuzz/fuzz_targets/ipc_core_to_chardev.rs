//! Service-side decoder of `ipc::chardev::CoreToChardev`: the message family
//! that carries fds inside (listener, broker replies), so this target
//! exercises the fd-index checks (missing, duplicate, unclaimed fds closed).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (fds, raws, bytes) = bulkhead_fuzz::datagram(data);
    let _ = ipc::from_bytes::<ipc::chardev::CoreToChardev>(bytes, fds);
    bulkhead_fuzz::assert_closed(&raws);
});
