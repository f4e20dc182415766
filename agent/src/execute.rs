//! Running a task's operation through the connector host: the request from the task, the
//! folders, the observer, and the outcome for the server.

use crate::daemon::Agent;
use crate::observer::TaskObserver;
use crate::spool::{Spooled, SpooledUpload};
use anyhow::{Context, Result};
use idgard_host::model::ErrorKind;
use idgard_host::{Cancel, Connection, Loaded, Outcome, Request, RunFolders};
use idgard_protocol::{Assignment, ExportResult, LogLine, Operation, TaskArgs, TaskOutcome};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;
use tokio::sync::mpsc;

impl Agent {
    /// Runs the task's operation; the outcome is always set.
    pub(crate) async fn execute(
        self: &Arc<Self>,
        task: &Assignment,
        cancel: Cancel,
        progress: Arc<(AtomicU64, AtomicU64)>,
        log: mpsc::Sender<LogLine>,
    ) -> Spooled {
        let mut spooled = Spooled {
            task: task.id,
            fence: task.fence,
            connection: task.connection.clone(),
            upload: None,
            outcome: None,
        };
        let outcome = match self
            .clone()
            .execute_inner(task, &mut spooled, cancel, progress, log)
            .await
        {
            Ok(o) => o,
            Err(e) => TaskOutcome::Failed {
                error: format!("{e:#}"),
                retryable: false,
            },
        };
        spooled.outcome = Some(outcome);
        spooled
    }

