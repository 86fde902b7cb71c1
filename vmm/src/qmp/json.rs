//! A small JSON parser for one complete QMP input value, with QEMU's error
//! texts.
//!
//! QEMU's parser (qobject/json-parser.c) accepts a little more than RFC 8259
//! (single-quoted strings) and reports errors as `JSON parse error, <what>`.
//! This parser follows both so scripts written against QEMU see the same
//! shapes. It never panics, limits nesting to [`MAX_NESTING`] and rejects
//! duplicate keys like QEMU does.
//!
//! The input is one value that [`super::stream::JsonStreamer`] already cut out
//! of the byte stream, so its size is bounded by the streamer's limit.

use serde_json::{Map, Number, Value};

/// Deepest nesting of arrays and objects accepted (QEMU's MAX_NESTING).
pub const MAX_NESTING: usize = 1024;

/// Why a value could not be parsed; `Display` gives QEMU's full desc
/// (e.g. `JSON parse error, invalid keyword 'garbage'`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError(pub String);

/// QEMU's text when nesting is deeper than [`MAX_NESTING`].
pub const NESTING_ERROR: &str = "JSON nesting depth limit exceeded";

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for JsonError {}

fn err<T>(msg: impl std::fmt::Display) -> Result<T, JsonError> {
    Err(JsonError(format!("JSON parse error, {msg}")))
}

