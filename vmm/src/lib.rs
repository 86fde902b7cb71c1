//! `vmm`: the Bulkhead per-VM supervisor and KVM core.
//!
//! The `bulkhead` binary parses a QEMU-style command line, owns guest RAM,
//! vCPUs and devices, serves QMP/HMP, keeps the object registry, and spawns,
//! watches and brokers for its sandboxed network services.

pub mod devices;
pub mod layout;
pub mod services;
