//! What the agent keeps sealed on disk, and the commands over it.
//!
//! An export's entries and every result waiting in the spool are sealed under the agent's key
//! ring (`keys`, see `idgard-vault`); so are connection secrets set with
//! `idgard-agent secret set NAME`, which a connection names as `{ stored = "NAME" }`.
//! `idgard-agent keys rotate` adds a key: a running agent seals with it within seconds, and what
//! older keys sealed stays readable while their files stay.

use crate::AgentConfig;
use anyhow::{Context, Result, bail};
use idgard_vault::Keyring;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Longest secret taken from standard input.
const SECRET_MAX: usize = 64 << 10;

/// The agent's key ring, made with its first key when there is none.
pub fn keyring(config: &AgentConfig) -> Result<Arc<Keyring>> {
    let (ring, created) = Keyring::open_or_create(&config.keys)
        .with_context(|| format!("the key ring {} cannot be used", config.keys.display()))?;
    if created {
        tracing::warn!(
            "made the key ring {} with its first key: what the agent keeps on disk is sealed with it; keep it apart from backups of {}",
            config.keys.display(),
            config.work.display()
        );
    }
    Ok(Arc::new(ring))
}

/// Connection secrets kept sealed in the agent's `secrets` folder.
pub(crate) struct StoredSecrets {
    pub(crate) ring: Arc<Keyring>,
    pub(crate) dir: PathBuf,
}

fn secret_path(dir: &Path, name: &str) -> Result<PathBuf, String> {
    let valid = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !name.starts_with('.');
    if !valid {
        return Err(format!(
            "`{name}` is not a secret name (letters, digits, `-`, `_`, `.`; not starting with `.`)"
        ));
    }
    Ok(dir.join(format!("{name}.sealed")))
}

impl idgard_host::SecretStore for StoredSecrets {
    fn read(&self, name: &str) -> Result<String, String> {
        let path = secret_path(&self.dir, name)?;
        if !path.exists() {
            return Err(format!(
                "not set ({} is missing): set it with `idgard-agent secret set {name}`",
                path.display()
            ));
        }
        let bytes = idgard_vault::read_file(&self.ring, &path).map_err(|e| e.to_string())?;
        String::from_utf8(bytes).map_err(|_| format!("{}: not UTF-8", path.display()))
    }
}

/// `idgard-agent secret set NAME`: reads the value from standard input (one trailing newline
/// dropped) and stores it sealed.
pub fn secret_set(config: &AgentConfig, name: &str, input: impl Read) -> Result<PathBuf> {
    let path = secret_path(&config.secrets, name).map_err(anyhow::Error::msg)?;
    let mut value = Vec::new();
    input
        .take(SECRET_MAX as u64 + 1)
        .read_to_end(&mut value)
        .context("cannot read the secret from standard input")?;
    if value.len() > SECRET_MAX {
        bail!("a secret is at most {} KiB", SECRET_MAX >> 10);
    }
    if value.ends_with(b"\n") {
        value.pop();
        if value.ends_with(b"\r") {
            value.pop();
        }
    }
    if value.is_empty() {
        bail!("no secret on standard input");
    }
    std::str::from_utf8(&value).context("a secret is UTF-8 text")?;
    let ring = keyring(config)?;
    idgard_vault::write_file(&ring, &path, &value)?;
    Ok(path)
}

/// `idgard-agent secret list`: the names of the stored secrets.
pub fn secret_list(config: &AgentConfig) -> Result<Vec<String>> {
    let mut names: Vec<String> = match std::fs::read_dir(&config.secrets) {
        Ok(entries) => entries
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_suffix(".sealed")
                    .map(str::to_owned)
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).context(format!("cannot list {}", config.secrets.display())),
    };
    names.sort();
    Ok(names)
}

/// `idgard-agent keys list`: one line per key.
pub fn keys_list(config: &AgentConfig) -> Result<Vec<String>> {
    let ring = Keyring::open(&config.keys)?;
    Ok(ring
        .list()
        .iter()
        .map(|k| {
            format!(
                "key {} ({} bits){}  {}",
                k.id,
                k.bits,
                if k.current { ", current" } else { "" },
                k.path.display()
            )
        })
        .collect())
}

/// `idgard-agent keys rotate`: adds the next key, which seals from now on.
pub fn keys_rotate(config: &AgentConfig) -> Result<u32> {
    let ring = Keyring::open(&config.keys)
        .with_context(|| format!("the key ring {}", config.keys.display()))?;
    Ok(ring.rotate()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use idgard_host::SecretStore;

    fn config(dir: &Path) -> AgentConfig {
        let path = dir.join("agent.toml");
        std::fs::write(&path, "").unwrap();
        AgentConfig::load_with(&path, Vec::new()).unwrap()
    }

    #[test]
    fn a_secret_set_from_standard_input_is_sealed_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path());
        let path = secret_set(&c, "ldap-bind", &b"Bind-Pa55\n"[..]).unwrap();
        let raw = std::fs::read(&path).unwrap();
        assert!(!raw.windows(9).any(|w| w == b"Bind-Pa55"));
        let store = StoredSecrets {
            ring: keyring(&c).unwrap(),
            dir: c.secrets.clone(),
        };
        assert_eq!(store.read("ldap-bind").unwrap(), "Bind-Pa55");
        assert!(
            store
                .read("other")
                .unwrap_err()
                .contains("secret set other")
        );
        assert!(
            store
                .read("../x")
                .unwrap_err()
                .contains("not a secret name")
        );
        assert_eq!(secret_list(&c).unwrap(), ["ldap-bind"]);
        assert!(secret_set(&c, "empty", &b"\n"[..]).is_err());
        assert!(secret_set(&c, "a/b", &b"x"[..]).is_err());

        // After a rotation the secret still reads, and a new one is sealed under key 2.
        assert_eq!(keys_rotate(&c).unwrap(), 2);
        let store = StoredSecrets {
            ring: keyring(&c).unwrap(),
            dir: c.secrets.clone(),
        };
        assert_eq!(store.read("ldap-bind").unwrap(), "Bind-Pa55");
        let path = secret_set(&c, "api-token", &b"t0ken"[..]).unwrap();
        assert_eq!(&std::fs::read(path).unwrap()[4..8], &2u32.to_be_bytes());
        let listed = keys_list(&c).unwrap();
        assert!(
            listed[1].contains("key 2 (3072 bits), current"),
            "{listed:?}"
        );
    }
}
