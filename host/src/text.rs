//! Text that came from a connector, made safe to show: control characters escaped and length
//! bounded. A connector is untrusted: its log lines, progress messages and error messages reach
//! an operator's terminal and the agent's log, where an escape sequence could clear the screen,
//! retitle the window or forge a line ("exported 5000 entries"), and a 60 MiB message would flood
//! both.

use std::borrow::Cow;
use std::fmt::Write;

/// Whether a character must not reach a terminal raw: C0 and C1 controls, DEL, and the Unicode
/// format characters that reorder or hide text (bidirectional overrides and isolates).
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// The text with every unsafe character written as a visible escape (`\n`, `\t`, `\u{1b}`), so
/// one message stays one line and shows what the connector sent.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if unsafe_char(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// The text cut to at most `max` bytes (on a character boundary), marked when cut.
pub fn truncate(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    Cow::Owned(format!(
        "{} [cut: {} more bytes]",
        &text[..cut],
        text.len() - cut
    ))
}

/// A connector's message for people: cut to `max` bytes, then escaped.
pub fn shown(text: &str, max: usize) -> String {
    escape(&truncate(text, max)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_a_terminal_would_obey() {
        assert_eq!(escape("plain Zoë"), "plain Zoë");
        assert_eq!(
            escape("\x1b[2J\x1b]0;pwned\x07x\nexported 5000 entries\r"),
            "\\u{1b}[2J\\u{1b}]0;pwned\\u{7}x\\nexported 5000 entries\\r"
        );
        assert_eq!(escape("a\u{9b}31m\u{202e}b"), "a\\u{9b}31m\\u{202e}b");
        assert_eq!(escape("tab\there\0"), "tab\\there\\u{0}");
    }

    #[test]
    fn truncates_on_a_character_boundary() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("ééé", 3), "é [cut: 4 more bytes]");
        assert_eq!(shown(&"e".repeat(100), 4), "eeee [cut: 96 more bytes]");
    }
}
