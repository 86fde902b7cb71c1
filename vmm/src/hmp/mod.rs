//! HMP, QEMU's human monitor: a text command line on `-monitor stdio|unix:`
//! and through QMP's `human-monitor-command`.
//!
//! Like QEMU's `hmp_*` wrappers, each text command maps onto the QMP
//! command of the same meaning ([`Registry::call`]), so validation and the
//! backend are shared; only argument parsing and output formatting live
//! here. Commands are a table ([`COMMANDS`]); the migration and NBD issues
//! add rows (`migrate`, `migrate_set_parameter`, `nbd_server_start`, ...).
//!
//! Output uses `\n` internally and is returned with QEMU's `\r\n` endings.

pub mod monitor;

use serde_json::{json, Map, Value};

use crate::qmp::backend::KeyValue;
use crate::qmp::dispatch::Ctx;
use crate::qmp::error::QmpError;
use crate::qmp::keys::{hmp_key_name, QKEYCODES};
use crate::qmp::wire;

/// Why a command line failed before running (QEMU's argument errors).
#[derive(Debug)]
pub enum HmpError {
    /// A required argument is missing: "NAME: WHAT expected".
    Expected(&'static str),
    /// Too many arguments.
    Extraneous,
    /// Free-form message printed as is.
    Text(String),
    /// A QMP error, printed as "Error: DESC".
    Qmp(QmpError),
}

impl From<QmpError> for HmpError {
    fn from(e: QmpError) -> Self {
        HmpError::Qmp(e)
    }
}

type Run = fn(&mut Ctx<'_>, &[&str]) -> Result<String, HmpError>;

/// One HMP command.
#[derive(Debug, Clone, Copy)]
pub struct HmpCommand {
    /// Name and aliases as QEMU shows them, e.g. `cont|c`.
    pub names: &'static str,
    /// Parameter synopsis for `help`.
    pub params: &'static str,
    /// One-line help.
    pub help: &'static str,
    /// Handler (arguments already split on whitespace).
    pub run: Run,
}

impl HmpCommand {
    fn matches(&self, word: &str) -> bool {
        self.names.split('|').any(|n| n == word)
    }

    fn name(&self) -> &'static str {
        self.names.split('|').next().unwrap_or(self.names)
    }

    fn help_line(&self) -> String {
        format!("{} {} -- {}\n", self.names, self.params, self.help)
    }
}

/// Top-level commands, sorted as `help` prints them.
pub const COMMANDS: &[HmpCommand] = &[
    HmpCommand { names: "chardev-add", params: "args", help: "add chardev", run: chardev_add },
    HmpCommand { names: "chardev-remove", params: "id", help: "remove chardev", run: chardev_remove },
    HmpCommand { names: "closefd", params: "closefd name", help: "close a file descriptor previously passed via SCM rights", run: closefd },
    HmpCommand { names: "cont|c", params: "", help: "resume emulation", run: cont },
    HmpCommand { names: "getfd", params: "getfd name", help: "receive a file descriptor via SCM rights and assign it a name", run: getfd },
    HmpCommand { names: "help|?", params: "[cmd]", help: "show the help", run: help },
    HmpCommand { names: "info", params: "[subcommand]", help: "show various information about the system state", run: info },
    HmpCommand { names: "object_add", params: "[qom-type=]type,id=str[,prop=value][,...]", help: "create QOM object", run: object_add },
    HmpCommand { names: "object_del", params: "id", help: "destroy QOM object", run: object_del },
    HmpCommand { names: "quit|q", params: "", help: "quit the emulator", run: quit },
    HmpCommand { names: "screendump", params: "filename [-f format] [device [head]]", help: "save screen from head 'head' of display device 'device'in specified format 'format' as image 'filename'.Currently only 'png' and 'ppm' formats are supported.", run: screendump },
    HmpCommand { names: "sendkey", params: "keys [hold_ms]", help: "send keys to the VM (e.g. 'sendkey ctrl-alt-f1', default hold time=100 ms)", run: sendkey },
    HmpCommand { names: "stop|s", params: "", help: "stop emulation", run: stop },
    HmpCommand { names: "system_powerdown", params: "", help: "send system power down event", run: system_powerdown },
    HmpCommand { names: "system_reset", params: "", help: "reset the system", run: system_reset },
];

/// `info` subcommands.
pub const INFO_COMMANDS: &[HmpCommand] = &[
    HmpCommand {
        names: "block",
        params: "[device]",
        help: "show info of one block device or all block devices",
        run: info_block,
    },
    HmpCommand {
        names: "chardev",
        params: "",
        help: "show the character devices",
        run: info_chardev,
    },
    HmpCommand {
        names: "kvm",
        params: "",
        help: "show KVM information",
        run: info_kvm,
    },
    HmpCommand {
        names: "name",
        params: "",
        help: "show the current VM name",
        run: info_name,
    },
    HmpCommand {
        names: "status",
        params: "",
        help: "show the current VM status (running|paused)",
        run: info_status,
    },
    HmpCommand {
        names: "version",
        params: "",
        help: "show the version of QEMU",
        run: info_version,
    },
];

/// Runs one command line and returns its output with `\r\n` line endings.
pub fn execute(ctx: &mut Ctx<'_>, line: &str) -> String {
    let out = execute_lf(ctx, line);
    out.replace('\n', "\r\n")
}

fn execute_lf(ctx: &mut Ctx<'_>, line: &str) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    let Some((&first, args)) = words.split_first() else {
        return String::new();
    };
    let Some(cmd) = COMMANDS.iter().find(|c| c.matches(first)) else {
        return format!("unknown command: '{first}'\n");
    };
    run_command(ctx, cmd, args, cmd.names, cmd.name())
}

