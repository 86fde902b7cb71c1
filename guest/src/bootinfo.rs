//! The boot-info page the VMM passes in `rdi`: the shared ABI definition in
//! `guest/abi/bootinfo.rs`, also compiled into `vmm::boot`.

#[path = "../abi/bootinfo.rs"]
mod abi;
pub use abi::{BootInfo, BOOT_INFO_MAGIC};
