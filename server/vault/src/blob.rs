//! One value sealed whole: `IGV1`, the key's number, the wrapped data key, a random nonce, the
//! ciphertext and its tag (the header is authenticated with it). Values share the process's data
//! key, so sealing costs no RSA operation and opening one unwrap per data key.

use crate::{Error, Keyring, Result, header, parse_header};
use aws_lc_rs::aead::{Aad, NONCE_LEN, Nonce};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use std::path::Path;

const MAGIC: &[u8; 4] = b"IGV1";
const TAG_LEN: usize = 16;
/// What a sealed value in text starts with.
pub const TEXT_PREFIX: &str = "sealed:v2:";

/// `plain`, sealed under the ring's current key.
pub fn seal(ring: &Keyring, plain: &[u8]) -> Result<Vec<u8>> {
    let key = ring.sealing_key()?;
    let mut out = header(MAGIC, key.key_id, &key.wrapped);
    let aad_len = out.len();
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| Error::Random)?;
    out.extend_from_slice(&nonce);
    let mut data = plain.to_vec();
    key.aead
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&out[..aad_len]),
            &mut data,
        )
        .map_err(|_| Error::Crypto("cannot seal a value"))?;
    out.extend_from_slice(&data);
    Ok(out)
}

/// Whether `bytes` look sealed by [`seal`].
pub fn is_sealed(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// The number of the key a value sealed by [`seal`] is under.
pub fn key_of(sealed: &[u8]) -> Option<u32> {
    parse_header(MAGIC, sealed).ok().map(|(id, _, _)| id)
}

/// A sealed value, opened.
pub fn open(ring: &Keyring, sealed: &[u8]) -> Result<Vec<u8>> {
    let (key_id, wrapped, aad_len) = parse_header(MAGIC, sealed)?;
    if sealed.len() < aad_len + NONCE_LEN + TAG_LEN {
        return Err(Error::Damaged("cut short".into()));
    }
    let key = ring.unwrap(key_id, wrapped)?;
    let nonce = Nonce::try_assume_unique_for_key(&sealed[aad_len..aad_len + NONCE_LEN])
        .map_err(|_| Error::Damaged("its nonce".into()))?;
    let mut data = sealed[aad_len + NONCE_LEN..].to_vec();
    let plain = key
        .open_in_place(nonce, Aad::from(&sealed[..aad_len]), &mut data)
        .map_err(|_| Error::Damaged("it was altered, or sealed with another data key".into()))?;
    let len = plain.len();
    data.truncate(len);
    Ok(data)
}

/// `plain` sealed, as text (`sealed:v2:` then base64), for a column or a JSON string.
pub fn seal_text(ring: &Keyring, plain: &str) -> Result<String> {
    let bytes = seal(ring, plain.as_bytes())?;
    Ok(format!(
        "{TEXT_PREFIX}{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
    ))
}

/// Whether a text value was sealed by [`seal_text`].
pub fn is_sealed_text(value: &str) -> bool {
    value.starts_with(TEXT_PREFIX)
}

/// A value sealed by [`seal_text`], opened.
pub fn open_text(ring: &Keyring, sealed: &str) -> Result<String> {
    let bytes = sealed
        .strip_prefix(TEXT_PREFIX)
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(b)
                .ok()
        })
        .ok_or_else(|| Error::Damaged("not a sealed text value".into()))?;
    String::from_utf8(open(ring, &bytes)?)
        .map_err(|_| Error::Damaged("the opened value is not UTF-8".into()))
}

/// Writes `plain` sealed to `path`: only the owner can read it, written whole then renamed.
pub fn write_file(ring: &Keyring, path: &Path, plain: &[u8]) -> Result<()> {
    let sealed = seal(ring, plain)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    crate::write_private(&tmp, &sealed)?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Reads a file written by [`write_file`].
pub fn read_file(ring: &Keyring, path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    open(ring, &bytes).map_err(|e| match e {
        Error::Damaged(why) => Error::Damaged(format!("{}: {why}", path.display())),
        other => other,
    })
}
