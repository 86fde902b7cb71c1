//! Key codes shared by `send-key`/`sendkey`, `input-send-event` and the VNC
//! service: QEMU "qcode" names, QEMU "qnum" numbers, and PS/2 scancodes.
//!
//! A *qnum* is what QEMU's `{"type":"number"}` key values and the RFB
//! QEMU-extended key event carry: the set-1 (XT) make code, with the `0xE0`
//! prefix folded into bit 7 (`0x1D` left ctrl, `0x9D` right ctrl).
//!
//! ```text
//!  qcode "ctrl_r" ──▶ qnum 0x9D ──▶ set 1: E0 1D / E0 9D   (i8042 translation on)
//!                               └─▶ set 2: E0 14 / E0 F0 14 (translation off)
//! ```

/// `(qcode, qnum)` for every key QEMU's keyboard maps on a PC.
const KEYS: &[(&str, u16)] = &[
    ("esc", 0x01),
    ("1", 0x02),
    ("2", 0x03),
    ("3", 0x04),
    ("4", 0x05),
    ("5", 0x06),
    ("6", 0x07),
    ("7", 0x08),
    ("8", 0x09),
    ("9", 0x0a),
    ("0", 0x0b),
    ("minus", 0x0c),
    ("equal", 0x0d),
    ("backspace", 0x0e),
    ("tab", 0x0f),
    ("q", 0x10),
    ("w", 0x11),
    ("e", 0x12),
    ("r", 0x13),
    ("t", 0x14),
    ("y", 0x15),
    ("u", 0x16),
    ("i", 0x17),
    ("o", 0x18),
    ("p", 0x19),
    ("bracket_left", 0x1a),
    ("bracket_right", 0x1b),
    ("ret", 0x1c),
    ("ctrl", 0x1d),
    ("a", 0x1e),
    ("s", 0x1f),
    ("d", 0x20),
    ("f", 0x21),
    ("g", 0x22),
    ("h", 0x23),
    ("j", 0x24),
    ("k", 0x25),
    ("l", 0x26),
    ("semicolon", 0x27),
    ("apostrophe", 0x28),
    ("grave_accent", 0x29),
    ("shift", 0x2a),
    ("backslash", 0x2b),
    ("z", 0x2c),
    ("x", 0x2d),
    ("c", 0x2e),
    ("v", 0x2f),
    ("b", 0x30),
    ("n", 0x31),
    ("m", 0x32),
    ("comma", 0x33),
    ("dot", 0x34),
    ("slash", 0x35),
    ("shift_r", 0x36),
    ("kp_multiply", 0x37),
    ("asterisk", 0x37),
    ("alt", 0x38),
    ("spc", 0x39),
    ("caps_lock", 0x3a),
    ("f1", 0x3b),
    ("f2", 0x3c),
    ("f3", 0x3d),
    ("f4", 0x3e),
    ("f5", 0x3f),
    ("f6", 0x40),
    ("f7", 0x41),
    ("f8", 0x42),
    ("f9", 0x43),
    ("f10", 0x44),
    ("num_lock", 0x45),
    ("scroll_lock", 0x46),
    ("kp_7", 0x47),
    ("kp_8", 0x48),
    ("kp_9", 0x49),
    ("kp_subtract", 0x4a),
    ("kp_4", 0x4b),
    ("kp_5", 0x4c),
    ("kp_6", 0x4d),
    ("kp_add", 0x4e),
    ("kp_1", 0x4f),
    ("kp_2", 0x50),
    ("kp_3", 0x51),
    ("kp_0", 0x52),
    ("kp_decimal", 0x53),
    ("sysrq", 0x54),
    ("less", 0x56),
    ("f11", 0x57),
    ("f12", 0x58),
    ("kp_equals", 0x59),
    ("hiragana", 0x70),
    ("ro", 0x73),
    ("henkan", 0x79),
    ("muhenkan", 0x7b),
    ("yen", 0x7d),
    ("kp_comma", 0x7e),
    ("audioprev", 0x90),
    ("audionext", 0x99),
    ("kp_enter", 0x9c),
    ("ctrl_r", 0x9d),
    ("audiomute", 0xa0),
    ("calculator", 0xa1),
    ("audioplay", 0xa2),
    ("audiostop", 0xa4),
    ("volumedown", 0xae),
    ("volumeup", 0xb0),
    ("ac_home", 0xb2),
    ("kp_divide", 0xb5),
    ("print", 0xb7),
    ("alt_r", 0xb8),
    ("pause", 0xc6),
    ("home", 0xc7),
    ("up", 0xc8),
    ("pgup", 0xc9),
    ("left", 0xcb),
    ("right", 0xcd),
    ("end", 0xcf),
    ("down", 0xd0),
    ("pgdn", 0xd1),
    ("insert", 0xd2),
    ("delete", 0xd3),
    ("meta_l", 0xdb),
    ("meta_r", 0xdc),
    ("menu", 0xdd),
    ("compose", 0xdd),
    ("power", 0xde),
    ("sleep", 0xdf),
    ("wake", 0xe3),
    ("ac_search", 0xe5),
    ("ac_bookmarks", 0xe6),
    ("ac_refresh", 0xe7),
    ("ac_stop", 0xe8),
    ("ac_forward", 0xe9),
    ("ac_back", 0xea),
    ("computer", 0xeb),
    ("mail", 0xec),
    ("mediaselect", 0xed),
];

