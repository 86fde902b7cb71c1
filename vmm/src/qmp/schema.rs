//! A small argument schema per command, and validation with QEMU's messages.
//!
//! Each command declares its `arguments` as a list of [`Field`]s. The
//! dispatcher validates the request against it before the handler runs, so
//! handlers can deserialise without guessing, and `query-commands` is
//! generated from the same table. Messages follow QEMU's QAPI visitors:
//!
//! * `Parameter 'keys[0].data' is missing`
//! * `Parameter 'pad' is unexpected`
//! * `Invalid parameter type for 'hold-time', expected: integer`
//! * `Parameter 'format' does not accept value 'jpg'` (leaf name, as QEMU)

use serde_json::{Map, Value};

use super::error::QmpError;

/// The type of one argument or member.
#[derive(Debug, Clone, Copy)]
pub enum Ty {
    /// JSON string.
    Str,
    /// JSON integer (fits i64 or u64).
    Int,
    /// Any JSON number.
    Number,
    /// JSON boolean.
    Bool,
    /// Any JSON value (checked by the handler).
    Any,
    /// A string out of a fixed set.
    Enum(&'static [&'static str]),
    /// Array of one element type.
    Array(&'static Ty),
    /// Object with exactly these members.
    Struct(&'static [Field]),
    /// Object whose discriminator member `tag` selects the other members
    /// (QAPI unions such as `KeyValue` and `InputEvent`).
    Union {
        /// Name of the discriminator member.
        tag: &'static str,
        /// Per tag value: the remaining members.
        variants: &'static [(&'static str, &'static [Field])],
    },
}

/// One member of an argument object.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// Member name.
    pub name: &'static str,
    /// Member type.
    pub ty: Ty,
    /// Whether it may be absent.
    pub optional: bool,
}

/// A required member.
pub const fn req(name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty,
        optional: false,
    }
}

/// An optional member.
pub const fn opt(name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty,
        optional: true,
    }
}

/// The `arguments` of one command.
#[derive(Debug, Clone, Copy)]
pub struct ArgSpec {
    /// Declared members.
    pub fields: &'static [Field],
    /// Whether members beyond `fields` are passed through to the handler
    /// (e.g. `object-add`'s per-type properties, checked by the backend).
    pub open: bool,
}

impl ArgSpec {
    /// No arguments at all.
    pub const NONE: ArgSpec = ArgSpec {
        fields: &[],
        open: false,
    };

    /// Exactly these members.
    pub const fn fields(fields: &'static [Field]) -> ArgSpec {
        ArgSpec {
            fields,
            open: false,
        }
    }

    /// These members plus any others.
    pub const fn open(fields: &'static [Field]) -> ArgSpec {
        ArgSpec { fields, open: true }
    }

