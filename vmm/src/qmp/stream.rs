//! Streaming splitter: cuts a QMP byte stream into complete JSON values.
//!
//! ```text
//!  recv() chunks ──► JsonStreamer::push ──► Frame::Value(bytes) ──► json::parse
//!   (any split)        (tracks depth,     └► Frame::Error(desc)  ──► error reply
//!                       strings, size)
//! ```
//!
//! Several requests in one read and one request spread over many reads both
//! work: the streamer only tracks bracket depth and string/escape state, and
//! emits a value once its outermost bracket closes (or a top-level scalar
//! ends). Memory is bounded: a value longer than `max_size` bytes, with more
//! than `max_tokens` elements, or nested deeper than [`json::MAX_NESTING`] is
//! not stored; its end is still found, and it is reported once as
//! [`Frame::Rejected`] so the next request on the connection is read
//! normally. While skipping, a small [`Skeleton`] of the top-level members
//! (nested values and long strings elided) is kept so the error reply can
//! echo the request's `id`, which clients such as `qemu.qmp` need to match
//! the error to their command.

use super::json;

/// Default maximum size of one QMP request (4 MiB; QEMU answers 2 MiB ones).
pub const DEFAULT_MAX_REQUEST: usize = 4 << 20;
/// Default maximum number of elements (containers + separators) in one request.
pub const DEFAULT_MAX_TOKENS: usize = 1 << 18;

/// One unit cut from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// The bytes of one complete top-level JSON value, ready for [`json::parse`].
    Value(Vec<u8>),
    /// A stream-level error, with the full desc for a `GenericError` reply.
    Error(String),
    /// A value that broke a limit and was skipped: the desc, and its `id`
    /// when the skeleton could recover it.
    Rejected {
        /// Full desc for the `GenericError` reply.
        desc: String,
        /// The request's `id`, if found among its top-level members.
        id: Option<serde_json::Value>,
    },
}

/// Longest top-level member text kept while skipping an oversize value.
const SKELETON_MAX: usize = 64 * 1024;
/// Top-level strings longer than this are elided from the skeleton.
const SKELETON_STRING_MAX: usize = 1024;
/// Stands in for elided values; never a legitimate id.
const ELIDED: &[u8] = b"\"\\uffffelided\"";

/// The top-level members of a value being skipped, nested values and long
/// strings replaced by a marker, bounded by [`SKELETON_MAX`].
#[derive(Debug, Default)]
pub struct Skeleton {
    text: Vec<u8>,
    depth: usize,
    in_string: Option<u8>,
    escape: bool,
    string_start: usize,
    string_len: usize,
    dead: bool,
}

impl Skeleton {
    /// Feeds one byte of the value.
    pub fn feed(&mut self, b: u8) {
        if self.dead {
            return;
        }
        if let Some(q) = self.in_string {
            let closing = !self.escape && b == q;
            self.escape = !self.escape && b == b'\\';
            if self.depth == 1 {
                self.string_len += 1;
                if self.string_len <= SKELETON_STRING_MAX || closing {
                    self.text.push(b);
                }
                if closing && self.string_len > SKELETON_STRING_MAX {
                    self.text.truncate(self.string_start);
                    self.text.extend_from_slice(ELIDED);
                }
            }
            if closing {
                self.in_string = None;
            }
        } else {
            match (self.depth, b) {
                (0, b' ' | b'\t' | b'\r' | b'\n') => {}
                (0, b'{') => {
                    self.depth = 1;
                    self.text.push(b);
                }
                (0, _) => self.dead = true,
                (1, b'"' | b'\'') => {
                    self.in_string = Some(b);
                    self.string_start = self.text.len();
                    self.string_len = 0;
                    self.text.push(b);
                }
                (1, b'{' | b'[') => {
                    self.depth = 2;
                    self.text.extend_from_slice(ELIDED);
                }
                (1, b'}') => {
                    self.depth = 0;
                    self.text.push(b);
                }
                (1, _) => self.text.push(b),
                (_, b'"' | b'\'') => self.in_string = Some(b),
                (_, b'{' | b'[') => self.depth += 1,
                (_, b'}' | b']') => self.depth -= 1,
                _ => {}
            }
        }
        if self.text.len() > SKELETON_MAX {
            self.dead = true;
            self.text = Vec::new();
        }
    }

    /// The `id` member, if the skeleton is a complete object that has one.
    pub fn id(&self) -> Option<serde_json::Value> {
        if self.dead || self.depth != 0 {
            return None;
        }
        let v = json::parse(&self.text).ok()?;
        let id = v.get("id")?;
        (id.as_str() != Some("\u{ffff}elided")).then(|| id.clone())
    }
}

