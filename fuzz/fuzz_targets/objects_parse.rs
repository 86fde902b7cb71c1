//! `object-add` / `-object` property parsing (vmm::objects::Object::parse) on
//! arbitrary JSON arguments, both as QMP (typed JSON) and as keyval strings.
//! Only parsing: creating objects would read files named by the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

const TYPES: &[&str] =
    &["secret", "tls-creds-x509", "authz-simple", "authz-list", "authz-listfile", "tls-creds-psk", "x"];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let Ok(serde_json::Value::Object(props)) = serde_json::from_slice(rest) else { return };
    let qom_type = TYPES[usize::from(sel >> 1) % TYPES.len()];
    let _ = vmm::objects::Object::parse(qom_type, &props, sel & 1 == 1);
    let _ = vmm::objects::id_wellformed(qom_type);
});
