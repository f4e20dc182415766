//! `idgard-agent`: runs connectors inside a protected network.
//!
//! `enrol` and `run` make it an agent of a server: it polls for tasks and runs them through the
//! connector host. `connector run` and `connector new` are the connector author's tools.

use clap::{Parser, Subcommand};
use idgard_agent::{AgentConfig, enrol, run, serve, template};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "idgard-agent", version, about = "The idgard agent")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Enrols this agent with a server, using the one-time token from `idgard-server agent add`.
    Enrol {
        /// The agent's configuration file.
        #[arg(long, default_value = "agent.toml")]
        config: PathBuf,
        /// The server's address, e.g. https://idgard.example.org:8443
        #[arg(long)]
        server: String,
        /// The enrolment token.
        #[arg(long)]
        token: String,
        /// SHA-256 of the server's certificate (printed by the server); pinned from now on.
        #[arg(long)]
        fingerprint: Option<String>,
    },
    /// Runs the agent: polls the server and runs its tasks, until SIGTERM or Ctrl-C.
    Run {
        /// The agent's configuration file.
        #[arg(long, default_value = "agent.toml")]
        config: PathBuf,
    },
    /// Tools for connector authors.
    #[command(subcommand)]
    Connector(ConnectorCommand),
}

#[derive(Subcommand)]
enum ConnectorCommand {
    /// Runs one operation of a connector package through the real host and sandbox.
    Run(run::RunArgs),
    /// Creates a connector crate from the template; it builds and passes its test as created.
    New {
        /// The connector's name (lower-case letters, digits, `-`).
        name: String,
        /// Where to create it (default: a folder named after the connector).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Depend on a local idgard-sdk checkout at this path (developing both together)
        /// instead of the published crate of this agent's version.
        #[arg(long)]
        sdk_path: Option<PathBuf>,
    },
}

fn block_on<T>(f: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("IDGARD_LOG").unwrap_or_else(|_| {
        if std::env::args().nth(1).as_deref() == Some("run") {
            "info".into()
        } else {
            "warn".into()
        }
    });
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
    let result = match cli.command {
        Command::Enrol {
            config,
            server,
            token,
            fingerprint,
        } => AgentConfig::load_or_create(&config).and_then(|c| {
            block_on(enrol(&c, &server, &token, fingerprint.as_deref())).map(|()| ExitCode::SUCCESS)
        }),
        Command::Run { config } => {
            AgentConfig::load(&config).and_then(|c| block_on(serve(c)).map(|()| ExitCode::SUCCESS))
        }
        Command::Connector(ConnectorCommand::Run(args)) => run::run(args),
        Command::Connector(ConnectorCommand::New {
            name,
            dir,
            sdk_path,
        }) => {
            let sdk = sdk_path.map_or(template::Sdk::Published, template::Sdk::Path);
            template::create(&name, dir, &sdk).map(|()| ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