    pub(crate) async fn execute_inner(
        self: Arc<Self>,
        task: &Assignment,
        spooled: &mut Spooled,
        cancel: Cancel,
        progress: Arc<(AtomicU64, AtomicU64)>,
        log: mpsc::Sender<LogLine>,
    ) -> Result<TaskOutcome> {
        if task.operation == Operation::Noop {
            return Ok(TaskOutcome::Succeeded {
                result: serde_json::Value::Null,
            });
        }
        let (connection, loaded) = self
            .registry
            .read()
            .expect("registry")
            .connections
            .get(&task.connection)
            .cloned()
            .with_context(|| {
                format!(
                    "this agent has no connection `{}` (see its connections folder)",
                    task.connection
                )
            })?;
        let work = &self.config.work;
        let collect = work.join("collect").join(&connection.name);
        let orders_dir = work.join("orders").join(&connection.name);
        let state = work.join("state").join(&connection.name);
        for d in [&collect, &orders_dir, &state] {
            std::fs::create_dir_all(d)?;
        }
        let entries_path = self
            .config
            .work
            .join("spool")
            .join(format!("task-{}-{}.entries", task.id, task.fence));
        let args = TaskArgs::parse(&task.args).map_err(anyhow::Error::msg)?;
        let request = match task.operation {
            Operation::Export => {
                if args.incremental
                    && let Some(why) = loaded.manifest.refuse_incremental()
                {
                    anyhow::bail!("{why} (a complete job)");
                }
                let cursor = match (args.incremental, args.cursor.clone()) {
                    (false, _) => None,
                    (true, Some(c)) => Some(c),
                    (true, None) => anyhow::bail!(
                        "no export of `{}` was synchronized yet, so an incremental export has \
                         nowhere to start: run a complete job first",
                        connection.name
                    ),
                };
                Request::Export {
                    cursor,
                    batch_size: self.config.batch_size,
                }
            }
            Operation::Fulfill if args.server_orders => {
                return self
                    .fulfil_from_server(
                        task,
                        &connection,
                        &loaded,
                        &orders_dir,
                        cancel,
                        progress,
                        log,
                    )
                    .await;
            }
            Operation::Fulfill => {
                let orders = args
                    .orders
                    .clone()
                    .context("a fulfil task carries `orders`")?;
                Request::Fulfill(orders)
            }
            Operation::TestConnection => Request::TestConnection,
            Operation::Schema => Request::Schema,
            Operation::Noop => unreachable!("answered above"),
            Operation::Synchronize | Operation::Provision => unreachable!("run on the server"),
        };
        let writer = if task.operation == Operation::Export {
            use std::os::unix::fs::OpenOptionsExt;
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&entries_path)
                .with_context(|| format!("cannot create {}", entries_path.display()))?;
            Some(idgard_vault::SealedWriter::new(&self.vault, file)?)
        } else {
            None
        };
        let observer = TaskObserver::new(writer, cancel.clone(), progress, log);
        let done = observer.done();
        let started = Instant::now();
        let outcome = self
            .run_connector(
                (loaded, connection),
                Some(collect),
                orders_dir,
                request,
                observer,
                &cancel,
            )
            .await?;
        let elapsed = started.elapsed();
        self.figures
            .record(&task.connection, task.operation, elapsed, ended(&outcome));
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                let _ = std::fs::remove_file(&entries_path);
                if cancel.is_cancelled() {
                    return Ok(TaskOutcome::Cancelled);
                }
                return Ok(TaskOutcome::Failed {
                    error: e.to_string(),
                    retryable: false,
                });
            }
        };
        Ok(match outcome {
            Outcome::Tested => TaskOutcome::Succeeded {
                result: serde_json::json!({ "ok": true }),
            },
            Outcome::Schema(schema) => TaskOutcome::Succeeded {
                result: serde_json::json!({ "schema": schema }),
            },
            Outcome::Fulfilled(results) => TaskOutcome::Succeeded {
                result: serde_json::json!({ "results": results }),
            },
            Outcome::Failed { kind, message } => {
                let _ = std::fs::remove_file(&entries_path);
                TaskOutcome::Failed {
                    error: format!("connector error ({kind:?}): {message}"),
                    retryable: kind == ErrorKind::Unavailable,
                }
            }
            Outcome::Exported(summary) => {
                let (size, sha256) = done
                    .lock()
                    .expect("done")
                    .take()
                    .context("the export's output was not closed")?;
                tracing::info!(
                    entries = summary.entries,
                    bytes = size,
                    "exported in {elapsed:.2?}"
                );
                spooled.upload = Some(SpooledUpload {
                    path: entries_path,
                    size,
                    sha256,
                });
                // The upload id is filled in once the upload is done.
                TaskOutcome::Succeeded {
                    result: ExportResult {
                        upload_id: None,
                        entries: summary.entries,
                        rejected: summary.rejected,
                        batches: summary.batches,
                        bytes: summary.bytes,
                        peak_memory: summary.peak_memory,
                        incremental: args.incremental,
                        cursor: summary.cursor.clone(),
                    }
                    .to_json(),
                }
            }
        })
    }

    /// Runs one operation of a connection on a blocking thread (the host drives the guest
    /// from there), ended early when `cancel` is.
    pub(crate) async fn run_connector(
        &self,
        (loaded, connection): (Arc<Loaded>, Arc<Connection>),
        collect: Option<PathBuf>,
        orders: PathBuf,
        request: Request,
        observer: TaskObserver,
        cancel: &Cancel,
    ) -> Result<Result<Outcome, idgard_host::Error>> {
        let runtime = self.runtime.clone();
        let cancel = cancel.clone();
        Ok(tokio::task::spawn_blocking(move || {
            let folders = RunFolders {
                collect: collect.as_deref(),
                orders: Some(&orders),
            };
            runtime.run_cancellable(
                &loaded,
                &connection,
                &folders,
                request,
                Box::new(observer),
                &cancel,
            )
        })
        .await?)
    }
}

/// How a run ended, for the agent's figures.
fn ended(outcome: &Result<Outcome, idgard_host::Error>) -> crate::figures::Ended {
    use crate::figures::Ended;
    match outcome {
        Ok(Outcome::Failed { .. }) => Ended::Failed,
        Ok(_) => Ended::Done,
        Err(idgard_host::Error::Limit { limit, .. }) => {
            Ended::Limit(format!("{limit:?}").to_lowercase())
        }
        Err(_) => Ended::Failed,
    }
}