/// Set-1 make code (low 7 bits of a qnum) to set-2 make code. E0-prefixed
/// keys use the same table for their second byte.
#[rustfmt::skip]
const SET1_TO_SET2: [u8; 128] = {
    let mut t = [0u8; 128];
    let pairs: &[(u8, u8)] = &[
        (0x01, 0x76), (0x02, 0x16), (0x03, 0x1e), (0x04, 0x26), (0x05, 0x25),
        (0x06, 0x2e), (0x07, 0x36), (0x08, 0x3d), (0x09, 0x3e), (0x0a, 0x46),
        (0x0b, 0x45), (0x0c, 0x4e), (0x0d, 0x55), (0x0e, 0x66), (0x0f, 0x0d),
        (0x10, 0x15), (0x11, 0x1d), (0x12, 0x24), (0x13, 0x2d), (0x14, 0x2c),
        (0x15, 0x35), (0x16, 0x3c), (0x17, 0x43), (0x18, 0x44), (0x19, 0x4d),
        (0x1a, 0x54), (0x1b, 0x5b), (0x1c, 0x5a), (0x1d, 0x14), (0x1e, 0x1c),
        (0x1f, 0x1b), (0x20, 0x23), (0x21, 0x2b), (0x22, 0x34), (0x23, 0x33),
        (0x24, 0x3b), (0x25, 0x42), (0x26, 0x4b), (0x27, 0x4c), (0x28, 0x52),
        (0x29, 0x0e), (0x2a, 0x12), (0x2b, 0x5d), (0x2c, 0x1a), (0x2d, 0x22),
        (0x2e, 0x21), (0x2f, 0x2a), (0x30, 0x32), (0x31, 0x31), (0x32, 0x3a),
        (0x33, 0x41), (0x34, 0x49), (0x35, 0x4a), (0x36, 0x59), (0x37, 0x7c),
        (0x38, 0x11), (0x39, 0x29), (0x3a, 0x58), (0x3b, 0x05), (0x3c, 0x06),
        (0x3d, 0x04), (0x3e, 0x0c), (0x3f, 0x03), (0x40, 0x0b), (0x41, 0x83),
        (0x42, 0x0a), (0x43, 0x01), (0x44, 0x09), (0x45, 0x77), (0x46, 0x7e),
        (0x47, 0x6c), (0x48, 0x75), (0x49, 0x7d), (0x4a, 0x7b), (0x4b, 0x6b),
        (0x4c, 0x73), (0x4d, 0x74), (0x4e, 0x79), (0x4f, 0x69), (0x50, 0x72),
        (0x51, 0x7a), (0x52, 0x70), (0x53, 0x71), (0x54, 0x84), (0x56, 0x61),
        (0x57, 0x78), (0x58, 0x07), (0x59, 0x0f), (0x5b, 0x1f), (0x5c, 0x27),
        (0x5d, 0x2f), (0x5e, 0x37), (0x5f, 0x3f), (0x63, 0x5e), (0x65, 0x10),
        (0x66, 0x18), (0x67, 0x20), (0x68, 0x28), (0x69, 0x30), (0x6a, 0x38),
        (0x6b, 0x40), (0x6c, 0x48), (0x6d, 0x50), (0x70, 0x13), (0x73, 0x51),
        (0x79, 0x64), (0x7b, 0x67), (0x7d, 0x6a), (0x7e, 0x6d),
    ];
    let mut i = 0;
    while i < pairs.len() {
        t[pairs[i].0 as usize] = pairs[i].1;
        i += 1;
    }
    t
};

