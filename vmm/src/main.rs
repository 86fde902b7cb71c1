//! `bulkhead`: per-VM supervisor binary (and, re-executed under a `svc-*`
//! name, the entry point of each sandboxed service).

fn main() {
    println!("bulkhead {}", env!("CARGO_PKG_VERSION"));
}
