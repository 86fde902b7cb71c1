//! `netio`: the QIOChannel idea from the seed's part 4 — plain, TLS and
//! websocket byte streams layered over a file descriptor received from the
//! broker, with handshake timeouts and peer DN + authz checks in one place.
//! Every service uses it and writes no TLS plumbing of its own.