/// Incremental splitter; see the module docs.
#[derive(Debug)]
pub struct JsonStreamer {
    buf: Vec<u8>,
    depth: usize,
    tokens: usize,
    in_string: Option<u8>,
    escape: bool,
    in_scalar: bool,
    skipping: Option<String>,
    skeleton: Skeleton,
    max_size: usize,
    max_tokens: usize,
}

impl Default for JsonStreamer {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_REQUEST, DEFAULT_MAX_TOKENS)
    }
}

fn is_delimiter(b: u8) -> bool {
    matches!(
        b,
        b' ' | b'\t' | b'\r' | b'\n' | b'{' | b'}' | b'[' | b']' | b',' | b':' | b'"' | b'\''
    )
}

impl JsonStreamer {
    /// A streamer with the given request size and element-count limits.
    pub fn new(max_size: usize, max_tokens: usize) -> Self {
        JsonStreamer {
            buf: Vec::new(),
            depth: 0,
            tokens: 0,
            in_string: None,
            escape: false,
            in_scalar: false,
            skipping: None,
            skeleton: Skeleton::default(),
            max_size: max_size.max(2),
            max_tokens: max_tokens.max(1),
        }
    }

    /// The oversize error text.
    pub fn size_error(&self) -> String {
        format!(
            "QMP input exceeds the maximum request size of {} bytes",
            self.max_size
        )
    }

