//! Agents: creation with a one-time enrolment token, enrolment, client secrets, reports of
//! their connections, removal.

use crate::error::{Error, Result};
use crate::keys::{hash_secret, random_token};
use crate::queue::{Queue, valid_name};
use idgard_protocol::{
    AgentView, ConnectionReport, EnrolAnswer, Hello, NewAgentAnswer, RefusedConnection,
};
use sqlx::Row;

/// How long an enrolment token stays valid.
pub const ENROL_TTL_MS: i64 = 24 * 3600 * 1000;

/// Compares two equal-length strings in time that does not depend on where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// How stale an agent's `last_seen_ms` may grow while it polls or sends heartbeats.
pub const SEEN_EVERY_MS: i64 = 5_000;

impl Queue {
    /// Creates an agent and its one-time enrolment token.
    pub async fn add_agent(&self, name: &str) -> Result<NewAgentAnswer> {
        if !valid_name(name) {
            return Err(Error::invalid(format!(
                "agent name `{name}`: use 1 to 64 lower-case letters, digits, `-` and `_`"
            )));
        }
        let now = self.now();
        let token = random_token();
        let expires = now + ENROL_TTL_MS;
        let row = sqlx::query(
            "INSERT INTO agents (name, enrol_hash, enrol_expires_ms, created_ms) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING RETURNING id",
        )
        .bind(name)
        .bind(hash_secret(&token))
        .bind(expires)
        .bind(now)
        .fetch_optional(&self.db.pool)
        .await?;
        if row.is_none() {
            return Err(Error::conflict(format!(
                "an agent named `{name}` exists already (use `agent reset {name}` for a new enrolment token)"
            )));
        }
        Ok(NewAgentAnswer {
            agent: self.agent(name).await?,
            enrolment_token: token,
            expires_ms: expires,
        })
    }

    /// Gives an existing agent a new enrolment token. Its client secret and every access token
    /// issued to it stop working at once (the token generation moves on).
    pub async fn reset_agent(&self, name: &str) -> Result<NewAgentAnswer> {
        let now = self.now();
        let token = random_token();
        let expires = now + ENROL_TTL_MS;
        let done = sqlx::query(
            "UPDATE agents SET enrol_hash = $1, enrol_expires_ms = $2, secret_hash = NULL, \
                 token_gen = token_gen + 1 WHERE name = $3",
        )
        .bind(hash_secret(&token))
        .bind(expires)
        .bind(name)
        .execute(&self.db.pool)
        .await?
        .rows_affected();
        if done == 0 {
            return Err(Error::not_found(format!("no agent named `{name}`")));
        }
        Ok(NewAgentAnswer {
            agent: self.agent(name).await?,
            enrolment_token: token,
            expires_ms: expires,
        })
    }

    /// Trades a one-time enrolment token for a client secret.
    pub async fn enrol(&self, token: &str) -> Result<EnrolAnswer> {
        let secret = random_token();
        let row = sqlx::query(
            "UPDATE agents SET secret_hash = $1, enrol_hash = NULL, enrol_expires_ms = NULL \
             WHERE enrol_hash = $2 AND enrol_expires_ms > $3 RETURNING id, name",
        )
        .bind(hash_secret(&secret))
        .bind(hash_secret(token))
        .bind(self.now())
        .fetch_optional(&self.db.pool)
        .await?
        .ok_or_else(|| {
            Error::unauthorized(
                "this enrolment token is unknown, used already or expired: ask for a new one (`idgard-server agent reset <name>`)",
            )
        })?;
        let agent_id: i64 = row.try_get(0)?;
        let agent_name: String = row.try_get(1)?;
        tracing::info!(agent = %agent_name, "agent enrolled");
        Ok(EnrolAnswer {
            agent_id,
            agent_name,
            client_secret: secret,
            signing_key: None,
        })
    }

    /// Checks an agent's client secret; the agent's token generation.
    pub async fn check_secret(&self, agent: i64, secret: &str) -> Result<i64> {
        let row = sqlx::query("SELECT secret_hash, token_gen FROM agents WHERE id = $1")
            .bind(agent)
            .fetch_optional(&self.db.read)
            .await?;
        let stored = match row {
            Some(r) => Some((r.try_get::<Option<String>, _>(0)?, r.try_get::<i64, _>(1)?)),
            None => None,
        };
        match stored {
            Some((Some(hash), generation)) if same(&hash, &hash_secret(secret)) => Ok(generation),
            _ => Err(Error::unauthorized(
                "unknown agent or wrong client secret (enrol again if the agent was reset)",
            )),
        }
    }

