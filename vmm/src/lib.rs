//! `vmm`: the Bulkhead per-VM supervisor and KVM core.
//!
//! The `bulkhead` binary parses a QEMU-style command line, owns guest RAM,
//! vCPUs and devices, serves QMP/HMP, keeps the object registry, and spawns,
//! watches and brokers for its sandboxed network services.

pub mod boot;
pub mod chardev;
pub mod cli;
pub mod devices;
pub mod hmp;
pub mod layout;
pub mod loader;
pub mod memory;
pub mod objects;
pub mod pki_cli;
pub mod qmp;
pub mod services;
pub mod state;
pub mod supervisor;
pub mod vcpu;
pub mod vm;
