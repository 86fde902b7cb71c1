//! Helpers for Bulkhead's end-to-end tests: locate (and build if needed) the
//! real `bulkhead` binary, start it with a QEMU-style command line, and talk
//! to it through its serial port, QMP socket and services.
