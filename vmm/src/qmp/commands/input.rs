//! Input: `send-key`, `input-send-event`.

use serde_json::{Map, Value};

use super::super::backend::{InputEvent, KeyValue, INPUT_AXES, INPUT_BUTTONS};
use super::super::dispatch::{Command, Ctx};
use super::super::error::QmpError;
use super::super::keys::QKEYCODES;
use super::super::schema::{opt, req, ArgSpec, Ty};
use super::{empty, opt_str, opt_u32};

/// QEMU's `KeyValue` union.
pub const KEY_VALUE: Ty = Ty::Union {
    tag: "type",
    variants: &[
        ("number", &[req("data", Ty::Int)]),
        ("qcode", &[req("data", Ty::Enum(QKEYCODES))]),
    ],
};

const KEY_EVENT: Ty = Ty::Struct(&[req("down", Ty::Bool), req("key", KEY_VALUE)]);
const BTN_EVENT: Ty = Ty::Struct(&[
    req("down", Ty::Bool),
    req("button", Ty::Enum(INPUT_BUTTONS)),
]);
const MOVE_EVENT: Ty = Ty::Struct(&[req("axis", Ty::Enum(INPUT_AXES)), req("value", Ty::Int)]);

/// QEMU's `InputEvent` union.
pub const INPUT_EVENT: Ty = Ty::Union {
    tag: "type",
    variants: &[
        ("key", &[req("data", KEY_EVENT)]),
        ("btn", &[req("data", BTN_EVENT)]),
        ("rel", &[req("data", MOVE_EVENT)]),
        ("abs", &[req("data", MOVE_EVENT)]),
    ],
};

/// This group.
pub const COMMANDS: &[Command] = &[
    Command {
        name: "send-key",
        args: ArgSpec::fields(&[
            req("keys", Ty::Array(&KEY_VALUE)),
            opt("hold-time", Ty::Int),
        ]),
        run: send_key,
    },
    Command {
        name: "input-send-event",
        args: ArgSpec::fields(&[
            opt("device", Ty::Str),
            opt("head", Ty::Int),
            req("events", Ty::Array(&INPUT_EVENT)),
        ]),
        run: input_send_event,
    },
];

/// Default `hold-time` of `send-key` (ms), as in QEMU.
pub const DEFAULT_HOLD_MS: u32 = 100;

fn bad(what: &str) -> QmpError {
    QmpError::generic(format!("Invalid parameter '{what}'"))
}

/// Converts a schema-checked `KeyValue` object.
pub fn key_value(v: &Value) -> Result<KeyValue, QmpError> {
    match (v.get("type").and_then(Value::as_str), v.get("data")) {
        (Some("number"), Some(d)) => d.as_i64().map(KeyValue::Number).ok_or_else(|| bad("data")),
        (Some("qcode"), Some(Value::String(s))) => Ok(KeyValue::QCode(s.clone())),
        _ => Err(bad("key")),
    }
}

fn input_event(v: &Value) -> Result<InputEvent, QmpError> {
    let d = v.get("data").ok_or_else(|| bad("data"))?;
    let down = || {
        d.get("down")
            .and_then(Value::as_bool)
            .ok_or_else(|| bad("down"))
    };
    let axis = || {
        d.get("axis")
            .and_then(Value::as_str)
            .map(String::from)
            .ok_or_else(|| bad("axis"))
    };
    let value = || {
        d.get("value")
            .and_then(Value::as_i64)
            .ok_or_else(|| bad("value"))
    };
    Ok(match v.get("type").and_then(Value::as_str) {
        Some("key") => InputEvent::Key {
            down: down()?,
            key: key_value(d.get("key").ok_or_else(|| bad("key"))?)?,
        },
        Some("btn") => InputEvent::Btn {
            down: down()?,
            button: d
                .get("button")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("button"))?
                .to_string(),
        },
        Some("rel") => InputEvent::Rel {
            axis: axis()?,
            value: value()?,
        },
        Some("abs") => InputEvent::Abs {
            axis: axis()?,
            value: value()?,
        },
        _ => return Err(bad("type")),
    })
}

fn send_key(ctx: &mut Ctx<'_>, args: Map<String, Value>) -> Result<Value, QmpError> {
    let keys = args
        .get("keys")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(key_value).collect::<Result<Vec<_>, _>>())
        .transpose()?
        .unwrap_or_default();
    let hold = match args.get("hold-time").and_then(Value::as_i64) {
        Some(h) => h.clamp(0, u32::MAX as i64) as u32,
        None => DEFAULT_HOLD_MS,
    };
    ctx.backend.send_key(&keys, hold)?;
    Ok(empty())
}

fn input_send_event(ctx: &mut Ctx<'_>, args: Map<String, Value>) -> Result<Value, QmpError> {
    let device = opt_str(&args, "device");
    let head = opt_u32(&args, "head")?;
    if head.is_some() && device.is_none() {
        return Err(QmpError::generic(
            "'head' must be specified together with 'device'",
        ));
    }
    let events = args
        .get("events")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(input_event).collect::<Result<Vec<_>, _>>())
        .transpose()?
        .unwrap_or_default();
    // QEMU refuses input while the guest cannot take it; with a `device`
    // the backend first resolves it (DeviceNotFound wins, as in QEMU).
    if device.is_none() && !ctx.backend.query_status().is_running() {
        return Err(QmpError::generic("VM not running"));
    }
    ctx.backend.input_send_event(device, head, &events)?;
    Ok(empty())
}
