//! What the server stores sealed: a password in a hand-made fulfil task's orders (sealed before
//! the task is written, opened only when the task is handed to its agent) and every chunk of an
//! upload (an export's entries: the personal data of a whole system). The database, its WAL and
//! its backups never hold them in clear.
//!
//! Sealing is `idgard-vault`'s: AES-256-GCM under data keys wrapped by the RSA key pairs of the
//! server's key ring (`<data_dir>/keys` by default; replicas on PostgreSQL share one through
//! `keyring`). Values sealed by earlier versions with the 32-byte `secrets.key` still open when
//! that file is there.

use anyhow::{Context, Result, bail};
use idgard_vault::Keyring;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use std::path::Path;

/// What a value sealed by earlier versions starts with.
const LEGACY_PREFIX: &str = "sealed:v1:";

/// Seals and opens values with the server's key ring.
pub struct Sealer {
    ring: Keyring,
    legacy: Option<LessSafeKey>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealer({:?})", self.ring)
    }
}

impl Sealer {
    /// Opens the key ring in `dir` (`configured`: it must exist; otherwise it is made with its
    /// first key when missing), and the earlier versions' key at `legacy` when there is one.
    pub fn load(dir: &Path, configured: bool, legacy: &Path) -> Result<Self> {
        let ring = if configured {
            Keyring::open(dir).with_context(|| {
                format!("the key ring {} (keyring) cannot be used", dir.display())
            })?
        } else {
            let (ring, created) = Keyring::open_or_create(dir)?;
            if created {
                tracing::warn!(
                    "made the key ring {} with its first key: back it up apart from the database (docs/operations.md)",
                    dir.display()
                );
            }
            ring
        };
        let legacy = match std::fs::read(legacy) {
            Ok(bytes) if bytes.len() == 32 => {
                let key = UnboundKey::new(&AES_256_GCM, &bytes)
                    .map_err(|_| anyhow::anyhow!("{}: not an AES-256 key", legacy.display()))?;
                Some(LessSafeKey::new(key))
            }
            Ok(bytes) => bail!(
                "{}: a secrets key is 32 bytes, not {}",
                legacy.display(),
                bytes.len()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", legacy.display())),
        };
        Ok(Self { ring, legacy })
    }

    /// The key ring.
    pub fn ring(&self) -> &Keyring {
        &self.ring
    }

    /// Whether a stored value is sealed.
    pub fn is_sealed(value: &str) -> bool {
        idgard_vault::is_sealed_text(value) || value.starts_with(LEGACY_PREFIX)
    }

    /// `value`, sealed.
    pub fn seal(&self, value: &str) -> Result<String> {
        Ok(idgard_vault::seal_text(&self.ring, value)?)
    }

    /// A sealed value, opened.
    pub fn open(&self, sealed: &str) -> Result<String> {
        if sealed.starts_with(LEGACY_PREFIX) {
            return self.open_legacy(sealed);
        }
        Ok(idgard_vault::open_text(&self.ring, sealed)?)
    }

    /// Bytes (an upload's chunk), sealed.
    pub fn seal_bytes(&self, plain: &[u8]) -> Result<Vec<u8>> {
        Ok(idgard_vault::seal(&self.ring, plain)?)
    }

    /// Sealed bytes, opened; bytes stored in clear by earlier versions come back as they are.
    pub fn open_bytes(&self, stored: Vec<u8>) -> Result<Vec<u8>> {
        if idgard_vault::is_sealed(&stored) {
            Ok(idgard_vault::open(&self.ring, &stored)?)
        } else {
            Ok(stored)
        }
    }

    fn open_legacy(&self, sealed: &str) -> Result<String> {
        let key = self.legacy.as_ref().context(
            "a value sealed by an earlier version, and its secrets.key (secrets_key) is missing",
        )?;
        let bytes = sealed
            .strip_prefix(LEGACY_PREFIX)
            .and_then(|h| hex::decode(h).ok())
            .filter(|b| b.len() >= NONCE_LEN + AES_256_GCM.tag_len())
            .context("a sealed value is malformed")?;
        let (nonce, data) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).context("a sealed value's nonce")?;
        let mut data = data.to_vec();
        let plain = key
            .open_in_place(nonce, Aad::empty(), &mut data)
            .map_err(|_| anyhow::anyhow!("a sealed value does not open with secrets.key"))?;
        Ok(String::from_utf8(plain.to_vec())?)
    }
}

impl Sealer {
    /// A task's arguments with the password of every set-password order sealed (`None`: none
    /// to seal).
    pub fn seal_orders(&self, args: &serde_json::Value) -> Result<Option<serde_json::Value>> {
        self.map_passwords(args, |p| {
            if Self::is_sealed(p) {
                Ok(None)
            } else {
                self.seal(p).map(Some)
            }
        })
    }

