//! The task queue and jobs, on the database.
//!
//! A task is `queued`, then `claimed` by a poll (with a new fencing token and a short ack
//! deadline), then `running` once its agent sends the first heartbeat (the lease then lasts
//! `lease_ms` from each heartbeat), then final: `succeeded`, `failed`, `cancelled` or `lost`.
//! Every change that depends on a lease is a guarded `UPDATE ... WHERE fence = $n`, so a stale
//! holder can record nothing, on one server or several.

use crate::config::QueueConfig;
use crate::error::{Error, Result};
use crate::store::{Backend, Db, NOTIFY_CHANNEL};
use idgard_protocol::{
    Assignment, Completion, ExportResult, HeartbeatAnswer, JobState, JobView, NewJob, Operation,
    TaskArgs, TaskOutcome, TaskSpec, TaskState, TaskView,
};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
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
    /// The provisioning rules, when the server was given some.
    pub rules: Option<Arc<crate::rules::Rules>>,
    /// Agents' names by id.
    pub names: Arc<std::sync::Mutex<std::collections::HashMap<i64, String>>>,
}

pub(crate) type Tx = Transaction<'static, Any>;

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

fn check_spec(spec: &TaskSpec) -> Result<()> {
    if spec.operation != Operation::Noop && !valid_name(&spec.connection) {
        return Err(Error::bad_request(format!(
            "task for `{}`: a connection name is lower-case letters, digits, `-` and `_`",
            spec.connection
        )));
    }
    if !(spec.args.is_null() || spec.args.is_object()) {
        return Err(Error::bad_request("task args must be a JSON object"));
    }
    TaskArgs::parse(&spec.args)
        .map_err(|e| Error::bad_request(format!("task for `{}`: {e}", spec.connection)))?;
    if spec.max_attempts == Some(0) || spec.max_attempts.is_some_and(|m| m > 100) {
        return Err(Error::bad_request("max_attempts must be 1 to 100"));
    }
    if spec.timeout_s == Some(0) {
        return Err(Error::bad_request("timeout_s must be at least 1"));
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

    pub(crate) async fn commit(&self, tx: Tx, wake: Wake) -> Result<()> {
        tx.commit().await?;
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

    /// An agent's id from its name.
    pub async fn agent_id(&self, name: &str) -> Result<i64> {
        sqlx::query("SELECT id FROM agents WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.db.pool)
            .await?
            .map(|r| r.try_get(0))
            .transpose()?
            .ok_or_else(|| Error::not_found(format!("no agent named `{name}`")))
    }

    /// Refuses tasks for connections the agent does not report, or operations their connector
    /// does not support. An agent that never reported is taken at its word later.
    async fn check_connections(&self, agent: i64, specs: &[&TaskSpec]) -> Result<()> {
        let row = sqlx::query("SELECT name, connections, version FROM agents WHERE id = $1")
            .bind(agent)
            .fetch_one(&self.db.pool)
            .await?;
        if row.try_get::<Option<String>, _>(2)?.is_none() {
            return Ok(());
        }
        let name: String = row.try_get(0)?;
        let reported: Vec<idgard_protocol::ConnectionReport> =
            serde_json::from_str(&row.try_get::<String, _>(1)?).unwrap_or_default();
        for spec in specs {
            if spec.operation == Operation::Noop {
                continue;
            }
            let Some(c) = reported.iter().find(|c| c.name == spec.connection) else {
                let known: Vec<&str> = reported.iter().map(|c| c.name.as_str()).collect();
                return Err(Error::bad_request(format!(
                    "agent `{name}` has no connection `{}` (it reports: {})",
                    spec.connection,
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                )));
            };
            if spec.operation.on_server() {
                continue;
            }
            let needed = match spec.operation {
                Operation::Export if TaskArgs::parse(&spec.args).is_ok_and(|a| a.incremental) => {
                    "export-incremental"
                }
                Operation::Export => "export-full",
                other => other.as_str(),
            };
            if !c.operations.iter().any(|o| o == needed) {
                return Err(Error::bad_request(format!(
                    "connection `{}` of agent `{name}` uses connector `{}`, which does not support {needed}",
                    c.name, c.connector
                )));
            }
        }
        Ok(())
    }

    async fn insert_tasks(
        &self,
        tx: &mut Tx,
        agent: i64,
        job: Option<(i64, u32)>,
        specs: &[TaskSpec],
    ) -> Result<Vec<i64>> {
        let now = self.now();
        let mut ids = Vec::with_capacity(specs.len());
        for spec in specs {
            let args = if spec.args.is_null() {
                "{}".to_owned()
            } else {
                spec.args.to_string()
            };
            let id: i64 = sqlx::query(
                "INSERT INTO tasks (agent_id, job_id, step, connection, operation, args, state, \
                 max_attempts, timeout_ms, run_after_ms, created_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, 'queued', $7, $8, $9, $9) RETURNING id",
            )
            .bind(agent)
            .bind(job.map(|j| j.0))
            .bind(job.map(|j| j.1 as i64))
            .bind(&spec.connection)
            .bind(spec.operation.as_str())
            .bind(args)
            .bind(spec.max_attempts.unwrap_or(self.cfg.max_attempts) as i64)
            .bind((spec.timeout_s.unwrap_or(self.cfg.timeout_s) * 1000) as i64)
            .bind(now)
            .fetch_one(&mut **tx)
            .await?
            .try_get(0)?;
            ids.push(id);
        }
        Ok(ids)
    }

    /// Queues tasks outside any job.
    pub async fn enqueue(&self, agent: &str, specs: &[TaskSpec]) -> Result<Vec<i64>> {
        for s in specs {
            check_spec(s)?;
        }
        let agent = self.agent_id(agent).await?;
        self.check_connections(agent, &specs.iter().collect::<Vec<_>>())
            .await?;
        let mut tx = self.begin().await?;
        let mut wake = Wake::default();
        let ids = self.insert_tasks(&mut tx, agent, None, specs).await?;
        self.notify(&mut tx, &mut wake, agent).await?;
        self.commit(tx, wake).await?;
        Ok(ids)
    }

    /// Claims up to `capacity` ready tasks of an agent.
    pub async fn claim(&self, agent: i64, capacity: u32) -> Result<Vec<Assignment>> {
        let now = self.now();
        let lock = match self.db.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE tasks SET state = 'claimed', attempts = attempts + 1, fence = fence + 1, \
             lease_until_ms = $1, started_ms = NULL \
             WHERE id IN (SELECT id FROM tasks WHERE agent_id = $2 AND state = 'queued' \
             AND run_after_ms <= $3 ORDER BY id LIMIT $4{lock}) \
             RETURNING id, fence, connection, operation, args, attempts, timeout_ms"
        );
        let rows = sqlx::query(&sql)
            .bind(now + self.cfg.ack_ms as i64)
            .bind(agent)
            .bind(now)
            .bind(capacity.clamp(1, 256) as i64)
            .fetch_all(&self.db.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let op: String = row.try_get(3)?;
            let args: String = row.try_get(4)?;
            out.push(Assignment {
                id: row.try_get(0)?,
                fence: row.try_get(1)?,
                connection: row.try_get(2)?,
                operation: Operation::parse(&op)
                    .ok_or_else(|| anyhow::anyhow!("stored operation `{op}`"))?,
                args: serde_json::from_str(&args).unwrap_or_default(),
                attempt: row.try_get::<i64, _>(5)? as u32,
                timeout_ms: row.try_get::<i64, _>(6)? as u64,
            });
        }
        out.sort_by_key(|a| a.id);
        Ok(out)
    }

    /// Tasks an agent holds that were cancelled and that no poll has told it about yet
    /// (heartbeats keep telling it until the task ends).
    pub async fn cancelled_for(&self, agent: i64) -> Result<Vec<i64>> {
        let rows = sqlx::query(
            "UPDATE tasks SET cancel_requested = 2 WHERE agent_id = $1 \
             AND state IN ('claimed', 'running') AND cancel_requested = 1 RETURNING id",
        )
        .bind(agent)
        .fetch_all(&self.db.pool)
        .await?;
        let mut ids = rows
            .iter()
            .map(|r| Ok(r.try_get(0)?))
            .collect::<Result<Vec<i64>>>()?;
        ids.sort_unstable();
        Ok(ids)
    }

    /// Why a call about `task` with `fence` cannot be taken.
    pub(crate) async fn refusal_for(&self, agent: i64, task: i64, fence: i64) -> Result<Error> {
        let row = sqlx::query("SELECT agent_id, fence, state FROM tasks WHERE id = $1")
            .bind(task)
            .fetch_optional(&self.db.pool)
            .await?;
        let Some(row) = row else {
            return Ok(Error::not_found(format!("no task {task}")));
        };
        if row.try_get::<i64, _>(0)? != agent {
            // Another agent's task looks like no task at all.
            return Ok(Error::not_found(format!("no task {task}")));
        }
        let current: i64 = row.try_get(1)?;
        let state: String = row.try_get(2)?;
        Ok(if current != fence {
            Error::stale(format!(
                "task {task}: lease {fence} is stale (the task was handed out again as lease {current}); nothing was recorded"
            ))
        } else {
            Error::stale(format!(
                "task {task} is {state}: lease {fence} no longer holds it; nothing was recorded"
            ))
        })
    }

    /// Renews a lease (the first heartbeat acknowledges the claim) and records progress.
    pub async fn heartbeat(
        &self,
        agent: i64,
        task: i64,
        fence: i64,
        progress: Option<(u64, Option<u64>)>,
    ) -> Result<HeartbeatAnswer> {
        let now = self.now();
        let row = sqlx::query(
            "UPDATE tasks SET state = 'running', lease_until_ms = $1, \
             started_ms = COALESCE(started_ms, $2), \
             progress_done = COALESCE($3, progress_done), progress_total = COALESCE($4, progress_total) \
             WHERE id = $5 AND agent_id = $6 AND fence = $7 AND state IN ('claimed', 'running') \
             RETURNING cancel_requested",
        )
        .bind(now + self.cfg.lease_ms as i64)
        .bind(now)
        .bind(progress.map(|p| p.0 as i64))
        .bind(progress.and_then(|p| p.1).map(|t| t as i64))
        .bind(task)
        .bind(agent)
        .bind(fence)
        .fetch_optional(&self.db.pool)
        .await?;
        match row {
            Some(row) => Ok(HeartbeatAnswer {
                lease_ms: self.cfg.lease_ms,
                cancel: row.try_get::<i64, _>(0)? != 0,
            }),
            None => Err(self.refusal_for(agent, task, fence).await?),
        }
    }

    /// Records how a task ended. A replay of the same completion answers the stored result; a
    /// stale lease gets 409 and changes nothing.
    pub async fn complete(&self, agent: i64, task: i64, done: &Completion) -> Result<TaskView> {
        if let Some(view) = self.complete_alone(agent, task, done).await? {
            return Ok(view);
        }
        let now = self.now();
        let mut tx = self.begin().await?;
        let mut wake = Wake::default();
        let row = sqlx::query(
            "SELECT agent_id, fence, state, completed_fence, attempts, max_attempts, job_id, step, operation \
             FROM tasks WHERE id = $1",
        )
        .bind(task)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Err(Error::not_found(format!("no task {task}")));
        };
        if row.try_get::<i64, _>(0)? != agent {
            return Err(Error::not_found(format!("no task {task}")));
        }
        let fence: i64 = row.try_get(1)?;
        let state: String = row.try_get(2)?;
        let completed: Option<i64> = row.try_get(3)?;
        if completed == Some(done.fence) {
            // A replay: the first completion stands.
            drop(tx);
            return self.task(task).await;
        }
        if fence != done.fence || !(state == "claimed" || state == "running") {
            drop(tx);
            return Err(self.refusal_for(agent, task, done.fence).await?);
        }
        let attempts = row.try_get::<i64, _>(4)? as u32;
        let max_attempts = row.try_get::<i64, _>(5)? as u32;
        let job: Option<i64> = row.try_get(6)?;
        let step: Option<i64> = row.try_get(7)?;
        let op: String = row.try_get(8)?;

        if let (TaskOutcome::Succeeded { result }, "export") = (&done.outcome, op.as_str()) {
            self.check_export_result(&mut tx, task, done.fence, result)
                .await?;
        }
        let (new_state, result, error, run_after) = match &done.outcome {
            TaskOutcome::Succeeded { result } => {
                (TaskState::Succeeded, Some(result.to_string()), None, None)
            }
            TaskOutcome::Failed { error, retryable } => {
                if *retryable && attempts < max_attempts {
                    let after = now + self.cfg.backoff(attempts) as i64;
                    (TaskState::Queued, None, Some(error.clone()), Some(after))
                } else {
                    (TaskState::Failed, None, Some(error.clone()), None)
                }
            }
            TaskOutcome::Cancelled => (
                TaskState::Cancelled,
                None,
                Some("cancelled".to_owned()),
                None,
            ),
        };
        let finished = new_state.is_final().then_some(now);
        let updated = sqlx::query(
            "UPDATE tasks SET state = $1, result = $2, error = $3, completed_fence = $4, \
             finished_ms = $5, run_after_ms = COALESCE($6, run_after_ms), lease_until_ms = NULL \
             WHERE id = $7 AND fence = $8 AND state IN ('claimed', 'running')",
        )
        .bind(new_state.as_str())
        .bind(result)
        .bind(error)
        .bind(if new_state.is_final() {
            Some(done.fence)
        } else {
            None
        })
        .bind(finished)
        .bind(run_after)
        .bind(task)
        .bind(done.fence)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated != 1 {
            drop(tx);
            return Err(self.refusal_for(agent, task, done.fence).await?);
        }
        if let (Some(job), Some(step)) = (job, step) {
            self.advance_job(&mut tx, &mut wake, job, step as u32, new_state)
                .await?;
        }
        if new_state == TaskState::Queued {
            self.notify(&mut tx, &mut wake, agent).await?;
        }
        self.commit(tx, wake).await?;
        self.task(task).await
    }

    /// The common case in one statement: a task outside any job, not an export, ending for
    /// good. `None` when the task is not in that case (or the call is a replay, stale, ...):
    /// the general path then decides.
    async fn complete_alone(
        &self,
        agent: i64,
        task: i64,
        done: &Completion,
    ) -> Result<Option<TaskView>> {
        let (state, result, error) = match &done.outcome {
            TaskOutcome::Succeeded { result } => {
                (TaskState::Succeeded, Some(result.to_string()), None)
            }
            TaskOutcome::Failed {
                error,
                retryable: false,
            } => (TaskState::Failed, None, Some(error.clone())),
            TaskOutcome::Cancelled => (TaskState::Cancelled, None, Some("cancelled".to_owned())),
            TaskOutcome::Failed {
                retryable: true, ..
            } => return Ok(None),
        };
        let row = sqlx::query(
            "UPDATE tasks SET state = $1, result = $2, error = $3, completed_fence = $4, \
             finished_ms = $5, lease_until_ms = NULL \
             WHERE id = $6 AND agent_id = $7 AND fence = $4 AND state IN ('claimed', 'running') \
             AND job_id IS NULL AND operation <> 'export' \
             RETURNING id, job_id, connection, operation, state, attempts, max_attempts, result, \
             error, progress_done, progress_total, created_ms, finished_ms",
        )
        .bind(state.as_str())
        .bind(result)
        .bind(error)
        .bind(done.fence)
        .bind(self.now())
        .bind(task)
        .bind(agent)
        .fetch_optional(&self.db.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let name = self.agent_name(agent).await?;
        let op: String = row.try_get(3)?;
        let state: String = row.try_get(4)?;
        let result: Option<String> = row.try_get(7)?;
        let done: Option<i64> = row.try_get(9)?;
        let total: Option<i64> = row.try_get(10)?;
        Ok(Some(TaskView {
            id: row.try_get(0)?,
            agent: name,
            job_id: row.try_get(1)?,
            connection: row.try_get(2)?,
            operation: Operation::parse(&op)
                .ok_or_else(|| anyhow::anyhow!("stored operation `{op}`"))?,
            state: TaskState::parse(&state)
                .ok_or_else(|| anyhow::anyhow!("stored state `{state}`"))?,
            attempts: row.try_get::<i64, _>(5)? as u32,
            max_attempts: row.try_get::<i64, _>(6)? as u32,
            result: result.and_then(|r| serde_json::from_str(&r).ok()),
            error: row.try_get(8)?,
            progress: done.map(|d| (d as u64, total.map(|t| t as u64))),
            created_ms: row.try_get(11)?,
            finished_ms: row.try_get(12)?,
        }))
    }

    /// An agent's name (names never change, so they are cached).
    async fn agent_name(&self, agent: i64) -> Result<String> {
        if let Some(name) = self.names.lock().expect("names").get(&agent) {
            return Ok(name.clone());
        }
        let name: String = sqlx::query("SELECT name FROM agents WHERE id = $1")
            .bind(agent)
            .fetch_one(&self.db.pool)
            .await?
            .try_get(0)?;
        self.names
            .lock()
            .expect("names")
            .insert(agent, name.clone());
        Ok(name)
    }

    /// An export's result must name a complete upload of this attempt.
    async fn check_export_result(
        &self,
        tx: &mut Tx,
        task: i64,
        fence: i64,
        result: &serde_json::Value,
    ) -> Result<()> {
        let Some(upload) = ExportResult::parse(result).and_then(|r| r.upload_id) else {
            return Err(Error::bad_request(
                "an export's result must carry `upload_id`, the upload of its entries",
            ));
        };
        let row = sqlx::query(
            "SELECT complete FROM uploads WHERE id = $1 AND task_id = $2 AND fence = $3",
        )
        .bind(upload)
        .bind(task)
        .bind(fence)
        .fetch_optional(&mut **tx)
        .await?;
        match row {
            None => Err(Error::bad_request(format!(
                "upload {upload} does not belong to this attempt of task {task}"
            ))),
            Some(r) if r.try_get::<i64, _>(0)? == 0 => Err(Error::conflict(format!(
                "upload {upload} is not complete: send the rest before completing the task"
            ))),
            Some(_) => Ok(()),
        }
    }

    /// Moves a job on after one of its tasks changed state.
    pub(crate) async fn advance_job(
        &self,
        tx: &mut Tx,
        wake: &mut Wake,
        job: i64,
        step: u32,
        task_state: TaskState,
    ) -> Result<()> {
        let now = self.now();
        // Takes the job's row lock so that two tasks finishing at once advance it once.
        let row = sqlx::query(
            "UPDATE jobs SET step = step WHERE id = $1 AND state = 'running' \
             RETURNING agent_id, step, step_count, steps",
        )
        .bind(job)
        .fetch_optional(&mut **tx)
        .await?;
        let Some(row) = row else { return Ok(()) };
        let agent: i64 = row.try_get(0)?;
        let current: i64 = row.try_get(1)?;
        let count: i64 = row.try_get(2)?;
        if current != step as i64 {
            return Ok(());
        }
        match task_state {
            TaskState::Succeeded => {
                let left: i64 = sqlx::query(
                    "SELECT COUNT(*) FROM tasks WHERE job_id = $1 AND step = $2 AND state <> 'succeeded'",
                )
                .bind(job)
                .bind(step as i64)
                .fetch_one(&mut **tx)
                .await?
                .try_get(0)?;
                if left > 0 {
                    return Ok(());
                }
                if current + 1 < count {
                    let steps: String = row.try_get(3)?;
                    let steps: Vec<Vec<TaskSpec>> = serde_json::from_str(&steps)
                        .map_err(|e| anyhow::anyhow!("job {job}: stored steps: {e}"))?;
                    let next = step + 1;
                    self.insert_tasks(tx, agent, Some((job, next)), &steps[next as usize])
                        .await?;
                    sqlx::query("UPDATE jobs SET step = $1 WHERE id = $2")
                        .bind(next as i64)
                        .bind(job)
                        .execute(&mut **tx)
                        .await?;
                    self.notify(tx, wake, agent).await?;
                } else {
                    sqlx::query(
                        "UPDATE jobs SET state = 'succeeded', finished_ms = $1 WHERE id = $2",
                    )
                    .bind(now)
                    .bind(job)
                    .execute(&mut **tx)
                    .await?;
                    self.after_job(tx, wake, job).await?;
                }
            }
            TaskState::Failed | TaskState::Lost | TaskState::Cancelled => {
                let end = if task_state == TaskState::Cancelled {
                    JobState::Cancelled
                } else {
                    JobState::Failed
                };
                self.end_job(tx, wake, job, agent, end).await?;
            }
            _ => {}
        }
        Ok(())
    }

    async fn end_job(
        &self,
        tx: &mut Tx,
        wake: &mut Wake,
        job: i64,
        agent: i64,
        end: JobState,
    ) -> Result<()> {
        let now = self.now();
        sqlx::query("UPDATE jobs SET state = $1, finished_ms = $2 WHERE id = $3")
            .bind(end.as_str())
            .bind(now)
            .bind(job)
            .execute(&mut **tx)
            .await?;
        sqlx::query(
            "UPDATE tasks SET state = 'cancelled', finished_ms = $1, error = 'cancelled: the job ended' \
             WHERE job_id = $2 AND state = 'queued'",
        )
        .bind(now)
        .bind(job)
        .execute(&mut **tx)
        .await?;
        let running = sqlx::query(
            "UPDATE tasks SET cancel_requested = 1 WHERE job_id = $1 AND state IN ('claimed', 'running')",
        )
        .bind(job)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if running > 0 {
            self.notify(tx, wake, agent).await?;
        }
        self.after_job(tx, wake, job).await?;
        Ok(())
    }

    /// Sends back or ends the tasks whose lease lapsed or whose time is up. Returns how many.
    pub async fn reap(&self) -> Result<usize> {
        let now = self.now();
        let rows = sqlx::query(
            "SELECT id FROM tasks WHERE state IN ('claimed', 'running') \
             AND (lease_until_ms < $1 OR (started_ms IS NOT NULL AND started_ms + timeout_ms < $1)) \
             ORDER BY id LIMIT 500",
        )
        .bind(now)
        .fetch_all(&self.db.pool)
        .await?;
        let mut n = 0;
        for row in rows {
            let id: i64 = row.try_get(0)?;
            if self.lapse(id, None).await? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// The agent restarted: what it held is not running any more.
    pub async fn release_agent(&self, agent: i64) -> Result<usize> {
        let rows = sqlx::query(
            "SELECT id FROM tasks WHERE agent_id = $1 AND state IN ('claimed', 'running') ORDER BY id",
        )
        .bind(agent)
        .fetch_all(&self.db.pool)
        .await?;
        let mut n = 0;
        for row in rows {
            if self
                .lapse(row.try_get(0)?, Some("the agent restarted"))
                .await?
            {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Ends one lease: back to the queue (with backoff) if repeating is safe and attempts are
    /// left, `lost` if repeating is unsafe, `failed` otherwise. `forced` gives the reason when
    /// the lease is ended before it lapses.
    async fn lapse(&self, task: i64, forced: Option<&str>) -> Result<bool> {
        let now = self.now();
        let mut tx = self.begin().await?;
        let mut wake = Wake::default();
        let row = sqlx::query(
            "SELECT fence, state, operation, attempts, max_attempts, lease_until_ms, started_ms, \
             timeout_ms, job_id, step, agent_id, cancel_requested, args FROM tasks WHERE id = $1",
        )
        .bind(task)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(false) };
        let fence: i64 = row.try_get(0)?;
        let state: String = row.try_get(1)?;
        let op = Operation::parse(&row.try_get::<String, _>(2)?).unwrap_or(Operation::Fulfill);
        let attempts = row.try_get::<i64, _>(3)? as u32;
        let max_attempts = row.try_get::<i64, _>(4)? as u32;
        let lease_until: Option<i64> = row.try_get(5)?;
        let started: Option<i64> = row.try_get(6)?;
        let timeout: i64 = row.try_get(7)?;
        let job: Option<i64> = row.try_get(8)?;
        let step: Option<i64> = row.try_get(9)?;
        let agent: i64 = row.try_get(10)?;
        let cancelled = row.try_get::<i64, _>(11)? != 0;
        // Orders from the server carry ids and converge when repeated: such a fulfil is safe.
        let repeat_safe = op.repeat_safe()
            || TaskArgs::parse_stored(&row.try_get::<String, _>(12)?).server_orders;
        if !(state == "claimed" || state == "running") {
            return Ok(false);
        }
        let timed_out = started.is_some_and(|s| s + timeout < now);
        let lapsed = lease_until.is_some_and(|l| l < now);
        if forced.is_none() && !timed_out && !lapsed {
            return Ok(false);
        }
        let acknowledged = state == "running";
        let (new_state, error) = if cancelled && !timed_out {
            (
                TaskState::Cancelled,
                "cancelled (its agent stopped answering)".to_owned(),
            )
        } else if timed_out {
            (
                TaskState::Failed,
                format!("timed out after {} s", timeout / 1000),
            )
        } else {
            let why = forced.unwrap_or(if acknowledged {
                "the agent stopped sending heartbeats"
            } else {
                "the agent did not acknowledge the task (poll answer lost?)"
            });
            if acknowledged && !repeat_safe {
                (
                    TaskState::Lost,
                    format!(
                        "{why} while running a {}; it may have half-run, so it is not repeated: check the system, then run it again",
                        op.as_str()
                    ),
                )
            } else if attempts < max_attempts {
                (TaskState::Queued, format!("{why}; retrying"))
            } else {
                (
                    TaskState::Failed,
                    format!("{why}; no attempt left ({attempts} made)"),
                )
            }
        };
        let run_after =
            (new_state == TaskState::Queued).then(|| now + self.cfg.backoff(attempts) as i64);
        let updated = sqlx::query(
            "UPDATE tasks SET state = $1, error = $2, finished_ms = $3, \
             run_after_ms = COALESCE($4, run_after_ms), lease_until_ms = NULL, \
             cancel_requested = $5 \
             WHERE id = $6 AND fence = $7 AND state = $8",
        )
        .bind(new_state.as_str())
        .bind(&error)
        .bind(new_state.is_final().then_some(now))
        .bind(run_after)
        .bind(i64::from(timed_out))
        .bind(task)
        .bind(fence)
        .bind(&state)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated != 1 {
            return Ok(false);
        }
        tracing::warn!(
            task,
            fence,
            "lease ended: {error} (now {})",
            new_state.as_str()
        );
        if let (Some(job), Some(step)) = (job, step) {
            self.advance_job(&mut tx, &mut wake, job, step as u32, new_state)
                .await?;
        }
        if timed_out || new_state == TaskState::Queued {
            self.notify(&mut tx, &mut wake, agent).await?;
        }
        self.commit(tx, wake).await?;
        Ok(true)
    }

    /// Cancels a task: at once if queued; on its agent's next poll or heartbeat if running.
    pub async fn cancel_task(&self, task: i64) -> Result<TaskView> {
        let now = self.now();
        let mut tx = self.begin().await?;
        let mut wake = Wake::default();
        let row = sqlx::query("SELECT state, agent_id, job_id, step FROM tasks WHERE id = $1")
            .bind(task)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| Error::not_found(format!("no task {task}")))?;
        let state: String = row.try_get(0)?;
        let agent: i64 = row.try_get(1)?;
        let job: Option<i64> = row.try_get(2)?;
        let step: Option<i64> = row.try_get(3)?;
        match state.as_str() {
            "queued" => {
                sqlx::query(
                    "UPDATE tasks SET state = 'cancelled', error = 'cancelled', finished_ms = $1 \
                     WHERE id = $2 AND state = 'queued'",
                )
                .bind(now)
                .bind(task)
                .execute(&mut *tx)
                .await?;
                if let (Some(job), Some(step)) = (job, step) {
                    self.advance_job(&mut tx, &mut wake, job, step as u32, TaskState::Cancelled)
                        .await?;
                }
            }
            "claimed" | "running" => {
                sqlx::query("UPDATE tasks SET cancel_requested = 1 WHERE id = $1")
                    .bind(task)
                    .execute(&mut *tx)
                    .await?;
                self.notify(&mut tx, &mut wake, agent).await?;
            }
            _ => {}
        }
        self.commit(tx, wake).await?;
        self.task(task).await
    }

    /// One task.
    pub async fn task(&self, task: i64) -> Result<TaskView> {
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM tasks t JOIN agents a ON a.id = t.agent_id WHERE t.id = $1"
        );
        let row = sqlx::query(&sql)
            .bind(task)
            .fetch_optional(&self.db.pool)
            .await?
            .ok_or_else(|| Error::not_found(format!("no task {task}")))?;
        task_view(&row)
    }

    /// Creates a job (and starts it unless told not to).
    pub async fn create_job(&self, new: &NewJob) -> Result<JobView> {
        if new.steps.is_empty() || new.steps.iter().any(|s| s.is_empty()) {
            return Err(Error::bad_request(
                "a job needs at least one step, and each step at least one task",
            ));
        }
        for spec in new.steps.iter().flatten() {
            check_spec(spec)?;
        }
        let agent = self.agent_id(&new.agent).await?;
        self.check_connections(agent, &new.steps.iter().flatten().collect::<Vec<_>>())
            .await?;
        let name = new.name.clone().unwrap_or_else(|| {
            new.steps
                .iter()
                .map(|s| {
                    s.iter()
                        .map(|t| format!("{} {}", t.operation.as_str(), t.connection))
                        .collect::<Vec<_>>()
                        .join(" + ")
                })
                .collect::<Vec<_>>()
                .join(" → ")
        });
        let id: i64 = sqlx::query(
            "INSERT INTO jobs (agent_id, name, state, step, step_count, steps, created_ms) \
             VALUES ($1, $2, 'pending', 0, $3, $4, $5) RETURNING id",
        )
        .bind(agent)
        .bind(name)
        .bind(new.steps.len() as i64)
        .bind(serde_json::to_string(&new.steps).map_err(anyhow::Error::from)?)
        .bind(self.now())
        .fetch_one(&self.db.pool)
        .await?
        .try_get(0)?;
        if new.start.unwrap_or(true) {
            return self.start_job(id).await;
        }
        self.job(id).await
    }

    /// Starts a pending job: its first step's tasks are queued.
    pub async fn start_job(&self, job: i64) -> Result<JobView> {
        let mut tx = self.begin().await?;
        let mut wake = Wake::default();
        let pending = sqlx::query("SELECT 1 FROM jobs WHERE id = $1 AND state = 'pending'")
            .bind(job)
            .fetch_optional(&mut *tx)
            .await?;
        if pending.is_none() {
            drop(tx);
            let view = self.job(job).await?;
            return Err(Error::conflict(format!(
                "job {job} is {} and cannot be started",
                view.state.as_str()
            )));
        }
        self.start_job_in(&mut tx, &mut wake, job).await?;
        self.commit(tx, wake).await?;
        self.job(job).await
    }

    /// Starts a pending job inside a transaction.
    pub(crate) async fn start_job_in(&self, tx: &mut Tx, wake: &mut Wake, job: i64) -> Result<()> {
        let row = sqlx::query(
            "UPDATE jobs SET state = 'running' WHERE id = $1 AND state = 'pending' RETURNING agent_id, steps",
        )
        .bind(job)
        .fetch_optional(&mut **tx)
        .await?;
        let Some(row) = row else { return Ok(()) };
        let agent: i64 = row.try_get(0)?;
        let steps: Vec<Vec<TaskSpec>> = serde_json::from_str(&row.try_get::<String, _>(1)?)
            .map_err(|e| anyhow::anyhow!("job {job}: stored steps: {e}"))?;
        self.insert_tasks(tx, agent, Some((job, 0)), &steps[0])
            .await?;
        self.notify(tx, wake, agent).await?;
        Ok(())
    }

    /// After a job ended: the next waiting run of the same declared job starts.
    async fn after_job(&self, tx: &mut Tx, wake: &mut Wake, job: i64) -> Result<()> {
        let def: Option<String> = sqlx::query("SELECT definition FROM jobs WHERE id = $1")
            .bind(job)
            .fetch_one(&mut **tx)
            .await?
            .try_get(0)?;
        if let Some(def) = def {
            self.start_next(tx, wake, &def).await?;
        }
        Ok(())
    }

    /// Cancels a job: queued tasks at once, running ones through their agent.
    pub async fn cancel_job(&self, job: i64) -> Result<JobView> {
        let mut tx = self.begin().await?;
        let mut wake = Wake::default();
        let row = sqlx::query(
            "SELECT agent_id FROM jobs WHERE id = $1 AND state IN ('pending', 'running', 'blocked')",
        )
        .bind(job)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = row {
            let agent: i64 = row.try_get(0)?;
            self.end_job(&mut tx, &mut wake, job, agent, JobState::Cancelled)
                .await?;
        }
        self.commit(tx, wake).await?;
        self.job(job).await
    }

    /// One job with its tasks.
    pub async fn job(&self, job: i64) -> Result<JobView> {
        let row = sqlx::query(
            "SELECT j.id, j.name, a.name, j.state, j.step, j.step_count, j.created_ms, j.finished_ms, \
             j.definition, j.mode, j.blocked FROM jobs j JOIN agents a ON a.id = j.agent_id WHERE j.id = $1",
        )
        .bind(job)
        .fetch_optional(&self.db.pool)
        .await?
        .ok_or_else(|| Error::not_found(format!("no job {job}")))?;
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM tasks t JOIN agents a ON a.id = t.agent_id \
             WHERE t.job_id = $1 ORDER BY t.id"
        );
        let tasks = sqlx::query(&sql)
            .bind(job)
            .fetch_all(&self.db.pool)
            .await?
            .iter()
            .map(task_view)
            .collect::<Result<Vec<_>>>()?;
        let state: String = row.try_get(3)?;
        Ok(JobView {
            id: row.try_get(0)?,
            name: row.try_get(1)?,
            agent: row.try_get(2)?,
            state: JobState::parse(&state)
                .ok_or_else(|| anyhow::anyhow!("stored job state `{state}`"))?,
            step: row.try_get::<i64, _>(4)? as u32,
            steps: row.try_get::<i64, _>(5)? as u32,
            tasks,
            created_ms: row.try_get(6)?,
            finished_ms: row.try_get(7)?,
            definition: row.try_get(8)?,
            mode: row.try_get(9)?,
            blocked: row
                .try_get::<Option<String>, _>(10)?
                .and_then(|b| serde_json::from_str(&b).ok()),
        })
    }

    /// The latest jobs, newest first.
    pub async fn jobs(&self, limit: u32) -> Result<Vec<JobView>> {
        let rows = sqlx::query("SELECT id FROM jobs ORDER BY id DESC LIMIT $1")
            .bind(limit.clamp(1, 500) as i64)
            .fetch_all(&self.db.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(self.job(r.try_get(0)?).await?);
        }
        Ok(out)
    }
}
