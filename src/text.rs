//! Untrusted text on its way to a terminal: strings that came from a stream (LV names, pool UUIDs,
//! the sender) are escaped before they are printed, so a crafted stream cannot forge lines or send
//! terminal escape sequences.

use std::fmt::Write;

/// `s` with every control byte, DEL, C1 control and backslash escaped: `\n`, `\t`, `\r`, `\\`, other
/// C0 controls and DEL as `\x1b`, C1 controls as `\u{9b}`. Printable text is unchanged.
pub fn escape(s: &str) -> String {
    escape_with(s, true)
}

/// Like [`escape`] but leaves backslashes alone: for a whole message on its way to the terminal,
/// whose untrusted parts were already passed through [`escape`] (so they are not escaped twice).
pub fn escape_controls(s: &str) -> String {
    escape_with(s, false)
}

fn escape_with(s: &str, backslash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' if backslash => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (0x80..0xa0).contains(&(c as u32)) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Serialized JSON with DEL and C1 controls escaped as well (serde_json escapes only C0 controls,
/// `"` and `\`). Both can only occur inside JSON strings, where `\u00XX` means the same character.
pub fn json_safe(json: String) -> String {
    if !json.chars().any(|c| c as u32 == 0x7f || (0x80..0xa0).contains(&(c as u32))) {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if c as u32 == 0x7f || (0x80..0xa0).contains(&(c as u32)) {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_bytes_del_c1_and_backslash_are_escaped() {
        assert_eq!(escape("vg0/lv_1 ok"), "vg0/lv_1 ok");
        assert_eq!(escape("a\nreceived OK"), "a\\nreceived OK");
        assert_eq!(escape("\x1b[2J\x07"), "\\x1b[2J\\x07");
        assert_eq!(escape("\u{7f}\u{9b}31m"), "\\x7f\\u{9b}31m");
        assert_eq!(escape("a\\nb"), "a\\\\nb");
        assert_eq!(escape("tab\there\r"), "tab\\there\\r");
        assert_eq!(escape("ünïcode ✓"), "ünïcode ✓");
        for c in (0u32..0xa0).filter_map(char::from_u32) {
            let e = escape(&c.to_string());
            assert!(e.chars().all(|c| !c.is_control()), "{c:?} left a control char in {e:?}");
        }
    }

    #[test]
    fn json_keeps_its_meaning_without_del_or_c1() {
        let v = serde_json::json!({ "lv": "a\u{7f}b\u{9b}c\n\u{1b}" });
        let j = json_safe(serde_json::to_string(&v).unwrap());
        assert!(j.chars().all(|c| !c.is_control()), "{j:?}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&j).unwrap(), v);
    }
}
