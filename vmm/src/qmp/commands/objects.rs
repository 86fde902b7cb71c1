//! User-creatable objects: `object-add`, `object-del`. The properties of
//! each `qom-type` are checked by the backend's object registry.

use serde_json::{Map, Value};

use super::super::backend::object_spec_from_args;
use super::super::dispatch::{Command, Ctx};
use super::super::error::QmpError;
use super::super::schema::{req, ArgSpec, Ty};
use super::{empty, req_str};

/// This group.
pub const COMMANDS: &[Command] = &[
    Command {
        name: "object-add",
        args: ArgSpec::open(&[req("qom-type", Ty::Str), req("id", Ty::Str)]),
        run: object_add,
    },
    Command {
        name: "object-del",
        args: ArgSpec::fields(&[req("id", Ty::Str)]),
        run: object_del,
    },
];

fn object_add(ctx: &mut Ctx<'_>, args: Map<String, Value>) -> Result<Value, QmpError> {
    ctx.backend.object_add(object_spec_from_args(args)?)?;
    Ok(empty())
}

fn object_del(ctx: &mut Ctx<'_>, args: Map<String, Value>) -> Result<Value, QmpError> {
    ctx.backend.object_del(req_str(&args, "id")?)?;
    Ok(empty())
}
