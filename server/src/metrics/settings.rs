//! `[metrics]`: who may read `/metrics`.

use anyhow::{Context, Result};
use serde::Deserialize;
use std::path::PathBuf;

/// The `[metrics]` section. Without `token_file`, `/metrics` answers 404.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// A file holding the bearer token scrapers send (`Authorization: Bearer ...`).
    pub token_file: Option<PathBuf>,
}

impl MetricsConfig {
    /// The SHA-256 of the token, read from `token_file`; none when metrics are off.
    pub fn token_digest(&self) -> Result<Option<[u8; 32]>> {
        use sha2::Digest as _;
        let Some(path) = &self.token_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("metrics.token_file: cannot read {}", path.display()))?;
        let token = text.trim();
        anyhow::ensure!(
            token.len() >= 16,
            "metrics.token_file: the token in {} is shorter than 16 characters",
            path.display()
        );
        Ok(Some(sha2::Sha256::digest(token.as_bytes()).into()))
    }
}
