//! What people do to provisioning by hand: send failed orders again, run declared jobs and
//! approve blocked runs in their own name.

use super::Engine;
use crate::db::in_list;
use crate::error::{Error, Result};
use idgard_protocol::{JobView, RunJob};
use sqlx::Row;

/// Most orders retried at once.
pub const RETRY_MAX: usize = 1000;

impl Engine {
    /// Sends failed orders again: each goes back to `retry`, due now, with its attempts counted
    /// from zero; the next fulfil of its connection carries it. Orders in another state are left
    /// as they are. Answers how many were put back.
    pub async fn retry_orders(&self, ids: &[String]) -> Result<u64> {
        if ids.is_empty() {
            return Err(Error::invalid("name at least one order to retry"));
        }
        if ids.len() > RETRY_MAX {
            return Err(Error::too_large(format!(
                "at most {RETRY_MAX} orders at once"
            )));
        }
        let now = self.queue.now();
        let sql = format!(
            "UPDATE orders SET state = 'retry', attempts = 0, next_ms = $1, updated_ms = $1, \
             message = 'sent again by hand' WHERE state = 'failed' AND id IN ({})",
            in_list(1, ids.len())
        );
        let mut q = sqlx::query(&sql).bind(now);
        for id in ids {
            q = q.bind(id);
        }
        let done = q.execute(&self.queue.db.pool).await?;
        Ok(done.rows_affected())
    }
}

impl Engine {
    /// Runs a declared job on behalf of `user` (recorded as who started it).
    pub async fn run_declared_by(&self, run: &RunJob, user: &str) -> Result<JobView> {
        let job = self.run_declared(run).await?;
        sqlx::query("UPDATE jobs SET started_by = $1 WHERE id = $2 AND started_by IS NULL")
            .bind(user)
            .bind(job.id)
            .execute(&self.queue.db.pool)
            .await?;
        Ok(job)
    }

    /// Who started run `job` from the UI, if someone did.
    pub async fn started_by(&self, job: i64) -> Result<Option<String>> {
        let row = sqlx::query("SELECT started_by FROM jobs WHERE id = $1")
            .bind(job)
            .fetch_optional(&self.queue.db.read)
            .await?
            .ok_or_else(|| Error::not_found(format!("no job {job}")))?;
        Ok(row.try_get(0)?)
    }

    /// Why `user` may not approve `job`, when `own_allowed` is off and they started it.
    pub async fn approval_refused(
        &self,
        job: i64,
        user: &str,
        own_allowed: bool,
    ) -> Result<Option<String>> {
        if own_allowed {
            return Ok(None);
        }
        Ok(match self.started_by(job).await? {
            Some(by) if by == user => {
                Some("You started this run: another approver must approve it.".to_owned())
            }
            _ => None,
        })
    }

    /// Approves `job` as `user`, unless they started it and that is not allowed.
    pub async fn approve_as(&self, job: i64, user: &str, own_allowed: bool) -> Result<JobView> {
        if let Some(why) = self.approval_refused(job, user, own_allowed).await? {
            return Err(Error::new(crate::error::ErrorCode::Forbidden, why));
        }
        self.approve_job(job).await
    }
}
