//! Command table and the per-connection protocol state machine.
//!
//! ```text
//!   connect ─► greeting ─► [capabilities mode] ──qmp_capabilities──► [command mode]
//!                            any other command:                        commands run,
//!                            CommandNotFound "Expecting capabilities    events flow;
//!                            negotiation with 'qmp_capabilities'"       qmp_capabilities
//!                                                                      again: CommandNotFound
//! ```
//!
//! Every input value goes through the same checks as QEMU 7.2's
//! `handle_qmp_command`/`qmp_dispatch`: it must be an object; `id` is taken
//! out and echoed on the reply; the other members must be `execute`
//! (string), `arguments` (object) and, when `oob` was enabled, `exec-oob`.
//! Then the command is looked up, its arguments validated against its
//! [`ArgSpec`], and its handler run.

use serde_json::{Map, Value};
use std::sync::Arc;

use super::backend::MachineControl;
use super::error::QmpError;
use super::fds::FdStore;
use super::json;
use super::schema::ArgSpec;
use super::stream::Frame;
use super::wire;

/// Handler signature: validated arguments in, `return` value out.
pub type Handler = fn(&mut Ctx<'_>, Map<String, Value>) -> Result<Value, QmpError>;

/// One QMP command.
#[derive(Debug, Clone, Copy)]
pub struct Command {
    /// Wire name.
    pub name: &'static str,
    /// Its `arguments`.
    pub args: ArgSpec,
    /// Its handler.
    pub run: Handler,
}

/// What a handler can reach.
pub struct Ctx<'a> {
    /// The VM.
    pub backend: &'a dyn MachineControl,
    /// This client's passed fds (empty for HMP on stdio).
    pub fds: &'a mut FdStore,
    /// The full command table (for `query-commands` and HMP).
    pub registry: &'a Registry,
    /// Set by `quit`: close the connection once the reply is out.
    pub close_after_reply: bool,
}

/// All commands the server knows, by name.
#[derive(Debug, Clone)]
pub struct Registry {
    commands: Vec<Command>,
}

impl Registry {
    /// The standard command set (one module per group, see `commands/`).
    pub fn standard() -> Self {
        let mut r = Registry {
            commands: Vec::new(),
        };
        for group in super::commands::GROUPS {
            r.commands.extend_from_slice(group);
        }
        r
    }

    /// Adds (or replaces) commands; later issues register their groups here.
    pub fn extend(&mut self, cmds: &[Command]) {
        for c in cmds {
            self.commands.retain(|x| x.name != c.name);
            self.commands.push(*c);
        }
    }

    /// Looks a command up.
    pub fn get(&self, name: &str) -> Option<&Command> {
        self.commands.iter().find(|c| c.name == name)
    }

    /// All command names, in registration order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.commands.iter().map(|c| c.name)
    }

    /// Validates `args` and runs `name` (used by HMP, which maps its text
    /// commands onto QMP ones exactly like QEMU's `hmp_*` wrappers).
    pub fn call(
        &self,
        ctx: &mut Ctx<'_>,
        name: &str,
        args: Map<String, Value>,
    ) -> Result<Value, QmpError> {
        let cmd = self.get(name).ok_or_else(|| {
            QmpError::command_not_found(format!("The command {name} has not been found"))
        })?;
        cmd.args.validate(&args)?;
        (cmd.run)(ctx, args)
    }
}

/// Result of handling one input value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep reading.
    Continue,
    /// Flush the output and close the connection (after `quit`).
    Close,
}

/// Per-connection protocol state.
pub struct Session {
    backend: Arc<dyn MachineControl>,
    registry: Arc<Registry>,
    /// Passed fds of this client.
    pub fds: FdStore,
    negotiated: bool,
    oob: bool,
}

impl Session {
    /// A fresh session in capabilities-negotiation mode.
    pub fn new(backend: Arc<dyn MachineControl>, registry: Arc<Registry>) -> Self {
        Session {
            backend,
            registry,
            fds: FdStore::default(),
            negotiated: false,
            oob: false,
        }
    }

    /// Whether `qmp_capabilities` succeeded (events flow from then on).
    pub fn negotiated(&self) -> bool {
        self.negotiated
    }

