//! `[mail]`: where notifications go and which events send them (see `docs/operations.md`).

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::path::PathBuf;

/// The kinds of event that send mail. Each kind sends at most one mail per period; events
/// that come while a kind waits are gathered into its next mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A threshold stopped a run: it waits for approval.
    Blocked,
    /// A run failed.
    FailedRun,
    /// An order failed for good (its attempts spent, or refused by the system).
    FailedOrder,
    /// An agent has not been heard from for `agent_offline_s`.
    AgentOffline,
}

impl Kind {
    /// Every kind, in the order they are looked at.
    pub const ALL: [Kind; 4] = [
        Kind::Blocked,
        Kind::FailedRun,
        Kind::FailedOrder,
        Kind::AgentOffline,
    ];

    /// The stable name (configuration, database, mail header).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Blocked => "blocked",
            Kind::FailedRun => "failed-run",
            Kind::FailedOrder => "failed-order",
            Kind::AgentOffline => "agent-offline",
        }
    }
}

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// Plain connection upgraded with STARTTLS, which the server must offer (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Implicit,
    /// No TLS: only for a relay on the same host; refused with credentials.
    None,
}

/// The `[mail]` section. Without `host`, no mail is sent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailConfig {
    /// The SMTP server's host name (checked against its certificate).
    pub host: Option<String>,
    /// Its port; default 587 (STARTTLS), 465 (implicit TLS) or 25 (no TLS).
    pub port: Option<u16>,
    /// `starttls` (default), `implicit` or `none`.
    pub tls: TlsMode,
    /// A PEM file of certificate authorities to trust besides the system's.
    pub ca: Option<PathBuf>,
    /// The user to authenticate as (PLAIN or LOGIN, over TLS only).
    pub username: Option<String>,
    /// A file holding the password.
    pub password_file: Option<PathBuf>,
    /// The sender, `Name <address>` or `address`.
    pub from: String,
    /// The recipients: a list, or one string of addresses separated by commas (as
    /// `IDGARD_MAIL_TO` gives them).
    #[serde(deserialize_with = "one_or_many")]
    pub to: Vec<String>,
    /// One mail per kind of event per this many seconds at most.
    pub period_s: u64,
    /// How often the database is looked at for new events, in seconds.
    pub check_s: u64,
    /// An agent unheard of for this many seconds is reported offline.
    pub agent_offline_s: u64,
    /// The kinds of event that send mail (default: all).
    pub events: Vec<Kind>,
    /// A mail that cannot be handed over is tried again after this many seconds, doubled each
    /// time up to an hour; it is kept (in the database) until it goes.
    pub retry_s: u64,
    /// Connecting and each SMTP exchange time out after this many seconds.
    pub timeout_s: u64,
}

impl Default for MailConfig {
    fn default() -> Self {
        Self {
            host: None,
            port: None,
            tls: TlsMode::default(),
            ca: None,
            username: None,
            password_file: None,
            from: "idgard <idgard@localhost>".into(),
            to: Vec::new(),
            period_s: 900,
            check_s: 30,
            agent_offline_s: 900,
            events: Kind::ALL.to_vec(),
            retry_s: 30,
            timeout_s: 30,
        }
    }
}

/// A list of strings, or one string split at commas.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Either::deserialize(d)? {
        Either::One(s) => s
            .split(',')
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
            .collect(),
        Either::Many(v) => v,
    })
}

impl MailConfig {
    /// Whether mail is configured.
    pub fn enabled(&self) -> bool {
        self.host.is_some()
    }

    /// The port, from `tls` when not given.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            TlsMode::Starttls => 587,
            TlsMode::Implicit => 465,
            TlsMode::None => 25,
        })
    }

    /// The password, read from `password_file`.
    pub fn password(&self) -> Result<Option<String>> {
        let Some(path) = &self.password_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("mail.password_file: cannot read {}", path.display()))?;
        Ok(Some(text.trim_end_matches(['\r', '\n']).to_owned()))
    }

    /// Refuses settings that cannot work, naming the key.
    pub fn check(&self) -> Result<()> {
        let Some(host) = &self.host else {
            return Ok(());
        };
        if host.trim().is_empty() {
            bail!("mail.host is empty");
        }
        if self.to.is_empty() {
            bail!("mail.to names no recipient: mail would go nowhere");
        }
        if self.period_s == 0 || self.check_s == 0 || self.retry_s == 0 || self.timeout_s == 0 {
            bail!("mail.period_s, check_s, retry_s and timeout_s must be at least 1");
        }
        if self.username.is_some() != self.password_file.is_some() {
            bail!("mail.username and mail.password_file go together");
        }
        if self.username.is_some() && self.tls == TlsMode::None {
            bail!("mail.tls = \"none\" with a username would send the password in clear");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on() -> MailConfig {
        MailConfig {
            host: Some("mail.example.org".into()),
            to: vec!["iam@example.org".into()],
            ..Default::default()
        }
    }

    #[test]
    fn off_by_default_and_checked_when_on() {
        assert!(!MailConfig::default().enabled());
        MailConfig::default().check().unwrap();
        on().check().unwrap();
        let nobody = MailConfig { to: vec![], ..on() };
        assert!(nobody.check().unwrap_err().to_string().contains("mail.to"));
        let clear = MailConfig {
            tls: TlsMode::None,
            username: Some("u".into()),
            password_file: Some("p".into()),
            ..on()
        };
        assert!(clear.check().unwrap_err().to_string().contains("in clear"));
        let half = MailConfig {
            username: Some("u".into()),
            ..on()
        };
        assert!(half.check().is_err());
    }

    #[test]
    fn recipients_come_as_a_list_or_a_string() {
        let list: MailConfig = toml::from_str("to = [\"a@x.org\", \"b@x.org\"]").unwrap();
        let text: MailConfig = toml::from_str("to = \"a@x.org, b@x.org\"").unwrap();
        assert_eq!(list.to, ["a@x.org", "b@x.org"]);
        assert_eq!(text.to, list.to);
    }

    #[test]
    fn ports_follow_tls() {
        assert_eq!(on().port(), 587);
        let implicit = MailConfig {
            tls: TlsMode::Implicit,
            ..on()
        };
        assert_eq!(implicit.port(), 465);
        let given = MailConfig {
            port: Some(2525),
            ..on()
        };
        assert_eq!(given.port(), 2525);
    }
}
