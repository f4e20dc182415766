//! The server's configuration, in layers: defaults, then a TOML file, then `IDGARD_*`
//! environment variables, then command-line flags. Unknown keys in the file are errors;
//! unknown `IDGARD_*` variables are warned about.

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Everything the server reads at start.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The server's own folder: the SQLite database, development keys, the admin token.
    pub data_dir: PathBuf,
    /// `sqlite://...` or `postgres://...`; default: `sqlite://<data_dir>/idgard.db`.
    pub database_url: Option<String>,
    /// How the embedded database is used.
    pub database: DatabaseConfig,
    /// The address agents use, printed in enrolment instructions.
    pub public_url: Option<String>,
    /// Serve plain HTTP (development only: tokens and secrets travel in clear).
    pub dev_http: bool,
    /// HTTPS.
    pub tls: TlsConfig,
    /// The RSA key that signs agents' tokens.
    pub signing: SigningConfig,
    /// Queue timings.
    pub queue: QueueConfig,
    /// Request limits.
    pub limits: LimitsConfig,
    /// The provisioning rules file (identities, targets, thresholds, declared jobs).
    pub rules: Option<PathBuf>,
    /// The key ring sealing what the server stores (uploads, passwords in tasks): a folder of
    /// RSA key pairs, default `<data_dir>/keys` (made with its first key when missing there).
    /// Replicas on one PostgreSQL share one. See `docs/operations.md`.
    pub keyring: Option<PathBuf>,
    /// The key of earlier versions (32 bytes, `<data_dir>/secrets.key` by default): read, when
    /// present, to open what it sealed; nothing new is sealed with it.
    pub secrets_key: Option<PathBuf>,
    /// The web UI: sign-in methods, sessions, roles (see `docs/ui.md`).
    pub ui: crate::web::settings::UiConfig,
    /// Notifications by mail (see `docs/operations.md`).
    pub mail: crate::notify::settings::MailConfig,
    /// Who may read `/metrics`.
    pub metrics: crate::metrics::settings::MetricsConfig,
}

/// HTTPS certificate and key (PEM). Without them (and without `dev_http`), a self-signed
/// development certificate is generated in the data folder, with a warning.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Certificate chain, PEM.
    pub cert: Option<PathBuf>,
    /// Private key, PEM.
    pub key: Option<PathBuf>,
    /// Certificate authorities of agents' client certificates, PEM. When set, agents must
    /// present a certificate of one of them naming the agent (mutual TLS); browsers and the
    /// admin CLI present none and are served as before.
    pub agent_ca: Option<PathBuf>,
}

/// The token-signing key pair: an RSA-2048 (or larger) private key, PEM (PKCS#1 or PKCS#8) or
/// PKCS#12. Without one, a development key is generated in the data folder, with a warning.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SigningConfig {
    /// The key file (`.pem`, `.p12` or `.pfx`).
    pub key: Option<PathBuf>,
    /// A file holding the PKCS#12 password.
    pub password_file: Option<PathBuf>,
    /// Lifetime of agents' access tokens, in seconds.
    pub token_ttl_s: u64,
}

impl Default for SigningConfig {
    fn default() -> Self {
        Self {
            key: None,
            password_file: None,
            token_ttl_s: 900,
        }
    }
}

/// Queue timings; see `docs/protocol.md`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// A lease without a heartbeat lapses after this many ms.
    pub lease_ms: u64,
    /// A claimed task must be acknowledged (first heartbeat) within this many ms, or it goes
    /// back to the queue: this covers a poll answer lost on the way.
    pub ack_ms: u64,
    /// The longest a poll is held, in ms.
    pub poll_wait_ms: u64,
    /// A held poll looks at the database again this often even without a wake-up, in ms.
    pub poll_recheck_ms: u64,
    /// How often lapsed leases and timeouts are looked for, in ms.
    pub reap_every_ms: u64,
    /// First retry delay, doubled at each attempt, in ms.
    pub backoff_ms: u64,
    /// Longest retry delay, in ms.
    pub backoff_max_ms: u64,
    /// Default attempts per task.
    pub max_attempts: u32,
    /// Default run time limit per task, in seconds.
    pub timeout_s: u64,
    /// Log lines kept per attempt of a task; later ones are dropped (the log says so).
    pub log_lines_per_task: u64,
    /// Log bytes kept per attempt of a task, in KiB.
    pub log_kib_per_task: u64,
    /// Hours an upload's content is kept after its task (and job) ended; 0 keeps it forever.
    pub upload_retention_h: u64,
    /// How long a run launched from the browser waits for its agent to accept it, in ms: its
    /// token expires then, and the UI says the agent did not pick it up.
    pub launch_ttl_ms: u64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            lease_ms: 60_000,
            ack_ms: 15_000,
            poll_wait_ms: 25_000,
            poll_recheck_ms: 5_000,
            reap_every_ms: 1_000,
            backoff_ms: 2_000,
            backoff_max_ms: 300_000,
            max_attempts: 3,
            timeout_s: 3_600,
            log_lines_per_task: 100_000,
            log_kib_per_task: 16_384,
            upload_retention_h: 168,
            launch_ttl_ms: 60_000,
        }
    }
}