    /// Bytes of the incomplete value held so far.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    fn reset_value(&mut self) {
        self.buf.clear();
        self.depth = 0;
        self.tokens = 0;
        self.in_string = None;
        self.escape = false;
        self.in_scalar = false;
        self.skipping = None;
        self.skeleton = Skeleton::default();
    }

    fn emit(&mut self, out: &mut Vec<Frame>) {
        match self.skipping.take() {
            None => out.push(Frame::Value(std::mem::take(&mut self.buf))),
            Some(desc) => out.push(Frame::Rejected {
                desc,
                id: self.skeleton.id(),
            }),
        }
        self.reset_value();
    }

    /// Stops storing the current value; `desc` is reported when it ends.
    fn abandon(&mut self, desc: String) {
        if self.skipping.is_none() {
            self.skipping = Some(desc);
            self.skeleton = Skeleton::default();
            for &b in &self.buf {
                self.skeleton.feed(b);
            }
            self.buf = Vec::new();
        }
    }

    fn store(&mut self, b: u8) {
        if self.skipping.is_some() {
            self.skeleton.feed(b);
            return;
        }
        if self.buf.len() >= self.max_size {
            let desc = self.size_error();
            self.abandon(desc);
            self.skeleton.feed(b);
            return;
        }
        self.buf.push(b);
    }

    /// Feeds bytes; complete values and errors are appended to `out`.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<Frame>) {
        for &b in data {
            self.byte(b, out);
        }
    }

    fn byte(&mut self, b: u8, out: &mut Vec<Frame>) {
        if let Some(q) = self.in_string {
            self.store(b);
            if self.escape {
                self.escape = false;
            } else if b == b'\\' {
                self.escape = true;
            } else if b == q {
                self.in_string = None;
                if self.depth == 0 {
                    self.emit(out);
                }
            }
            return;
        }
        if self.in_scalar {
            if is_delimiter(b) {
                // A top-level number or keyword ends at the first delimiter.
                self.emit(out);
                self.byte(b, out);
            } else {
                self.store(b);
            }
            return;
        }
        if self.depth == 0 {
            match b {
                b' ' | b'\t' | b'\r' | b'\n' => {}
                b'{' | b'[' => {
                    self.store(b);
                    self.depth = 1;
                    self.tokens = 1;
                }
                b'"' | b'\'' => {
                    self.store(b);
                    self.in_string = Some(b);
                }
                b'}' | b']' | b',' | b':' => {
                    out.push(Frame::Error("JSON parse error, expecting value".into()));
                }
                b'-' | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z' => {
                    self.store(b);
                    self.in_scalar = true;
                }
                _ => {
                    let shown = if b.is_ascii() {
                        (b as char).to_string()
                    } else {
                        "\u{FFFD}".into()
                    };
                    let shown = if b < 0x20 || b == 0x7f {
                        String::new()
                    } else {
                        shown
                    };
                    out.push(Frame::Error(format!("JSON parse error, stray '{shown}'")));
                }
            }
            return;
        }
        self.store(b);
        match b {
            b'"' | b'\'' => self.in_string = Some(b),
            b'{' | b'[' => {
                self.depth += 1;
                self.count_token();
                if self.depth > json::MAX_NESTING {
                    self.abandon(json::NESTING_ERROR.into());
                }
            }
            b',' => self.count_token(),
            b'}' | b']' => {
                self.depth -= 1;
                if self.depth == 0 {
                    self.emit(out);
                }
            }
            _ => {}
        }
    }

    fn count_token(&mut self) {
        self.tokens += 1;
        if self.tokens > self.max_tokens {
            self.abandon("JSON token count limit exceeded".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &mut JsonStreamer, data: &[u8]) -> Vec<Frame> {
        let mut out = Vec::new();
        s.push(data, &mut out);
        out
    }

    fn v(s: &str) -> Frame {
        Frame::Value(s.as_bytes().to_vec())
    }

    #[test]
    fn several_values_in_one_chunk() {
        let mut s = JsonStreamer::default();
        let out = split(&mut s, br#"{"a":1}{"b":"}"} [1,[2]] "x\"}" 12 "#);
        assert_eq!(
            out,
            vec![
                v(r#"{"a":1}"#),
                v(r#"{"b":"}"}"#),
                v("[1,[2]]"),
                v(r#""x\"}""#),
                v("12")
            ]
        );
        assert_eq!(s.pending(), 0);
    }

    #[test]
    fn one_value_across_many_chunks() {
        let text = br#"{"execute":"query-status","arguments":{"x":"a\\\"{["},"id":[1,2]}"#;
        let mut s = JsonStreamer::default();
        let mut out = Vec::new();
        for b in text.iter() {
            s.push(std::slice::from_ref(b), &mut out);
        }
        assert_eq!(out, vec![Frame::Value(text.to_vec())]);
    }

    #[test]
    fn oversize_is_reported_once_and_skipped() {
        let mut s = JsonStreamer::new(64, 1000);
        let big = format!(
            r#"{{"execute":"x","arguments":{{"pad":"{}"}}}}"#,
            "}".repeat(500)
        );
        let mut data = big.into_bytes();
        data.extend_from_slice(br#"{"execute":"stop"}"#);
        let out = split(&mut s, &data);
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(
            matches!(&out[0], Frame::Rejected { desc, id: None } if desc.contains("maximum request size of 64"))
        );
        assert_eq!(out[1], v(r#"{"execute":"stop"}"#));
    }

    #[test]
    fn oversize_error_keeps_the_id() {
        let mut s = JsonStreamer::new(64, 1000);
        let pad = "y".repeat(5000);
        let text = format!(
            r#"{{"execute":"x","arguments":{{"pad":"{pad}","n":[1,{{}}]}},'id':{{"k":[1]}}, "z":"{pad}"}}"#
        );
        let out = split(&mut s, text.as_bytes());
        assert!(
            matches!(&out[..], [Frame::Rejected { id: None, .. }]),
            "container ids are not recovered: {out:?}"
        );
        let text = format!(
            r#"{{"execute":"x","arguments":{{"pad":"{pad}"}},"z":"{pad}\"}}","id":"req-7"}}"#
        );
        let out = split(&mut s, text.as_bytes());
        assert_eq!(
            out,
            vec![Frame::Rejected {
                desc: s.size_error(),
                id: Some(serde_json::json!("req-7"))
            }]
        );
        let text = format!(r#"{{"id":12,"execute":"x","arguments":{{"pad":"{pad}"}}}}"#);
        let out = split(&mut s, text.as_bytes());
        assert_eq!(
            out,
            vec![Frame::Rejected {
                desc: s.size_error(),
                id: Some(serde_json::json!(12))
            }]
        );
    }

    #[test]
    fn deep_nesting_and_token_flood_are_bounded() {
        let mut s = JsonStreamer::default();
        let mut data = "[".repeat(2000) + &"]".repeat(2000);
        data.push_str("{}");
        let out = split(&mut s, data.as_bytes());
        assert_eq!(
            out,
            vec![
                Frame::Rejected {
                    desc: json::NESTING_ERROR.into(),
                    id: None
                },
                v("{}")
            ]
        );

        let mut s = JsonStreamer::new(1 << 20, 100);
        let data = format!("[{}0]{{}}", "0,".repeat(200));
        let out = split(&mut s, data.as_bytes());
        assert_eq!(
            out,
            vec![
                Frame::Rejected {
                    desc: "JSON token count limit exceeded".into(),
                    id: None
                },
                v("{}")
            ]
        );
    }

    #[test]
    fn stray_closers_and_junk() {
        let mut s = JsonStreamer::default();
        let out = split(&mut s, b"} \x00{}");
        assert_eq!(
            out,
            vec![
                Frame::Error("JSON parse error, expecting value".into()),
                Frame::Error("JSON parse error, stray ''".into()),
                v("{}")
            ]
        );
    }
}
