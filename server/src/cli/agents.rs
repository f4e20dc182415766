//! `agent add|reset|remove|list` and `admin-token create|list|revoke`.

use anyhow::{Context, Result};
use clap::Subcommand;
use idgard_protocol::{NewAdminToken, NewAgentAnswer, PAGE_MAX};
use idgard_server::config::Config;
use idgard_server::page::Page;
use idgard_server::queue::Queue;

#[derive(Subcommand)]
pub enum AgentCommand {
    /// Creates an agent and prints its one-time enrolment token (an existing name is refused).
    Add {
        /// The agent's name.
        name: String,
        /// The server's address as the agent reaches it (for the printed command).
        #[arg(long)]
        url: Option<String>,
    },
    /// Gives an existing agent a new enrolment token (to enrol again after losing its
    /// credentials); its current credentials stop working at once.
    Reset {
        /// The agent's name.
        name: String,
        /// The server's address as the agent reaches it.
        #[arg(long)]
        url: Option<String>,
    },
    /// Removes an agent: its credentials end, its name is free, its jobs' history stays.
    Remove {
        /// The agent's name.
        name: String,
    },
    /// Lists agents.
    List,
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Creates an administrator token and prints it (shown once).
    Create {
        /// Whose it is or what it is for.
        #[arg(long)]
        name: Option<String>,
        /// How long it works (`12h`, `30d`); without it, until revoked.
        #[arg(long, value_parser = humantime::parse_duration)]
        expires_in: Option<std::time::Duration>,
    },
    /// Lists administrator tokens (their ids, never the tokens).
    List,
    /// Revokes a token: it stops working at once.
    Revoke {
        /// Its id as `list` shows it (at least 8 hex digits).
        id: String,
    },
}

pub async fn agent(queue: &Queue, config: &Config, cmd: AgentCommand) -> Result<()> {
    match cmd {
        AgentCommand::Add { name, url } => {
            let answer = queue.add_agent(&name).await?;
            print_enrolment(config, &name, "created", url, &answer);
        }
        AgentCommand::Reset { name, url } => {
            let answer = queue.reset_agent(&name).await?;
            print_enrolment(config, &name, "reset", url, &answer);
        }
        AgentCommand::Remove { name } => {
            queue.remove_agent(&name).await?;
            say!("agent `{name}` removed");
        }
        AgentCommand::List => {
            for a in queue.agents(&Page::first(PAGE_MAX)).await? {
                say!(
                    "{:<24} {:<10} last seen {:<14} connections: {}",
                    a.name,
                    if a.enrolled { "enrolled" } else { "waiting" },
                    a.last_seen_ms
                        .map(|t| format!("{} s ago", (idgard_server::now_ms() - t) / 1000))
                        .unwrap_or_else(|| "never".into()),
                    a.connections
                        .iter()
                        .map(|c| format!("{} ({} {})", c.name, c.connector, c.version))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
    }
    Ok(())
}

fn print_enrolment(
    config: &Config,
    name: &str,
    what: &str,
    url: Option<String>,
    answer: &NewAgentAnswer,
) {
    let url = url
        .or(config.public_url.clone())
        .unwrap_or_else(|| default_url(config));
    say!(
        "agent `{name}` {what}; enrolment token (valid 24 h, once):\n  {}",
        answer.enrolment_token
    );
    let pin = fingerprint_hint(config);
    say!(
        "on the agent's host, run:\n  idgard-agent enrol --server {url} --token {}{pin}",
        answer.enrolment_token
    );
}

pub async fn token(queue: &Queue, cmd: TokenCommand) -> Result<()> {
    match cmd {
        TokenCommand::Create { name, expires_in } => {
            let answer = queue
                .create_admin_token(&NewAdminToken {
                    name,
                    expires_in_s: expires_in.map(|d| d.as_secs().max(1)),
                })
                .await?;
            say!("{}", answer.token);
            eprintln!(
                "administrator token {} created{}; it is shown this once",
                answer.view.id,
                answer
                    .view
                    .expires_ms
                    .map(|t| format!(", valid until {}", human_time(t)))
                    .unwrap_or_default()
            );
        }
        TokenCommand::List => {
            say!("{:<14} {:<20} {:<22} EXPIRES", "ID", "NAME", "CREATED");
            for t in queue.admin_tokens(&Page::first(PAGE_MAX)).await? {
                say!(
                    "{:<14} {:<20} {:<22} {}",
                    t.id,
                    t.name.as_deref().unwrap_or("-"),
                    human_time(t.created_ms),
                    t.expires_ms
                        .map(human_time)
                        .unwrap_or_else(|| "never".into())
                );
            }
        }
        TokenCommand::Revoke { id } => {
            let t = queue
                .revoke_admin_token(&id)
                .await
                .with_context(|| format!("cannot revoke `{id}`"))?;
            say!("administrator token {} revoked", t.id);
        }
    }
    Ok(())
}

/// A time for people, in UTC.
pub fn human_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| ms.to_string())
}
pub fn default_url(config: &Config) -> String {
    let scheme = if config.dev_http { "http" } else { "https" };
    format!("{scheme}://{}", config.listen)
}

/// The `--fingerprint` argument, when the certificate is known.
pub fn fingerprint_hint(config: &Config) -> String {
    if config.dev_http {
        return String::new();
    }
    let cert = config
        .tls
        .cert
        .clone()
        .unwrap_or_else(|| config.data_dir.join("dev-cert.pem"));
    match std::fs::read(&cert).ok().and_then(|pem| {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        CertificateDer::pem_slice_iter(&pem).next()?.ok()
    }) {
        Some(der) => format!(" --fingerprint {}", idgard_server::keys::fingerprint(&der)),
        None => " --fingerprint <the server's certificate sha256, printed when it starts>".into(),
    }
}
