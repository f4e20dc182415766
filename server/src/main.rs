//! `idgard-server`: the server binary and its administration commands.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use idgard_protocol::{NewJob, Operation, OrderState, Situation, TaskSpec};
use idgard_server::config::{Config, Overrides};
use idgard_server::identity::views::OrderFilter;
use idgard_server::page::Page;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// The configuration file read when none is named, from the current directory.
const DEFAULT_CONFIG: &str = "idgard-server.toml";

#[macro_use]
mod cli;

#[derive(Parser)]
#[command(
    name = "idgard-server",
    version,
    about = "The idgard server",
    after_help = "The options above come before the command: idgard-server --config FILE agent list"
)]
struct Cli {
    /// Configuration file (TOML); also IDGARD_CONFIG; default ./idgard-server.toml if present.
    /// It may carry data_dir, listen, rules..., so that commands need no other flag.
    #[arg(long, env = "IDGARD_CONFIG")]
    config: Option<PathBuf>,
    /// Where to listen (default 127.0.0.1:8443).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// The server's folder (default ./data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// sqlite://<file> (default: <data_dir>/idgard.db) or postgres://...
    #[arg(long)]
    database_url: Option<String>,
    /// Serve plain HTTP: development only.
    #[arg(long)]
    dev_http: bool,
    /// The provisioning rules file (TOML); also IDGARD_RULES.
    #[arg(long)]
    rules: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the server (the default).
    Serve,
    /// Manages agents (directly in the database).
    #[command(subcommand)]
    Agent(cli::agents::AgentCommand),
    /// Manages jobs (directly in the database).
    #[command(subcommand)]
    Job(JobCommand),
    /// Manages the administrator tokens of the API.
    #[command(subcommand)]
    AdminToken(cli::agents::TokenCommand),
    /// The key ring sealing what the server stores (uploads, passwords in tasks).
    #[command(subcommand)]
    Keys(cli::keys::KeysCommand),
    /// Copies the embedded database, encrypted, to a new file (with its key file beside it)
    /// while the server runs; checks that the copy opens. PostgreSQL: use pg_dump.
    Backup {
        /// The copy to write (it must not exist).
        to: std::path::PathBuf,
    },
    /// Runs one read-only SQL statement on the embedded database and prints its rows (tab
    /// separated): the database is encrypted, so `sqlite3` cannot read it.
    Sql {
        /// The statement.
        statement: String,
    },
    /// Reads a password on standard input and prints its argon2id hash, for
    /// `ui.dev_password.hash`.
    HashPassword,
    /// Prints the API's OpenAPI document (what `/api/v1/openapi.json` serves).
    Openapi,
    /// Checks a rules file and says what it declares.
    CheckRules {
        /// The file.
        file: PathBuf,
    },
    /// Lists provisioning orders (directly in the database).
    Orders {
        /// Only this job's.
        #[arg(long)]
        job: Option<i64>,
        /// Only this connection's.
        #[arg(long)]
        connection: Option<String>,
        /// Only in this state (pending, sent, done, retry, failed, dry, superseded).
        #[arg(long)]
        state: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Lists accounts of a target in one situation (linked, unlinked, unmatched, deleted).
    Links {
        /// The connection.
        connection: String,
        /// The situation.
        #[arg(long)]
        situation: Option<String>,
    },
}

#[derive(Subcommand)]
enum JobCommand {
    /// Creates a job for an agent and starts it.
    Create {
        /// The agent.
        #[arg(long)]
        agent: String,
        /// A name.
        #[arg(long)]
        name: Option<String>,
        /// A step: `operation:connection`, several separated by commas run at once
        /// (e.g. `export:hr`); repeat for later steps.
        #[arg(long = "step", required = true)]
        steps: Vec<String>,
        /// Create it without starting it.
        #[arg(long)]
        no_start: bool,
    },
    /// Shows a job and its tasks.
    Show {
        /// The job's id.
        id: i64,
    },
    /// Lists the latest jobs.
    List,
    /// Runs a job declared in the rules (complete unless `--incremental`).
    Run {
        /// The declared job's name.
        name: String,
        /// An incremental run.
        #[arg(long)]
        incremental: bool,
        /// Compute and show the orders without sending them.
        #[arg(long)]
        dry_run: bool,
    },
    /// Approves a job a threshold blocked: the blocked step runs again, past the threshold.
    Approve {
        /// The job's id.
        id: i64,
    },
    /// Cancels a job: its queued tasks are dropped, its running ones asked to stop.
    Cancel {
        /// The job's id.
        id: i64,
    },
}

fn parse_step(s: &str) -> Result<Vec<TaskSpec>> {
    s.split(',')
        .map(|t| {
            let (op, conn) = t.trim().split_once(':').unwrap_or((t.trim(), ""));
            let operation = Operation::parse(op).with_context(|| {
                format!("`{op}`: operations are export, fulfill, test-connection, schema, noop")
            })?;
            Ok(TaskSpec {
                connection: conn.to_owned(),
                operation,
                args: serde_json::Value::Null,
                max_attempts: None,
                timeout_s: None,
                agent: None,
            })
        })
        .collect()
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("IDGARD_LOG")
        .unwrap_or_else(|_| "info,sqlx=warn".into());
    let log = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // IDGARD_LOG_FORMAT=json: one JSON object per line, for a log collector.
    if std::env::var("IDGARD_LOG_FORMAT").is_ok_and(|f| f == "json") {
        log.json().with_current_span(false).init();
    } else {
        // Colours only for a person at a terminal: a log file or journal gets plain text.
        log.with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
        .init();
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let overrides = Overrides {
        listen: cli.listen,
        data_dir: cli.data_dir,
        database_url: cli.database_url,
        dev_http: cli.dev_http,
        rules: cli.rules,
    };
    let file = cli.config.or_else(|| {
        let default = PathBuf::from(DEFAULT_CONFIG);
        default.is_file().then_some(default)
    });
    let explicit = file.is_some()
        || overrides.data_dir.is_some()
        || overrides.database_url.is_some()
        || ["IDGARD_DATA_DIR", "IDGARD_DATABASE_URL"]
            .iter()
            .any(|v| std::env::var_os(v).is_some());
    let config = Config::load(file.as_deref(), std::env::vars(), &overrides)?;
    let command = cli.command.unwrap_or(Command::Serve);
    // An administration command run in the wrong folder must not create an empty server there.
    if !explicit
        && !matches!(
            command,
            Command::Serve | Command::CheckRules { .. } | Command::HashPassword | Command::Openapi
        )
        && !config.data_dir.exists()
    {
        anyhow::bail!(
            "no server here: {} does not exist and no configuration was given; pass --config FILE \
             or --data-dir DIR (from another machine, use `idgard login` and `idgard`)",
            config.data_dir.display()
        );
    }
    match command {
        Command::Serve => {
            idgard_server::serve(config, shutdown_signal(), |s| {
                match &s.fingerprint {
                    Some(f) => say!(
                        "idgard-server listening on {} (certificate sha256 {f})",
                        s.url
                    ),
                    None => say!("idgard-server listening on {}", s.url),
                }
                use std::io::Write;
                let _ = std::io::stdout().flush();
            })
            .await
        }
        Command::Agent(cmd) => {
            let engine = idgard_server::open(&config).await?;
            cli::agents::agent(&engine.queue, &config, cmd).await
        }
        Command::Job(cmd) => {
            let engine = idgard_server::open(&config).await?;
            let queue = &engine.queue;
            match cmd {
                JobCommand::Create {
                    agent,
                    name,
                    steps,
                    no_start,
                } => {
                    let steps = steps
                        .iter()
                        .map(|s| parse_step(s))
                        .collect::<Result<Vec<_>>>()?;
                    let job = queue
                        .create_job(&NewJob {
                            agent,
                            name,
                            steps,
                            start: Some(!no_start),
                        })
                        .await?;
                    say!("{}", serde_json::to_string_pretty(&job)?);
                }
                JobCommand::Show { id } => {
                    say!("{}", serde_json::to_string_pretty(&queue.job(id).await?)?)
                }
                JobCommand::Run {
                    name,
                    incremental,
                    dry_run,
                } => {
                    let job = engine
                        .run_declared(&idgard_protocol::RunJob {
                            job: name,
                            incremental,
                            dry_run,
                        })
                        .await?;
                    say!("job {} {} ({})", job.id, job.state.as_str(), job.name);
                }
                JobCommand::Cancel { id } => {
                    let job = queue.cancel_job(id).await?;
                    say!("job {} {}", job.id, job.state.as_str());
                }
                JobCommand::Approve { id } => {
                    let job = engine.approve_job(id).await?;
                    say!("job {} approved: {}", job.id, job.state.as_str());
                }
                JobCommand::List => {
                    for j in queue.jobs(&Page::first(50)).await? {
                        say!(
                            "{:>6}  {:<10} {:<16} step {}/{}  {}",
                            j.id,
                            j.state.as_str(),
                            j.agent,
                            j.step + 1,
                            j.steps,
                            j.name
                        );
                    }
                }
            }
            Ok(())
        }
        Command::Keys(cmd) => cli::keys::run(&config, cmd),
        Command::Backup { to } => cli::database::backup(&config, &to).await,
        Command::Sql { statement } => cli::database::sql(&config, &statement).await,
        Command::HashPassword => {
            let mut password = String::new();
            std::io::stdin()
                .read_line(&mut password)
                .context("cannot read the password on standard input")?;
            let password = password.trim_end_matches(['\r', '\n']);
            if password.is_empty() {
                anyhow::bail!(
                    "an empty password cannot sign anyone in: type one on standard input"
                );
            }
            say!("{}", idgard_server::web::auth::password::hash(password)?);
            Ok(())
        }
        Command::Openapi => {
            let document = idgard_server::http::openapi_document();
            say!("{}", serde_json::to_string_pretty(&document)?);
            Ok(())
        }
        Command::CheckRules { file } => {
            let rules = idgard_server::identity::rules::Rules::load(&file)?;
            say!(
                "{}: valid (sha256 {}): identities from `{}` ({}); targets: {}; jobs: {}",
                file.display(),
                &rules.digest[..16],
                rules.identities.connection,
                rules.identities.entity_type,
                rules
                    .targets
                    .iter()
                    .map(|t| t.connection.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                rules
                    .jobs
                    .iter()
                    .map(|j| j.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            // With a server's data at hand, names the data never holds are worth a warning.
            if config.database_url.is_some() || config.data_dir.join("idgard.db").exists() {
                let engine = idgard_server::open(&config).await?;
                cli::rules::warn_unknown_names(&engine, &rules).await?;
            }
            Ok(())
        }
        Command::Orders {
            job,
            connection,
            state,
            json,
        } => {
            let engine = idgard_server::open(&config).await?;
            let state = state
                .map(|s| {
                    OrderState::parse(&s).with_context(|| {
                        format!("--state {s}: states are waiting, pending, sent, done, retry, failed, dry, superseded")
                    })
                })
                .transpose()?;
            let filter = OrderFilter {
                job,
                connection,
                state,
                identity: None,
                kind: None,
            };
            let orders = engine
                .orders(&filter, &Page::first(idgard_protocol::PAGE_MAX))
                .await?;
            if json {
                say!("{}", serde_json::to_string_pretty(&orders)?);
            } else {
                for o in orders {
                    say!(
                        "{:<28} {:<10} {:<12} {:<8} {:<24} identity {:<12} {}",
                        o.id,
                        o.state.as_str(),
                        o.connection,
                        o.kind,
                        o.key,
                        o.identity.as_deref().unwrap_or("-"),
                        o.message.as_deref().unwrap_or("")
                    );
                }
            }
            Ok(())
        }
        Command::Links {
            connection,
            situation,
        } => {
            let engine = idgard_server::open(&config).await?;
            let situation = situation
                .map(|s| {
                    Situation::parse(&s).with_context(|| {
                        format!(
                            "--situation {s}: situations are linked, unlinked, unmatched, deleted"
                        )
                    })
                })
                .transpose()?;
            let page = Page::first(idgard_protocol::PAGE_MAX);
            for l in engine.links(&connection, situation, &page).await? {
                say!(
                    "{:<28} {:<10} identity {}",
                    l.key,
                    l.situation,
                    l.identity.as_deref().unwrap_or("-")
                );
            }
            Ok(())
        }
        Command::AdminToken(cmd) => {
            let engine = idgard_server::open(&config).await?;
            cli::agents::token(&engine.queue, cmd).await
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
