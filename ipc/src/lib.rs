//! `ipc`: the one place that defines every message between the Bulkhead core
//! and its sandboxed services, and the framed `SOCK_SEQPACKET` channel that
//! carries them (postcard encoding, versioned handshake, maximum message size,
//! file descriptors passed with `SCM_RIGHTS`).
