//! `idgard-agent connector run`: one operation of a connector package, through the real host.

use crate::output::{Format, Printer};
use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use idgard_host::model::{Cursor, Order, OrderOutcome};
use idgard_host::{Connection, Outcome, Request, RunFolders, Runtime, RuntimeOptions};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Operation {
    Describe,
    TestConnection,
    Schema,
    Export,
    Fulfill,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The connector package: a folder with connector.toml and the component.
    package: PathBuf,
    /// What to run.
    #[arg(value_enum)]
    operation: Operation,
    /// The connection's configuration (TOML: name, settings, secrets, grants, limits).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The work folder: collect/, orders/, state/ per connection, and the compiled cache
    /// (default: idgard/connector-run in the user's cache folder, $XDG_CACHE_HOME or ~/.cache,
    /// so that running a connector leaves nothing in the current folder).
    #[arg(long)]
    work: Option<PathBuf>,
    /// Export only what changed since the last export of this connection (its saved cursor).
    #[arg(long)]
    incremental: bool,
    /// Orders to fulfil: a JSON file holding an array of orders, or JSON lines.
    #[arg(long)]
    orders: Option<PathBuf>,
    /// Entries per batch asked of the connector.
    #[arg(long, default_value_t = 1024)]
    batch_size: u32,
    /// How to print results (default: a table on a terminal, JSON lines otherwise).
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Print at most this many entries (the export itself still runs to the end).
    #[arg(long)]
    limit: Option<u64>,
}

fn private_dir(path: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))?;
    Ok(path.to_owned())
}

/// The user's cache folder for `connector run`.
fn default_work() -> Result<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let base = match (var("XDG_CACHE_HOME"), var("HOME")) {
        (Some(x), _) => PathBuf::from(x),
        (None, Some(h)) => PathBuf::from(h).join(".cache"),
        (None, None) => bail!("neither XDG_CACHE_HOME nor HOME is set: give --work FOLDER"),
    };
    Ok(base.join("idgard").join("connector-run"))
}

pub fn run(mut args: RunArgs) -> Result<ExitCode> {
    let work = match args.work.take() {
        Some(w) => w,
        None => default_work()?,
    };
    tracing::info!(work = %work.display(), "work folder");
    let format = args.format.unwrap_or(if std::io::stdout().is_terminal() {
        Format::Table
    } else {
        Format::Json
    });
    let runtime = Runtime::new(RuntimeOptions {
        cache_dir: Some(work.join("cache")),
        ..Default::default()
    })
    .context("cannot start the connector runtime")?;
    let started = Instant::now();
    let loaded = runtime
        .load(&args.package)
        .with_context(|| format!("cannot load {}", args.package.display()))?;
    tracing::info!(connector = %loaded.manifest.name, cache = ?loaded.cache, "loaded in {:?}", started.elapsed());

    if args.operation == Operation::Describe {
        println!("{}", serde_json::to_string_pretty(&loaded.info)?);
        return Ok(ExitCode::SUCCESS);
    }
    let config = args
        .config
        .as_deref()
        .context("--config <connection.toml> is needed for this operation")?;
    let connection = Connection::load(config)?;
    let collect = private_dir(&work.join("collect").join(&connection.name))?;
    let orders_dir = private_dir(&work.join("orders").join(&connection.name))?;
    let state = private_dir(&work.join("state").join(&connection.name))?;
    let cursor_file = state.join("cursor.json");

    let request = match args.operation {
        Operation::Describe => unreachable!("answered above"),
        Operation::TestConnection => Request::TestConnection,
        Operation::Schema => Request::Schema,
        Operation::Export => {
            if args.incremental
                && let Some(why) = loaded.manifest.refuse_incremental()
            {
                bail!("{why} (without --incremental)");
            }
            let cursor = if args.incremental {
                let text = std::fs::read_to_string(&cursor_file).with_context(|| {
                    format!(
                        "no saved cursor for `{}` ({}): run a full export first",
                        connection.name,
                        cursor_file.display()
                    )
                })?;
                Some(
                    serde_json::from_str::<Cursor>(&text)
                        .with_context(|| format!("{} is damaged", cursor_file.display()))?,
                )
            } else {
                None
            };
            Request::Export {
                cursor,
                batch_size: args.batch_size,
            }
        }
        Operation::Fulfill => {
            let path = args
                .orders
                .as_deref()
                .context("--orders <file> is needed for fulfill")?;
            Request::Fulfill(read_orders(path)?)
        }
    };

    let printer = Printer::new(format, args.limit);
    let handle = printer.handle();
    let started = Instant::now();
    let folders = RunFolders {
        collect: Some(&collect),
        orders: Some(&orders_dir),
    };
    let outcome = runtime.run(&loaded, &connection, &folders, request, Box::new(printer));
    let elapsed = started.elapsed();
    handle.finish();
    match outcome? {
        Outcome::Tested => eprintln!("connection `{}`: ok ({elapsed:.2?})", connection.name),
        Outcome::Schema(schema) => println!("{}", serde_json::to_string_pretty(&schema)?),
        Outcome::Exported(summary) => {
            let rate = summary.entries as f64 / elapsed.as_secs_f64().max(1e-9);
            eprintln!(
                "exported {} entries ({} rejected, {} batches, {:.1} MiB) in {elapsed:.2?}: {rate:.0} entries/s",
                summary.entries,
                summary.rejected,
                summary.batches,
                summary.bytes as f64 / (1 << 20) as f64,
            );
            if let Some(cursor) = &summary.cursor {
                let tmp = cursor_file.with_extension("json.tmp");
                std::fs::write(&tmp, serde_json::to_vec(cursor)?)?;
                std::fs::rename(&tmp, &cursor_file)?;
                eprintln!(
                    "cursor saved to {} (next: --incremental)",
                    cursor_file.display()
                );
            }
            if format == Format::Summary {
                println!("{}", serde_json::to_string(&summary)?);
            }
        }
        Outcome::Fulfilled(results) => {
            let failed = results
                .iter()
                .filter(|r| !matches!(r.outcome, OrderOutcome::Done | OrderOutcome::Created(_)))
                .count();
            for r in &results {
                println!("{}", serde_json::to_string(r)?);
            }
            eprintln!(
                "{} orders: {} done, {failed} not done",
                results.len(),
                results.len() - failed
            );
        }
        Outcome::Failed { kind, message } => {
            eprintln!(
                "connector error ({}): {message}",
                serde_json::to_value(kind)?.as_str().unwrap_or("?")
            );
            if kind == idgard_host::model::ErrorKind::InvalidCursor {
                eprintln!(
                    "the saved cursor cannot be used: run a full export (without --incremental)"
                );
            }
            return Ok(ExitCode::from(1));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn read_orders(path: &Path) -> Result<Vec<Order>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    if text.trim_start().starts_with('[') {
        return serde_json::from_str(&text)
            .with_context(|| format!("{}: not an array of orders", path.display()));
    }
    let mut orders = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        orders.push(
            serde_json::from_str(line)
                .with_context(|| format!("{} line {}", path.display(), i + 1))?,
        );
    }
    if orders.is_empty() {
        bail!("{}: no orders", path.display());
    }
    Ok(orders)
}