    /// Handles one frame from the streamer; reply lines go to `out`.
    pub fn handle_frame(&mut self, frame: Frame, out: &mut dyn FnMut(Vec<u8>)) -> Flow {
        match frame {
            Frame::Error(desc) => {
                out(wire::reply_err(&QmpError::generic(desc), None));
                Flow::Continue
            }
            Frame::Rejected { desc, id } => {
                out(wire::reply_err(&QmpError::generic(desc), id.as_ref()));
                Flow::Continue
            }
            Frame::Value(bytes) => match json::parse(&bytes) {
                Err(e) => {
                    out(wire::reply_err(&QmpError::generic(e), None));
                    Flow::Continue
                }
                Ok(v) => self.handle_value(v, out),
            },
        }
    }

    /// Handles one parsed input value.
    pub fn handle_value(&mut self, v: Value, out: &mut dyn FnMut(Vec<u8>)) -> Flow {
        let Value::Object(mut req) = v else {
            out(wire::reply_err(
                &QmpError::generic("QMP input must be a JSON object"),
                None,
            ));
            return Flow::Continue;
        };
        let id = req.remove("id");
        let mut close = false;
        let result = self.execute(req, &mut close);
        match result {
            Ok(ret) => out(wire::reply_ok(&ret, id.as_ref())),
            Err(e) => out(wire::reply_err(&e, id.as_ref())),
        }
        if close {
            Flow::Close
        } else {
            Flow::Continue
        }
    }

    fn execute(&mut self, req: Map<String, Value>, close: &mut bool) -> Result<Value, QmpError> {
        let (name, oob, args) = check_request(req, self.oob)?;
        if !self.negotiated {
            if name != "qmp_capabilities" {
                return Err(QmpError::command_not_found(
                    "Expecting capabilities negotiation with 'qmp_capabilities'",
                ));
            }
            CAPABILITIES_ARGS.validate(&args)?;
            self.oob = args
                .get("enable")
                .and_then(Value::as_array)
                .is_some_and(|caps| caps.iter().any(|c| c == "oob"));
            self.negotiated = true;
            return Ok(Value::Object(Map::new()));
        }
        if name == "qmp_capabilities" {
            return Err(QmpError::command_not_found(
                "Capabilities negotiation is already complete, command ignored",
            ));
        }
        let registry = Arc::clone(&self.registry);
        let cmd = registry.get(&name).ok_or_else(|| {
            QmpError::command_not_found(format!("The command {name} has not been found"))
        })?;
        if oob {
            return Err(QmpError::generic(format!(
                "The command {name} does not support OOB"
            )));
        }
        cmd.args.validate(&args)?;
        let mut ctx = Ctx {
            backend: &*self.backend,
            fds: &mut self.fds,
            registry: &registry,
            close_after_reply: false,
        };
        let ret = (cmd.run)(&mut ctx, args);
        *close = ctx.close_after_reply;
        ret
    }
}

/// `qmp_capabilities` arguments.
pub const CAPABILITIES_ARGS: ArgSpec = ArgSpec::fields(&[super::schema::opt(
    "enable",
    super::schema::Ty::Array(&super::schema::Ty::Enum(&["oob"])),
)]);

/// QEMU's `qmp_dispatch_check_obj`: returns (command, is_oob, arguments).
fn check_request(
    req: Map<String, Value>,
    allow_oob: bool,
) -> Result<(String, bool, Map<String, Value>), QmpError> {
    let mut exec: Option<(String, &'static str)> = None;
    let mut args = Map::new();
    for (key, val) in req {
        let key_name: &'static str = match key.as_str() {
            "execute" => "execute",
            "exec-oob" if allow_oob => "exec-oob",
            "arguments" => {
                match val {
                    Value::Object(a) => args = a,
                    _ => {
                        return Err(QmpError::generic(
                            "QMP input member 'arguments' must be an object",
                        ))
                    }
                }
                continue;
            }
            other => {
                return Err(QmpError::generic(format!(
                    "QMP input member '{other}' is unexpected"
                )))
            }
        };
        let Value::String(name) = val else {
            return Err(QmpError::generic(format!(
                "QMP input member '{key_name}' must be a string"
            )));
        };
        if let Some((_, prev)) = &exec {
            return Err(QmpError::generic(format!(
                "QMP input member '{key_name}' clashes with '{prev}'"
            )));
        }
        exec = Some((name, key_name));
    }
    match exec {
        Some((name, key)) => Ok((name, key == "exec-oob", args)),
        None => Err(QmpError::generic("QMP input lacks member 'execute'")),
    }
}
