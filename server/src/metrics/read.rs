//! The figures the database holds, read at each scrape (each over an index).

use crate::error::Result;
use sqlx::{AnyPool, Row};

/// The database's figures at one moment.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// Tasks not ended, by state.
    pub tasks: Vec<(String, i64)>,
    /// Runs by state.
    pub runs: Vec<(String, i64)>,
    /// Orders not done, and failed ones, by state.
    pub orders: Vec<(String, i64)>,
    /// Agents not removed.
    pub agents: i64,
    /// Agents heard from within [`crate::identity::overview::ONLINE_MS`].
    pub agents_online: i64,
    /// Mails waiting in the outbox.
    pub mail_waiting: i64,
    /// What each agent measured of its connectors' runs, by agent name.
    pub agent_figures: Vec<(String, idgard_protocol::AgentFigures)>,
}

impl Snapshot {
    /// Reads the figures at `now`.
    pub async fn read(db: &AnyPool, now: i64) -> Result<Snapshot> {
        let online_since = now - crate::identity::overview::ONLINE_MS;
        let agents = sqlx::query(
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN last_seen_ms > $1 THEN 1 ELSE 0 END), 0) \
             FROM agents WHERE removed_ms IS NULL",
        )
        .bind(online_since)
        .fetch_one(db)
        .await?;
        Ok(Snapshot {
            tasks: by_state(
                db,
                "SELECT state, COUNT(*) FROM tasks WHERE state IN \
                 ('queued', 'claimed', 'running', 'blocked') GROUP BY state",
            )
            .await?,
            runs: by_state(db, "SELECT state, COUNT(*) FROM jobs GROUP BY state").await?,
            orders: by_state(
                db,
                "SELECT state, COUNT(*) FROM orders WHERE state IN \
                 ('waiting', 'pending', 'sent', 'retry') GROUP BY state \
                 UNION ALL SELECT 'failed', COUNT(*) FROM orders WHERE state = 'failed'",
            )
            .await?,
            agents: agents.try_get(0)?,
            agents_online: agents.try_get(1)?,
            mail_waiting: crate::notify::outbox::pending(db).await?,
            agent_figures: super::agents::read(db).await?,
        })
    }
}

async fn by_state(db: &AnyPool, sql: &str) -> Result<Vec<(String, i64)>> {
    sqlx::query(sql)
        .fetch_all(db)
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}
