//! Core-side handshake decoder (`ipc::decode_hello`), with fds attached.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (fds, raws, bytes) = bulkhead_fuzz::datagram(data);
    let _ = ipc::decode_hello(bytes, fds);
    bulkhead_fuzz::assert_closed(&raws);
});
