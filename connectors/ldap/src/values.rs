//! Attribute values between the directory's bytes and the contract's text: binary values as
//! base64, Active Directory's GUIDs in their usual text form, its password encoding.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use std::borrow::Cow;

/// A value as text: UTF-8 as is; bytes (binary attributes, or anything not UTF-8) as base64.
pub fn to_text(binary: bool, value: &[u8]) -> String {
    text(binary, value).into_owned()
}

/// [`to_text`], borrowing the value when it is text already.
pub fn text(binary: bool, value: &[u8]) -> Cow<'_, str> {
    if !binary && let Ok(s) = std::str::from_utf8(value) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(STANDARD.encode(value))
}

/// A value from text: base64 for a binary attribute, UTF-8 bytes otherwise.
pub fn from_text(binary: bool, attribute: &str, value: &str) -> Result<Vec<u8>, String> {
    if binary {
        STANDARD
            .decode(value)
            .map_err(|e| format!("`{attribute}` is binary and its value is not base64: {e}"))
    } else {
        Ok(value.as_bytes().to_vec())
    }
}

/// An Active Directory objectGUID (16 bytes, the first three fields little-endian) as text:
/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
pub fn guid_text(b: &[u8]) -> Option<String> {
    let b: &[u8; 16] = b.try_into().ok()?;
    Some(format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        b[3],
        b[2],
        b[1],
        b[0],
        b[5],
        b[4],
        b[7],
        b[6],
        b[8],
        b[9],
        b[10],
        b[11],
        b[12],
        b[13],
        b[14],
        b[15]
    ))
}

/// Active Directory's `unicodePwd`: the password in double quotes, UTF-16LE.
pub fn ad_password(password: &str) -> Vec<u8> {
    format!("\"{password}\"")
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_bytes() {
        assert_eq!(to_text(false, "Zoë".as_bytes()), "Zoë");
        assert_eq!(to_text(false, &[0xff, 0x00]), "/wA=");
        assert_eq!(to_text(true, b"ab"), "YWI=");
        assert_eq!(from_text(true, "jpegPhoto", "YWI=").unwrap(), b"ab");
        assert!(from_text(true, "jpegPhoto", "not base64!").is_err());
        assert_eq!(from_text(false, "cn", "Zoë").unwrap(), "Zoë".as_bytes());
    }

    #[test]
    fn guids_read_as_windows_writes_them() {
        let raw = [
            0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ];
        assert_eq!(
            guid_text(&raw).unwrap(),
            "00112233-4455-6677-8899-aabbccddeeff"
        );
        assert_eq!(guid_text(&raw[..15]), None);
    }

    #[test]
    fn ad_passwords_are_quoted_utf16() {
        assert_eq!(ad_password("é"), vec![b'"', 0, 0xe9, 0, b'"', 0]);
    }
}
