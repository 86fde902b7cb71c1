//! Property tests: every message type round-trips through a real channel
//! (fds included), every strict prefix of an encoding is rejected, and
//! arbitrary bytes with arbitrary fds never panic the core-side decoders.

mod common;

use std::os::fd::OwnedFd;

use ipc::chardev::{ChardevToCore, CoreToChardev};
use ipc::idle::{CoreToIdle, IdleToCore};
use ipc::migrate::{CoreToMigrate, MigrateToCore};
use ipc::nbd::{CoreToNbd, NbdToCore};
use ipc::vnc::{CoreToVnc, VncToCore};
use ipc::{
    AuthzRules, BrokerReply, BrokerRequest, Channel, Hello, HelloReply, TlsMaterial,
    MAX_MESSAGE_SIZE,
};
use proptest::prelude::*;

macro_rules! roundtrip {
    ($($name:ident: $t:ty),* $(,)?) => {$(
        proptest! {
            #[test]
            fn $name(msg in any::<$t>()) {
                let (a, b) = Channel::pair().unwrap();
                a.send(&msg).unwrap();
                let got: $t = b.recv().unwrap();
                // `Fd`s compare by open-file identity, so this also checks
                // that each fd arrived in its own field.
                prop_assert_eq!(got, msg);
            }
        }
    )*};
}

roundtrip! {
    roundtrip_hello: Hello,
    roundtrip_hello_reply: HelloReply,
    roundtrip_core_to_chardev: CoreToChardev,
    roundtrip_chardev_to_core: ChardevToCore,
    roundtrip_core_to_nbd: CoreToNbd,
    roundtrip_nbd_to_core: NbdToCore,
    roundtrip_core_to_vnc: CoreToVnc,
    roundtrip_vnc_to_core: VncToCore,
    roundtrip_core_to_migrate: CoreToMigrate,
    roundtrip_migrate_to_core: MigrateToCore,
    roundtrip_core_to_idle: CoreToIdle,
    roundtrip_idle_to_core: IdleToCore,
    roundtrip_tls_material: TlsMaterial,
    roundtrip_authz_rules: AuthzRules,
    roundtrip_broker_request: BrokerRequest,
    roundtrip_broker_reply: BrokerReply,
}

/// Every strict prefix of a valid encoding fails to decode (postcard is
/// prefix-free for a fixed type, and `from_bytes` rejects short input).
macro_rules! prefixes_rejected {
    ($($name:ident: $t:ty),* $(,)?) => {$(
        proptest! {
            #[test]
            fn $name(msg in any::<$t>()) {
                let bytes = ipc::to_bytes(&msg).unwrap();
                prop_assert!(bytes.len() <= MAX_MESSAGE_SIZE);
                // Every cut for short encodings; ~64 spread cuts plus the
                // last 32 for long ones (keeps the test fast).
                let step = (bytes.len() / 64).max(1);
                let cuts = (0..bytes.len())
                    .step_by(step)
                    .chain(bytes.len().saturating_sub(32)..bytes.len());
                for cut in cuts {
                    prop_assert!(ipc::from_bytes::<$t>(&bytes[..cut], Vec::new()).is_err());
                }
                let back: $t = ipc::from_bytes(&bytes, Vec::new()).unwrap();
                prop_assert_eq!(back, msg);
            }
        }
    )*};
}

prefixes_rejected! {
    prefixes_hello: Hello,
    prefixes_chardev_to_core: ChardevToCore,
    prefixes_nbd_to_core: NbdToCore,
    prefixes_vnc_to_core: VncToCore,
    prefixes_migrate_to_core: MigrateToCore,
    prefixes_idle_to_core: IdleToCore,
    prefixes_tls_material: TlsMaterial,
}

/// Arbitrary bytes and 0..4 fds: the decoders return (never panic), and
/// whatever decodes re-encodes to something that decodes to the same value.
macro_rules! garbage_is_safe {
    ($($name:ident: $t:ty),* $(,)?) => {$(
        proptest! {
            #[test]
            fn $name(bytes in proptest::collection::vec(any::<u8>(), 0..512), nfds in 0usize..4) {
                let fds: Vec<OwnedFd> = common::some_fds(nfds);
                if let Ok(msg) = ipc::from_bytes::<$t>(&bytes, fds) {
                    let again = ipc::to_bytes(&msg).unwrap();
                    prop_assert_eq!(ipc::from_bytes::<$t>(&again, Vec::new()).unwrap(), msg);
                }
            }
        }
    )*};
}

garbage_is_safe! {
    garbage_chardev_to_core: ChardevToCore,
    garbage_nbd_to_core: NbdToCore,
    garbage_vnc_to_core: VncToCore,
    garbage_migrate_to_core: MigrateToCore,
    garbage_idle_to_core: IdleToCore,
    garbage_core_to_chardev: CoreToChardev,
}

proptest! {
    #[test]
    fn garbage_hello_is_safe(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = ipc::decode_hello(&bytes, Vec::new());
    }
}

#[test]
fn secret_bytes_debug_is_redacted() {
    let m = ipc::PrivateKey {
        format: ipc::KeyFormat::Pkcs8,
        der: ipc::SecretBytes::new(b"super-secret-key-bytes".to_vec()),
    };
    let dbg = format!("{m:?}");
    assert!(!dbg.contains("super"), "{dbg}");
    assert!(!dbg.contains("115, 117"), "{dbg}"); // b"su" as numbers
    assert!(dbg.contains("redacted"));
}
