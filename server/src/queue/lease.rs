//! Leases: who holds a task, and what happens when a lease lapses, times out or is released.

use super::{Queue, Wake};
use crate::error::{Error, Result};
use idgard_protocol::{Operation, TaskArgs, TaskState};
use sqlx::{AnyConnection, Row};

/// A task as its current lease holder sees it.
#[derive(Debug)]
pub(crate) struct Held {
    /// The operation, as stored.
    pub operation: String,
    /// The connection.
    pub connection: String,
}

/// The server's one lease check: `agent` holds the current lease `fence` of `task`, which is
/// claimed or running. Another agent's task answers `not_found` like a missing one; a lease
/// that is not the current one, or a task that has ended, answers `stale_lease`. Runs on the
/// caller's connection (a transaction, or one taken from the pool), never on another.
pub(crate) async fn require_lease(
    conn: &mut AnyConnection,
    agent: i64,
    task: i64,
    fence: i64,
) -> Result<Held> {
    let row = sqlx::query(
        "SELECT agent_id, fence, state, operation, connection FROM tasks WHERE id = $1",
    )
    .bind(task)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row.filter(|r| r.try_get::<i64, _>(0).ok() == Some(agent)) else {
        return Err(Error::not_found(format!("no task {task} for this agent")));
    };
    let current: i64 = row.try_get(1)?;
    let state: String = row.try_get(2)?;
    if current != fence {
        return Err(Error::stale(format!(
            "task {task}: lease {fence} is stale (the task was handed out again as lease {current}); nothing was recorded"
        )));
    }
    if !(state == "claimed" || state == "running") {
        return Err(Error::stale(format!(
            "task {task} is {state}: lease {fence} no longer holds it; nothing was recorded"
        )));
    }
    Ok(Held {
        operation: row.try_get(3)?,
        connection: row.try_get(4)?,
    })
}

impl Queue {
    /// Why a call about `task` with `fence` was not taken (after a guarded update changed
    /// nothing).
    pub(crate) async fn refusal_for(&self, agent: i64, task: i64, fence: i64) -> Result<Error> {
        let mut conn = self.db.pool.acquire().await?;
        Ok(match require_lease(&mut conn, agent, task, fence).await {
            Err(e) => e,
            Ok(_) => Error::stale(format!(
                "task {task}: lease {fence} changed while this call ran; nothing was recorded"
            )),
        })
    }

    /// Sends back or ends the tasks whose lease lapsed or whose time is up. Returns how many.
    pub async fn reap(&self) -> Result<usize> {
        self.flush_beats().await?;
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
        self.metrics.lapsed(n);
        Ok(n)
    }

    /// The agent restarted: what it held is not running any more.
    pub async fn release_agent(&self, agent: i64) -> Result<usize> {
        self.flush_beats().await?;
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
}
