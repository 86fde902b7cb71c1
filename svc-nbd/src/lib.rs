//! `svc-nbd`: the sandboxed NBD service: fixed-newstyle NBD server (with TLS)
//! for exported images, and the NBD client used as a block backend.
