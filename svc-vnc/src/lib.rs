//! `svc-vnc`: the sandboxed VNC (RFB) service: VeNCrypt/TLS, websockets and
//! framebuffer encodings over a read-only mapping of the guest VRAM.
