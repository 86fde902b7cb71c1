//! QEMU's `QKeyCode` names and their PC scancodes (set 1).
//!
//! `send-key`, `input-send-event` and HMP `sendkey` name keys by QKeyCode;
//! the keyboard model needs scancodes. Numbers in `{"type": "number"}` are
//! QEMU "qnum" codes: the set-1 scancode, with 0x80 added for 0xE0-prefixed
//! keys.

/// (QKeyCode name, qnum) for every key QEMU 7.2 knows; qnum 0 = no PC key.
pub const QKEYCODE_QNUM: &[(&str, u16)] = &[
    ("unmapped", 0),
    ("shift", 0x2a),
    ("shift_r", 0x36),
    ("alt", 0x38),
    ("alt_r", 0xb8),
    ("ctrl", 0x1d),
    ("ctrl_r", 0x9d),
    ("menu", 0xdd),
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
    ("asterisk", 0x37),
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
    ("kp_divide", 0xb5),
    ("kp_multiply", 0x37),
    ("kp_subtract", 0x4a),
    ("kp_add", 0x4e),
    ("kp_enter", 0x9c),
    ("kp_decimal", 0x53),
    ("sysrq", 0x54),
    ("kp_0", 0x52),
    ("kp_1", 0x4f),
    ("kp_2", 0x50),
    ("kp_3", 0x51),
    ("kp_4", 0x4b),
    ("kp_5", 0x4c),
    ("kp_6", 0x4d),
    ("kp_7", 0x47),
    ("kp_8", 0x48),
    ("kp_9", 0x49),
    ("less", 0x56),
    ("f11", 0x57),
    ("f12", 0x58),
    ("print", 0xb7),
    ("home", 0xc7),
    ("pgup", 0xc9),
    ("pgdn", 0xd1),
    ("end", 0xcf),
    ("left", 0xcb),
    ("up", 0xc8),
    ("down", 0xd0),
    ("right", 0xcd),
    ("insert", 0xd2),
    ("delete", 0xd3),
    ("stop", 0xe8),
    ("again", 0x85),
    ("props", 0x86),
    ("undo", 0x87),
    ("front", 0x8c),
    ("copy", 0xf8),
    ("open", 0x64),
    ("paste", 0x65),
    ("find", 0xc1),
    ("cut", 0xbc),
    ("lf", 0x5b),
    ("help", 0xf5),
    ("meta_l", 0xdb),
    ("meta_r", 0xdc),
    ("compose", 0xdd),
    ("pause", 0xc6),
    ("ro", 0x73),
    ("hiragana", 0x77),
    ("henkan", 0x79),
    ("yen", 0x7d),
    ("muhenkan", 0x7b),
    ("katakanahiragana", 0x70),
    ("kp_comma", 0x7e),
    ("kp_equals", 0x59),
    ("power", 0xde),
    ("sleep", 0xdf),
    ("wake", 0xe3),
    ("audionext", 0x99),
    ("audioprev", 0x90),
    ("audiostop", 0xa4),
    ("audioplay", 0xa2),
    ("audiomute", 0xa0),
    ("volumeup", 0xb0),
    ("volumedown", 0xae),
    ("mediaselect", 0xed),
    ("mail", 0xec),
    ("calculator", 0xa1),
    ("computer", 0xeb),
    ("ac_home", 0xb2),
    ("ac_back", 0xea),
    ("ac_forward", 0xe9),
    ("ac_refresh", 0xe7),
    ("ac_bookmarks", 0xe6),
    ("lang1", 0x72),
    ("lang2", 0x71),
    ("f13", 0x5d),
    ("f14", 0x5e),
    ("f15", 0x5f),
    ("f16", 0x55),
    ("f17", 0x83),
    ("f18", 0xf7),
    ("f19", 0x84),
    ("f20", 0x5a),
    ("f21", 0x74),
    ("f22", 0xf9),
    ("f23", 0x6d),
    ("f24", 0x76),
];

/// Just the QKeyCode names, for argument validation.
pub const QKEYCODES: &[&str] = &{
    let mut names = [""; QKEYCODE_QNUM.len()];
    let mut i = 0;
    while i < QKEYCODE_QNUM.len() {
        names[i] = QKEYCODE_QNUM[i].0;
        i += 1;
    }
    names
};

/// The qnum of a QKeyCode name.
pub fn qcode_to_qnum(name: &str) -> Option<u16> {
    QKEYCODE_QNUM
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, q)| q)
        .filter(|&q| q != 0)
}

/// The set-1 make code bytes for a qnum (0xE0 prefix for extended keys).
pub fn qnum_to_set1(qnum: u16) -> Vec<u8> {
    if qnum & 0x80 != 0 {
        vec![0xe0, (qnum & 0x7f) as u8]
    } else {
        vec![qnum as u8]
    }
}

/// HMP `sendkey` accepts a few extra spellings (QEMU's key name aliases).
pub fn hmp_key_name(name: &str) -> &str {
    match name {
        "shift_l" => "shift",
        "alt_l" => "alt",
        "ctrl_l" => "ctrl",
        "return" | "enter" => "ret",
        "space" => "spc",
        "escape" => "esc",
        "del" => "delete",
        "ins" => "insert",
        "page_up" => "pgup",
        "page_down" => "pgdn",
        "bracket" => "bracket_left",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_codes() {
        assert_eq!(QKEYCODES.len(), QKEYCODE_QNUM.len());
        assert!(QKEYCODES.contains(&"ctrl") && QKEYCODES.contains(&"f1"));
        assert_eq!(qcode_to_qnum("a"), Some(0x1e));
        assert_eq!(qnum_to_set1(qcode_to_qnum("up").unwrap()), vec![0xe0, 0x48]);
        assert_eq!(qcode_to_qnum("unmapped"), None);
        assert_eq!(qcode_to_qnum("nokey"), None);
    }
}