/// Parses exactly one JSON value (surrounding whitespace allowed).
pub fn parse(input: &[u8]) -> Result<Value, JsonError> {
    let mut p = Parser { s: input, i: 0 };
    p.skip_ws();
    if p.i >= p.s.len() {
        return err("premature EOI");
    }
    let v = p.value(0)?;
    p.skip_ws();
    if p.i < p.s.len() {
        return p.stray();
    }
    Ok(v)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    /// QEMU reports bytes its lexer cannot start a token with as "stray".
    fn stray<T>(&self) -> Result<T, JsonError> {
        let end = (self.i + 16).min(self.s.len());
        let text = String::from_utf8_lossy(&self.s[self.i..end]);
        let first: String = text.chars().take(1).collect();
        err(format!("stray '{first}'"))
    }

    fn value(&mut self, depth: usize) -> Result<Value, JsonError> {
        self.skip_ws();
        match self.peek() {
            None => err("premature EOI"),
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(q @ (b'"' | b'\'')) => self.string(q).map(Value::String),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(c) if c.is_ascii_alphabetic() => self.keyword(),
            Some(b'}' | b']' | b',' | b':') => err("expecting value"),
            Some(_) => self.stray(),
        }
    }

    fn keyword(&mut self) -> Result<Value, JsonError> {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_alphanumeric()) {
            self.i += 1;
        }
        let word = &self.s[start..self.i];
        match word {
            b"true" => Ok(Value::Bool(true)),
            b"false" => Ok(Value::Bool(false)),
            b"null" => Ok(Value::Null),
            _ => {
                let shown: String = String::from_utf8_lossy(word).chars().take(64).collect();
                err(format!("invalid keyword '{shown}'"))
            }
        }
    }

    fn number(&mut self) -> Result<Value, JsonError> {
        let start = self.i;
        let mut float = false;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        let digits = |p: &mut Self| {
            let s = p.i;
            while p.peek().is_some_and(|c| c.is_ascii_digit()) {
                p.i += 1;
            }
            p.i - s
        };
        let int_digits = digits(self);
        if int_digits == 0 {
            return self.stray_from(start);
        }
        if int_digits > 1 && self.s[self.i - int_digits] == b'0' {
            return self.stray_from(start);
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            float = true;
            if digits(self) == 0 {
                return self.stray_from(start);
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            float = true;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if digits(self) == 0 {
                return self.stray_from(start);
            }
        }
        // ASCII only by construction.
        let text = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("0");
        if !float {
            if let Ok(v) = text.parse::<i64>() {
                return Ok(Value::Number(v.into()));
            }
            if let Ok(v) = text.parse::<u64>() {
                return Ok(Value::Number(v.into()));
            }
        }
        match text.parse::<f64>().ok().and_then(Number::from_f64) {
            Some(n) => Ok(Value::Number(n)),
            None => err("number out of range"),
        }
    }

    fn stray_from<T>(&mut self, start: usize) -> Result<T, JsonError> {
        self.i = start;
        self.stray()
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let Some(h) = self.s.get(self.i..self.i + 4) else {
            return err("invalid escape sequence in string");
        };
        let mut v = 0u32;
        for &c in h {
            let d = (c as char).to_digit(16).ok_or_else(|| {
                JsonError("JSON parse error, invalid escape sequence in string".into())
            })?;
            v = v * 16 + d;
        }
        self.i += 4;
        Ok(v)
    }

    fn string(&mut self, quote: u8) -> Result<String, JsonError> {
        let start = self.i;
        self.i += 1;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(c) = self.peek() else {
                return err("premature EOI");
            };
            match c {
                c if c == quote => {
                    self.i += 1;
                    break;
                }
                b'\\' => {
                    self.i += 1;
                    let Some(e) = self.peek() else {
                        return err("premature EOI");
                    };
                    self.i += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\'' => '\'',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let cp = if (0xD800..0xDC00).contains(&hi) {
                                // A high surrogate must be followed by a low one.
                                if self.s.get(self.i..self.i + 2) == Some(b"\\u") {
                                    self.i += 2;
                                    let lo = self.hex4()?;
                                    if !(0xDC00..0xE000).contains(&lo) {
                                        return err(format!(
                                            "\\u{hi:04x} is not a valid Unicode character"
                                        ));
                                    }
                                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                                } else {
                                    return err(format!(
                                        "\\u{hi:04x} is not a valid Unicode character"
                                    ));
                                }
                            } else {
                                hi
                            };
                            match char::from_u32(cp) {
                                Some(ch) if cp != 0 => ch,
                                _ => {
                                    return err(format!(
                                        "\\u{cp:04x} is not a valid Unicode character"
                                    ))
                                }
                            }
                        }
                        _ => return err("invalid escape sequence in string"),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                0..=0x1f => {
                    self.i = start;
                    let end = (start + 16).min(self.s.len());
                    let shown = String::from_utf8_lossy(&self.s[start..end]);
                    let upto: String = shown
                        .chars()
                        .take_while(|&ch| ch as u32 >= 0x20 || ch == '"')
                        .collect();
                    let ctl = shown[upto.len()..].chars().next().unwrap_or('\0');
                    return err(format!("stray '{upto}{ctl}'"));
                }
                _ => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
        String::from_utf8(out)
            .map_err(|_| JsonError("JSON parse error, invalid UTF-8 sequence in string".into()))
    }

    fn array(&mut self, depth: usize) -> Result<Value, JsonError> {
        if depth > MAX_NESTING {
            return Err(JsonError(NESTING_ERROR.into()));
        }
        self.i += 1; // '['
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(Value::Array(items));
        }
        loop {
            items.push(self.value(depth)?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(Value::Array(items));
                }
                None => return err("premature EOI"),
                Some(_) => return err("expected separator in list"),
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, JsonError> {
        if depth > MAX_NESTING {
            return Err(JsonError(NESTING_ERROR.into()));
        }
        self.i += 1; // '{'
        let mut map = Map::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(Value::Object(map));
        }
        loop {
            self.skip_ws();
            let key = match self.peek() {
                Some(q @ (b'"' | b'\'')) => self.string(q)?,
                None => return err("premature EOI"),
                Some(b'}' | b']' | b',' | b':') => return err("expecting value"),
                Some(_) => {
                    // Parse to report lexical errors first, like QEMU.
                    self.value(depth)?;
                    return err("key is not a string in object");
                }
            };
            self.skip_ws();
            match self.peek() {
                Some(b':') => self.i += 1,
                None => return err("premature EOI"),
                Some(_) => return err("missing : in object pair"),
            }
            let v = self.value(depth)?;
            if map.contains_key(&key) {
                return err("duplicate key");
            }
            map.insert(key, v);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(Value::Object(map));
                }
                None => return err("premature EOI"),
                Some(_) => return err("expected separator in dict"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn e(s: &str) -> String {
        parse(s.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn parses_values() {
        assert_eq!(
            parse(br#" {"a": [1, -2, 3.5, true, false, null, "x\u00e9\n"]} "#).unwrap(),
            json!({"a": [1, -2, 3.5, true, false, null, "xé\n"]})
        );
        assert_eq!(
            parse(b"{'execute':'stop'}").unwrap(),
            json!({"execute": "stop"})
        );
        assert_eq!(parse(br#""\ud83d\ude00""#).unwrap(), json!("😀"));
        assert_eq!(parse(b"18446744073709551615").unwrap(), json!(u64::MAX));
        assert_eq!(parse(b"1.5e3").unwrap(), json!(1500.0));
    }

    #[test]
    fn qemu_error_texts() {
        assert_eq!(
            e("{\"execute\": \ngarbage}"),
            "JSON parse error, invalid keyword 'garbage'"
        );
        assert_eq!(e(r#"{"a":}"#), "JSON parse error, expecting value");
        assert_eq!(
            e(r#"{"a" 1}"#),
            "JSON parse error, missing : in object pair"
        );
        assert_eq!(
            e(r#"{"execute":"stop",}"#),
            "JSON parse error, expecting value"
        );
        assert_eq!(
            e(r#"{"x":"st\xop"}"#),
            "JSON parse error, invalid escape sequence in string"
        );
        assert_eq!(e(r#"{"id":1,"id":2}"#), "JSON parse error, duplicate key");
        assert_eq!(
            e(r#""\ud800""#),
            "JSON parse error, \\ud800 is not a valid Unicode character"
        );
        assert_eq!(
            e("{1:2}"),
            "JSON parse error, key is not a string in object"
        );
        assert_eq!(e("[1 2]"), "JSON parse error, expected separator in list");
        assert_eq!(
            e("{\"a\":1 \"b\":2}"),
            "JSON parse error, expected separator in dict"
        );
        assert_eq!(e("{\"a\""), "JSON parse error, premature EOI");
        assert_eq!(e("\"a\u{1}b\""), "JSON parse error, stray '\"a\u{1}'");
    }

    #[test]
    fn nesting_is_bounded() {
        let ok = "[".repeat(MAX_NESTING) + &"]".repeat(MAX_NESTING);
        assert!(parse(ok.as_bytes()).is_ok());
        let deep = "[".repeat(MAX_NESTING + 1) + &"]".repeat(MAX_NESTING + 1);
        assert_eq!(
            parse(deep.as_bytes()).unwrap_err().to_string(),
            NESTING_ERROR
        );
    }
}
