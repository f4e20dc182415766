//! Secrets inside what the server stores: a password in a hand-made fulfil task's orders is
//! sealed (AES-256-GCM, a random nonce each time) before the task is written, and opened only
//! when the task is handed to its agent. The database, its WAL and its backups never hold it in
//! clear. The key is 32 random bytes in a file only the server's user can read
//! (`<data_dir>/secrets.key` by default, created at first start; replicas on PostgreSQL share
//! one through `secrets_key`).

use anyhow::{Context, Result, bail};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use std::path::Path;

/// What a sealed value starts with.
const PREFIX: &str = "sealed:v1:";

/// Seals and opens values with the server's secrets key.
pub struct Sealer {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer")
    }
}

impl Sealer {
    /// Reads the key at `path`, or creates it (0600) when there is none.
    pub fn load_or_create(path: &Path) -> Result<Self> {
        let rng = SystemRandom::new();
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                rng.fill(&mut key)
                    .map_err(|_| anyhow::anyhow!("no randomness for the secrets key"))?;
                crate::keys::write_private(path, &key)?;
                tracing::info!("created the secrets key {}", path.display());
                key.to_vec()
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        if bytes.len() != 32 {
            bail!(
                "{}: a secrets key is 32 bytes, not {}",
                path.display(),
                bytes.len()
            );
        }
        let key = UnboundKey::new(&AES_256_GCM, &bytes)
            .map_err(|_| anyhow::anyhow!("{}: not an AES-256 key", path.display()))?;
        Ok(Self {
            key: LessSafeKey::new(key),
            rng,
        })
    }

    /// Whether a stored value is sealed.
    pub fn is_sealed(value: &str) -> bool {
        value.starts_with(PREFIX)
    }

    /// `value`, sealed.
    pub fn seal(&self, value: &str) -> Result<String> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| anyhow::anyhow!("no randomness for a nonce"))?;
        let mut data = value.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut data)
            .map_err(|_| anyhow::anyhow!("cannot seal a value"))?;
        Ok(format!(
            "{PREFIX}{}{}",
            hex::encode(nonce),
            hex::encode(data)
        ))
    }

    /// A sealed value, opened.
    pub fn open(&self, sealed: &str) -> Result<String> {
        let bytes = sealed
            .strip_prefix(PREFIX)
            .and_then(|h| hex::decode(h).ok())
            .filter(|b| b.len() >= NONCE_LEN + AES_256_GCM.tag_len())
            .context("a sealed value is malformed")?;
        let (nonce, data) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).context("a sealed value's nonce")?;
        let mut data = data.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::empty(), &mut data)
            .map_err(|_| {
                anyhow::anyhow!("a sealed value does not open with this server's secrets key")
            })?;
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

    #[test]
    fn a_sealed_value_opens_with_its_key_only() {
        let dir = tempfile::tempdir().unwrap();
        let a = Sealer::load_or_create(&dir.path().join("a.key")).unwrap();
        let b = Sealer::load_or_create(&dir.path().join("b.key")).unwrap();
        let sealed = a.seal("s3cret-Pa55").unwrap();
        assert!(Sealer::is_sealed(&sealed) && !sealed.contains("s3cret"));
        assert_ne!(sealed, a.seal("s3cret-Pa55").unwrap(), "a nonce each time");
        assert_eq!(a.open(&sealed).unwrap(), "s3cret-Pa55");
        assert!(b.open(&sealed).is_err());
        assert!(a.open("sealed:v1:00").is_err());
        let again = Sealer::load_or_create(&dir.path().join("a.key")).unwrap();
        assert_eq!(again.open(&sealed).unwrap(), "s3cret-Pa55");
    }

    #[test]
    fn only_set_password_orders_are_sealed_and_they_open_as_they_were() {
        let dir = tempfile::tempdir().unwrap();
        let s = Sealer::load_or_create(&dir.path().join("k")).unwrap();
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
