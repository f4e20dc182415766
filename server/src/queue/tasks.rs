//! Tasks: queuing, claiming by polls, heartbeats, completion and cancellation.

use super::{Queue, TASK_COLUMNS, Tx, Wake, check_spec, task_view};
use crate::db::Backend;
use crate::error::{Error, Result};
use idgard_protocol::{
    Assignment, Completion, ExportResult, Operation, TaskArgs, TaskOutcome, TaskSpec, TaskState,
    TaskView,
};
use sqlx::Row;

impl Queue {
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

    /// An agent's id, read inside the caller's transaction.
    pub(super) async fn agent_id_in(tx: &mut Tx, name: &str) -> Result<i64> {
        sqlx::query("SELECT id FROM agents WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut **tx)
            .await?
            .map(|r| r.try_get(0))
            .transpose()?
            .ok_or_else(|| Error::not_found(format!("no agent named `{name}`")))
    }

    /// The agent that reports a connection: exactly one must.
    pub async fn agent_of(&self, connection: &str) -> Result<String> {
        let rows = sqlx::query("SELECT name, connections FROM agents ORDER BY name")
            .fetch_all(&self.db.read)
            .await?;
        let mut owners = Vec::new();
        for r in rows {
            let reported: Vec<idgard_protocol::ConnectionReport> =
                serde_json::from_str(&r.try_get::<String, _>(1)?).unwrap_or_default();
            if reported.iter().any(|c| c.name == connection) {
                owners.push(r.try_get::<String, _>(0)?);
            }
        }
        match owners.len() {
            1 => Ok(owners.remove(0)),
            0 => Err(Error::invalid(format!(
                "no agent reports connection `{connection}` (an agent reports its connections when it starts)"
            ))),
            _ => Err(Error::invalid(format!(
                "connection `{connection}` is reported by agents {}: name the agent in the job",
                owners.join(", ")
            ))),
        }
    }

    /// Refuses tasks for connections the agent does not report, or operations their connector
    /// does not support. An agent that never reported is taken at its word later.
    pub(super) async fn check_connections(&self, agent: i64, specs: &[&TaskSpec]) -> Result<()> {
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
                return Err(Error::invalid(format!(
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
                return Err(Error::invalid(format!(
                    "connection `{}` of agent `{name}` uses connector `{}`, which does not support {needed}",
                    c.name, c.connector
                )));
            }
        }
        Ok(())
    }

    /// Queues tasks for `agent`, or each for the agent its spec names, and wakes those agents.
    pub(super) async fn insert_tasks(
        &self,
        tx: &mut Tx,
        wake: &mut Wake,
        agent: i64,
        job: Option<(i64, u32)>,
        specs: &[TaskSpec],
    ) -> Result<Vec<i64>> {
        let now = self.now();
        let mut ids = Vec::with_capacity(specs.len());
        for spec in specs {
            let agent = match &spec.agent {
                Some(name) => Self::agent_id_in(tx, name).await?,
                None => agent,
            };
            let args = if spec.args.is_null() {
                "{}".to_owned()
            } else if let Some(sealed) = self.sealer.seal_orders(&spec.args)? {
                sealed.to_string()
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
            self.notify(tx, wake, agent).await?;
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
        let ids = self
            .insert_tasks(&mut tx, &mut wake, agent, None, specs)
            .await?;
        self.commit(tx, wake).await?;
        Ok(ids)
    }

    /// Claims up to `capacity` ready tasks of an agent.
    pub async fn claim(&self, agent: i64, capacity: u32) -> Result<Vec<Assignment>> {
        let now = self.now();
        // Most polls find nothing: they look on a read connection and leave the writer alone.
        let any = sqlx::query(
            "SELECT 1 FROM tasks WHERE agent_id = $1 AND state = 'queued' AND run_after_ms <= $2 LIMIT 1",
        )
        .bind(agent)
        .bind(now)
        .fetch_optional(&self.db.read)
        .await?;
        if any.is_none() {
            return Ok(Vec::new());
        }
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
        let mut unopened = Vec::new();
        for row in rows {
            let op: String = row.try_get(3)?;
            let args: serde_json::Value =
                serde_json::from_str(&row.try_get::<String, _>(4)?).unwrap_or_default();
            let args = match self.sealer.open_orders(&args) {
                Ok(Some(opened)) => opened,
                Ok(None) => args,
                Err(e) => {
                    unopened.push((row.try_get::<i64, _>(0)?, row.try_get::<i64, _>(1)?, e));
                    continue;
                }
            };
            let operation =
                Operation::parse(&op).ok_or_else(|| anyhow::anyhow!("stored operation `{op}`"))?;
            let connection: String = row.try_get(2)?;
            let args = match operation {
                Operation::Export => self.with_cursor(&connection, args).await?,
                _ => args,
            };
            out.push(Assignment {
                id: row.try_get(0)?,
                fence: row.try_get(1)?,
                connection,
                operation,
                args,
                attempt: row.try_get::<i64, _>(5)? as u32,
                timeout_ms: row.try_get::<i64, _>(6)? as u64,
            });
        }
        // A task whose secrets this server cannot open fails alone (another key, a damaged
        // row): the agent's other tasks go on.
        for (task, fence, e) in unopened {
            tracing::error!(task, "cannot hand out the task: {e:#}");
            let failed = Completion {
                fence,
                outcome: TaskOutcome::Failed {
                    error: format!("{e:#} (keyring)"),
                    retryable: false,
                },
            };
            self.complete(agent, task, &failed).await?;
        }
        out.sort_by_key(|a| a.id);
        Ok(out)
    }

    /// Tasks an agent holds that were cancelled and that no poll has told it about yet
    /// (heartbeats keep telling it until the task ends).
    pub async fn cancelled_for(&self, agent: i64) -> Result<Vec<i64>> {
        let any = sqlx::query(
            "SELECT 1 FROM tasks WHERE agent_id = $1 AND state IN ('claimed', 'running') \
             AND cancel_requested = 1 LIMIT 1",
        )
        .bind(agent)
        .fetch_optional(&self.db.read)
        .await?;
        if any.is_none() {
            return Ok(Vec::new());
        }
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

        let upload = match (&done.outcome, op.as_str()) {
            (TaskOutcome::Succeeded { result }, "export") => Some(
                self.check_export_result(&mut tx, task, done.fence, result)
                    .await?,
            ),
            _ => None,
        };
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
             finished_ms = $5, run_after_ms = COALESCE($6, run_after_ms), lease_until_ms = NULL, \
             upload_id = $9 WHERE id = $7 AND fence = $8 AND state IN ('claimed', 'running')",
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
        .bind(upload)
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
        let view = self.task(task).await?;
        self.record_end(&view);
        Ok(view)
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
        let view = TaskView {
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
        };
        self.record_end(&view);
        Ok(Some(view))
    }

    /// Counts a task that just ended in this process's figures.
    fn record_end(&self, view: &TaskView) {
        if let Some(finished) = view.finished_ms {
            self.metrics.task_finished(
                view.operation.as_str(),
                view.state.as_str(),
                finished - view.created_ms,
            );
        }
    }

    /// An agent's name (names never change, so they are cached).
    pub(crate) async fn agent_name(&self, agent: i64) -> Result<String> {
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

    /// An export's result must name a complete upload of this attempt: its id.
    async fn check_export_result(
        &self,
        tx: &mut Tx,
        task: i64,
        fence: i64,
        result: &serde_json::Value,
    ) -> Result<i64> {
        let Some(upload) = ExportResult::parse(result).and_then(|r| r.upload_id) else {
            return Err(Error::invalid(
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
            None => Err(Error::invalid(format!(
                "upload {upload} does not belong to this attempt of task {task}"
            ))),
            Some(r) if r.try_get::<i64, _>(0)? == 0 => Err(Error::conflict(format!(
                "upload {upload} is not complete: send the rest before completing the task"
            ))),
            Some(_) => Ok(upload),
        }
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
            .fetch_optional(&self.db.read)
            .await?
            .ok_or_else(|| Error::not_found(format!("no task {task}")))?;
        task_view(&row).map(|t| self.with_live(t))
    }

    /// A task's view with the progress of its run on this server, while it runs here.
    pub(crate) fn with_live(&self, mut view: TaskView) -> TaskView {
        if let Some(p) = self.live.get(view.id) {
            view.progress = Some(p);
        }
        view
    }
}
