//! `sandbox`: spawn-and-confine for Bulkhead service executables
//! (namespaces, empty read-only root, rlimits, no_new_privs, capability drop,
//! per-service seccomp allowlists) and helpers that verify the confinement.
