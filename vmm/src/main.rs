//! `bulkhead`: per-VM supervisor binary, and, re-executed under a `svc-*`
//! name (`docs/architecture.md`), the entry point of each sandboxed service.

use std::ffi::OsString;
use std::process::ExitCode;

use sandbox::ServiceKind;

fn main() -> ExitCode {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let argv0 = argv0.to_string_lossy().into_owned();
    if let Some(kind) = ServiceKind::from_argv0(&argv0) {
        let rest: Vec<String> = std::env::args().skip(1).collect();
        return service_main(kind, &rest);
    }
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|a| a == "pki") {
        let rest: Vec<String> = args[1..]
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        return vmm::pki_cli::main(&rest);
    }
    supervisor_main(args)
}

fn init_logging(cfg: &vmm::cli::Config) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(false);
    match &cfg.logfile {
        Some(path) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| anyhow::anyhow!("-D {}: {e}", path.display()))?;
            let _ = builder.with_writer(std::sync::Mutex::new(f)).try_init();
        }
        None => {
            let _ = builder.with_writer(std::io::stderr).try_init();
        }
    }
    Ok(())
}

fn supervisor_main(mut args: Vec<OsString>) -> ExitCode {
    // Secrets and TLS keys kept for service restarts stay out of swap too
    // (best effort; services, under seccomp, never mlock).
    creds::protected::enable_mlock();
    let demo = args.is_empty();
    if demo {
        let (demo_args, qmp) = vmm::supervisor::demo_args();
        eprintln!(
            "bulkhead: demo VM (built-in guest), serial console on this terminal, \
             QMP socket: {}\nbulkhead: quit with 'exit 0' at the guest prompt or QMP 'quit'",
            qmp.display()
        );
        args = demo_args;
    }
    let cfg = match vmm::cli::parse(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bulkhead: {e}");
            return ExitCode::from(1);
        }
    };
    if let Err(e) = init_logging(&cfg) {
        eprintln!("bulkhead: {e:#}");
        return ExitCode::from(1);
    }
    match vmm::supervisor::run(cfg) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            vmm::chardev::stdio::restore_terminal();
            eprintln!("bulkhead: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Runs a service role. Each role confines itself before reading input.
fn service_main(kind: ServiceKind, args: &[String]) -> ExitCode {
    match kind {
        ServiceKind::Idle => svc_runtime::idle_main(args),
        ServiceKind::Chardev => svc_chardev::main(args),
        other => {
            eprintln!("{other}: this service is not available in this build yet");
            ExitCode::from(1)
        }
    }
}
