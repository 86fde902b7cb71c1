//! `svc-chardev`: the sandboxed socket character-device service (TCP/unix,
//! server/client, reconnect) that terminates TLS for guest serial ports.