    /// An agent's token generation (`None`: no such agent).
    pub async fn token_gen(&self, agent: i64) -> Result<Option<i64>> {
        let row = sqlx::query("SELECT token_gen FROM agents WHERE id = $1")
            .bind(agent)
            .fetch_optional(&self.db.read)
            .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    /// Records what an agent reported when it started or its connections changed.
    pub async fn hello(&self, agent: i64, hello: &Hello) -> Result<usize> {
        for c in &hello.connections {
            if !valid_name(&c.name) {
                return Err(Error::invalid(format!(
                    "connection name `{}`: use lower-case letters, digits, `-` and `_`",
                    c.name
                )));
            }
        }
        if hello.refused.len() > idgard_protocol::REFUSED_MAX {
            return Err(Error::invalid(format!(
                "a hello lists at most {} refused connection files",
                idgard_protocol::REFUSED_MAX
            )));
        }
        let refused: Vec<RefusedConnection> = hello
            .refused
            .iter()
            .map(|r| RefusedConnection {
                file: cut(&r.file, 255),
                reason: cut(&r.reason, idgard_protocol::REASON_MAX),
            })
            .collect();
        // A connector name no package can have is no reason to refuse the rest of the report.
        let wants: Vec<&String> = hello
            .wants
            .iter()
            .filter(|w| valid_name(w) && w.len() <= 64)
            .collect();
        if hello.wants.len() > idgard_protocol::REFUSED_MAX
            || hello.refused_packages.len() > idgard_protocol::REFUSED_MAX
        {
            return Err(Error::invalid(format!(
                "a hello lists at most {} connectors and refused packages",
                idgard_protocol::REFUSED_MAX
            )));
        }
        let refused_packages: Vec<idgard_protocol::RefusedPackage> = hello
            .refused_packages
            .iter()
            .map(|r| idgard_protocol::RefusedPackage {
                name: cut(&r.name, 64),
                version: cut(&r.version, 64),
                digest: cut(&r.digest, 64),
                code: cut(&r.code, 64),
                reason: cut(&r.reason, idgard_protocol::REASON_MAX),
            })
            .collect();
        self.check_ownership(agent, hello).await?;
        sqlx::query(
            "UPDATE agents SET connections = $1, version = $2, last_seen_ms = $3, refused = $5, \
             wants = $6, refused_packages = $7 WHERE id = $4",
        )
        .bind(serde_json::to_string(&hello.connections).map_err(anyhow::Error::from)?)
        .bind(&hello.version)
        .bind(self.now())
        .bind(agent)
        .bind(serde_json::to_string(&refused).map_err(anyhow::Error::from)?)
        .bind(serde_json::to_string(&wants).map_err(anyhow::Error::from)?)
        .bind(serde_json::to_string(&refused_packages).map_err(anyhow::Error::from)?)
        .execute(&self.db.pool)
        .await?;
        if hello.restarted {
            return self.release_agent(agent).await;
        }
        Ok(0)
    }

    /// A connection name is one system in the repository: it belongs to the one agent that
    /// reported it first. Another agent claiming it is refused, naming its owner.
    async fn check_ownership(&self, agent: i64, hello: &Hello) -> Result<()> {
        let rows = sqlx::query("SELECT name, connections FROM agents WHERE id <> $1")
            .bind(agent)
            .fetch_all(&self.db.read)
            .await?;
        for row in rows {
            let owner: String = row.try_get(0)?;
            let theirs: Vec<ConnectionReport> =
                serde_json::from_str(&row.try_get::<String, _>(1)?).unwrap_or_default();
            if let Some(c) = hello
                .connections
                .iter()
                .find(|c| theirs.iter().any(|t| t.name == c.name))
            {
                return Err(Error::conflict(format!(
                    "connection `{}` belongs to agent `{owner}`: a connection is served by one \
                     agent; rename this one, or remove it from `{owner}` first",
                    c.name
                )));
            }
        }
        Ok(())
    }

    /// Notes that an agent was heard from (a poll, a heartbeat): its `last_seen_ms` is written
    /// at most once per [`SEEN_EVERY_MS`] by this server, so that polls and heartbeats cost no
    /// write each.
    pub async fn seen(&self, agent: i64) -> Result<()> {
        let now = self.now();
        {
            let mut written = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if written
                .get(&agent)
                .is_some_and(|&at| now - at < SEEN_EVERY_MS)
            {
                return Ok(());
            }
            written.insert(agent, now);
        }
        sqlx::query("UPDATE agents SET last_seen_ms = $1 WHERE id = $2")
            .bind(now)
            .bind(agent)
            .execute(&self.db.pool)
            .await?;
        Ok(())
    }

    /// [`Queue::seen`] without waiting for it: a poll is not held up behind a busy writer.
    pub fn seen_later(&self, agent: i64) {
        let queue = self.clone();
        tokio::spawn(async move {
            if let Err(e) = queue.seen(agent).await {
                tracing::warn!(agent, "cannot note that the agent was heard from: {e}");
            }
        });
    }

    fn agent_view(row: &sqlx::any::AnyRow) -> Result<AgentView> {
        let connections: String = row.try_get(3)?;
        Ok(AgentView {
            id: row.try_get(0)?,
            name: row.try_get(1)?,
            enrolled: row.try_get::<Option<String>, _>(2)?.is_some(),
            last_seen_ms: row.try_get(4)?,
            connections: serde_json::from_str::<Vec<ConnectionReport>>(&connections)
                .unwrap_or_default(),
            refused: serde_json::from_str(&row.try_get::<String, _>(5)?).unwrap_or_default(),
            version: row.try_get(6)?,
            running: row.try_get::<i64, _>(7)?.max(0) as u64,
            refused_packages: serde_json::from_str(&row.try_get::<String, _>(8)?)
                .unwrap_or_default(),
        })
    }

    /// Removes an agent: its credentials end at once, its name is free again, the history of
    /// its jobs and tasks stays (under `name#id`). Refused while it has work not finished, which
    /// would otherwise wait for an agent that no longer exists.
    pub async fn remove_agent(&self, name: &str) -> Result<()> {
        let agent = self.agent(name).await?;
        let mut tx = self.begin().await?;
        let busy: i64 = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM jobs WHERE agent_id = $1 \
             AND state IN ('pending', 'running', 'blocked')) \
             + (SELECT COUNT(*) FROM tasks WHERE agent_id = $1 \
             AND state IN ('queued', 'claimed', 'running'))",
        )
        .bind(agent.id)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        if busy > 0 {
            return Err(Error::conflict(format!(
                "agent `{name}` has {busy} job(s) or task(s) not finished: cancel them first \
                 (`job list`, `job cancel ID`)"
            )));
        }
        sqlx::query(
            "UPDATE agents SET removed_ms = $1, name = name || '#' || CAST(id AS TEXT), \
             secret_hash = NULL, enrol_hash = NULL, enrol_expires_ms = NULL, connections = '[]', \
             token_gen = token_gen + 1 WHERE id = $2",
        )
        .bind(self.now())
        .bind(agent.id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::info!(agent = %name, "agent removed");
        Ok(())
    }

