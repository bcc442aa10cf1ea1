//! Text from a server, made safe for a terminal. An `error_description`,
//! a header value or an authorization URL from discovery may hold ESC,
//! BEL, CR or LF: printed raw they retitle the terminal, move the cursor
//! or fake an `alf:` line. Everything alf prints to stderr, and the
//! headers of `-i`, goes through here; the response body on stdout stays
//! raw, as curl prints it.

use std::{
    fmt::Write as _,
    sync::atomic::{AtomicBool, Ordering},
};

static QUIET: AtomicBool = AtomicBool::new(false);

/// `-q`: no warnings on stderr (alf's own, and the library's).
pub(crate) fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// Whether `-q` was given.
pub(crate) fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// Sends the library's warnings (and errors) to stderr, one line each,
/// unless `-q`: a store that is down, a lock given up on, a token fetch
/// that failed.
pub(crate) fn install_warnings() {
    if quiet() {
        return;
    }
    use tracing_subscriber::{filter::filter_fn, layer::SubscriberExt, Layer};
    let warnings = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .with_filter(filter_fn(|metadata| {
            *metadata.level() <= tracing::Level::WARN
                // A failed token fetch is alf's own error line already (and
                // `token_failures` in --stats): not said twice.
                && metadata.module_path() != Some("tower_alf::source::flight")
        }));
    let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry().with(warnings));
}

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
