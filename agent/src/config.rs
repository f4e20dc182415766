//! The agent's configuration, in layers: defaults, then its file (`agent.toml`), then
//! `IDGARD_AGENT_*` environment variables. Unknown keys in the file are errors; unknown
//! `IDGARD_AGENT_*` variables are warned about. Relative folders in the file are taken from the
//! file's folder; in a variable, from the current directory.

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The agent's configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// The work folder: credentials, collect/, orders/, state/, spool/, cache/.
    #[serde(default = "default_work")]
    pub work: PathBuf,
    /// Connector packages, one folder per connector (named after it).
    #[serde(default = "default_runtime")]
    pub runtime: PathBuf,
    /// Connection files (`*.toml`), one per managed system.
    #[serde(default = "default_connections")]
    pub connections: PathBuf,
    /// The key ring sealing what the agent keeps on disk: RSA key pairs `key-<N>.pem`, made
    /// with its first key when missing. Keep it apart from backups of `work`.
    #[serde(default = "default_keys")]
    pub keys: PathBuf,
    /// Connection secrets set with `idgard-agent secret set NAME`, sealed (`NAME.sealed`).
    #[serde(default = "default_secrets")]
    pub secrets: PathBuf,
    /// Publishers whose connector packages this agent loads: their public keys,
    /// `<publisher>.pem` (Ed25519 or RSA). When it holds a key, every package must carry a
    /// signature by one of them; packages the server offers load only then.
    #[serde(default = "default_publishers")]
    pub publishers: PathBuf,
    /// A client certificate (PEM) presented to a server that asks for one (mutual TLS), with
    /// `tls_key`. It must name this agent (a DNS name of its subject alternative names).
    #[serde(default)]
    pub tls_certificate: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Tasks run at once.
    #[serde(default = "default_max_tasks")]
    pub max_tasks: u32,
    /// Entries per batch asked of connectors.
    #[serde(default = "default_batch")]
    pub batch_size: u32,
    /// On SIGTERM, how long running tasks may go on before they are stopped. A stopped task is
    /// not reported: the server hands it out again once its lease lapses.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace_secs: u64,
    /// Declared jobs that people may launch from the server's web UI through this agent. Any
    /// other launch is refused (and logged); empty: none.
    #[serde(default)]
    pub launchable: Vec<String>,
}

pub(crate) fn default_work() -> PathBuf {
    "work".into()
}
pub(crate) fn default_runtime() -> PathBuf {
    "runtime".into()
}
pub(crate) fn default_connections() -> PathBuf {
    "connections".into()
}
pub(crate) fn default_keys() -> PathBuf {
    "keys".into()
}
pub(crate) fn default_secrets() -> PathBuf {
    "secrets".into()
}
pub(crate) fn default_publishers() -> PathBuf {
    "publishers".into()
}
pub(crate) fn default_max_tasks() -> u32 {
    2
}
pub(crate) fn default_batch() -> u32 {
    1024
}
pub(crate) fn default_shutdown_grace() -> u64 {
    10
}

/// Environment variables and the key each sets.
const ENV_KEYS: &[(&str, &str)] = &[
    ("IDGARD_AGENT_WORK", "work"),
    ("IDGARD_AGENT_RUNTIME", "runtime"),
    ("IDGARD_AGENT_CONNECTIONS", "connections"),
    ("IDGARD_AGENT_KEYS", "keys"),
    ("IDGARD_AGENT_SECRETS", "secrets"),
    ("IDGARD_AGENT_PUBLISHERS", "publishers"),
    ("IDGARD_AGENT_TLS_CERTIFICATE", "tls_certificate"),
    ("IDGARD_AGENT_TLS_KEY", "tls_key"),
    ("IDGARD_AGENT_MAX_TASKS", "max_tasks"),
    ("IDGARD_AGENT_BATCH_SIZE", "batch_size"),
    ("IDGARD_AGENT_SHUTDOWN_GRACE_SECS", "shutdown_grace_secs"),
];

/// The configuration `enrol` writes where there is none.
const STARTER: &str = "\
# The idgard agent's configuration (written by `idgard-agent enrol`; see docs/deployment.md).
# Folders are relative to this file.
work = \"work\"                # credentials, spool, what connectors collect
runtime = \"runtime\"          # connector packages, one folder per connector
connections = \"connections\"  # connection files (*.toml), one per managed system
keys = \"keys\"                # the key ring sealing what the agent keeps on disk
secrets = \"secrets\"          # connection secrets, sealed (idgard-agent secret set NAME)
publishers = \"publishers\"    # trusted publishers' keys (<name>.pem): only packages they signed load
max_tasks = 2
launchable = []              # declared jobs people may launch from the web UI through this agent
";

/// Keys holding files, optional (made absolute as they are read, when given).
const FILE_KEYS: &[&str] = &["tls_certificate", "tls_key"];

/// Keys holding folders (made absolute as they are read).
const FOLDER_KEYS: &[&str] = &[
    "work",
    "runtime",
    "connections",
    "keys",
    "secrets",
    "publishers",
];

impl AgentConfig {
    /// Reads the file, then the process's `IDGARD_AGENT_*` variables.
    pub fn load(path: &Path) -> Result<Self> {
        Self::load_with(path, std::env::vars())
    }

