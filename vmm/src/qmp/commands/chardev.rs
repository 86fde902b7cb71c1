//! Character devices: `query-chardev` (chardev-add/remove come with the
//! chardev issue).

use serde_json::{json, Map, Value};

use super::super::dispatch::{Command, Ctx};
use super::super::error::QmpError;
use super::super::schema::ArgSpec;

/// This group.
pub const COMMANDS: &[Command] = &[Command {
    name: "query-chardev",
    args: ArgSpec::NONE,
    run: query_chardev,
}];

fn query_chardev(ctx: &mut Ctx<'_>, _: Map<String, Value>) -> Result<Value, QmpError> {
    let list = ctx
        .backend
        .query_chardev()
        .into_iter()
        .map(
            |c| json!({"label": c.label, "filename": c.filename, "frontend-open": c.frontend_open}),
        )
        .collect();
    Ok(Value::Array(list))
}
