//! Launches: runs of declared jobs asked for in the browser and started only once the owning
//! agent accepts them. Each is delivered on the agent's poll once, answered once, and good until
//! its token expires; a replayed answer finds it answered already.

use crate::error::{Error, Result};
use crate::keys::random_token;
use crate::queue::{Queue, Wake};
use idgard_protocol::{LaunchAnswer, LaunchState, LaunchView, RunJob};
use sqlx::Row;
use sqlx::any::AnyRow;

const COLUMNS: &str = "id, agent_id, job, incremental, dry_run, user_name, state, created_ms, \
     expires_ms, answered_ms, reason, job_id";

/// Longest reason an agent may give, in bytes.
const REASON_MAX: usize = 500;

/// A launch and the agent it is for.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The agent's id.
    pub agent_id: i64,
    /// The launch.
    pub view: LaunchView,
}

/// Where a stored launch stands at `now`: one not answered before its expiry was not picked up.
fn state_at(stored: &str, expires_ms: i64, now: i64) -> Result<LaunchState> {
    Ok(match stored {
        "waiting" | "delivered" if expires_ms <= now => LaunchState::NotPickedUp,
        "waiting" => LaunchState::Waiting,
        "delivered" => LaunchState::Delivered,
        "accepted" => LaunchState::Accepted,
        "refused" => LaunchState::Refused,
        other => return Err(anyhow::anyhow!("stored launch state `{other}`").into()),
    })
}

impl Queue {
    fn launch_of(&self, row: &AnyRow, agent: String) -> Result<Launch> {
        let state: String = row.try_get(6)?;
        let expires_ms: i64 = row.try_get(8)?;
        Ok(Launch {
            agent_id: row.try_get(1)?,
            view: LaunchView {
                id: row.try_get(0)?,
                agent,
                job: row.try_get(2)?,
                incremental: row.try_get::<i64, _>(3)? != 0,
                dry_run: row.try_get::<i64, _>(4)? != 0,
                user: row.try_get(5)?,
                state: state_at(&state, expires_ms, self.now())?,
                created_ms: row.try_get(7)?,
                expires_ms,
                answered_ms: row.try_get(9)?,
                reason: row.try_get(10)?,
                job_id: row.try_get(11)?,
            },
        })
    }

