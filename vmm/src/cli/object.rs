//! `-object` and `-device`: both QEMU forms, `type,id=...,k=v` (keyval) and
//! JSON (`{"qom-type": "secret", "id": "s0", ...}`, which libvirt uses).

use serde_json::{Map, Value};

use super::opts;

/// A user-creatable object (`-object`, QMP `object-add`, HMP `object_add`).
///
/// `props` holds every property except `qom-type` and `id`. From the
/// keyval form all values are strings (`"on"`, `"4096"`); from JSON they
/// keep their JSON types. Consumers should use the typed getters, which
/// accept both.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectSpec {
    /// QOM type, e.g. `secret`, `tls-creds-x509`, `memory-backend-memfd`.
    pub qom_type: String,
    /// Object id.
    pub id: String,
    /// Other properties.
    pub props: Map<String, Value>,
    /// True when parsed from the keyval form (values are strings).
    pub from_keyval: bool,
}

impl ObjectSpec {
    /// A string property (JSON numbers/bools are rendered as text).
    pub fn get_str(&self, key: &str) -> Option<String> {
        match self.props.get(key)? {
            Value::String(s) => Some(s.clone()),
            Value::Bool(b) => Some(if *b { "on".into() } else { "off".into() }),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    /// A boolean property: JSON bool or an on/off/yes/no/true/false string.
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>, String> {
        match self.props.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if self.from_keyval => opts::parse_bool(key, s).map(Some),
            Some(_) => Err(format!(
                "Invalid parameter type for '{key}', expected: boolean"
            )),
        }
    }

    /// An unsigned integer property: JSON number, or a string in keyval form.
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>, String> {
        match self.props.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_u64()
                .map(Some)
                .ok_or_else(|| format!("Invalid parameter type for '{key}', expected: integer")),
            Some(Value::String(s)) if self.from_keyval => s
                .parse()
                .map(Some)
                .map_err(|_| format!("Parameter '{key}' expects an integer")),
            Some(_) => Err(format!(
                "Invalid parameter type for '{key}', expected: integer"
            )),
        }
    }

    /// A size property (`size=2G` in keyval form, a number in JSON).
    pub fn get_size(&self, key: &str) -> Result<Option<u64>, String> {
        match self.props.get(key) {
            Some(Value::String(s)) if self.from_keyval => opts::parse_size(key, s, 0).map(Some),
            _ => self.get_u64(key),
        }
    }
}

/// Parses a JSON `-object`/`-device` value into an object map.
fn parse_json_object(text: &str) -> Result<Map<String, Value>, String> {
    match crate::qmp::json::parse(text.as_bytes()) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err("JSON value must be an object".into()),
        Err(e) => Err(e.to_string()),
    }
}

fn take_string(m: &mut Map<String, Value>, key: &str) -> Result<String, String> {
    match m.remove(key) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(format!(
            "Invalid parameter type for '{key}', expected: string"
        )),
        None => Err(format!("Parameter '{key}' is missing")),
    }
}

/// Parses `-object` in either form.
pub fn parse_object(text: &str) -> Result<ObjectSpec, String> {
    if text.trim_start().starts_with('{') {
        let mut m = parse_json_object(text)?;
        let qom_type = take_string(&mut m, "qom-type")?;
        let id = take_string(&mut m, "id")?;
        return Ok(ObjectSpec {
            qom_type,
            id,
            props: m,
            from_keyval: false,
        });
    }
    let mut o = opts::parse(text, Some("qom-type"))?;
    let qom_type = o
        .take("qom-type")
        .ok_or("Parameter 'qom-type' is missing")?;
    let id = o.take("id").ok_or("Parameter 'id' is missing")?;
    let props = o
        .into_pairs()
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    Ok(ObjectSpec {
        qom_type,
        id,
        props,
        from_keyval: true,
    })
}

/// A `-device`.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceSpec {
    /// Device model.
    pub driver: String,
    /// Id, if given.
    pub id: Option<String>,
    /// Other properties (strings in keyval form).
    pub props: Map<String, Value>,
}