fn run_command(
    ctx: &mut Ctx<'_>,
    cmd: &HmpCommand,
    args: &[&str],
    shown: &str,
    help_name: &str,
) -> String {
    match (cmd.run)(ctx, args) {
        Ok(s) => s,
        Err(HmpError::Expected(what)) => {
            format!("{shown}: {what} expected\nTry \"help {help_name}\" for more information\n")
        }
        Err(HmpError::Extraneous) => format!(
            "{shown}: extraneous characters at the end of line\nTry \"help {help_name}\" for more information\n"
        ),
        Err(HmpError::Text(t)) => t,
        Err(HmpError::Qmp(e)) => format!("Error: {}\n", e.desc),
    }
}

fn no_args(args: &[&str]) -> Result<(), HmpError> {
    if args.is_empty() {
        Ok(())
    } else {
        Err(HmpError::Extraneous)
    }
}

fn call(ctx: &mut Ctx<'_>, name: &str, args: Value) -> Result<Value, HmpError> {
    let map = match args {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let registry = ctx.registry;
    Ok(registry.call(ctx, name, map)?)
}

fn simple(ctx: &mut Ctx<'_>, args: &[&str], qmp: &str) -> Result<String, HmpError> {
    no_args(args)?;
    call(ctx, qmp, json!({}))?;
    Ok(String::new())
}

fn stop(ctx: &mut Ctx<'_>, args: &[&str]) -> Result<String, HmpError> {
    simple(ctx, args, "stop")
}

fn cont(ctx: &mut Ctx<'_>, args: &[&str]) -> Result<String, HmpError> {
    simple(ctx, args, "cont")
}

fn system_reset(ctx: &mut Ctx<'_>, args: &[&str]) -> Result<String, HmpError> {
    simple(ctx, args, "system_reset")
}

fn system_powerdown(ctx: &mut Ctx<'_>, args: &[&str]) -> Result<String, HmpError> {
    simple(ctx, args, "system_powerdown")
}

fn quit(ctx: &mut Ctx<'_>, args: &[&str]) -> Result<String, HmpError> {
    simple(ctx, args, "quit")
}

fn help(_: &mut Ctx<'_>, args: &[&str]) -> Result<String, HmpError> {
    match args {
        [] => Ok(COMMANDS.iter().map(HmpCommand::help_line).collect()),
        ["info"] => Ok(info_help()),
        ["info", sub] => match INFO_COMMANDS.iter().find(|c| c.matches(sub)) {
            Some(c) => Ok(format!("info {}", c.help_line())),
            None => Ok(format!("unknown command: 'info {sub}'\n")),
        },
        [name] => match COMMANDS.iter().find(|c| c.matches(name)) {
            Some(c) => Ok(c.help_line()),
            None => Ok(format!("unknown command: '{name}'\n")),
        },
        _ => Err(HmpError::Extraneous),
    }
}

fn info_help() -> String {
    INFO_COMMANDS
        .iter()
        .map(|c| format!("info {}", c.help_line()))
        .collect()
}

fn info(ctx: &mut Ctx<'_>, args: &[&str]) -> Result<String, HmpError> {
    let Some((&sub, rest)) = args.split_first() else {
        return Ok(info_help());
    };
    let Some(cmd) = INFO_COMMANDS.iter().find(|c| c.matches(sub)) else {
        return Ok(format!("unknown command: 'info {sub}'\n"));
    };
    Ok(run_command(
        ctx,
        cmd,
        rest,
        cmd.names,
        &format!("info {}", cmd.name()),
    ))
}

fn info_status(ctx: &mut Ctx<'_>, args: &[&str]) -> Result<String, HmpError> {
    no_args(args)?;
    let st = ctx.backend.query_status();
    let mut s = format!(
        "VM status: {}",
        if st.is_running() { "running" } else { "paused" }
    );
    if !st.is_running() && st != crate::qmp::RunState::Paused {
        s.push_str(&format!(" ({})", st.as_str()));
    }
    s.push('\n');
    Ok(s)
}

fn info_version(_: &mut Ctx<'_>, args: &[&str]) -> Result<String, HmpError> {
    no_args(args)?;
    let (a, b, c) = wire::QEMU_VERSION;
    Ok(format!("{a}.{b}.{c}{}\n", wire::package()))
}

fn info_name(ctx: &mut Ctx<'_>, args: &[&str]) -> Result<String, HmpError> {
    no_args(args)?;
    Ok(ctx
        .backend
        .name()
        .map(|n| format!("{n}\n"))
        .unwrap_or_default())
}

fn info_kvm(ctx: &mut Ctx<'_>, args: &[&str]) -> Result<String, HmpError> {
    no_args(args)?;
    let k = ctx.backend.query_kvm();
    Ok(format!(
        "kvm support: {}\n",
        if k.enabled { "enabled" } else { "disabled" }
    ))
}

fn info_block(ctx: &mut Ctx<'_>, args: &[&str]) -> Result<String, HmpError> {
    if args.len() > 1 {
        return Err(HmpError::Extraneous);
    }
    let mut out = Vec::new();
    for b in ctx.backend.query_block() {
        if args.first().is_some_and(|d| *d != b.device) {
            continue;
        }
        let ro = if b.ro { ", read-only" } else { "" };
        let mut s = format!(
            "{} ({}): {} ({}{ro})\n",
            b.device, b.node_name, b.file, b.drv
        );
        if let Some(q) = &b.qdev {
            s.push_str(&format!("    Attached to:      {q}\n"));
        }
        s.push_str("    Cache mode:       writeback\n");
        out.push(s);
    }
    if let (Some(d), true) = (args.first(), out.is_empty()) {
        return Err(HmpError::Qmp(QmpError::generic(format!(
            "Device '{d}' not found"
        ))));
    }
    Ok(out.join("\n"))
}

fn info_chardev(ctx: &mut Ctx<'_>, args: &[&str]) -> Result<String, HmpError> {
    no_args(args)?;
    Ok(ctx
        .backend
        .query_chardev()
        .iter()
        .map(|c| format!("{}: filename={}\n", c.label, c.filename))
        .collect())
}

fn screendump(ctx: &mut Ctx<'_>, args: &[&str]) -> Result<String, HmpError> {
    let mut rest: Vec<&str> = Vec::new();
    let mut format = None;
    let mut it = args.iter();
    let mut filename = None;
    while let Some(&a) = it.next() {
        if a == "-f" {
            format = Some(*it.next().ok_or(HmpError::Expected("format"))?);
        } else if filename.is_none() {
            filename = Some(a);
        } else {
            rest.push(a);
        }
    }
    let filename = filename.ok_or(HmpError::Expected("filename"))?;
    if rest.len() > 2 {
        return Err(HmpError::Extraneous);
    }
    let mut a = json!({ "filename": filename });
    if let Some(f) = format {
        if f != "ppm" && f != "png" {
            return Err(HmpError::Qmp(QmpError::generic(format!(
                "invalid parameter value: {f}"
            ))));
        }
        a["format"] = json!(f);
    }
    if let Some(d) = rest.first() {
        a["device"] = json!(d);
    }
    if let Some(h) = rest.get(1) {
        let h: u32 = h
            .parse()
            .map_err(|_| HmpError::Text(format!("invalid number: {h}\n")))?;
        a["head"] = json!(h);
    }
    call(ctx, "screendump", a)?;
    Ok(String::new())
}

/// Parses `ctrl-alt-f1` into keys (names, aliases or numbers like `0x1e`).
pub fn parse_key_combo(s: &str) -> Result<Vec<KeyValue>, String> {
    let mut keys = Vec::new();
    for part in s.split('-') {
        let name = hmp_key_name(part);
        if QKEYCODES.contains(&name) && !name.is_empty() {
            keys.push(KeyValue::QCode(name.to_string()));
            continue;
        }
        let num = if let Some(h) = part.strip_prefix("0x") {
            i64::from_str_radix(h, 16).ok()
        } else {
            part.parse::<i64>().ok()
        };
        match num {
            Some(n) => keys.push(KeyValue::Number(n)),
            None => return Err(format!("invalid parameter: {part}\n")),
        }
    }
    Ok(keys)
}

fn sendkey(ctx: &mut Ctx<'_>, args: &[&str]) -> Result<String, HmpError> {
    let (&combo, rest) = args.split_first().ok_or(HmpError::Expected("string"))?;
    let hold: Option<i64> = match rest {
        [] => None,
        [h] => Some(h.parse().map_err(|_| HmpError::Extraneous)?),
        _ => return Err(HmpError::Extraneous),
    };
    let keys = parse_key_combo(combo).map_err(HmpError::Text)?;
    let keys: Vec<Value> = keys
        .into_iter()
        .map(|k| match k {
            KeyValue::Number(n) => json!({"type": "number", "data": n}),
            KeyValue::QCode(q) => json!({"type": "qcode", "data": q}),
        })
        .collect();
    let mut a = json!({ "keys": keys });
    if let Some(h) = hold {
        a["hold-time"] = json!(h);
    }
    call(ctx, "send-key", a)?;
    Ok(String::new())
}

fn object_add(ctx: &mut Ctx<'_>, args: &[&str]) -> Result<String, HmpError> {
    let (&spec, rest) = args.split_first().ok_or(HmpError::Expected("object"))?;
    if !rest.is_empty() {
        return Err(HmpError::Extraneous);
    }
    let obj =
        crate::cli::object::parse_object(spec).map_err(|e| HmpError::Qmp(QmpError::generic(e)))?;
    ctx.backend.object_add(obj)?;
    Ok(String::new())
}

/// `chardev-add socket,id=s1,host=...,port=...` (the `-chardev` syntax).
fn chardev_add(ctx: &mut Ctx<'_>, args: &[&str]) -> Result<String, HmpError> {
    let (&spec, rest) = args.split_first().ok_or(HmpError::Expected("args"))?;
    if !rest.is_empty() {
        return Err(HmpError::Extraneous);
    }
    let spec = crate::cli::chardev::parse_chardev(spec)
        .map_err(|e| HmpError::Qmp(QmpError::generic(e)))?;
    ctx.backend.chardev_add(spec)?;
    Ok(String::new())
}

fn chardev_remove(ctx: &mut Ctx<'_>, args: &[&str]) -> Result<String, HmpError> {
    match args {
        [] => Err(HmpError::Expected("id")),
        [id] => {
            call(ctx, "chardev-remove", json!({ "id": id }))?;
            Ok(String::new())
        }
        _ => Err(HmpError::Extraneous),
    }
}

fn object_del(ctx: &mut Ctx<'_>, args: &[&str]) -> Result<String, HmpError> {
    match args {
        [] => Err(HmpError::Expected("string")),
        [id] => {
            call(ctx, "object-del", json!({ "id": id }))?;
            Ok(String::new())
        }
        _ => Err(HmpError::Extraneous),
    }
}

fn getfd(ctx: &mut Ctx<'_>, args: &[&str]) -> Result<String, HmpError> {
    match args {
        [] => Err(HmpError::Expected("string")),
        [name] => {
            call(ctx, "getfd", json!({ "fdname": name }))?;
            Ok(String::new())
        }
        _ => Err(HmpError::Extraneous),
    }
}

fn closefd(ctx: &mut Ctx<'_>, args: &[&str]) -> Result<String, HmpError> {
    match args {
        [] => Err(HmpError::Expected("string")),
        [name] => {
            call(ctx, "closefd", json!({ "fdname": name }))?;
            Ok(String::new())
        }
        _ => Err(HmpError::Extraneous),
    }
}
