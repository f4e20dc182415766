//! `idgard-agent`: runs connectors inside a protected network.
//!
//! `enrol` and `run` make it an agent of a server: it polls for tasks and runs them through the
//! connector host. `connector run` and `connector new` are the connector author's tools.

use clap::{Parser, Subcommand};
use idgard_agent::{AgentConfig, enrol, run, sealed, serve, signing, template};
use std::path::{Path, PathBuf};
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
    /// Connection secrets kept sealed by this agent (`[secrets] NAME = { stored = "NAME" }`).
    #[command(subcommand)]
    Secret(SecretCommand),
    /// The key ring sealing what this agent keeps on disk.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Tools for connector authors.
    #[command(subcommand)]
    Connector(ConnectorCommand),
}

#[derive(Subcommand)]
enum SecretCommand {
    /// Reads a secret from standard input and stores it sealed (replacing any of that name).
    Set {
        /// The secret's name.
        name: String,
        /// The agent's configuration file.
        #[arg(long, default_value = "agent.toml")]
        config: PathBuf,
    },
    /// Lists the stored secrets' names.
    List {
        /// The agent's configuration file.
        #[arg(long, default_value = "agent.toml")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Lists the keys of the ring, the current one marked.
    List {
        /// The agent's configuration file.
        #[arg(long, default_value = "agent.toml")]
        config: PathBuf,
    },
    /// Adds a key that seals from now on (a running agent takes it within seconds); what older
    /// keys sealed stays readable while their files stay.
    Rotate {
        /// The agent's configuration file.
        #[arg(long, default_value = "agent.toml")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum ConnectorCommand {
    /// Runs one operation of a connector package through the real host and sandbox.
    Run(run::RunArgs),
    /// Makes a publisher's Ed25519 key pair: <PUBLISHER>.key (keep it) and <PUBLISHER>.pem
    /// (agents that trust you put it in their `publishers` folder).
    Keygen {
        /// The publisher's name (lower-case letters, digits, `-`, `_`).
        publisher: String,
        /// Where to write the two files.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Signs a package folder: writes connector.sig over its manifest and component.
    Sign {
        /// The package folder (holding connector.toml).
        package: PathBuf,
        /// The publisher's private key (PKCS#8 PEM, Ed25519 or RSA).
        #[arg(long)]
        key: PathBuf,
        /// The publisher's name, as agents know its key (`publishers/<name>.pem`).
        #[arg(long)]
        publisher: String,
        /// Also write the signed package as one bundle file, the form the server takes.
        #[arg(long)]
        bundle: Option<PathBuf>,
    },
    /// Checks a package folder's signature against trusted public keys, as an agent would.
    Verify {
        /// The package folder.
        package: PathBuf,
        /// A folder of trusted public keys, `<publisher>.pem` (an agent's `publishers`).
        #[arg(long)]
        trusted: PathBuf,
    },
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

fn secret(command: SecretCommand) -> anyhow::Result<ExitCode> {
    match command {
        SecretCommand::Set { name, config } => {
            let c = AgentConfig::load(&config)?;
            if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                eprintln!("the value of `{name}`, then Enter and Ctrl-D:");
            }
            let path = sealed::secret_set(&c, &name, std::io::stdin().lock())?;
            eprintln!(
                "stored `{name}` sealed in {}; a connection reads it with {name} = {{ stored = \"{name}\" }}",
                path.display()
            );
        }
        SecretCommand::List { config } => {
            for name in sealed::secret_list(&AgentConfig::load(&config)?)? {
                println!("{name}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn keys(command: KeysCommand) -> anyhow::Result<ExitCode> {
    match command {
        KeysCommand::List { config } => {
            for line in sealed::keys_list(&AgentConfig::load(&config)?)? {
                println!("{line}");
            }
        }
        KeysCommand::Rotate { config } => {
            let id = sealed::keys_rotate(&AgentConfig::load(&config)?)?;
            eprintln!(
                "key {id} added: new data is sealed with it; keep the older keys while data they sealed remains"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn keygen(publisher: &str, dir: &Path) -> anyhow::Result<ExitCode> {
    let (private, public) = signing::keygen(publisher, dir)?;
    eprintln!(
        "private key: {} (keep it secret); public key: {} (agents that trust `{publisher}` put it in their publishers folder)",
        private.display(),
        public.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn sign(
    package: &Path,
    key: &Path,
    publisher: &str,
    bundle: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let (p, digest) = signing::sign(package, key, publisher)?;
    println!(
        "{} {} signed by {publisher}: digest {digest}",
        p.meta.name, p.meta.version
    );
    if let Some(out) = bundle {
        signing::bundle(package, out)?;
        println!("bundle written to {}", out.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn verify(package: &Path, trusted: &Path) -> anyhow::Result<ExitCode> {
    let (p, v) = signing::verify(package, trusted)?;
    println!(
        "{} {}: signed by {} ({}), digest {}",
        p.meta.name, p.meta.version, v.publisher, v.algorithm, v.digest
    );
    Ok(ExitCode::SUCCESS)
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
        Command::Secret(command) => secret(command),
        Command::Keys(command) => keys(command),
        Command::Connector(ConnectorCommand::Run(args)) => run::run(args),
        Command::Connector(ConnectorCommand::Keygen { publisher, dir }) => keygen(&publisher, &dir),
        Command::Connector(ConnectorCommand::Sign {
            package,
            key,
            publisher,
            bundle,
        }) => sign(&package, &key, &publisher, bundle.as_deref()),
        Command::Connector(ConnectorCommand::Verify { package, trusted }) => {
            verify(&package, &trusted)
        }
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
