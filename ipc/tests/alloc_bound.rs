//! Decoding never allocates more than a small multiple of the datagram,
//! whatever lengths the bytes claim. A counting global allocator records the
//! largest single allocation made while decoding.
//!
//! One test in this binary, so no other thread allocates while it measures.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use ipc::chardev::{ChardevToCore, CoreToChardev};
use ipc::{AuthzRules, TlsMaterial, MAX_MESSAGE_SIZE};

struct Counting;

static MEASURING: AtomicBool = AtomicBool::new(false);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only records sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if MEASURING.load(Ordering::Relaxed) {
            LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if MEASURING.load(Ordering::Relaxed) {
            LARGEST.fetch_max(new_size, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Largest single allocation while decoding `bytes` as `T`.
fn largest_alloc<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> usize {
    LARGEST.store(0, Ordering::Relaxed);
    MEASURING.store(true, Ordering::Relaxed);
    let r = ipc::from_bytes::<T>(bytes, Vec::new());
    MEASURING.store(false, Ordering::Relaxed);
    drop(r);
    LARGEST.load(Ordering::Relaxed)
}

/// varint of `v`.
fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

#[test]
fn claimed_lengths_do_not_drive_allocation() {
    // Serde caps sequence pre-allocation at 1 MiB, and postcard gives no
    // size hint beyond the remaining input, so the bound is "a small
    // multiple of the input", never the claimed length.
    let bound = 2 * 1024 * 1024;

    // Bytes / String lengths of 2^62 with little data behind them.
    for claim in [60_000, u64::from(u32::MAX), 1 << 40, 1 << 62] {
        let mut data = vec![4u8]; // ChardevToCore::Data
        data.extend(varint(claim));
        data.extend([0u8; 32]);
        assert!(
            largest_alloc::<ChardevToCore>(&data) < 1024,
            "Data len {claim}"
        );

        let mut s = vec![1u8]; // StartupFailed { reason }
        s.extend(varint(claim));
        s.extend(b"abc");
        assert!(
            largest_alloc::<ChardevToCore>(&s) < 1024,
            "String len {claim}"
        );

        // AuthzRules { rules: Vec<AuthzRule> } claiming `claim` rules, with
        // a full datagram of (invalid) rule bytes behind the claim.
        let mut a = varint(claim);
        a.resize(MAX_MESSAGE_SIZE, 0);
        let got = largest_alloc::<AuthzRules>(&a);
        eprintln!("AuthzRules claiming {claim} rules: largest allocation {got} bytes");
        assert!(got < bound, "AuthzRules claim {claim}: {got} bytes");

        // TlsMaterial: cert_chain Vec<Bytes> claiming `claim` entries.
        let mut t = vec![0u8, 1]; // Server, verify_peer
        t.extend(varint(claim));
        t.resize(MAX_MESSAGE_SIZE, 0);
        let got = largest_alloc::<TlsMaterial>(&t);
        assert!(got < bound, "TlsMaterial claim {claim}: {got} bytes");

        // Core-side message with a huge Data length inside a full datagram.
        let mut c = vec![5u8]; // CoreToChardev::Data
        c.extend(varint(claim));
        c.resize(MAX_MESSAGE_SIZE, 0xaa);
        assert!(largest_alloc::<CoreToChardev>(&c) <= MAX_MESSAGE_SIZE);
    }

    // Random 64 KiB datagrams.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..200 {
        let bytes: Vec<u8> = (0..MAX_MESSAGE_SIZE)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert!(largest_alloc::<ChardevToCore>(&bytes) <= 2 * MAX_MESSAGE_SIZE);
        assert!(largest_alloc::<TlsMaterial>(&bytes) < bound);
    }
}