impl QueueConfig {
    /// The retry delay before attempt `attempts + 1`.
    pub fn backoff(&self, attempts: u32) -> u64 {
        let shift = attempts.saturating_sub(1).min(20);
        self.backoff_ms
            .saturating_mul(1 << shift)
            .min(self.backoff_max_ms)
    }

    /// How often agents are told to send heartbeats.
    pub fn heartbeat_ms(&self) -> u64 {
        (self.lease_ms / 4).max(100)
    }
}

/// The embedded database (SQLite); PostgreSQL's own settings are PostgreSQL's.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// The writer's page cache during a synchronisation or provisioning, in MiB: the pages it
    /// holds decrypted. Every page it reads from the file again is decrypted and authenticated,
    /// so a cache that holds such work's pages keeps encryption's cost low (see
    /// `docs/performance.md`); it fills only as pages are used. At other times, and always while
    /// it writes an upload, the writer keeps 64 MiB.
    pub cache_mib: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            cache_mib: crate::db::LARGE_CACHE_MIB,
        }
    }
}

/// Limits on what a request may carry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest JSON body, in KiB.
    pub json_kib: usize,
    /// Largest upload chunk, in MiB.
    pub chunk_mib: usize,
    /// Largest upload, in MiB.
    pub upload_mib: u64,
    /// Open connections at most (lowered to fit the process's descriptor limit). The last
    /// eighth is kept for addresses agents have signed in from.
    pub connections: usize,
    /// Open connections from one address at most (agents' addresses excepted).
    pub connections_per_peer: usize,
    /// A new connection must finish its TLS handshake and send its first request's header
    /// within this many seconds; so must every later request's header.
    pub header_timeout_s: u64,
    /// A request body that sends nothing for this many seconds is abandoned (408).
    pub body_timeout_s: u64,
    /// A connection with no request under way and no byte moving for this many seconds is
    /// closed; so is one whose client stops reading an answer for as long.
    pub idle_timeout_s: u64,
    /// Failed sign-ins allowed per address (and per agent) and minute; past it they are
    /// answered `rate_limited`.
    pub failed_signins: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            json_kib: 1024,
            chunk_mib: 8,
            upload_mib: 4096,
            connections: 16_384,
            connections_per_peer: 128,
            header_timeout_s: 10,
            body_timeout_s: 30,
            idle_timeout_s: 75,
            failed_signins: crate::http::throttle::FAILURES_PER_WINDOW,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8443".parse().expect("valid address"),
            data_dir: PathBuf::from("data"),
            database_url: None,
            database: DatabaseConfig::default(),
            public_url: None,
            dev_http: false,
            tls: TlsConfig::default(),
            signing: SigningConfig::default(),
            queue: QueueConfig::default(),
            limits: LimitsConfig::default(),
            rules: None,
            keyring: None,
            secrets_key: None,
            ui: Default::default(),
            mail: Default::default(),
            metrics: Default::default(),
        }
    }
}

