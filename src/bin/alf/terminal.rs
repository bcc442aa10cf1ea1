//! Text from a server, made safe for a terminal. An `error_description`,
//! a header value or an authorization URL from discovery may hold ESC,
//! BEL, CR or LF: printed raw they retitle the terminal, move the cursor
//! or fake an `alf:` line. Everything alf prints to stderr, and the
//! headers of `-i`, goes through here; the response body on stdout stays
//! raw, as curl prints it.

use std::fmt::Write as _;

/// `text` with every control character (C0, DEL, C1) written as an escape:
/// `\n`, `\r`, `\t`, or `\x1b`, `\u{9b}`.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\x7f' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if ('\u{80}'..='\u{9f}').contains(&c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// A header value's bytes for `-i`: visible ASCII, space and tab as they
/// are, every other byte as `\xNN`.
pub(crate) fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b == b'\t' || (0x20..0x7f).contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// A JSON line for stdout: serde_json escapes C0 controls; DEL and C1
/// (U+0080..U+009F, which some terminals read as CSI and friends) are
/// escaped too, as `\u00XX`, which reads back as the same string.
pub(crate) fn json_line(value: &serde_json::Value) -> String {
    let text = value.to_string();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '\x7f' || ('\u{80}'..='\u{9f}').contains(&c) {
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
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(
            escape("a\x1b]0;pwned\x07\r\nalf: ok é\u{9b}"),
            "a\\x1b]0;pwned\\x07\\r\\nalf: ok é\\u{9b}"
        );
        assert_eq!(escape_bytes(b"v\x1b\xff ok"), "v\\x1b\\xff ok");
    }

    #[test]
    fn json_lines_escape_c1_and_read_back_the_same() {
        let value = serde_json::json!({"scope": "a\u{9b}b\x7f\x1b"});
        let line = json_line(&value);
        assert!(!line.contains('\u{9b}') && !line.contains('\x1b'), "{line}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&line).unwrap(),
            value
        );
    }
}
