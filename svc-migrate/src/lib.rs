//! `svc-migrate`: the sandboxed live-migration service: pre-copy RAM and
//! device state over tcp/unix/fd/exec/file channels, optionally with TLS.
