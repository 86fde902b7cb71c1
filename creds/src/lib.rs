//! `creds`: QEMU-compatible credential objects: `secret`, `tls-creds-x509`,
//! `authz-simple`/`authz-list`/`authz-listfile`, and the rustls configurations
//! built from them. Services only ever see ready material.
