//! What goes on the wire: replies, errors, events and the greeting, each a
//! single line of JSON in QEMU's layout (`{"key": value, ...}`) ending in CRLF.
//!
//! ```text
//! greeting  {"QMP": {"version": {...}, "capabilities": ["oob"]}}\r\n
//! success   {"return": VALUE, "id": ID}\r\n        ("id" only when sent)
//! error     {"id": ID, "error": {"class": C, "desc": D}}\r\n
//! event     {"timestamp": {"seconds": S, "microseconds": U}, "event": E, "data": D}\r\n
//! ```

use serde_json::Value;
use std::io;
use std::time::{SystemTime, UNIX_EPOCH};

use super::error::QmpError;

/// QEMU release whose QMP schema this server follows.
pub const QEMU_VERSION: (u32, u32, u32) = (7, 2, 22);

/// Our own version string for the `package` field.
pub fn package() -> String {
    format!("bulkhead-{}", env!("CARGO_PKG_VERSION"))
}

/// serde_json formatter with QEMU's separators (`", "` and `": "`).
struct QemuFormatter;

impl serde_json::ser::Formatter for QemuFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }
}

/// Appends `v` to `out` in QEMU's layout.
pub fn write_value(out: &mut Vec<u8>, v: &Value) {
    let mut ser = serde_json::Serializer::with_formatter(&mut *out, QemuFormatter);
    // Serialising a Value into a Vec cannot fail.
    let _ = serde::Serialize::serialize(v, &mut ser);
}

/// Formats `v` in QEMU's layout.
pub fn to_string(v: &Value) -> String {
    let mut out = Vec::new();
    write_value(&mut out, v);
    String::from_utf8(out).unwrap_or_default()
}

/// The greeting line.
pub fn greeting() -> Vec<u8> {
    let (major, minor, micro) = QEMU_VERSION;
    let mut out = Vec::new();
    out.extend_from_slice(b"{\"QMP\": {\"version\": ");
    write_value(&mut out, &version_value(major, minor, micro));
    out.extend_from_slice(b", \"capabilities\": [\"oob\"]}}\r\n");
    out
}

/// `{"qemu": {...}, "package": ...}` as returned by `query-version`.
pub fn version_value(major: u32, minor: u32, micro: u32) -> Value {
    let mut m = serde_json::Map::new();
    m.insert(
        "qemu".into(),
        serde_json::json!({"major": major, "minor": minor, "micro": micro}),
    );
    m.insert("package".into(), Value::String(package()));
    Value::Object(m)
}

/// A success reply line.
pub fn reply_ok(ret: &Value, id: Option<&Value>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(b"{\"return\": ");
    write_value(&mut out, ret);
    if let Some(id) = id {
        out.extend_from_slice(b", \"id\": ");
        write_value(&mut out, id);
    }
    out.extend_from_slice(b"}\r\n");
    out
}

/// An error reply line.
pub fn reply_err(e: &QmpError, id: Option<&Value>) -> Vec<u8> {
    let mut out = Vec::with_capacity(96);
    out.push(b'{');
    if let Some(id) = id {
        out.extend_from_slice(b"\"id\": ");
        write_value(&mut out, id);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(b"\"error\": {\"class\": ");
    write_value(&mut out, &Value::String(e.class.as_str().into()));
    out.extend_from_slice(b", \"desc\": ");
    write_value(&mut out, &Value::String(e.desc.clone()));
    out.extend_from_slice(b"}}\r\n");
    out
}

/// An event line stamped with the current time.
pub fn event(name: &str, data: Option<&Value>) -> Vec<u8> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    event_at(name, data, now.as_secs(), now.subsec_micros())
}

/// An event line with an explicit timestamp.
pub fn event_at(name: &str, data: Option<&Value>, seconds: u64, micros: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(96);
    out.extend_from_slice(
        format!(
            "{{\"timestamp\": {{\"seconds\": {seconds}, \"microseconds\": {micros}}}, \"event\": "
        )
        .as_bytes(),
    );
    write_value(&mut out, &Value::String(name.into()));
    if let Some(d) = data {
        out.extend_from_slice(b", \"data\": ");
        write_value(&mut out, d);
    }
    out.extend_from_slice(b"}\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn layouts_match_qemu() {
        assert_eq!(reply_ok(&json!({}), None), b"{\"return\": {}}\r\n");
        assert_eq!(
            reply_ok(&json!([1, {"a": null}]), Some(&json!("x"))),
            b"{\"return\": [1, {\"a\": null}], \"id\": \"x\"}\r\n"
        );
        assert_eq!(
            reply_err(&QmpError::command_not_found("The command foo has not been found"), Some(&json!(1))),
            b"{\"id\": 1, \"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command foo has not been found\"}}\r\n"
        );
        assert_eq!(
            event_at("STOP", None, 5, 7),
            b"{\"timestamp\": {\"seconds\": 5, \"microseconds\": 7}, \"event\": \"STOP\"}\r\n"
        );
        let g: Value = serde_json::from_slice(&greeting()).unwrap();
        assert_eq!(
            g["QMP"]["version"]["qemu"],
            json!({"major": 7, "minor": 2, "micro": 22})
        );
        assert_eq!(g["QMP"]["capabilities"], json!(["oob"]));
        assert!(g["QMP"]["version"]["package"]
            .as_str()
            .unwrap()
            .starts_with("bulkhead-"));
        assert!(greeting().ends_with(b"}}\r\n"));
    }
}