/// qnum for a QEMU qcode name (`"a"`, `"ctrl_r"`, `"kp_enter"`, ...).
pub fn qcode_to_qnum(qcode: &str) -> Option<u16> {
    KEYS.iter().find(|(n, _)| *n == qcode).map(|&(_, q)| q)
}

/// The canonical qcode name for a qnum.
pub fn qnum_to_qcode(qnum: u16) -> Option<&'static str> {
    KEYS.iter().find(|&&(_, q)| q == qnum).map(|&(n, _)| n)
}

/// All qcode names we know, in table order.
pub fn qcodes() -> impl Iterator<Item = &'static str> {
    KEYS.iter().map(|&(n, _)| n)
}

/// A key as QMP's `KeyValue` names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyValue {
    /// `{"type":"qcode","data":"a"}`.
    Qcode(String),
    /// `{"type":"number","data":30}`.
    Number(u16),
}

/// Errors resolving a key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// Not a qcode we know.
    #[error("Parameter 'keys' expects a valid QKeyCode, got '{0}'")]
    UnknownQcode(String),
    /// A number outside the qnum range.
    #[error("invalid key number {0:#x}")]
    BadNumber(u32),
    /// An empty HMP key list.
    #[error("no key given")]
    Empty,
}

impl KeyValue {
    /// Resolve to a qnum.
    pub fn qnum(&self) -> Result<u16, KeyError> {
        match self {
            KeyValue::Qcode(s) => qcode_to_qnum(s).ok_or_else(|| KeyError::UnknownQcode(s.clone())),
            KeyValue::Number(n) if *n <= 0xff => Ok(*n),
            KeyValue::Number(n) => Err(KeyError::BadNumber(u32::from(*n))),
        }
    }
}

/// Parse HMP `sendkey` syntax: `ctrl-alt-delete`, `shift-a`, `0x1e`.
pub fn parse_hmp_keys(spec: &str) -> Result<Vec<u16>, KeyError> {
    if spec.is_empty() {
        return Err(KeyError::Empty);
    }
    spec.split('-')
        .map(|k| {
            if let Some(hex) = k.strip_prefix("0x").or_else(|| k.strip_prefix("0X")) {
                let n = u32::from_str_radix(hex, 16)
                    .map_err(|_| KeyError::UnknownQcode(k.to_string()))?;
                u16::try_from(n)
                    .ok()
                    .filter(|&n| n <= 0xff)
                    .ok_or(KeyError::BadNumber(n))
            } else {
                qcode_to_qnum(k).ok_or_else(|| KeyError::UnknownQcode(k.to_string()))
            }
        })
        .collect()
}

/// The press/release order `send-key` uses: press every key in order, then
/// release them in reverse order.
pub fn send_key_events(keys: &[u16]) -> Vec<(u16, bool)> {
    keys.iter()
        .map(|&k| (k, true))
        .chain(keys.iter().rev().map(|&k| (k, false)))
        .collect()
}

const PAUSE: u16 = 0xc6;
const PRINT: u16 = 0xb7;

/// Set-1 bytes for a key press (`down`) or release.
pub fn set1_bytes(qnum: u16, down: bool) -> Vec<u8> {
    let rel = if down { 0 } else { 0x80 };
    match qnum {
        PAUSE if down => vec![0xe1, 0x1d, 0x45, 0xe1, 0x9d, 0xc5],
        PAUSE => Vec::new(),
        PRINT if down => vec![0xe0, 0x2a, 0xe0, 0x37],
        PRINT => vec![0xe0, 0xb7, 0xe0, 0xaa],
        q if q < 0x80 => vec![q as u8 | rel],
        q if q <= 0xff => vec![0xe0, (q as u8 & 0x7f) | rel],
        _ => Vec::new(),
    }
}