    /// Validates a command's `arguments` object.
    pub fn validate(&self, args: &Map<String, Value>) -> Result<(), QmpError> {
        check_members(args, self.fields, self.open, "")
    }
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

fn type_error(path: &str, expected: &str) -> QmpError {
    QmpError::generic(format!(
        "Invalid parameter type for '{path}', expected: {expected}"
    ))
}

fn check_members(
    obj: &Map<String, Value>,
    fields: &[Field],
    open: bool,
    prefix: &str,
) -> Result<(), QmpError> {
    for f in fields {
        let path = join(prefix, f.name);
        match obj.get(f.name) {
            None if f.optional => {}
            None => return Err(QmpError::missing(&path)),
            Some(v) => check_value(v, &f.ty, &path, f.name)?,
        }
    }
    if !open {
        if let Some(extra) = obj
            .keys()
            .find(|k| !fields.iter().any(|f| f.name == k.as_str()))
        {
            return Err(QmpError::generic(format!(
                "Parameter '{}' is unexpected",
                join(prefix, extra)
            )));
        }
    }
    Ok(())
}

/// Validates one value of type `ty` found at `path` (leaf member `name`).
pub fn check_value(v: &Value, ty: &Ty, path: &str, name: &str) -> Result<(), QmpError> {
    match ty {
        Ty::Any => Ok(()),
        Ty::Str if v.is_string() => Ok(()),
        Ty::Str => Err(type_error(path, "string")),
        Ty::Int if v.is_i64() || v.is_u64() => Ok(()),
        Ty::Int => Err(type_error(path, "integer")),
        Ty::Number if v.is_number() => Ok(()),
        Ty::Number => Err(type_error(path, "number")),
        Ty::Bool if v.is_boolean() => Ok(()),
        Ty::Bool => Err(type_error(path, "boolean")),
        Ty::Enum(values) => match v.as_str() {
            Some(s) if values.contains(&s) => Ok(()),
            Some(s) => Err(QmpError::bad_value(name, s)),
            None => Err(type_error(path, "string")),
        },
        Ty::Array(elem) => match v.as_array() {
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    // QEMU names list elements "null" in its enum error.
                    check_value(item, elem, &format!("{path}[{i}]"), "null")?;
                }
                Ok(())
            }
            None => Err(type_error(path, "array")),
        },
        Ty::Struct(fields) => match v.as_object() {
            Some(o) => check_members(o, fields, false, path),
            None => Err(type_error(path, "object")),
        },
        Ty::Union { tag, variants } => {
            let Some(o) = v.as_object() else {
                return Err(type_error(path, "object"));
            };
            let tag_path = join(path, tag);
            let t = match o.get(*tag) {
                None => return Err(QmpError::missing(&tag_path)),
                Some(Value::String(s)) => s.as_str(),
                Some(_) => return Err(type_error(&tag_path, "string")),
            };
            let Some((_, fields)) = variants.iter().find(|(name, _)| *name == t) else {
                return Err(QmpError::bad_value(tag, t));
            };
            let mut rest = o.clone();
            rest.remove(*tag);
            check_members(&rest, fields, false, path)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEY: Ty = Ty::Union {
        tag: "type",
        variants: &[
            ("number", &[req("data", Ty::Int)]),
            ("qcode", &[req("data", Ty::Enum(&["a", "ctrl"]))]),
        ],
    };
    const SPEC: ArgSpec =
        ArgSpec::fields(&[req("keys", Ty::Array(&KEY)), opt("hold-time", Ty::Int)]);

    fn check(v: Value) -> Result<(), String> {
        SPEC.validate(v.as_object().unwrap()).map_err(|e| e.desc)
    }

    #[test]
    fn messages_match_qemu() {
        assert!(check(
            json!({"keys": [{"type": "qcode", "data": "a"}, {"type": "number", "data": 30}]})
        )
        .is_ok());
        assert_eq!(check(json!({})).unwrap_err(), "Parameter 'keys' is missing");
        assert_eq!(
            check(json!({"keys": {}})).unwrap_err(),
            "Invalid parameter type for 'keys', expected: array"
        );
        assert_eq!(
            check(json!({"keys": [1]})).unwrap_err(),
            "Invalid parameter type for 'keys[0]', expected: object"
        );
        assert_eq!(
            check(json!({"keys": [{"type": "qcode"}]})).unwrap_err(),
            "Parameter 'keys[0].data' is missing"
        );
        assert_eq!(
            check(json!({"keys": [{"type": "qcode", "data": 1}]})).unwrap_err(),
            "Invalid parameter type for 'keys[0].data', expected: string"
        );
        assert_eq!(
            check(json!({"keys": [{"type": "qcode", "data": "nokey"}]})).unwrap_err(),
            "Parameter 'data' does not accept value 'nokey'"
        );
        assert_eq!(
            check(json!({"keys": [{"type": "foo", "data": 1}]})).unwrap_err(),
            "Parameter 'type' does not accept value 'foo'"
        );
        assert_eq!(
            check(json!({"keys": [{"type": "qcode", "data": "a", "x": 1}]})).unwrap_err(),
            "Parameter 'keys[0].x' is unexpected"
        );
        assert_eq!(
            check(json!({"keys": [], "hold-time": 1.5})).unwrap_err(),
            "Invalid parameter type for 'hold-time', expected: integer"
        );
        assert_eq!(
            check(json!({"keys": [], "pad": "x"})).unwrap_err(),
            "Parameter 'pad' is unexpected"
        );
    }
}
