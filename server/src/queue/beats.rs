//! Heartbeats that do not wait behind a long write.
//!
//! On SQLite one connection writes. When it is busy (a synchronize of a large export holds it
//! for seconds), a heartbeat is checked on a read connection, answered at once, and its lease
//! renewal is kept here until the writer is free; [`Queue::flush_beats`] writes what is kept,
//! and runs before anything that reads leases (the reaper, a release). One SQLite server owns
//! its database, so what is kept here is the whole truth. PostgreSQL writes every heartbeat
//! at once.

use super::Queue;
use super::lease::require_lease;
use crate::error::{Error, Result};
use idgard_protocol::HeartbeatAnswer;
use sqlx::{AnyConnection, Row};
use std::collections::HashMap;
use std::sync::Mutex;

/// A renewal not written yet.
#[derive(Debug, Clone, Copy)]
struct Beat {
    agent: i64,
    fence: i64,
    at: i64,
    progress: Option<(u64, Option<u64>)>,
}

/// Renewals waiting for the writer, by task.
#[derive(Debug, Default)]
pub struct Beats(Mutex<HashMap<i64, Beat>>);

impl Queue {
    /// Renews a lease (the first heartbeat acknowledges the claim) and records progress.
    pub async fn heartbeat(
        &self,
        agent: i64,
        task: i64,
        fence: i64,
        progress: Option<(u64, Option<u64>)>,
    ) -> Result<HeartbeatAnswer> {
        let beat = Beat {
            agent,
            fence,
            at: self.now(),
            progress,
        };
        let writer = match self.db.backend {
            crate::db::Backend::Sqlite => self.db.pool.try_acquire(),
            crate::db::Backend::Postgres => Some(self.db.pool.acquire().await?),
        };
        let Some(mut conn) = writer else {
            return self.defer_beat(task, beat).await;
        };
        match self.renew(&mut conn, task, beat).await? {
            Some(cancel) => Ok(self.beat_answer(cancel)),
            // On the same connection: SQLite's writer is this one.
            None => Err(match require_lease(&mut conn, agent, task, fence).await {
                Err(e) => e,
                Ok(_) => Error::stale(format!("task {task}: lease {fence} changed meanwhile")),
            }),
        }
    }

    fn beat_answer(&self, cancel: bool) -> HeartbeatAnswer {
        HeartbeatAnswer {
            lease_ms: self.cfg.lease_ms,
            cancel,
        }
    }

    /// Writes one renewal; `None` if the lease is not held.
    async fn renew(&self, conn: &mut AnyConnection, task: i64, b: Beat) -> Result<Option<bool>> {
        let row = sqlx::query(
            "UPDATE tasks SET state = 'running', lease_until_ms = $1, \
             started_ms = COALESCE(started_ms, $2), \
             progress_done = COALESCE($3, progress_done), progress_total = COALESCE($4, progress_total) \
             WHERE id = $5 AND agent_id = $6 AND fence = $7 AND state IN ('claimed', 'running') \
             RETURNING cancel_requested",
        )
        .bind(b.at + self.cfg.lease_ms as i64)
        .bind(b.at)
        .bind(b.progress.map(|p| p.0 as i64))
        .bind(b.progress.and_then(|p| p.1).map(|t| t as i64))
        .bind(task)
        .bind(b.agent)
        .bind(b.fence)
        .fetch_optional(&mut *conn)
        .await?;
        Ok(match row {
            Some(row) => Some(row.try_get::<i64, _>(0)? != 0),
            None => None,
        })
    }

    /// The writer is busy: checks the lease on a read connection and keeps the renewal.
    async fn defer_beat(&self, task: i64, beat: Beat) -> Result<HeartbeatAnswer> {
        let mut conn = self.db.read.acquire().await?;
        require_lease(&mut conn, beat.agent, task, beat.fence).await?;
        let cancel: i64 = sqlx::query("SELECT cancel_requested FROM tasks WHERE id = $1")
            .bind(task)
            .fetch_one(&mut *conn)
            .await?
            .try_get(0)?;
        self.beats.0.lock().expect("beats").insert(task, beat);
        Ok(self.beat_answer(cancel != 0))
    }

    /// Writes the renewals kept while the writer was busy. Returns how many were written.
    pub async fn flush_beats(&self) -> Result<usize> {
        let kept: Vec<(i64, Beat)> = {
            let mut beats = self.beats.0.lock().expect("beats");
            if beats.is_empty() {
                return Ok(0);
            }
            beats.drain().collect()
        };
        match self.write_beats(&kept).await {
            Ok(written) => Ok(written),
            Err(e) => {
                // Kept for the next try, unless a newer heartbeat came meanwhile.
                let mut beats = self.beats.0.lock().expect("beats");
                for (task, beat) in kept {
                    beats.entry(task).or_insert(beat);
                }
                Err(e)
            }
        }
    }

    async fn write_beats(&self, kept: &[(i64, Beat)]) -> Result<usize> {
        let mut tx = self.begin().await?;
        let mut written = 0;
        for (task, beat) in kept {
            // A lease that ended meanwhile renews nothing: the update is guarded by its fence.
            if self.renew(&mut tx, *task, *beat).await?.is_some() {
                written += 1;
            }
        }
        tx.commit().await?;
        Ok(written)
    }
}
