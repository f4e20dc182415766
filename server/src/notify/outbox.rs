//! The notifications' storage: how far each kind of event has been looked at (`notices`), and
//! the mails waiting to be handed to the SMTP server (`mail_outbox`). Both are shared by
//! replicas: a cursor moves by compare-and-set, and a mail is claimed before it is sent, so
//! that one replica reports an event and sends a mail once.

use super::compose::Mail;
use super::settings::Kind;
use crate::error::Result;
use sqlx::{AnyPool, Row};

/// Where a kind stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// Events up to this time have been looked at.
    pub cursor_ms: i64,
    /// When its last mail was queued (0: never).
    pub sent_ms: i64,
}

/// The cursor of `kind`, created at `now` the first time: events from before mail was set up
/// are not reported.
pub async fn cursor(db: &AnyPool, kind: Kind, now: i64) -> Result<Cursor> {
    sqlx::query(
        "INSERT INTO notices (kind, cursor_ms, sent_ms) VALUES ($1, $2, 0) \
         ON CONFLICT (kind) DO NOTHING",
    )
    .bind(kind.name())
    .bind(now)
    .execute(db)
    .await?;
    let row = sqlx::query("SELECT cursor_ms, sent_ms FROM notices WHERE kind = $1")
        .bind(kind.name())
        .fetch_one(db)
        .await?;
    Ok(Cursor {
        cursor_ms: row.try_get(0)?,
        sent_ms: row.try_get(1)?,
    })
}

/// Moves `kind`'s cursor from `old` to `to`, queueing `mail` (if any) in the same transaction.
/// False when another replica moved it first (nothing is queued then).
pub async fn advance(
    db: &AnyPool,
    kind: Kind,
    old: Cursor,
    to: i64,
    mail: Option<&Mail>,
    now: i64,
) -> Result<bool> {
    let mut tx = db.begin().await?;
    let sent = if mail.is_some() { now } else { old.sent_ms };
    let moved = sqlx::query(
        "UPDATE notices SET cursor_ms = $1, sent_ms = $2 WHERE kind = $3 AND cursor_ms = $4",
    )
    .bind(to)
    .bind(sent)
    .bind(kind.name())
    .bind(old.cursor_ms)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if moved != 1 {
        tx.rollback().await?;
        return Ok(false);
    }
    if let Some(m) = mail {
        sqlx::query(
            "INSERT INTO mail_outbox (kind, subject, body, created_ms, attempts, next_ms) \
             VALUES ($1, $2, $3, $4, 0, $4)",
        )
        .bind(kind.name())
        .bind(&m.subject)
        .bind(&m.body)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// A mail waiting in the outbox.
#[derive(Debug, Clone)]
pub struct Queued {
    /// Its row.
    pub id: i64,
    /// Its event kind's name.
    pub kind: String,
    /// What it says.
    pub mail: Mail,
    /// Attempts so far.
    pub attempts: i64,
    /// When it is due (what a claim compares against).
    pub next_ms: i64,
}

/// Mails due at `now`, oldest first, at most `limit`.
pub async fn due(db: &AnyPool, now: i64, limit: i64) -> Result<Vec<Queued>> {
    let rows = sqlx::query(
        "SELECT id, kind, subject, body, CAST(attempts AS BIGINT), next_ms FROM mail_outbox \
         WHERE next_ms <= $1 ORDER BY id LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Queued {
                id: r.try_get(0)?,
                kind: r.try_get(1)?,
                mail: Mail {
                    subject: r.try_get(2)?,
                    body: r.try_get(3)?,
                },
                attempts: r.try_get(4)?,
                next_ms: r.try_get(5)?,
            })
        })
        .collect()
}

/// Takes `q` for sending until `until` (another replica leaves it alone meanwhile); false
/// when someone else took it first.
pub async fn claim(db: &AnyPool, q: &Queued, until: i64) -> Result<bool> {
    Ok(sqlx::query(
        "UPDATE mail_outbox SET next_ms = $1, attempts = attempts + 1 \
         WHERE id = $2 AND next_ms = $3",
    )
    .bind(until)
    .bind(q.id)
    .bind(q.next_ms)
    .execute(db)
    .await?
    .rows_affected()
        == 1)
}

/// The mail went: forget it.
pub async fn sent(db: &AnyPool, id: i64) -> Result<()> {
    sqlx::query("DELETE FROM mail_outbox WHERE id = $1")
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

/// The mail did not go: keep it, with why, until `next_ms`.
pub async fn failed(db: &AnyPool, id: i64, error: &str, next_ms: i64) -> Result<()> {
    sqlx::query("UPDATE mail_outbox SET error = $1, next_ms = $2 WHERE id = $3")
        .bind(error)
        .bind(next_ms)
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

/// Mails not yet handed over.
pub async fn pending(db: &AnyPool) -> Result<i64> {
    Ok(sqlx::query("SELECT COUNT(*) FROM mail_outbox")
        .fetch_one(db)
        .await?
        .try_get(0)?)
}
