//! Jobs: steps of tasks run in order, their state, and the runs of one declared job, which
//! start one after the other.

use super::{Queue, TASK_COLUMNS, Tx, Wake, check_spec, task_view};
use crate::error::{Error, Result};
use idgard_protocol::{JobState, JobView, NewJob, TaskSpec, TaskState};
use sqlx::Row;

impl Queue {
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
                    self.insert_tasks(tx, wake, agent, Some((job, next)), &steps[next as usize])
                        .await?;
                    sqlx::query("UPDATE jobs SET step = $1 WHERE id = $2")
                        .bind(next as i64)
                        .bind(job)
                        .execute(&mut **tx)
                        .await?;
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
                self.end_job(tx, wake, job, end).await?;
            }
            _ => {}
        }
        Ok(())
    }

    async fn end_job(&self, tx: &mut Tx, wake: &mut Wake, job: i64, end: JobState) -> Result<()> {
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
        // Running tasks stop through their agents (a job may span several).
        let running = sqlx::query(
            "UPDATE tasks SET cancel_requested = 1 WHERE job_id = $1 AND state IN ('claimed', 'running') \
             RETURNING agent_id",
        )
        .bind(job)
        .fetch_all(&mut **tx)
        .await?;
        for r in running {
            self.notify(tx, wake, r.try_get(0)?).await?;
        }
        self.after_job(tx, wake, job).await?;
        Ok(())
    }

    /// Creates a job (and starts it unless told not to).
    pub async fn create_job(&self, new: &NewJob) -> Result<JobView> {
        if new.steps.is_empty() || new.steps.iter().any(|s| s.is_empty()) {
            return Err(Error::invalid(
                "a job needs at least one step, and each step at least one task",
            ));
        }
        for spec in new.steps.iter().flatten() {
            check_spec(spec)?;
        }
        let agent = self.agent_id(&new.agent).await?;
        // Each task is checked against the agent that will run it.
        let mut by_agent: std::collections::BTreeMap<Option<&str>, Vec<&TaskSpec>> =
            Default::default();
        for spec in new.steps.iter().flatten() {
            by_agent
                .entry(spec.agent.as_deref())
                .or_default()
                .push(spec);
        }
        for (name, specs) in by_agent {
            let id = match name {
                Some(n) => self.agent_id(n).await?,
                None => agent,
            };
            self.check_connections(id, &specs).await?;
        }
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
        // The steps are stored until their turn: with their secrets sealed.
        let mut steps = new.steps.clone();
        for spec in steps.iter_mut().flatten() {
            if let Some(sealed) = self.sealer.seal_orders(&spec.args)? {
                spec.args = sealed;
            }
        }
        let id: i64 = sqlx::query(
            "INSERT INTO jobs (agent_id, name, state, step, step_count, steps, created_ms) \
             VALUES ($1, $2, 'pending', 0, $3, $4, $5) RETURNING id",
        )
        .bind(agent)
        .bind(name)
        .bind(new.steps.len() as i64)
        .bind(serde_json::to_string(&steps).map_err(anyhow::Error::from)?)
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
            let state = Self::job_state_in(&mut tx, job).await?;
            return Err(Error::conflict(format!(
                "job {job} is {} and cannot be started",
                state.as_str()
            )));
        }
        self.start_job_in(&mut tx, &mut wake, job).await?;
        self.commit(tx, wake).await?;
        self.job(job).await
    }

    /// A job's state, read inside the caller's transaction (`not_found` if there is no such
    /// job).
    pub(crate) async fn job_state_in(tx: &mut Tx, job: i64) -> Result<JobState> {
        let row = sqlx::query("SELECT state FROM jobs WHERE id = $1")
            .bind(job)
            .fetch_optional(&mut **tx)
            .await?
            .ok_or_else(|| Error::not_found(format!("no job {job}")))?;
        let state: String = row.try_get(0)?;
        Ok(JobState::parse(&state).ok_or_else(|| anyhow::anyhow!("stored job state `{state}`"))?)
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
        self.insert_tasks(tx, wake, agent, Some((job, 0)), &steps[0])
            .await?;
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
        if row.is_some() {
            self.end_job(&mut tx, &mut wake, job, JobState::Cancelled)
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
        .fetch_optional(&self.db.read)
        .await?
        .ok_or_else(|| Error::not_found(format!("no job {job}")))?;
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM tasks t JOIN agents a ON a.id = t.agent_id \
             WHERE t.job_id = $1 ORDER BY t.id"
        );
        let tasks = sqlx::query(&sql)
            .bind(job)
            .fetch_all(&self.db.read)
            .await?
            .iter()
            .map(|r| task_view(r).map(|t| self.with_live(t)))
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
    pub async fn jobs(&self, page: &crate::page::Page) -> Result<Vec<JobView>> {
        let rows = sqlx::query(
            "SELECT id FROM jobs WHERE ($1 IS NULL OR id < $1) ORDER BY id DESC LIMIT $2",
        )
        .bind(page.after_id()?)
        .bind(page.sql_limit())
        .fetch_all(&self.db.read)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(self.job(r.try_get(0)?).await?);
        }
        Ok(out)
    }

    /// Jobs in `state`, newest first, at most `limit`.
    pub async fn jobs_in_state(&self, state: JobState, limit: u32) -> Result<Vec<JobView>> {
        let rows = sqlx::query("SELECT id FROM jobs WHERE state = $1 ORDER BY id DESC LIMIT $2")
            .bind(state.as_str())
            .bind(i64::from(limit))
            .fetch_all(&self.db.read)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(self.job(r.try_get(0)?).await?);
        }
        Ok(out)
    }

    /// Starts the oldest waiting run of a declared job if none is running.
    pub(crate) async fn start_next(
        &self,
        tx: &mut Tx,
        wake: &mut Wake,
        definition: &str,
    ) -> Result<()> {
        let busy: i64 = sqlx::query(
            "SELECT COUNT(*) FROM jobs WHERE definition = $1 AND state IN ('running', 'blocked')",
        )
        .bind(definition)
        .fetch_one(&mut **tx)
        .await?
        .try_get(0)?;
        if busy > 0 {
            return Ok(());
        }
        let Some(row) = sqlx::query(
            "SELECT id FROM jobs WHERE definition = $1 AND state = 'pending' ORDER BY id LIMIT 1",
        )
        .bind(definition)
        .fetch_optional(&mut **tx)
        .await?
        else {
            return Ok(());
        };
        let id: i64 = row.try_get(0)?;
        self.start_job_in(tx, wake, id).await
    }
}
