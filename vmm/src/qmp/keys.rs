//! QEMU's `QKeyCode` names for QMP/HMP argument validation.
//!
//! The key table itself (names, qnums, scancodes) lives in
//! [`crate::devices::input::KEYS`]; this module only derives the name list
//! the QMP schema and HMP parser check against, and HMP's aliases.

use crate::devices::input::KEYS;

/// Every QKeyCode name, in QEMU's enum order (includes `unmapped`).
pub const QKEYCODES: &[&str] = &{
    let mut names = [""; KEYS.len()];
    let mut i = 0;
    while i < KEYS.len() {
        names[i] = KEYS[i].0;
        i += 1;
    }
    names
};

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
    use crate::devices::input::qcode_to_qnum;

    #[test]
    fn names_follow_the_key_table() {
        assert_eq!(QKEYCODES.len(), KEYS.len());
        assert_eq!(QKEYCODES.first(), Some(&"unmapped"));
        for name in [
            "ctrl", "f1", "f13", "f24", "lang1", "again", "help", "hiragana",
        ] {
            assert!(QKEYCODES.contains(&name), "{name}");
        }
        assert!(!QKEYCODES.contains(&"ac_search"));
        // Every accepted name except `unmapped` is a key the keyboard can send.
        for name in QKEYCODES.iter().filter(|&&n| n != "unmapped") {
            assert!(qcode_to_qnum(name).is_some(), "{name}");
        }
    }

    #[test]
    fn hmp_aliases_resolve_to_qkeycodes() {
        for alias in [
            "shift_l",
            "alt_l",
            "ctrl_l",
            "return",
            "enter",
            "space",
            "escape",
            "del",
            "ins",
            "page_up",
            "page_down",
            "bracket",
        ] {
            let name = hmp_key_name(alias);
            assert_ne!(name, alias);
            assert!(QKEYCODES.contains(&name), "{alias} -> {name}");
        }
        assert_eq!(hmp_key_name("a"), "a");
    }
}