    /// A task's arguments as stored, with the passwords opened (`None`: none sealed).
    pub fn open_orders(&self, args: &serde_json::Value) -> Result<Option<serde_json::Value>> {
        self.map_passwords(args, |p| {
            if Self::is_sealed(p) {
                self.open(p).map(Some)
            } else {
                Ok(None)
            }
        })
    }

    fn map_passwords(
        &self,
        args: &serde_json::Value,
        f: impl Fn(&str) -> Result<Option<String>>,
    ) -> Result<Option<serde_json::Value>> {
        let Some(orders) = args.get("orders").and_then(|o| o.as_array()) else {
            return Ok(None);
        };
        let mut out = args.clone();
        let mut changed = false;
        for (i, order) in orders.iter().enumerate() {
            if order.get("kind").and_then(|k| k.as_str()) != Some("set-password") {
                continue;
            }
            let Some(p) = order.get("password").and_then(|p| p.as_str()) else {
                continue;
            };
            if let Some(new) = f(p)? {
                out["orders"][i]["password"] = serde_json::Value::String(new);
                changed = true;
            }
        }
        Ok(changed.then_some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer(dir: &Path, name: &str) -> Sealer {
        Sealer::load(&dir.join(name), false, &dir.join("secrets.key")).unwrap()
    }

    #[test]
    fn a_sealed_value_opens_with_its_ring_only() {
        let dir = tempfile::tempdir().unwrap();
        let a = sealer(dir.path(), "a");
        let b = sealer(dir.path(), "b");
        let sealed = a.seal("s3cret-Pa55").unwrap();
        assert!(Sealer::is_sealed(&sealed) && !sealed.contains("s3cret"));
        assert_ne!(sealed, a.seal("s3cret-Pa55").unwrap(), "a nonce each time");
        assert_eq!(a.open(&sealed).unwrap(), "s3cret-Pa55");
        assert!(b.open(&sealed).is_err());
        assert!(a.open("sealed:v2:AAAA").is_err());
        let again = sealer(dir.path(), "a");
        assert_eq!(again.open(&sealed).unwrap(), "s3cret-Pa55");
        // A configured ring must exist.
        let e = Sealer::load(&dir.path().join("none"), true, &dir.path().join("x")).unwrap_err();
        assert!(format!("{e:#}").contains("holds no key"), "{e:#}");
    }

    #[test]
    fn values_sealed_by_earlier_versions_still_open_with_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let raw = [7u8; 32];
        std::fs::write(dir.path().join("secrets.key"), raw).unwrap();
        // What an earlier version wrote: nonce then ciphertext and tag, hex.
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &raw).unwrap());
        let nonce = [1u8; NONCE_LEN];
        let mut data = b"old-Pa55".to_vec();
        key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut data)
            .unwrap();
        let old = format!("{LEGACY_PREFIX}{}{}", hex::encode(nonce), hex::encode(data));
        let s = sealer(dir.path(), "keys");
        assert!(Sealer::is_sealed(&old));
        assert_eq!(s.open(&old).unwrap(), "old-Pa55");
        std::fs::remove_file(dir.path().join("secrets.key")).unwrap();
        let without = sealer(dir.path(), "keys");
        assert!(format!("{:#}", without.open(&old).unwrap_err()).contains("secrets.key"));
        // Chunks stored in clear by earlier versions read as they are.
        assert_eq!(without.open_bytes(b"plain".to_vec()).unwrap(), b"plain");
        let sealed = without.seal_bytes(b"entries").unwrap();
        assert_eq!(without.open_bytes(sealed).unwrap(), b"entries");
    }

    #[test]
    fn only_set_password_orders_are_sealed_and_they_open_as_they_were() {
        let dir = tempfile::tempdir().unwrap();
        let s = sealer(dir.path(), "k");
        let args = serde_json::json!({ "orders": [
            { "id": "1", "kind": "create", "key": "a", "attributes": { "password": ["not a secret field"] } },
            { "id": "2", "kind": "set-password", "key": "a", "password": "Pa55-w0rd" },
        ]});
        let sealed = s.seal_orders(&args).unwrap().unwrap();
        let text = sealed.to_string();
        assert!(
            !text.contains("Pa55-w0rd") && text.contains("not a secret field"),
            "{text}"
        );
        assert!(s.seal_orders(&sealed).unwrap().is_none(), "sealed once");
        assert_eq!(s.open_orders(&sealed).unwrap().unwrap(), args);
        assert!(s.open_orders(&args).unwrap().is_none());
        assert!(
            s.seal_orders(&serde_json::json!({ "incremental": true }))
                .unwrap()
                .is_none()
        );
    }
}
