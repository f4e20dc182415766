//! People's sessions. The cookie holds 256 random bits; the database holds only their SHA-256,
//! so a copy of it signs nobody in. A session ends at its absolute expiry, after the idle time
//! without a request, or when revoked (by its owner, or by signing out). Each sign-in makes a
//! new session (a session id is never carried over from before sign-in).

use super::access::Role;
use crate::db::Db;
use crate::error::{Error, Result};
use crate::keys::{hash_secret, random_token};
use crate::queue::Clock;
use sqlx::Row;

/// Seconds between two writes of a session's last use (a page load does not write each time).
const TOUCH_EVERY_MS: i64 = 30_000;

/// The session store.
#[derive(Clone)]
pub struct Sessions {
    db: Db,
    clock: Clock,
    idle_ms: i64,
    max_ms: i64,
}

/// A live session.
#[derive(Debug, Clone)]
pub struct Session {
    /// The hash of its id: how it is named in the database and on the "me" page.
    pub id_hash: String,
    /// Who.
    pub user: String,
    /// How they signed in (`password`, `ldap`, `oidc`).
    pub method: String,
    /// What they may do.
    pub roles: Vec<Role>,
    /// The token every form of this session carries.
    pub csrf: String,
    /// Signed in, ms since the epoch.
    pub created_ms: i64,
    /// Last request, ms since the epoch.
    pub seen_ms: i64,
    /// Ends at the latest, ms since the epoch.
    pub expires_ms: i64,
    /// Where the sign-in came from.
    pub address: Option<String>,
}

/// A new session: its cookie value (shown once) and what it is.
#[derive(Debug)]
pub struct Opened {
    /// The cookie's value.
    pub secret: String,
    /// The session.
    pub session: Session,
}

impl Sessions {
    /// Sessions in `db`, idle and absolute lifetimes in seconds.
    pub fn new(db: Db, clock: Clock, idle_s: u64, max_s: u64) -> Self {
        Self {
            db,
            clock,
            idle_ms: (idle_s * 1000) as i64,
            max_ms: (max_s * 1000) as i64,
        }
    }

    /// Opens a session for `user`.
    pub async fn open(
        &self,
        user: &str,
        method: &str,
        roles: &[Role],
        address: Option<String>,
    ) -> Result<Opened> {
        let now = (self.clock)();
        let secret = random_token();
        let session = Session {
            id_hash: hash_secret(&secret),
            user: user.to_owned(),
            method: method.to_owned(),
            roles: roles.to_vec(),
            csrf: random_token(),
            created_ms: now,
            seen_ms: now,
            expires_ms: now + self.max_ms,
            address,
        };
        let roles: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        sqlx::query(
            "INSERT INTO web_sessions (id_hash, user_name, method, roles, csrf, address, \
             created_ms, seen_ms, expires_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8)",
        )
        .bind(&session.id_hash)
        .bind(&session.user)
        .bind(&session.method)
        .bind(roles.join(" "))
        .bind(&session.csrf)
        .bind(&session.address)
        .bind(now)
        .bind(session.expires_ms)
        .execute(&self.db.pool)
        .await?;
        Ok(Opened { secret, session })
    }

    /// The live session a cookie names, noting its use; `None` when it is unknown, revoked,
    /// idle too long or past its end.
    pub async fn find(&self, secret: &str) -> Result<Option<Session>> {
        let now = (self.clock)();
        let row = sqlx::query(
            "SELECT id_hash, user_name, method, roles, csrf, created_ms, seen_ms, expires_ms, address \
             FROM web_sessions WHERE id_hash = $1 AND revoked_ms IS NULL",
        )
        .bind(hash_secret(secret))
        .fetch_optional(&self.db.read)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let s = session_of(&row)?;
        if now >= s.expires_ms || now >= s.seen_ms + self.idle_ms {
            return Ok(None);
        }
        if now >= s.seen_ms + TOUCH_EVERY_MS {
            sqlx::query("UPDATE web_sessions SET seen_ms = $1 WHERE id_hash = $2")
                .bind(now)
                .bind(&s.id_hash)
                .execute(&self.db.pool)
                .await?;
        }
        Ok(Some(s))
    }

    /// `user`'s live sessions, newest first.
    pub async fn of_user(&self, user: &str) -> Result<Vec<Session>> {
        let now = (self.clock)();
        let rows = sqlx::query(
            "SELECT id_hash, user_name, method, roles, csrf, created_ms, seen_ms, expires_ms, address \
             FROM web_sessions WHERE user_name = $1 AND revoked_ms IS NULL AND expires_ms > $2 \
             AND seen_ms > $3 ORDER BY created_ms DESC LIMIT 100",
        )
        .bind(user)
        .bind(now)
        .bind(now - self.idle_ms)
        .fetch_all(&self.db.read)
        .await?;
        rows.iter().map(session_of).collect()
    }

    /// Ends `user`'s session named by `id_hash` (a person ends only their own).
    pub async fn revoke(&self, user: &str, id_hash: &str) -> Result<()> {
        let done = sqlx::query(
            "UPDATE web_sessions SET revoked_ms = $1 WHERE id_hash = $2 AND user_name = $3 \
             AND revoked_ms IS NULL",
        )
        .bind((self.clock)())
        .bind(id_hash)
        .bind(user)
        .execute(&self.db.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found("no such session of yours"));
        }
        Ok(())
    }

    /// Forgets sessions that ended more than a day ago.
    pub async fn prune(&self) -> Result<u64> {
        let before = (self.clock)() - 86_400_000;
        let done = sqlx::query(
            "DELETE FROM web_sessions WHERE expires_ms < $1 OR seen_ms < $2 OR revoked_ms < $1",
        )
        .bind(before)
        .bind(before - self.idle_ms)
        .execute(&self.db.pool)
        .await?;
        Ok(done.rows_affected())
    }
}

fn session_of(row: &sqlx::any::AnyRow) -> Result<Session> {
    let roles: String = row.try_get(3)?;
    Ok(Session {
        id_hash: row.try_get(0)?,
        user: row.try_get(1)?,
        method: row.try_get(2)?,
        roles: roles.split_whitespace().filter_map(Role::parse).collect(),
        csrf: row.try_get(4)?,
        created_ms: row.try_get(5)?,
        seen_ms: row.try_get(6)?,
        expires_ms: row.try_get(7)?,
        address: row.try_get(8)?,
    })
}