    /// Reads the file, then `env` (name, value pairs).
    pub fn load_with(path: &Path, env: impl IntoIterator<Item = (String, String)>) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut table: toml::Table = text
            .parse()
            .with_context(|| format!("{} is not valid TOML", path.display()))?;
        // Folders are taken from the file's folder, given or defaulted (`work`, `runtime`, ...).
        let base = path.parent().unwrap_or(Path::new("."));
        for key in FOLDER_KEYS {
            let given = match table.get(*key) {
                Some(toml::Value::String(p)) => p.clone(),
                Some(_) => continue, // not a path: the type error is reported below
                None => (*key).to_owned(),
            };
            let folder = base.join(given).to_string_lossy().into_owned();
            table.insert((*key).to_owned(), toml::Value::String(folder));
        }
        for key in FILE_KEYS {
            if let Some(toml::Value::String(p)) = table.get(*key) {
                let file = base.join(p).to_string_lossy().into_owned();
                table.insert((*key).to_owned(), toml::Value::String(file));
            }
        }
        for (name, value) in env {
            if !name.starts_with("IDGARD_AGENT_") {
                continue;
            }
            let Some((_, key)) = ENV_KEYS.iter().find(|(n, _)| *n == name) else {
                tracing::warn!("unknown environment variable {name} is ignored");
                continue;
            };
            let value = if FOLDER_KEYS.contains(key) || FILE_KEYS.contains(key) {
                let cwd = std::env::current_dir().unwrap_or_default();
                toml::Value::String(cwd.join(&value).to_string_lossy().into_owned())
            } else {
                toml::Value::Integer(
                    value
                        .trim()
                        .parse()
                        .with_context(|| format!("{name}: `{value}` is not a whole number"))?,
                )
            };
            table.insert((*key).to_owned(), value);
        }
        let c: AgentConfig = toml::Value::Table(table)
            .try_into()
            .with_context(|| format!("{}: invalid", path.display()))?;

        if c.tls_certificate.is_some() != c.tls_key.is_some() {
            bail!(
                "{}: tls_certificate and tls_key go together (one is set, not the other)",
                path.display()
            );
        }
        if c.max_tasks == 0 || c.max_tasks > 64 {
            bail!("{}: max_tasks must be 1 to 64", path.display());
        }
        Ok(c)
    }

    /// Reads the file, writing a starter one (and its folders) first when there is none: the
    /// enrol command an administrator is given works as printed in an empty folder.
    pub fn load_or_create(path: &Path) -> Result<Self> {
        if !path.exists() {
            std::fs::write(path, STARTER)
                .with_context(|| format!("cannot write a starter {}", path.display()))?;
            let base = path.parent().unwrap_or(Path::new("."));
            // `keys` is made by the key ring itself, readable by the agent's user only.
            for d in FOLDER_KEYS.iter().filter(|d| **d != "keys") {
                std::fs::create_dir_all(base.join(d))
                    .with_context(|| format!("cannot create {}", base.join(d).display()))?;
            }
            eprintln!(
                "wrote a starter {} (folders work/, runtime/, connections/, secrets/ beside it)",
                path.display()
            );
        }
        Self::load(path)
    }

    /// The client certificate and key, when configured.
    pub(crate) fn tls_identity(&self) -> Result<Option<idgard_client::pin::ClientIdentity>> {
        match (&self.tls_certificate, &self.tls_key) {
            (Some(cert), Some(key)) => {
                Ok(Some(idgard_client::pin::ClientIdentity::load(cert, key)?))
            }
            _ => Ok(None),
        }
    }

    pub(crate) fn credentials_path(&self) -> PathBuf {
        self.work.join("credentials.json")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn file_then_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, "work = \"w\"\nmax_tasks = 3\n").unwrap();
        let c = AgentConfig::load_with(&path, env(&[])).unwrap();
        assert_eq!(c.work, dir.path().join("w"));
        assert_eq!(c.runtime, dir.path().join("runtime"));
        assert_eq!(c.max_tasks, 3);

        let c = AgentConfig::load_with(
            &path,
            env(&[
                ("IDGARD_AGENT_MAX_TASKS", "5"),
                ("IDGARD_AGENT_RUNTIME", "/opt/runtime"),
                ("IDGARD_AGENT_NOPE", "x"),
                ("OTHER", "y"),
            ]),
        )
        .unwrap();
        assert_eq!(c.max_tasks, 5);
        assert_eq!(c.runtime, PathBuf::from("/opt/runtime"));
        assert_eq!(c.work, dir.path().join("w"), "the file's value stays");

        let err =
            AgentConfig::load_with(&path, env(&[("IDGARD_AGENT_MAX_TASKS", "many")])).unwrap_err();
        assert!(format!("{err:#}").contains("not a whole number"), "{err:#}");
        // A relative file: its folders are taken from its folder once, not twice.
        let here = tempfile::tempdir_in(".").unwrap();
        let name = here.path().file_name().unwrap().to_owned();
        let relative = Path::new(&name).join("agent.toml");
        std::fs::write(&relative, "runtime = \"r\"\n").unwrap();
        let c = AgentConfig::load_with(&relative, env(&[])).unwrap();
        assert_eq!(c.work, Path::new(&name).join("work"));
        assert_eq!(c.runtime, Path::new(&name).join("r"));

        std::fs::write(&path, "wrok = \"w\"\n").unwrap();
        let err = AgentConfig::load_with(&path, env(&[])).unwrap_err();
        assert!(
            format!("{err:#}").contains("unknown field `wrok`"),
            "{err:#}"
        );
    }
}
