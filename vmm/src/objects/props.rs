//! Reading `-object` / `object-add` properties the way QEMU's visitors do.
//!
//! Input is a JSON object map: from QMP the values are typed JSON, from the
//! command line (`from_keyval`) every value is a string (`verify-peer=on`) and
//! nested lists may arrive flattened (`rules.0.match=...`). Error texts are
//! QEMU's (`Parameter 'x' is unexpected`, `Parameter 'x' expects 'on' or 'off'`,
//! `Invalid parameter type for 'x', expected: boolean`).

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::ObjectError;

/// A property bag that remembers which keys were consumed, so leftovers are
/// reported as unexpected.
pub struct Props<'a> {
    map: &'a Map<String, Value>,
    keyval: bool,
    used: BTreeSet<String>,
}

impl<'a> Props<'a> {
    pub fn new(map: &'a Map<String, Value>, keyval: bool) -> Self {
        Props {
            map,
            keyval,
            used: BTreeSet::new(),
        }
    }

    /// An optional string property.
    pub fn str(&mut self, key: &str) -> Result<Option<String>, ObjectError> {
        self.used.insert(key.to_string());
        match self.map.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(ObjectError::new(format!(
                "Invalid parameter type for '{key}', expected: string"
            ))),
        }
    }

    /// A required string property.
    pub fn req_str(&mut self, key: &str) -> Result<String, ObjectError> {
        self.str(key)?
            .ok_or_else(|| ObjectError::new(format!("Parameter '{key}' is missing")))
    }

    /// An optional boolean (`on|off|yes|no|true|false` on the command line).
    pub fn bool(&mut self, key: &str) -> Result<Option<bool>, ObjectError> {
        self.used.insert(key.to_string());
        match self.map.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) if !self.keyval => Ok(Some(*b)),
            Some(Value::String(s)) if self.keyval => match s.as_str() {
                "on" | "yes" | "true" => Ok(Some(true)),
                "off" | "no" | "false" => Ok(Some(false)),
                _ => Err(ObjectError::new(format!(
                    "Parameter '{key}' expects 'on' or 'off'"
                ))),
            },
            Some(_) => Err(ObjectError::new(format!(
                "Invalid parameter type for '{key}', expected: boolean"
            ))),
        }
    }

    /// An optional enum given by its QAPI names.
    pub fn enumeration<T: Copy>(
        &mut self,
        key: &str,
        values: &[(&str, T)],
    ) -> Result<Option<T>, ObjectError> {
        match self.str(key)? {
            None => Ok(None),
            Some(s) => values
                .iter()
                .find(|(name, _)| *name == s)
                .map(|(_, v)| Some(*v))
                .ok_or_else(|| {
                    ObjectError::new(format!("Parameter '{key}' does not accept value '{s}'"))
                }),
        }
    }

    /// A list property as JSON: a JSON array (QMP), or from the command line
    /// either already nested (`{"0": {...}}`) or flattened as `key.N.field`.
    pub fn list(&mut self, key: &str) -> Result<Option<Value>, ObjectError> {
        self.used.insert(key.to_string());
        if let Some(v) = self.map.get(key) {
            return match v {
                Value::Array(_) => Ok(Some(v.clone())),
                Value::Object(o) => Ok(Some(indexed_to_array(key, o)?)),
                _ => Err(ObjectError::new(format!(
                    "Invalid parameter type for '{key}', expected: array"
                ))),
            };
        }
        let prefix = format!("{key}.");
        let mut nested = Map::new();
        for (k, v) in self.map {
            let Some(rest) = k.strip_prefix(&prefix) else {
                continue;
            };
            self.used.insert(k.clone());
            let (index, field) = rest
                .split_once('.')
                .ok_or_else(|| ObjectError::new(format!("Parameter '{k}' is unexpected")))?;
            let entry = nested
                .entry(index.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(m) = entry {
                m.insert(field.to_string(), v.clone());
            }
        }
        if nested.is_empty() {
            return Ok(None);
        }
        Ok(Some(indexed_to_array(key, &nested)?))
    }

    /// Fail on the first property nobody asked for.
    pub fn finish(self) -> Result<(), ObjectError> {
        for k in self.map.keys() {
            if !self.used.contains(k) {
                return Err(ObjectError::new(format!("Parameter '{k}' is unexpected")));
            }
        }
        Ok(())
    }
}

/// `{"0": a, "1": b}` → `[a, b]`; indices must be 0..n with no gaps (keyval's rule).
fn indexed_to_array(key: &str, o: &Map<String, Value>) -> Result<Value, ObjectError> {
    let mut items: Vec<(usize, Value)> = Vec::with_capacity(o.len());
    for (k, v) in o {
        let i: usize = k
            .parse()
            .map_err(|_| ObjectError::new(format!("Parameter '{key}.{k}' is unexpected")))?;
        items.push((i, v.clone()));
    }
    items.sort_by_key(|(i, _)| *i);
    for (want, (i, _)) in items.iter().enumerate() {
        if *i != want {
            return Err(ObjectError::new(format!(
                "Parameter '{key}.{want}' is missing"
            )));
        }
    }
    Ok(Value::Array(items.into_iter().map(|(_, v)| v).collect()))
}

/// QEMU's `id_wellformed()`: a letter, then letters, digits, `-`, `.`, `_`.
pub fn id_wellformed(id: &str) -> bool {
    let mut chars = id.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}
