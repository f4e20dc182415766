//! Distinguished names (RFC 4514): escaping a value into an RDN, and a normal form to compare
//! DNs by (a directory returns DNs in its own escaping, `cn=O'Brien\2C Pat` for `cn=O'Brien\, Pat`).

/// Escapes an attribute value for use in a DN: `,+"\<>;=` anywhere, `#` or a space at the start,
/// a space at the end, and NUL.
pub fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
    out
}

/// `attr=value,parent` with the value escaped.
pub fn child(attribute: &str, value: &str, parent: &str) -> String {
    format!("{attribute}={},{parent}", escape_value(value))
}

/// One RDN of a DN as written (escapes kept), and the rest.
pub fn split_first(dn: &str) -> (&str, &str) {
    let bytes = dn.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b',' => return (&dn[..i], &dn[i + 1..]),
            _ => i += 1,
        }
    }
    (dn, "")
}

/// A DN in a form that compares equal for equal DNs: attribute types and values lower-cased,
/// escapes decoded, spaces around separators dropped. Values are compared case-insensitively,
/// as the naming attributes of people and groups (`uid`, `cn`, `ou`, `dc`) are.
pub fn normal(dn: &str) -> String {
    let mut out = String::with_capacity(dn.len());
    let mut rest = dn.trim();
    while !rest.is_empty() {
        let (rdn, tail) = split_first(rest);
        if !out.is_empty() {
            out.push(',');
        }
        for (n, ava) in split_unescaped(rdn, b'+').into_iter().enumerate() {
            if n > 0 {
                out.push('+');
            }
            let (attr, value) = ava.split_once('=').unwrap_or((ava, ""));
            out.push_str(&attr.trim().to_ascii_lowercase());
            out.push('=');
            out.push_str(&unescape(value.trim()).to_lowercase());
        }
        rest = tail.trim_start();
    }
    out
}

fn split_unescaped(s: &str, sep: u8) -> Vec<&str> {
    let bytes = s.as_bytes();
    let (mut parts, mut start, mut i) = (Vec::new(), 0, 0);
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            i += 2;
            continue;
        }
        if bytes[i] == sep {
            parts.push(&s[start..i]);
            start = i + 1;
        }
        i += 1;
    }
    parts.push(&s[start.min(s.len())..]);
    parts
}

/// Decodes `\c` and `\XX` escapes (hex pairs are bytes of UTF-8).
fn unescape(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 1 < bytes.len() {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(b) => {
                    out.push(b);
                    i += 3;
                }
                None => {
                    out.push(bytes[i + 1]);
                    i += 2;
                }
            }
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_rfc_4514_requires() {
        assert_eq!(escape_value("O'Brien, Pat"), "O'Brien\\, Pat");
        assert_eq!(escape_value("a,b=c"), "a\\,b\\=c");
        assert_eq!(escape_value("#x"), "\\#x");
        assert_eq!(escape_value("x#"), "x#");
        assert_eq!(escape_value(" lead"), "\\ lead");
        assert_eq!(escape_value("trail "), "trail\\ ");
        assert_eq!(escape_value("*)(uid=*"), "*)(uid\\=*");
        assert_eq!(escape_value("a+b;c<d>\"e\\"), "a\\+b\\;c\\<d\\>\\\"e\\\\");
        assert_eq!(escape_value("nul\0"), "nul\\00");
        assert_eq!(escape_value("Zoë"), "Zoë");
    }

    #[test]
    fn normal_forms_match_however_the_directory_escapes() {
        assert_eq!(
            normal("cn=O'Brien\\2C Pat, ou=People,DC=Example"),
            normal("CN=o'brien\\, pat,ou=people,dc=example")
        );
        assert_eq!(normal("cn=\\23hash,dc=x"), normal("cn=\\#hash,dc=x"));
        assert_eq!(normal("cn=\\20lead,dc=x"), normal("cn=\\ lead,dc=x"));
        assert_eq!(normal("cn=Zo\\C3\\AB,dc=x"), normal("cn=Zoë,dc=x"));
        assert_ne!(normal("cn=a\\,b,dc=x"), normal("cn=a,b=,dc=x"));
        assert_eq!(normal("uid=a+cn=b,dc=x"), "uid=a+cn=b,dc=x");
    }

    #[test]
    fn splits_off_the_first_rdn_past_escaped_commas() {
        assert_eq!(split_first("cn=a\\,b,ou=p,dc=x"), ("cn=a\\,b", "ou=p,dc=x"));
        assert_eq!(split_first("dc=x"), ("dc=x", ""));
        let dn = child("cn", "O'Brien, Pat", "ou=people,dc=x");
        assert_eq!(split_first(&dn), ("cn=O'Brien\\, Pat", "ou=people,dc=x"));
    }
}
