//! The task queue and jobs, on the database.
//!
//! A task is `queued`, then `claimed` by a poll (with a new fencing token and a short ack
//! deadline), then `running` once its agent sends the first heartbeat (the lease then lasts
//! `lease_ms` from each heartbeat), then final: `succeeded`, `failed`, `cancelled` or `lost`.
//! Every change that depends on a lease is a guarded `UPDATE ... WHERE fence = $n`, so a stale
//! holder can record nothing, on one server or several.

mod admins;
mod agents;
mod beats;
mod cursors;
mod jobs;
mod launches;
mod lease;
pub mod live;
mod logs;
pub mod packages;
mod tasks;
mod uploads;

pub use logs::MAX_PAGE_LINES;

use crate::config::QueueConfig;
use crate::db::{Backend, Db, NOTIFY_CHANNEL};
use crate::error::{Error, Result};
use idgard_protocol::{Operation, TaskArgs, TaskSpec, TaskState, TaskView};
use sqlx::Row;
use sqlx::any::AnyRow;
use std::sync::Arc;

/// The time, in ms since the epoch; a parameter so that tests can move it.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The queue: database, timings, clock.
#[derive(Clone)]
pub struct Queue {
    /// The database.
    pub db: Db,
    /// Timings.
    pub cfg: QueueConfig,
    /// The clock.
    pub clock: Clock,
    /// Lease renewals waiting for SQLite's writer.
    pub beats: Arc<beats::Beats>,
    /// Agents' names by id.
    pub names: Arc<std::sync::Mutex<std::collections::HashMap<i64, String>>>,
    /// When this server last wrote each agent's `last_seen_ms` (see [`Queue::seen`]).
    pub seen: Arc<std::sync::Mutex<std::collections::HashMap<i64, i64>>>,
    /// Seals the secrets in tasks' arguments.
    pub sealer: Arc<crate::seal::Sealer>,
    /// Progress of the tasks this server runs itself.
    pub live: live::Live,
    /// The figures this process measures (see [`crate::metrics`]).
    pub metrics: Arc<crate::metrics::Metrics>,
}

pub(crate) use crate::db::Tx;
pub(crate) use lease::require_lease;
pub(crate) use uploads::{chunk, chunk_starts};

/// Agents whose polls should wake once a transaction commits.
#[derive(Default)]
pub(crate) struct Wake(Vec<i64>);

const TASK_COLUMNS: &str = "t.id, a.name, t.job_id, t.connection, t.operation, t.state, \
     t.attempts, t.max_attempts, t.result, t.error, t.progress_done, t.progress_total, \
     t.created_ms, t.finished_ms";

fn task_view(row: &AnyRow) -> Result<TaskView> {
    let op: String = row.try_get(4)?;
    let state: String = row.try_get(5)?;
    let result: Option<String> = row.try_get(8)?;
    let done: Option<i64> = row.try_get(10)?;
    let total: Option<i64> = row.try_get(11)?;
    Ok(TaskView {
        id: row.try_get(0)?,
        agent: row.try_get(1)?,
        job_id: row.try_get(2)?,
        connection: row.try_get(3)?,
        operation: Operation::parse(&op)
            .ok_or_else(|| anyhow::anyhow!("stored operation `{op}`"))?,
        state: TaskState::parse(&state).ok_or_else(|| anyhow::anyhow!("stored state `{state}`"))?,
        attempts: row.try_get::<i64, _>(6)? as u32,
        max_attempts: row.try_get::<i64, _>(7)? as u32,
        result: result.and_then(|r| serde_json::from_str(&r).ok()),
        error: row.try_get(9)?,
        progress: done.map(|d| (d as u64, total.map(|t| t as u64))),
        created_ms: row.try_get(12)?,
        finished_ms: row.try_get(13)?,
    })
}

pub use idgard_model::names::valid_name;
pub use launches::Launch;

/// The longest a task may run, in seconds (7 days).
pub const MAX_TIMEOUT_S: u64 = 7 * 24 * 3600;

fn check_spec(spec: &TaskSpec) -> Result<()> {
    if spec.operation != Operation::Noop && !valid_name(&spec.connection) {
        return Err(Error::invalid(format!(
            "task for `{}`: a connection name is lower-case letters, digits, `-` and `_`",
            spec.connection
        )));
    }
    if !(spec.args.is_null() || spec.args.is_object()) {
        return Err(Error::invalid("task args must be a JSON object"));
    }
    TaskArgs::parse(&spec.args)
        .map_err(|e| Error::invalid(format!("task for `{}`: {e}", spec.connection)))?;
    if spec.max_attempts == Some(0) || spec.max_attempts.is_some_and(|m| m > 100) {
        return Err(Error::invalid("max_attempts must be 1 to 100"));
    }
    if spec
        .timeout_s
        .is_some_and(|t| !(1..=MAX_TIMEOUT_S).contains(&t))
    {
        return Err(Error::invalid(format!(
            "timeout_s must be 1 to {MAX_TIMEOUT_S} (7 days)"
        )));
    }
    Ok(())
}

impl Queue {
    /// Now, in ms.
    pub fn now(&self) -> i64 {
        (self.clock)()
    }

    pub(crate) async fn begin(&self) -> Result<Tx> {
        Ok(self.db.pool.begin().await?)
    }

    /// A transaction for large work (a synchronisation, a provisioning): the writer may hold up
    /// to `database.cache_mib` of pages until [`Queue::end_large`].
    pub(crate) async fn begin_large(&self) -> Result<Tx> {
        let mut tx = self.begin().await?;
        self.db.widen(&mut tx).await?;
        Ok(tx)
    }

    /// Ends a transaction of [`Queue::begin_large`], committed or rolled back, the writer's
    /// cache back to its everyday size. (One dropped on an error keeps the larger cache until
    /// the next large work ends or an upload's chunk is written, which narrow it.)
    pub(crate) async fn end_large(&self, mut tx: Tx, commit: bool) -> Result<()> {
        self.db.narrow(&mut tx).await?;
        if commit {
            tx.commit().await?;
        } else {
            tx.rollback().await?;
        }
        Ok(())
    }

    pub(crate) async fn commit(&self, tx: Tx, wake: Wake) -> Result<()> {
        tx.commit().await?;
        if !wake.0.is_empty() {
            self.db.wake_server();
        }
        for agent in wake.0 {
            self.db.wakers.wake_local(agent);
        }
        Ok(())
    }

    pub(crate) async fn notify(&self, tx: &mut Tx, wake: &mut Wake, agent: i64) -> Result<()> {
        if self.db.backend == Backend::Postgres && !wake.0.contains(&agent) {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(NOTIFY_CHANNEL)
                .bind(agent.to_string())
                .execute(&mut **tx)
                .await?;
        }
        if !wake.0.contains(&agent) {
            wake.0.push(agent);
        }
        Ok(())
    }
}
