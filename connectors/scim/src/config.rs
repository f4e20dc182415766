//! The connector's settings.

use idgard_sdk::{Error, Settings};
use serde::Deserialize;

/// Read from the connection's `[settings]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The SCIM base URL, without its trailing `/`.
    pub url: String,
    /// Resources per page of an export.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// Creates sent side by side.
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    /// Tries after a 429 or 503 answer.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Whether groups are exported and provisioned.
    #[serde(default = "default_groups")]
    pub groups: bool,
}

fn default_page_size() -> u32 {
    500
}
fn default_concurrency() -> u32 {
    8
}
fn default_retries() -> u32 {
    5
}
fn default_groups() -> bool {
    true
}

impl Config {
    /// Reads and checks the settings.
    pub fn load(settings: &Settings) -> Result<Self, Error> {
        let mut c: Config = settings.parse()?;
        if !(c.url.starts_with("https://") || c.url.starts_with("http://")) {
            return Err(Error::configuration(format!(
                "url `{}` is not an https:// (or http://) URL",
                c.url
            )));
        }
        c.url = c.url.trim_end_matches('/').to_owned();
        if c.page_size == 0 || c.concurrency == 0 {
            return Err(Error::configuration(
                "page_size and concurrency must be at least 1",
            ));
        }
        c.concurrency = c.concurrency.min(64);
        Ok(c)
    }
}
