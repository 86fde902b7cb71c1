//! `sandbox::inspect` parsers of `/proc/PID/{status,environ}` content, part
//! of which a confined (possibly compromised) service controls.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let entries = sandbox::inspect::parse_environ(data);
    assert!(entries.iter().map(|e| e.len()).sum::<usize>() <= data.len());
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(st) = sandbox::inspect::parse_status(text) {
            let _ = st.no_capabilities();
        }
        let _ = sandbox::inspect::status_field(text, "Seccomp");
    }
});
