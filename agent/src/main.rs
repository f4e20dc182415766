//! `idgard-agent`: runs connectors inside a protected network.
//!
//! This version carries the connector author's commands: `connector run` runs a connector
//! package through the real host, `connector new` creates a connector crate from a template.
//! Polling the server comes with the server.

mod output;
mod run;
mod template;

use clap::{Parser, Subcommand};
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
        /// Path of the idgard-sdk crate the new connector depends on.
        #[arg(long, default_value = template::DEFAULT_SDK)]
        sdk: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("IDGARD_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Connector(ConnectorCommand::Run(args)) => run::run(args),
        Command::Connector(ConnectorCommand::New { name, dir, sdk }) => {
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
