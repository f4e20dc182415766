//! The administrator tokens of the API: created (shown once, stored as SHA-256), listed by a
//! short id (a prefix of their hash, which reveals nothing of the token), revoked, expired.

use crate::error::{Error, Result};
use crate::keys::{hash_secret, random_token};
use crate::page::Page;
use crate::queue::Queue;
use idgard_protocol::{AdminTokenView, NewAdminToken, NewAdminTokenAnswer};
use sqlx::Row;

/// Hex digits of a token's hash shown as its id.
const ID_LEN: usize = 12;
/// Fewest hex digits that name a token when revoking it.
const ID_MIN: usize = 8;
/// Longest validity a token may be given (a longer-lived token is one with no expiry).
const MAX_TTL_S: u64 = 10 * 366 * 86_400;

impl Queue {
    /// Creates an administrator token when none exists yet; returns it (shown once).
    pub async fn first_admin_token(&self) -> Result<Option<String>> {
        let count: i64 = sqlx::query("SELECT COUNT(*) FROM admin_tokens")
            .fetch_one(&self.db.pool)
            .await?
            .try_get(0)?;
        if count > 0 {
            return Ok(None);
        }
        let first = NewAdminToken {
            name: Some("first".into()),
            expires_in_s: None,
        };
        Ok(Some(self.create_admin_token(&first).await?.token))
    }

    /// Creates an administrator token without a name or an expiry.
    pub async fn new_admin_token(&self) -> Result<String> {
        Ok(self
            .create_admin_token(&NewAdminToken::default())
            .await?
            .token)
    }

    /// Creates an administrator token.
    pub async fn create_admin_token(&self, req: &NewAdminToken) -> Result<NewAdminTokenAnswer> {
        if let Some(name) = &req.name
            && (name.is_empty() || name.len() > 100 || name.chars().any(char::is_control))
        {
            return Err(Error::invalid(
                "a token's name is 1 to 100 characters, none of them control characters",
            ));
        }
        let now = self.now();
        let expires_ms = match req.expires_in_s {
            None => None,
            Some(s) if (1..=MAX_TTL_S).contains(&s) => Some(now + s as i64 * 1000),
            Some(s) => {
                return Err(Error::invalid(format!(
                    "expires_in_s={s}: from 1 s to 10 years (none: no expiry)"
                )));
            }
        };
        let token = random_token();
        let hash = hash_secret(&token);
        sqlx::query(
            "INSERT INTO admin_tokens (hash, created_ms, name, expires_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(&hash)
        .bind(now)
        .bind(req.name.as_deref())
        .bind(expires_ms)
        .execute(&self.db.pool)
        .await?;
        Ok(NewAdminTokenAnswer {
            token,
            view: AdminTokenView {
                id: hash[..ID_LEN].to_owned(),
                name: req.name.clone(),
                created_ms: now,
                expires_ms,
            },
        })
    }

    /// Administrator tokens by id.
    pub async fn admin_tokens(&self, page: &Page) -> Result<Vec<AdminTokenView>> {
        let rows = sqlx::query(
            "SELECT hash, name, created_ms, expires_ms FROM admin_tokens WHERE hash > $1 \
             ORDER BY hash LIMIT $2",
        )
        .bind(page.after.as_deref().unwrap_or(""))
        .bind(page.sql_limit())
        .fetch_all(&self.db.read)
        .await?;
        rows.iter()
            .map(|r| {
                let hash: String = r.try_get(0)?;
                Ok(AdminTokenView {
                    id: hash[..ID_LEN.min(hash.len())].to_owned(),
                    name: r.try_get(1)?,
                    created_ms: r.try_get(2)?,
                    expires_ms: r.try_get(3)?,
                })
            })
            .collect()
    }

    /// Revokes the administrator token whose id starts with `id`: it stops working at once.
    pub async fn revoke_admin_token(&self, id: &str) -> Result<AdminTokenView> {
        if id.len() < ID_MIN || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::invalid(format!(
                "`{id}` is not a token id: give at least {ID_MIN} of the hex digits `admin-token list` shows"
            )));
        }
        let id = id.to_ascii_lowercase();
        let found = self
            .admin_tokens(&Page {
                after: Some(id.clone()),
                limit: 2,
            })
            .await?;
        // `after` is exclusive, and an exact hash cannot be given: every match sorts after `id`.
        let matching: Vec<_> = found
            .into_iter()
            .filter(|t| t.id.starts_with(&id))
            .collect();
        let token = match matching.as_slice() {
            [] => return Err(Error::not_found(format!("no administrator token `{id}`"))),
            [one] => one.clone(),
            _ => {
                return Err(Error::invalid(format!(
                    "`{id}` names more than one token: give more digits"
                )));
            }
        };
        sqlx::query("DELETE FROM admin_tokens WHERE hash LIKE $1")
            .bind(format!("{}%", token.id))
            .execute(&self.db.pool)
            .await?;
        tracing::info!(token = %token.id, "administrator token revoked");
        Ok(token)
    }

    /// Whether an administrator token is valid (known, not expired).
    pub async fn check_admin(&self, token: &str) -> Result<String> {
        let found = sqlx::query("SELECT expires_ms, name FROM admin_tokens WHERE hash = $1")
            .bind(hash_secret(token))
            .fetch_optional(&self.db.read)
            .await?;
        let found = match found {
            Some(r) => Some((
                r.try_get::<Option<i64>, _>(0)?,
                r.try_get::<Option<String>, _>(1)?
                    .unwrap_or_else(|| "administrator".into()),
            )),
            None => None,
        };
        match found {
            Some((None, name)) => Ok(name),
            Some((Some(at), name)) if at > self.now() => Ok(name),
            Some((Some(_), _)) => Err(Error::unauthorized("this administrator token has expired")),
            None => Err(Error::unauthorized("invalid administrator token")),
        }
    }
}
