//! A connection: one managed system, its connector's settings, secrets, grants and limits.

use crate::error::Error;
use crate::grants::Grants;
use crate::limits::Limits;
use crate::manifest::valid_name;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A connection's configuration file (TOML).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connection {
    /// The connection's name (its folders under `work/` are named after it).
    pub name: String,
    /// The connector it expects; checked against the package's manifest when given.
    #[serde(default)]
    pub connector: Option<String>,
    /// Settings for the connector, checked against its manifest.
    #[serde(default)]
    pub settings: toml::Table,
    /// Secrets the connector may read by name.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretSource>,
    /// What the connector is granted.
    #[serde(default)]
    pub grants: Grants,
    /// Limits of each run.
    #[serde(default)]
    pub limits: Limits,
}

/// Where a secret's value comes from. The value is read by the host when a run starts and
/// reaches the connector only through the `secret` import.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub enum SecretSource {
    /// An environment variable of the agent.
    Env(String),
    /// A file (its content, without a trailing newline).
    File(PathBuf),
    /// The value itself (for development only: it sits in the configuration file).
    Value(String),
    /// A secret the agent keeps sealed (`idgard-agent secret set NAME`).
    Stored(String),
}

impl Connection {
    /// Reads a connection file; relative paths in it are taken from the file's folder.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let bad = |message: String| Error::Connection {
            path: path.to_owned(),
            message,
        };
        let mut c: Connection = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if !valid_name(&c.name) {
            return Err(bad(format!(
                "name `{}`: use lower-case letters, digits, `-` and `_`",
                c.name
            )));
        }
        let base = path.parent().unwrap_or(Path::new("."));
        for g in c.grants.folders.values_mut() {
            if g.path.is_relative() {
                g.path = base.join(&g.path);
            }
        }
        for (name, e) in c.grants.endpoints.iter_mut() {
            e.check(name).map_err(bad)?;
            if let Some(ca) = &mut e.ca
                && ca.is_relative()
            {
                *ca = base.join(&*ca);
            }
        }
        for (name, d) in c.grants.databases.iter_mut() {
            d.check(name).map_err(bad)?;
            if let Some(ca) = &mut d.ca
                && ca.is_relative()
            {
                *ca = base.join(&*ca);
            }
            if let Some(secret) = &d.password
                && !c.secrets.contains_key(secret)
            {
                return Err(bad(format!(
                    "database `{name}`: its password secret `{secret}` is not among the \
                     connection's [secrets]"
                )));
            }
        }
        for (name, h) in c.grants.http.iter_mut() {
            h.check(name).map_err(bad)?;
            if let Some(ca) = &mut h.ca
                && ca.is_relative()
            {
                *ca = base.join(&*ca);
            }
            if let Some(secret) = h
                .auth
                .iter()
                .flat_map(|a| a.secrets())
                .find(|s| !c.secrets.contains_key(*s))
            {
                return Err(bad(format!(
                    "HTTP service `{name}`: its credentials' secret `{secret}` is not among the \
                     connection's [secrets]"
                )));
            }
        }
        for s in c.secrets.values_mut() {
            if let SecretSource::File(p) = s
                && p.is_relative()
            {
                *p = base.join(&*p);
            }
        }
        Ok(c)
    }

    /// Reads every secret's value now; `stored` ones from `store`.
    pub fn resolve_secrets(
        &self,
        store: Option<&dyn crate::SecretStore>,
    ) -> Result<BTreeMap<String, String>, Error> {
        let mut out = BTreeMap::new();
        for (name, source) in &self.secrets {
            let value = match source {
                SecretSource::Env(var) => std::env::var(var).map_err(|_| Error::Secret {
                    name: name.clone(),
                    message: format!("environment variable {var} is not set"),
                })?,
                SecretSource::File(p) => std::fs::read_to_string(p)
                    .map_err(|e| Error::Secret {
                        name: name.clone(),
                        message: format!("{}: {e}", p.display()),
                    })?
                    .trim_end_matches(['\n', '\r'])
                    .to_owned(),
                SecretSource::Value(v) => v.clone(),
                SecretSource::Stored(stored) => store
                    .ok_or_else(|| "stored secrets are read by the agent only".to_owned())
                    .and_then(|s| s.read(stored))
                    .map_err(|message| Error::Secret {
                        name: name.clone(),
                        message: format!("stored secret `{stored}`: {message}"),
                    })?,
            };
            out.insert(name.clone(), value);
        }
        Ok(out)
    }
}
