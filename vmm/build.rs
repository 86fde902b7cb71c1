//! Builds the freestanding built-in test guest (`../guest`) with `rustc`
//! directly and leaves `bulkhead-guest.elf` in OUT_DIR for `include_bytes!`.
//! The guest is not a workspace member: it needs its own flags (no_std,
//! static, linked at 2 MiB by `guest/link.ld`).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let guest = manifest.join("../guest");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("bulkhead-guest.elf");
    println!("cargo:rerun-if-changed={}", guest.join("src").display());
    println!("cargo:rerun-if-changed={}", guest.join("link.ld").display());
    println!("cargo:rerun-if-changed={}", guest.join("abi").display());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let status = Command::new(rustc)
        .current_dir(&guest)
        // Flags meant for the host crates (coverage, sanitizers, fuzzing)
        // must not leak into the freestanding guest.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .args([
            "--edition",
            "2021",
            "--crate-type",
            "bin",
            "--crate-name",
            "bulkhead_guest",
            "--target",
            "x86_64-unknown-linux-gnu",
            "-C",
            "panic=abort",
            "-C",
            "relocation-model=static",
            "-C",
            "opt-level=2",
            "-C",
            "debuginfo=0",
            "-C",
            "link-arg=-nostdlib",
            "-C",
            "link-arg=-static",
            "-C",
            "link-arg=-Tlink.ld",
            "-C",
            "link-arg=-Wl,--build-id=none",
            "-o",
        ])
        .arg(&out)
        .arg("src/main.rs")
        .status()
        .expect("running rustc for the guest");
    assert!(status.success(), "building the built-in guest failed");
}