/// Environment variables and the configuration key each one sets.
const ENV_KEYS: &[(&str, &str)] = &[
    ("IDGARD_LISTEN", "listen"),
    ("IDGARD_DATA_DIR", "data_dir"),
    ("IDGARD_DATABASE_URL", "database_url"),
    ("IDGARD_DATABASE_CACHE_MIB", "database.cache_mib"),
    ("IDGARD_RULES", "rules"),
    ("IDGARD_PUBLIC_URL", "public_url"),
    ("IDGARD_DEV_HTTP", "dev_http"),
    ("IDGARD_TLS_CERT", "tls.cert"),
    ("IDGARD_TLS_KEY", "tls.key"),
    ("IDGARD_TLS_AGENT_CA", "tls.agent_ca"),
    ("IDGARD_KEYRING", "keyring"),
    ("IDGARD_SECRETS_KEY", "secrets_key"),
    ("IDGARD_SIGNING_KEY", "signing.key"),
    ("IDGARD_SIGNING_PASSWORD_FILE", "signing.password_file"),
    ("IDGARD_SIGNING_TOKEN_TTL_S", "signing.token_ttl_s"),
    ("IDGARD_QUEUE_LEASE_MS", "queue.lease_ms"),
    ("IDGARD_QUEUE_ACK_MS", "queue.ack_ms"),
    ("IDGARD_QUEUE_POLL_WAIT_MS", "queue.poll_wait_ms"),
    ("IDGARD_QUEUE_POLL_RECHECK_MS", "queue.poll_recheck_ms"),
    ("IDGARD_QUEUE_REAP_EVERY_MS", "queue.reap_every_ms"),
    ("IDGARD_QUEUE_BACKOFF_MS", "queue.backoff_ms"),
    ("IDGARD_QUEUE_BACKOFF_MAX_MS", "queue.backoff_max_ms"),
    ("IDGARD_QUEUE_MAX_ATTEMPTS", "queue.max_attempts"),
    ("IDGARD_QUEUE_LAUNCH_TTL_MS", "queue.launch_ttl_ms"),
    ("IDGARD_QUEUE_TIMEOUT_S", "queue.timeout_s"),
    (
        "IDGARD_QUEUE_LOG_LINES_PER_TASK",
        "queue.log_lines_per_task",
    ),
    ("IDGARD_QUEUE_LOG_KIB_PER_TASK", "queue.log_kib_per_task"),
    (
        "IDGARD_QUEUE_UPLOAD_RETENTION_H",
        "queue.upload_retention_h",
    ),
    ("IDGARD_LIMITS_JSON_KIB", "limits.json_kib"),
    ("IDGARD_LIMITS_CHUNK_MIB", "limits.chunk_mib"),
    ("IDGARD_LIMITS_UPLOAD_MIB", "limits.upload_mib"),
    ("IDGARD_LIMITS_CONNECTIONS", "limits.connections"),
    (
        "IDGARD_LIMITS_CONNECTIONS_PER_PEER",
        "limits.connections_per_peer",
    ),
    ("IDGARD_LIMITS_HEADER_TIMEOUT_S", "limits.header_timeout_s"),
    ("IDGARD_LIMITS_BODY_TIMEOUT_S", "limits.body_timeout_s"),
    ("IDGARD_LIMITS_IDLE_TIMEOUT_S", "limits.idle_timeout_s"),
    ("IDGARD_LIMITS_FAILED_SIGNINS", "limits.failed_signins"),
    ("IDGARD_METRICS_TOKEN_FILE", "metrics.token_file"),
    ("IDGARD_MAIL_HOST", "mail.host"),
    ("IDGARD_MAIL_PORT", "mail.port"),
    ("IDGARD_MAIL_TLS", "mail.tls"),
    ("IDGARD_MAIL_CA", "mail.ca"),
    ("IDGARD_MAIL_USERNAME", "mail.username"),
    ("IDGARD_MAIL_PASSWORD_FILE", "mail.password_file"),
    ("IDGARD_MAIL_FROM", "mail.from"),
    ("IDGARD_MAIL_TO", "mail.to"),
    ("IDGARD_MAIL_PERIOD_S", "mail.period_s"),
    ("IDGARD_MAIL_CHECK_S", "mail.check_s"),
    ("IDGARD_MAIL_RETRY_S", "mail.retry_s"),
    ("IDGARD_MAIL_AGENT_OFFLINE_S", "mail.agent_offline_s"),
];

/// Variables read elsewhere, not configuration keys.
const ENV_OTHER: &[&str] = &["IDGARD_LOG", "IDGARD_LOG_FORMAT", "IDGARD_CONFIG"];

/// Values given on the command line; they win over everything else.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--database-url`.
    pub database_url: Option<String>,
    /// `--dev-http`.
    pub dev_http: bool,
    /// `--rules`.
    pub rules: Option<PathBuf>,
}

