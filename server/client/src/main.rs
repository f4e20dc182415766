//! `idgard`: the administration client. It speaks the server's HTTPS API with a saved context
//! (`idgard login`), so it runs from an administrator's machine and what it starts reaches the
//! agents at once.

mod commands;
mod follow;
mod packages;
mod show;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use show::Output;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "idgard", version, about = "The idgard administration client")]
struct Cli {
    /// How to print: table (default), wide (more columns), json (the API's answer).
    #[arg(short, long, global = true, value_enum, default_value = "table")]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Saves the context every other command uses: the server, its certificate, a token.
    Login(Login),
    /// Forgets the saved context.
    Logout,
    /// Agents.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Administrator tokens.
    #[command(subcommand)]
    AdminToken(TokenCommand),
    /// Jobs.
    #[command(subcommand)]
    Job(JobCommand),
    /// Tasks.
    #[command(subcommand)]
    Task(TaskCommand),
    /// One identity: what it has and why (its attributes, accounts, orders under way, history).
    #[command(subcommand)]
    Identity(IdentityCommand),
    /// One entry of a connection.
    #[command(subcommand)]
    Entry(EntryCommand),
    /// Every version of an entry, oldest first.
    History {
        /// The connection.
        connection: String,
        /// The entry's key.
        key: String,
    },
    /// Connector packages offered to agents: publish, list, activate (upgrade or roll back).
    #[command(subcommand)]
    Package(PackageCommand),
    /// Provisioning orders, newest first.
    Orders(OrdersArgs),
    /// A target's accounts and their situation.
    Links(LinksArgs),
}

#[derive(Args)]
struct Login {
    /// The server's address, as `https://host:port`.
    #[arg(long)]
    server: String,
    /// The SHA-256 of the server's certificate (printed when it starts).
    #[arg(long)]
    fingerprint: Option<String>,
    /// A file holding an administrator token (the server writes the first to
    /// `<data_dir>/admin-token`).
    #[arg(long, conflicts_with = "token")]
    token_file: Option<PathBuf>,
    /// An administrator token (prefer --token-file: a command line is visible to others).
    #[arg(long)]
    token: Option<String>,
}

#[derive(Subcommand)]
enum PackageCommand {
    /// Lists the stored packages, newest first, and which version of each is offered.
    List,
    /// Publishes a signed bundle (`idgard-agent connector sign ... --bundle FILE`); a newer
    /// version than the one offered is offered at once.
    Publish {
        /// The bundle file.
        bundle: PathBuf,
    },
    /// Offers this published version of a connector from now on (an upgrade, or a rollback).
    Activate {
        /// The connector.
        name: String,
        /// The version.
        version: String,
    },
}

#[derive(Subcommand)]
enum AgentCommand {
    /// Lists agents, with when they were last heard from.
    List,
    /// Creates an agent and prints the command that enrols it.
    Add {
        /// Its name.
        name: String,
    },
    /// Gives an agent a new enrolment token; its credentials end at once.
    Reset {
        /// Its name.
        name: String,
    },
    /// Removes an agent; its jobs' history stays.
    Remove {
        /// Its name.
        name: String,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Lists administrator tokens (their ids, never the tokens).
    List,
    /// Creates a token and prints it (shown once).
    Create {
        /// Whose it is or what it is for.
        #[arg(long)]
        name: Option<String>,
        /// How many days it works (without it, until revoked).
        #[arg(long)]
        expires_in_days: Option<u64>,
    },
    /// Revokes a token: it stops working at once.
    Revoke {
        /// Its id, as `list` shows it (at least 8 hex digits).
        id: String,
    },
}

#[derive(Subcommand)]
enum JobCommand {
    /// The latest jobs.
    List {
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// A job and its tasks, with their progress.
    Show {
        /// The job's id.
        id: i64,
    },
    /// Runs a job declared in the rules (complete unless --incremental).
    Run {
        /// The declared job's name.
        name: String,
        /// Only what changed since the last run.
        #[arg(long)]
        incremental: bool,
        /// Compute and show the orders; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Follow its progress until it ends (the exit status says how it ended).
        #[arg(long)]
        wait: bool,
    },
    /// Cancels a job.
    Cancel {
        /// The job's id.
        id: i64,
    },
    /// Lets a job a threshold blocked go on.
    Approve {
        /// The job's id.
        id: i64,
    },
}

#[derive(Subcommand)]
enum TaskCommand {
    /// A task's log.
    Log {
        /// The task's id.
        id: i64,
        /// Keep printing lines until the task ends.
        #[arg(long, short)]
        follow: bool,
    },
}

#[derive(Subcommand)]
enum IdentityCommand {
    /// Shows an identity.
    Show {
        /// Its key in the identities' source.
        key: String,
    },
}

#[derive(Subcommand)]
enum EntryCommand {
    /// Shows an entry and its link.
    Show {
        /// The connection.
        connection: String,
        /// The entry's key.
        key: String,
    },
}

#[derive(Args)]
struct OrdersArgs {
    /// Only this job's.
    #[arg(long)]
    job: Option<i64>,
    /// Only this target's.
    #[arg(long)]
    connection: Option<String>,
    /// Only in this state.
    #[arg(long, value_parser = ["waiting", "pending", "sent", "done", "retry", "failed", "dry", "superseded"])]
    state: Option<String>,
    /// Only this identity's.
    #[arg(long)]
    identity: Option<String>,
    /// How many (at most 10000).
    #[arg(long, default_value_t = 100)]
    limit: u32,
}

#[derive(Args)]
struct LinksArgs {
    /// The target connection.
    connection: String,
    /// Only in this situation (`unmatched`: the orphans).
    #[arg(long, value_parser = ["linked", "unlinked", "unmatched", "deleted"])]
    situation: Option<String>,
    /// Start after this key.
    #[arg(long)]
    after: Option<String>,
    /// How many (at most 10000).
    #[arg(long, default_value_t = 1000)]
    limit: u32,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(commands::run(cli.command, cli.output)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The context file, or the error saying how to make one.
fn context_path() -> Result<PathBuf> {
    idgard_client::context::path()
}
