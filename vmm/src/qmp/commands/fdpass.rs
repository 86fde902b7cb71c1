//! Fd passing: `getfd`, `closefd` (fds arrive with SCM_RIGHTS on the unix
//! socket; see [`super::super::fds`]).

use serde_json::{Map, Value};

use super::super::dispatch::{Command, Ctx};
use super::super::error::QmpError;
use super::super::schema::{req, ArgSpec, Ty};
use super::{empty, req_str};

/// This group.
pub const COMMANDS: &[Command] = &[
    Command {
        name: "getfd",
        args: ArgSpec::fields(&[req("fdname", Ty::Str)]),
        run: getfd,
    },
    Command {
        name: "closefd",
        args: ArgSpec::fields(&[req("fdname", Ty::Str)]),
        run: closefd,
    },
];

fn getfd(ctx: &mut Ctx<'_>, args: Map<String, Value>) -> Result<Value, QmpError> {
    let name = req_str(&args, "fdname")?;
    let fd = ctx
        .fds
        .take_pending()
        .ok_or_else(|| QmpError::generic("No file descriptor supplied via SCM_RIGHTS"))?;
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(QmpError::generic(
            "Parameter 'fdname' expects a name not starting with a digit",
        ));
    }
    ctx.fds
        .insert(name.to_string(), fd)
        .map_err(|_| QmpError::generic("Too many file descriptors passed on this connection"))?;
    Ok(empty())
}

fn closefd(ctx: &mut Ctx<'_>, args: Map<String, Value>) -> Result<Value, QmpError> {
    let name = req_str(&args, "fdname")?;
    match ctx.fds.remove(name) {
        Some(fd) => {
            drop(fd);
            Ok(empty())
        }
        None => Err(QmpError::generic(format!(
            "File descriptor named '{name}' not found"
        ))),
    }
}
