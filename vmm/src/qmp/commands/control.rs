//! Protocol-level commands: `query-version`, `query-commands`.

use serde_json::{json, Map, Value};

use super::super::dispatch::{Command, Ctx};
use super::super::error::QmpError;
use super::super::schema::ArgSpec;
use super::super::wire;

/// This group.
pub const COMMANDS: &[Command] = &[
    Command {
        name: "query-version",
        args: ArgSpec::NONE,
        run: query_version,
    },
    Command {
        name: "query-commands",
        args: ArgSpec::NONE,
        run: query_commands,
    },
];

fn query_version(_: &mut Ctx<'_>, _: Map<String, Value>) -> Result<Value, QmpError> {
    let (major, minor, micro) = wire::QEMU_VERSION;
    Ok(wire::version_value(major, minor, micro))
}

fn query_commands(ctx: &mut Ctx<'_>, _: Map<String, Value>) -> Result<Value, QmpError> {
    let mut list = vec![json!({"name": "qmp_capabilities"})];
    list.extend(ctx.registry.names().map(|n| json!({ "name": n })));
    Ok(Value::Array(list))
}