impl Config {
    /// Reads the layers: `file` (if any), then `env` (name, value pairs), then `overrides`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<Self> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                text.parse::<toml::Table>()
                    .with_context(|| format!("{} is not valid TOML", path.display()))?
            }
            None => toml::Table::new(),
        };
        for (name, value) in env {
            if !name.starts_with("IDGARD_") {
                continue;
            }
            match ENV_KEYS.iter().find(|(n, _)| *n == name) {
                Some((_, key)) => set_key(&mut table, key, &value)
                    .with_context(|| format!("environment variable {name}"))?,
                None if ENV_OTHER.contains(&name.as_str()) => {}
                None => tracing::warn!("unknown environment variable {name} is ignored"),
            }
        }
        if let Some(listen) = overrides.listen {
            set_key(&mut table, "listen", &listen.to_string())?;
        }
        if let Some(dir) = &overrides.data_dir {
            set_key(&mut table, "data_dir", &dir.to_string_lossy())?;
        }
        if let Some(url) = &overrides.database_url {
            set_key(&mut table, "database_url", url)?;
        }
        if overrides.dev_http {
            set_key(&mut table, "dev_http", "true")?;
        }
        if let Some(rules) = &overrides.rules {
            set_key(&mut table, "rules", &rules.to_string_lossy())?;
        }
        let where_ = file
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "the configuration".into());
        let config: Config = toml::Value::Table(table)
            .try_into()
            .with_context(|| format!("{where_}: invalid configuration"))?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<()> {
        let q = &self.queue;
        if q.lease_ms < 500 || q.ack_ms < 200 || q.poll_wait_ms > 120_000 {
            bail!(
                "queue timings out of range: lease_ms ≥ 500, ack_ms ≥ 200, poll_wait_ms ≤ 120000"
            );
        }
        if q.max_attempts == 0 {
            bail!("queue.max_attempts must be at least 1");
        }
        let l = &self.limits;
        let timeouts = [l.header_timeout_s, l.body_timeout_s, l.idle_timeout_s];
        if timeouts.iter().any(|t| !(1..=3600).contains(t)) {
            bail!("limits.*_timeout_s must be between 1 and 3600 seconds");
        }
        if l.connections < 16 || l.connections_per_peer == 0 {
            bail!("limits.connections must be at least 16, limits.connections_per_peer at least 1");
        }
        if !(8..=65_536).contains(&self.database.cache_mib) {
            bail!("database.cache_mib must be between 8 and 65536");
        }
        if l.failed_signins == 0 {
            bail!("limits.failed_signins must be at least 1");
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            bail!("tls.cert and tls.key go together");
        }
        self.mail.check()?;
        Ok(())
    }

    /// The database URL, defaulting to a SQLite file in the data folder.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("idgard.db").display()),
        }
    }

    /// The key ring's folder, and whether it was configured (a configured one must exist).
    pub fn keyring(&self) -> (PathBuf, bool) {
        match &self.keyring {
            Some(p) => (p.clone(), true),
            None => (self.data_dir.join("keys"), false),
        }
    }

    /// The earlier versions' secrets key's file.
    pub fn secrets_key(&self) -> PathBuf {
        self.secrets_key
            .clone()
            .unwrap_or_else(|| self.data_dir.join("secrets.key"))
    }

    /// How long to hold polls, etc.
    pub fn poll_wait(&self) -> Duration {
        Duration::from_millis(self.queue.poll_wait_ms)
    }
}

/// Sets `a.b` in a TOML table from a string, guessing the type from the value.
fn set_key(table: &mut toml::Table, key: &str, value: &str) -> Result<()> {
    let parsed = if let Ok(v) = value.parse::<i64>() {
        toml::Value::Integer(v)
    } else if let Ok(v) = value.parse::<bool>() {
        toml::Value::Boolean(v)
    } else {
        toml::Value::String(value.to_owned())
    };
    let mut parts = key.split('.').peekable();
    let mut here = table;
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            here.insert(part.to_owned(), parsed);
            return Ok(());
        }
        let entry = here
            .entry(part.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        here = entry
            .as_table_mut()
            .with_context(|| format!("`{part}` is not a table"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_apply_in_order_and_unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("server.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:1\"\n[queue]\nlease_ms = 9000\n",
        )
        .unwrap();
        let env = vec![
            ("IDGARD_QUEUE_LEASE_MS".to_owned(), "7000".to_owned()),
            ("IDGARD_DATA_DIR".to_owned(), "/srv/idgard".to_owned()),
        ];
        let over = Overrides {
            listen: Some("127.0.0.1:2".parse().unwrap()),
            ..Default::default()
        };
        let c = Config::load(Some(&file), env, &over).unwrap();
        assert_eq!(c.listen.port(), 2);
        assert_eq!(c.queue.lease_ms, 7000);
        assert_eq!(c.data_dir, PathBuf::from("/srv/idgard"));
        assert_eq!(c.database_url(), "sqlite:///srv/idgard/idgard.db");

        std::fs::write(&file, "[queue]\nlease = 9000\n").unwrap();
        let e = Config::load(Some(&file), vec![], &Overrides::default()).unwrap_err();
        assert!(format!("{e:#}").contains("unknown field `lease`"), "{e:#}");
    }

    #[test]
    fn the_database_cache_is_set_within_bounds() {
        let none = Overrides::default();
        assert_eq!(
            Config::load(None, vec![], &none)
                .unwrap()
                .database
                .cache_mib,
            crate::db::LARGE_CACHE_MIB
        );
        let env = |v: &str| vec![("IDGARD_DATABASE_CACHE_MIB".to_owned(), v.to_owned())];
        assert_eq!(
            Config::load(None, env("64"), &none)
                .unwrap()
                .database
                .cache_mib,
            64
        );
        let e = Config::load(None, env("2"), &none).unwrap_err();
        assert!(format!("{e:#}").contains("database.cache_mib"), "{e:#}");
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let q = QueueConfig {
            backoff_ms: 100,
            backoff_max_ms: 1000,
            ..Default::default()
        };
        assert_eq!(
            [1, 2, 3, 4, 5, 30].map(|a| q.backoff(a)),
            [100, 200, 400, 800, 1000, 1000]
        );
    }
}
