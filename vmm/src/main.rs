//! `bulkhead`: per-VM supervisor binary, and, re-executed under a `svc-*`
//! name (`docs/architecture.md`), the entry point of each sandboxed service.

use std::process::ExitCode;

use sandbox::ServiceKind;

fn main() -> ExitCode {
    let mut args = std::env::args();
    let argv0 = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    if let Some(kind) = ServiceKind::from_argv0(&argv0) {
        return service_main(kind, &rest);
    }
    if rest.first().map(String::as_str) == Some("pki") {
        return vmm::pki_cli::main(&rest[1..]);
    }
    println!("bulkhead {}", env!("CARGO_PKG_VERSION"));
    ExitCode::SUCCESS
}

/// Runs a service role. Each role confines itself before reading input.
fn service_main(kind: ServiceKind, args: &[String]) -> ExitCode {
    match kind {
        ServiceKind::Idle => svc_runtime::idle_main(args),
        other => {
            eprintln!("{other}: this service is not available in this build yet");
            ExitCode::from(1)
        }
    }
}
