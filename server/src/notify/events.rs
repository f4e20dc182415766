//! Finding the events of one kind that happened in a window of time, from the database.
//!
//! Each kind is read from rows the rest of the server already writes: a task stopped by a
//! threshold (`blocked`, at its `finished_ms`), a failed run (`jobs`, at its `finished_ms`), an
//! order failed for good (`orders`, at its `updated_ms`), an agent whose last contact plus the
//! offline threshold falls in the window. Nothing is written where events happen, so no event
//! path can be slowed or broken by mail.

use super::settings::Kind;
use crate::error::Result;
use sqlx::{AnyPool, Row};

/// One event, as a mail lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// What happened to what: "run 12 (daily) on agent paris".
    pub what: String,
    /// Why, when known: the error, the threshold.
    pub detail: Option<String>,
    /// The UI page that shows it, a path under the server's address.
    pub link: Option<String>,
    /// When, in ms since the epoch.
    pub at_ms: i64,
}

/// The events of a window: the first [`LISTED`] and how many there were in all.
#[derive(Debug, Default)]
pub struct Found {
    /// The first events, oldest first.
    pub events: Vec<Event>,
    /// How many in all.
    pub total: u64,
}

/// Events listed in one mail; the rest are counted.
pub const LISTED: usize = 50;

/// The events of `kind` in `(from, to]`; `offline_ms` is the agents' offline threshold.
pub async fn find(db: &AnyPool, kind: Kind, from: i64, to: i64, offline_ms: i64) -> Result<Found> {
    let (list, count, shift) = match kind {
        Kind::Blocked => (
            "SELECT j.id, j.name, a.name, t.error, t.finished_ms FROM tasks t \
             JOIN jobs j ON j.id = t.job_id JOIN agents a ON a.id = j.agent_id \
             WHERE t.state = 'blocked' AND t.finished_ms > $1 AND t.finished_ms <= $2 \
             ORDER BY t.finished_ms, t.id LIMIT $3",
            "SELECT COUNT(*) FROM tasks WHERE state = 'blocked' AND finished_ms > $1 \
             AND finished_ms <= $2",
            0,
        ),
        Kind::FailedRun => (
            "SELECT j.id, j.name, a.name, (SELECT t.error FROM tasks t WHERE t.job_id = j.id \
             AND t.state = 'failed' ORDER BY t.id DESC LIMIT 1), j.finished_ms FROM jobs j \
             JOIN agents a ON a.id = j.agent_id \
             WHERE j.state = 'failed' AND j.finished_ms > $1 AND j.finished_ms <= $2 \
             ORDER BY j.finished_ms, j.id LIMIT $3",
            "SELECT COUNT(*) FROM jobs WHERE state = 'failed' AND finished_ms > $1 \
             AND finished_ms <= $2",
            0,
        ),
        Kind::FailedOrder => (
            "SELECT id, kind, connection, key, message, updated_ms FROM orders \
             WHERE state = 'failed' AND updated_ms > $1 AND updated_ms <= $2 \
             ORDER BY updated_ms, id LIMIT $3",
            "SELECT COUNT(*) FROM orders WHERE state = 'failed' AND updated_ms > $1 \
             AND updated_ms <= $2",
            0,
        ),
        Kind::AgentOffline => (
            "SELECT name, last_seen_ms FROM agents WHERE removed_ms IS NULL \
             AND last_seen_ms > $1 AND last_seen_ms <= $2 ORDER BY last_seen_ms, id LIMIT $3",
            "SELECT COUNT(*) FROM agents WHERE removed_ms IS NULL AND last_seen_ms > $1 \
             AND last_seen_ms <= $2",
            offline_ms,
        ),
    };
    let (from, to) = (from - shift, to - shift);
    let rows = sqlx::query(list)
        .bind(from)
        .bind(to)
        .bind(LISTED as i64 + 1)
        .fetch_all(db)
        .await?;
    let mut events = Vec::with_capacity(rows.len());
    for row in &rows {
        events.push(event(kind, row, shift)?);
    }
    let total = if events.len() > LISTED {
        events.truncate(LISTED);
        sqlx::query(count)
            .bind(from)
            .bind(to)
            .fetch_one(db)
            .await?
            .try_get::<i64, _>(0)? as u64
    } else {
        events.len() as u64
    };
    Ok(Found { events, total })
}

/// One row of [`find`]'s list query as an event.
fn event(kind: Kind, row: &sqlx::any::AnyRow, shift: i64) -> Result<Event> {
    Ok(match kind {
        Kind::Blocked | Kind::FailedRun => {
            let id = row.try_get::<i64, _>(0)?;
            Event {
                what: format!(
                    "run {id} ({}) on agent {}",
                    row.try_get::<String, _>(1)?,
                    row.try_get::<String, _>(2)?
                ),
                detail: row.try_get::<Option<String>, _>(3)?,
                link: Some(format!("/runs/{id}")),
                at_ms: row.try_get::<Option<i64>, _>(4)?.unwrap_or_default(),
            }
        }
        Kind::FailedOrder => {
            let id = row.try_get::<String, _>(0)?;
            Event {
                what: format!(
                    "{} {} in {}",
                    row.try_get::<String, _>(1)?,
                    row.try_get::<String, _>(3)?,
                    row.try_get::<String, _>(2)?
                ),
                detail: row.try_get::<Option<String>, _>(4)?,
                link: Some(format!("/orders/{id}")),
                at_ms: row.try_get::<i64, _>(5)?,
            }
        }
        Kind::AgentOffline => {
            let name = row.try_get::<String, _>(0)?;
            let seen = row.try_get::<i64, _>(1)?;
            Event {
                what: format!("agent {name}"),
                detail: Some(format!("last heard from at {}", super::compose::time(seen))),
                link: Some("/agents".into()),
                at_ms: seen + shift,
            }
        }
    })
}
