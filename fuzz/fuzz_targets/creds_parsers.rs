//! creds parsers fed by users or peers: base64 secret text, authz-list JSON
//! (QMP object-add, authz-listfile), glob rules against DNs, certificate DNs,
//! PEM files, and EC key repair of DER key files. First byte selects.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    match sel % 6 {
        0 => {
            let _ = creds::secret::qbase64_decode(rest);
        }
        1 => {
            if let Ok(text) = std::str::from_utf8(rest) {
                if let Ok(list) = creds::AuthzList::from_json(text, "fuzz") {
                    let _ = list.is_allowed("C=GB,O=Bulkhead Test,CN=client.test");
                }
            }
        }
        2 => {
            let text = String::from_utf8_lossy(rest);
            let (pattern, dn) = text.split_once('\0').unwrap_or((&text, ""));
            let _ = creds::authz::glob_match(pattern, dn);
        }
        3 => {
            let _ = creds::dn::subject_dn(rest);
        }
        4 => {
            let _ = creds::pem::parse(rest);
        }
        _ => {
            let _ = creds::p8::repair_ec_key(rest, sel & 1 == 0);
        }
    }
});
