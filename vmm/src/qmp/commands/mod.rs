//! QMP commands, one module per group. Each module exports `COMMANDS`, a
//! static table of [`Command`]s; [`GROUPS`] lists the tables the standard
//! [`super::Registry`] is built from. A later command group (chardev, NBD,
//! migration, VNC) is a new module here plus one line in `GROUPS`.

use serde_json::{Map, Value};

use super::dispatch::Command;
use super::error::QmpError;

pub mod block;
pub mod chardev;
pub mod control;
pub mod display;
pub mod fdpass;
pub mod hmp;
pub mod input;
pub mod machine;
pub mod objects;

/// Every command group of the standard registry.
pub const GROUPS: &[&[Command]] = &[
    control::COMMANDS,
    machine::COMMANDS,
    block::COMMANDS,
    chardev::COMMANDS,
    display::COMMANDS,
    input::COMMANDS,
    objects::COMMANDS,
    fdpass::COMMANDS,
    hmp::COMMANDS,
];

/// `{}`: the return value of commands without one.
pub fn empty() -> Value {
    Value::Object(Map::new())
}

/// Reads an optional string argument (already type-checked by the schema).
pub fn opt_str<'a>(args: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    args.get(name).and_then(Value::as_str)
}

/// Reads a required string argument (already type-checked by the schema).
pub fn req_str<'a>(args: &'a Map<String, Value>, name: &str) -> Result<&'a str, QmpError> {
    opt_str(args, name).ok_or_else(|| QmpError::missing(name))
}

/// Reads an optional non-negative integer that must fit `u32`.
pub fn opt_u32(args: &Map<String, Value>, name: &str) -> Result<Option<u32>, QmpError> {
    match args.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| QmpError::generic(format!("Parameter '{name}' expects uint32"))),
    }
}