/// Device models Bulkhead has, with the properties each accepts.
pub const DEVICES: &[(&str, &[&str])] = &[
    ("virtio-blk-device", &["drive"]),
    ("isa-serial", &["chardev", "index"]),
];

/// Parses `-device` in either form, accepting only modelled devices.
pub fn parse_device(text: &str) -> Result<DeviceSpec, String> {
    let (driver, id, props) = if text.trim_start().starts_with('{') {
        let mut m = parse_json_object(text)?;
        let driver = take_string(&mut m, "driver")?;
        let id = match m.remove("id") {
            Some(Value::String(s)) => Some(s),
            Some(_) => return Err("Invalid parameter type for 'id', expected: string".into()),
            None => None,
        };
        (driver, id, m)
    } else {
        let mut o = opts::parse(text, Some("driver"))?;
        let driver = o.take("driver").ok_or("Parameter 'driver' is missing")?;
        let id = o.take("id");
        let props = o
            .into_pairs()
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        (driver, id, props)
    };
    let Some((_, allowed)) = DEVICES.iter().find(|(d, _)| *d == driver) else {
        return Err(format!("'{driver}' is not a valid device model name"));
    };
    if let Some(k) = props.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(format!("Property '{driver}.{k}' not found"));
    }
    Ok(DeviceSpec { driver, id, props })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn object_forms() {
        let o = parse_object("secret,id=s0,data=abc,,def,format=raw").unwrap();
        assert_eq!((o.qom_type.as_str(), o.id.as_str()), ("secret", "s0"));
        assert_eq!(o.get_str("data").as_deref(), Some("abc,def"));
        assert!(o.from_keyval);
        let o = parse_object(r#"{"qom-type":"secret","id":"s0","data":"x","format":"base64"}"#)
            .unwrap();
        assert_eq!(
            o.props,
            json!({"data":"x","format":"base64"})
                .as_object()
                .unwrap()
                .clone()
        );
        assert!(!o.from_keyval);
        let o = parse_object("memory-backend-memfd,id=m0,size=2G,share=on").unwrap();
        assert_eq!(o.get_size("size"), Ok(Some(2 << 30)));
        assert_eq!(o.get_bool("share"), Ok(Some(true)));
        let o = parse_object(
            r#"{"qom-type":"memory-backend-memfd","id":"m0","size":1073741824,"share":true}"#,
        )
        .unwrap();
        assert_eq!(o.get_size("size"), Ok(Some(1 << 30)));
        assert_eq!(o.get_bool("share"), Ok(Some(true)));
        assert_eq!(
            parse_object("secret").unwrap_err(),
            "Parameter 'id' is missing"
        );
        assert_eq!(
            parse_object(r#"{"qom-type":"secret""#).unwrap_err(),
            "JSON parse error, premature EOI"
        );
        assert_eq!(
            parse_object(r#"{"id":"x"}"#).unwrap_err(),
            "Parameter 'qom-type' is missing"
        );
    }

    #[test]
    fn device_forms() {
        let d = parse_device("virtio-blk-device,drive=d0,id=blk0").unwrap();
        assert_eq!(
            (d.driver.as_str(), d.id.as_deref()),
            ("virtio-blk-device", Some("blk0"))
        );
        let d = parse_device(r#"{"driver":"isa-serial","chardev":"c0"}"#).unwrap();
        assert_eq!(d.props["chardev"], "c0");
        assert_eq!(
            parse_device("foo").unwrap_err(),
            "'foo' is not a valid device model name"
        );
        assert_eq!(
            parse_device("virtio-net-pci,netdev=n").unwrap_err(),
            "'virtio-net-pci' is not a valid device model name"
        );
        assert_eq!(
            parse_device("isa-serial,bogus=1").unwrap_err(),
            "Property 'isa-serial.bogus' not found"
        );
    }
}