/// Set-2 bytes for a key press (`down`) or release.
pub fn set2_bytes(qnum: u16, down: bool) -> Vec<u8> {
    match qnum {
        PAUSE if down => vec![0xe1, 0x14, 0x77, 0xe1, 0xf0, 0x14, 0xf0, 0x77],
        PAUSE => Vec::new(),
        PRINT if down => vec![0xe0, 0x12, 0xe0, 0x7c],
        PRINT => vec![0xe0, 0xf0, 0x7c, 0xe0, 0xf0, 0x12],
        q if q <= 0xff => {
            let code = SET1_TO_SET2[usize::from(q & 0x7f)];
            if code == 0 {
                return Vec::new();
            }
            let mut v = Vec::with_capacity(3);
            if q >= 0x80 {
                v.push(0xe0);
            }
            if !down {
                v.push(0xf0);
            }
            v.push(code);
            v
        }
        _ => Vec::new(),
    }
}

/// Set-2 make code to set-1 make code, as the i8042 translation does
/// (the inverse of the table above; 0 where undefined).
pub fn set2_to_set1(code: u8) -> u8 {
    SET1_TO_SET2
        .iter()
        .position(|&c| c == code && code != 0)
        .map_or(0, |p| p as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qcode_qnum_round_trip() {
        for name in qcodes() {
            let q = qcode_to_qnum(name).unwrap();
            // Aliases map back to the canonical name with the same qnum.
            assert_eq!(qcode_to_qnum(qnum_to_qcode(q).unwrap()), Some(q));
        }
        assert_eq!(qcode_to_qnum("a"), Some(0x1e));
        assert_eq!(qcode_to_qnum("ret"), Some(0x1c));
        assert_eq!(qcode_to_qnum("ctrl_r"), Some(0x9d));
        assert_eq!(qcode_to_qnum("nope"), None);
        assert_eq!(KeyValue::Number(0x1e).qnum(), Ok(0x1e));
        assert!(KeyValue::Number(0x1ff).qnum().is_err());
        assert!(KeyValue::Qcode("bogus".into()).qnum().is_err());
    }

    #[test]
    fn scancode_bytes() {
        assert_eq!(set1_bytes(0x1e, true), [0x1e]);
        assert_eq!(set1_bytes(0x1e, false), [0x9e]);
        assert_eq!(set1_bytes(0xc8, true), [0xe0, 0x48]);
        assert_eq!(set1_bytes(0xc8, false), [0xe0, 0xc8]);
        assert_eq!(set2_bytes(0x1e, true), [0x1c]);
        assert_eq!(set2_bytes(0x1e, false), [0xf0, 0x1c]);
        assert_eq!(set2_bytes(0x9d, false), [0xe0, 0xf0, 0x14]);
        assert_eq!(set2_bytes(0x41, true), [0x83]);
        // Every known key has a set-2 code and translation inverts it.
        for name in qcodes() {
            let q = qcode_to_qnum(name).unwrap();
            let s2 = set2_bytes(q, true);
            assert!(!s2.is_empty(), "{name}");
            if q != PAUSE && q != PRINT {
                assert_eq!(
                    set2_to_set1(*s2.last().unwrap()),
                    (q & 0x7f) as u8,
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn hmp_keys_and_send_order() {
        assert_eq!(
            parse_hmp_keys("ctrl-alt-delete").unwrap(),
            [0x1d, 0x38, 0xd3]
        );
        assert_eq!(parse_hmp_keys("shift-0x1e").unwrap(), [0x2a, 0x1e]);
        assert!(parse_hmp_keys("ctrl-foo").is_err());
        assert!(parse_hmp_keys("0x1234").is_err());
        assert!(parse_hmp_keys("").is_err());
        assert_eq!(
            send_key_events(&[0x1d, 0x1e]),
            [(0x1d, true), (0x1e, true), (0x1e, false), (0x1d, false)]
        );
    }
}
