//! What people do to provisioning by hand: send failed orders again, run declared jobs and
//! approve blocked runs in their own name.

use super::Engine;
use crate::db::in_list;
use crate::error::{Error, Result};
use idgard_protocol::{JobView, NewJob, Operation, RunJob, TaskSpec};
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

    /// Tests connection `connection` now: a run of one `test-connection` task on the agent that
    /// serves it, in `user`'s name.
    pub async fn test_connection(&self, connection: &str, user: &str) -> Result<JobView> {
        let agent = self.queue.agent_of(connection).await?;
        let job = self
            .queue
            .create_job(&NewJob {
                agent,
                name: Some(format!("test {connection}")),
                steps: vec![vec![TaskSpec {
                    connection: connection.to_owned(),
                    operation: Operation::TestConnection,
                    args: serde_json::Value::Null,
                    max_attempts: Some(1),
                    timeout_s: Some(120),
                    agent: None,
                }]],
                start: Some(true),
            })
            .await?;
        sqlx::query("UPDATE jobs SET started_by = $1 WHERE id = $2")
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

/// What a person decides about an account matched to an identity but waiting for review.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Review {
    /// It is theirs: link it; provisioning manages it from now on.
    Confirm,
    /// It is not theirs: it stays an orphan, and the match is not offered again.
    Reject,
}

impl Engine {
    /// Confirms or rejects the match of account `key` of `connection`, waiting in situation
    /// `unlinked`. A rejection is kept: provisioning never matches a linked-or-reviewed account
    /// again (it only matches accounts with no link), so the account stays `unmatched`.
    pub async fn review_link(
        &self,
        connection: &str,
        key: &str,
        review: Review,
    ) -> Result<idgard_protocol::LinkView> {
        self.known_connection(connection).await?;
        let (situation, keep_identity) = match review {
            Review::Confirm => ("linked", true),
            Review::Reject => ("unmatched", false),
        };
        let done = sqlx::query(
            "UPDATE links SET situation = $1, updated_ms = $2, \
             identity = CASE WHEN $3 = 1 THEN identity ELSE NULL END \
             WHERE connection = $4 AND key = $5 AND situation = 'unlinked'",
        )
        .bind(situation)
        .bind(self.queue.now())
        .bind(i64::from(keep_identity))
        .bind(connection)
        .bind(key)
        .execute(&self.queue.db.pool)
        .await?;
        let row = sqlx::query(
            "SELECT entity_type, key, identity, situation, updated_ms FROM links \
             WHERE connection = $1 AND key = $2",
        )
        .bind(connection)
        .bind(key)
        .fetch_optional(&self.queue.db.read)
        .await?
        .ok_or_else(|| Error::not_found(format!("no account `{key}` in `{connection}`")))?;
        let situation: String = row.try_get(3)?;
        if done.rows_affected() == 0 {
            return Err(Error::conflict(format!(
                "account `{key}` is {situation}, not waiting for review"
            )));
        }
        if let (Review::Confirm, Some(identity)) = (review, row.try_get::<Option<String>, _>(2)?) {
            // The next provisioning, incremental too, brings the account in line.
            sqlx::query(
                "INSERT INTO links_reviewed (connection, identity) VALUES ($1, $2) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(connection)
            .bind(identity)
            .execute(&self.queue.db.pool)
            .await?;
        }
        Ok(idgard_protocol::LinkView {
            entity_type: row.try_get(0)?,
            key: row.try_get(1)?,
            identity: row.try_get(2)?,
            situation: idgard_protocol::Situation::parse(&situation)
                .ok_or_else(|| anyhow::anyhow!("stored situation `{situation}`"))?,
            updated_ms: row.try_get(4)?,
        })
    }
}