    /// One agent.
    pub async fn agent(&self, name: &str) -> Result<AgentView> {
        let row = sqlx::query(
            "SELECT id, name, secret_hash, connections, last_seen_ms, refused, version, \
             (SELECT COUNT(*) FROM tasks t WHERE t.state IN ('claimed', 'running') \
             AND t.agent_id = agents.id), refused_packages FROM agents WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.db.read)
        .await?
        .ok_or_else(|| Error::not_found(format!("no agent named `{name}`")))?;
        Self::agent_view(&row)
    }

    /// Agents by name, one page.
    pub async fn agents(&self, page: &crate::page::Page) -> Result<Vec<AgentView>> {
        sqlx::query(
            "SELECT id, name, secret_hash, connections, last_seen_ms, refused, version, \
             (SELECT COUNT(*) FROM tasks t WHERE t.state IN ('claimed', 'running') \
             AND t.agent_id = agents.id), refused_packages FROM agents \
             WHERE name > $1 AND removed_ms IS NULL ORDER BY name LIMIT $2",
        )
        .bind(page.after.as_deref().unwrap_or(""))
        .bind(page.sql_limit())
        .fetch_all(&self.db.read)
        .await?
        .iter()
        .map(Self::agent_view)
        .collect()
    }
}

/// At most `max` bytes of `s`, cut at a character boundary.
pub(crate) fn cut(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}
