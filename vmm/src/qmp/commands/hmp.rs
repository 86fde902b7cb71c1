//! `human-monitor-command`: runs one HMP command line and returns its output.

use serde_json::{Map, Value};

use super::super::dispatch::{Command, Ctx};
use super::super::error::QmpError;
use super::super::schema::{opt, req, ArgSpec, Ty};
use super::req_str;

/// This group.
pub const COMMANDS: &[Command] = &[Command {
    name: "human-monitor-command",
    args: ArgSpec::fields(&[req("command-line", Ty::Str), opt("cpu-index", Ty::Int)]),
    run: human_monitor_command,
}];

fn human_monitor_command(ctx: &mut Ctx<'_>, args: Map<String, Value>) -> Result<Value, QmpError> {
    if let Some(i) = args.get("cpu-index") {
        let n = ctx.backend.query_cpus().len() as u64;
        if i.as_u64().is_none_or(|i| i >= n) {
            return Err(QmpError::generic(
                "Parameter 'cpu-index' expects a CPU number",
            ));
        }
    }
    let line = req_str(&args, "command-line")?.to_string();
    Ok(Value::String(crate::hmp::execute(ctx, &line)))
}
