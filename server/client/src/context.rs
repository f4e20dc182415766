//! The administrator's saved context: which server, its pinned certificate, the token. Saved
//! once by `idgard login` (0600, in the user's configuration folder), read by every command, so
//! that no command needs a flag to find its server, and a forgotten login is an error that says
//! what to do, never a command run against something else.

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The environment variable naming another context file (one per server, for instance).
pub const ENV: &str = "IDGARD_CONTEXT";

/// What `idgard login` saves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Context {
    /// The server's base URL (`https://idm.example.org:8443`).
    pub server: String,
    /// SHA-256 of its certificate, hex; absent for a development HTTP server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// An administrator token.
    pub token: String,
}

/// Where the context lives: `$IDGARD_CONTEXT`, else `$XDG_CONFIG_HOME/idgard/context.toml`,
/// else `$HOME/.config/idgard/context.toml`.
pub fn path() -> Result<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(p) = var(ENV) {
        return Ok(PathBuf::from(p));
    }
    let base = match (var("XDG_CONFIG_HOME"), var("HOME")) {
        (Some(x), _) => PathBuf::from(x),
        (None, Some(h)) => PathBuf::from(h).join(".config"),
        (None, None) => {
            bail!("neither {ENV}, XDG_CONFIG_HOME nor HOME is set: no place for the context")
        }
    };
    Ok(base.join("idgard").join("context.toml"))
}

impl Context {
    /// Reads the saved context; its absence is an error saying how to save one.
    pub fn load(path: &Path) -> Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "no saved context ({} does not exist): run `idgard login --server URL \
                 --fingerprint SHA256 --token-file FILE` first",
                path.display()
            ),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        toml::from_str(&text).with_context(|| format!("{} is not a valid context", path.display()))
    }

    /// Saves it, readable by its owner only.
    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let text = toml::to_string(self).context("cannot write the context")?;
        let tmp = path.with_extension("toml.tmp");
        {
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_context_reads_back_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/context.toml");
        let c = Context {
            server: "https://idm:8443".into(),
            fingerprint: Some("ab".repeat(32)),
            token: "t".into(),
        };
        c.save(&p).unwrap();
        assert_eq!(Context::load(&p).unwrap(), c);
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_missing_context_says_how_to_make_one() {
        let dir = tempfile::tempdir().unwrap();
        let e = Context::load(&dir.path().join("none.toml")).unwrap_err();
        assert!(format!("{e:#}").contains("idgard login"), "{e:#}");
    }
}