    async fn launches_of(&self, rows: Vec<AnyRow>) -> Result<Vec<Launch>> {
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let name = self.agent_name(row.try_get(1)?).await?;
            out.push(self.launch_of(&row, name)?);
        }
        Ok(out)
    }

    /// Records a launch of `run` by `user` for `agent`, good for `ttl_ms`, and wakes the
    /// agent's held poll.
    pub async fn record_launch(
        &self,
        agent: i64,
        run: &RunJob,
        user: &str,
        ttl_ms: i64,
    ) -> Result<Launch> {
        let now = self.now();
        let id = random_token();
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO launches (id, agent_id, job, incremental, dry_run, user_name, state, \
             created_ms, expires_ms) VALUES ($1, $2, $3, $4, $5, $6, 'waiting', $7, $8)",
        )
        .bind(&id)
        .bind(agent)
        .bind(&run.job)
        .bind(i64::from(run.incremental))
        .bind(i64::from(run.dry_run))
        .bind(user)
        .bind(now)
        .bind(now + ttl_ms)
        .execute(&mut *tx)
        .await?;
        let mut wake = Wake::default();
        self.notify(&mut tx, &mut wake, agent).await?;
        self.commit(tx, wake).await?;
        self.launch(&id).await
    }

    /// A launch.
    pub async fn launch(&self, id: &str) -> Result<Launch> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM launches WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.db.read)
            .await?
            .ok_or_else(|| Error::not_found(format!("no launch {id}")))?;
        let name = self.agent_name(row.try_get(1)?).await?;
        self.launch_of(&row, name)
    }

    /// Launch `id` once its agent answered it, or as it stands after `max`: an agent that is
    /// online answers within milliseconds, so the person is usually spared a waiting page.
    pub async fn launch_within(&self, id: &str, max: std::time::Duration) -> Result<Launch> {
        let until = tokio::time::Instant::now() + max;
        loop {
            let launch = self.launch(id).await?;
            let pending = matches!(
                launch.view.state,
                LaunchState::Waiting | LaunchState::Delivered
            );
            if !pending || tokio::time::Instant::now() >= until {
                return Ok(launch);
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }

    /// Hands `agent` the launches waiting for it, each once, marking them delivered.
    pub async fn deliver_launches(&self, agent: i64) -> Result<Vec<Launch>> {
        let now = self.now();
        // Every held poll asks, and almost always there is none: look on a read connection and
        // leave the writer alone.
        let any = sqlx::query(
            "SELECT 1 FROM launches WHERE agent_id = $1 AND state = 'waiting' AND expires_ms > $2 \
             LIMIT 1",
        )
        .bind(agent)
        .bind(now)
        .fetch_optional(&self.db.read)
        .await?;
        if any.is_none() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(&format!(
            "UPDATE launches SET state = 'delivered', delivered_ms = $1 \
             WHERE agent_id = $2 AND state = 'waiting' AND expires_ms > $1 RETURNING {COLUMNS}"
        ))
        .bind(now)
        .bind(agent)
        .fetch_all(&self.db.pool)
        .await?;
        self.launches_of(rows).await
    }

    /// Records `agent`'s answer to launch `id`. A launch is answered once, by the agent it was
    /// delivered to, before it expires: anything else is refused and changes nothing.
    pub async fn answer_launch(
        &self,
        agent: i64,
        id: &str,
        answer: &LaunchAnswer,
    ) -> Result<Launch> {
        let now = self.now();
        let reason = answer
            .reason
            .as_deref()
            .map(|r| crate::queue::agents::cut(r, REASON_MAX));
        let row = sqlx::query(&format!(
            "UPDATE launches SET state = $1, answered_ms = $2, reason = $3 \
             WHERE id = $4 AND agent_id = $5 AND state = 'delivered' AND expires_ms > $2 \
             RETURNING {COLUMNS}"
        ))
        .bind(if answer.accept { "accepted" } else { "refused" })
        .bind(now)
        .bind(reason)
        .bind(id)
        .bind(agent)
        .fetch_optional(&self.db.pool)
        .await?;
        match row {
            Some(row) => {
                let name = self.agent_name(agent).await?;
                self.launch_of(&row, name)
            }
            None => Err(self.unanswerable(agent, id).await),
        }
    }

    /// Why launch `id` cannot take `agent`'s answer.
    async fn unanswerable(&self, agent: i64, id: &str) -> Error {
        // Another agent's launch is not this one's to see.
        let launch = match self.launch(id).await {
            Ok(l) if l.agent_id == agent => l,
            Ok(_) | Err(_) => return Error::not_found(format!("no launch {id} for this agent")),
        };
        Error::conflict(match launch.view.state {
            LaunchState::Accepted | LaunchState::Refused => {
                format!("launch {id} was answered already: a launch token is good once")
            }
            LaunchState::NotPickedUp => format!("launch {id} expired before it was answered"),
            LaunchState::Waiting | LaunchState::Delivered => {
                format!("launch {id} was not delivered")
            }
        })
    }

    /// Records the run an accepted launch started, or why it could not start.
    pub async fn launch_started(
        &self,
        id: &str,
        run: std::result::Result<i64, String>,
    ) -> Result<()> {
        let (job, reason) = match run {
            Ok(job) => (Some(job), None),
            Err(why) => (None, Some(why)),
        };
        sqlx::query("UPDATE launches SET job_id = $1, reason = COALESCE($2, reason) WHERE id = $3")
            .bind(job)
            .bind(reason)
            .bind(id)
            .execute(&self.db.pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_launch_not_answered_in_time_was_not_picked_up() {
        assert_eq!(state_at("waiting", 100, 99).unwrap(), LaunchState::Waiting);
        assert_eq!(
            state_at("delivered", 100, 99).unwrap(),
            LaunchState::Delivered
        );
        assert_eq!(
            state_at("waiting", 100, 100).unwrap(),
            LaunchState::NotPickedUp
        );
        assert_eq!(
            state_at("delivered", 100, 500).unwrap(),
            LaunchState::NotPickedUp
        );
        assert_eq!(
            state_at("accepted", 100, 500).unwrap(),
            LaunchState::Accepted
        );
        assert_eq!(state_at("refused", 100, 500).unwrap(), LaunchState::Refused);
        assert!(state_at("other", 100, 0).is_err());
    }
}
