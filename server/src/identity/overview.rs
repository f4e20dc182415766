//! The repository at a glance, for the dashboard and its API: counts, what needs someone, the
//! connections and the declared jobs. Each figure is one grouped query over an index.

use super::Engine;
use crate::error::Result;
use crate::page::Page;
use idgard_protocol::{
    Attention, ConnectionView, DeclaredJobView, EntryView, JobState, Overview, PAGE_MAX,
};
use sqlx::Row;

/// An agent not heard from for this long is shown offline.
pub const ONLINE_MS: i64 = 120_000;

/// Whether `a` was heard from within [`ONLINE_MS`] of `now`.
pub fn online(a: &idgard_protocol::AgentView, now: i64) -> bool {
    a.last_seen_ms.is_some_and(|s| s > now - ONLINE_MS)
}

impl Engine {
    /// Counts and the "needs attention" list.
    pub async fn overview(&self) -> Result<Overview> {
        let db = &self.queue.db.read;
        let now = self.queue.now();
        let mut o = Overview::default();
        if let Some(rules) = &self.rules {
            o.identities = sqlx::query(
                "SELECT COUNT(*) FROM entries WHERE connection = $1 AND entity_type = $2 \
                 AND valid_to IS NULL",
            )
            .bind(&rules.identities.connection)
            .bind(&rules.identities.entity_type)
            .fetch_one(db)
            .await?
            .try_get::<i64, _>(0)? as u64;
        }
        for r in sqlx::query(
            "SELECT connection, situation, COUNT(*) FROM links GROUP BY connection, situation \
             ORDER BY connection, situation",
        )
        .fetch_all(db)
        .await?
        {
            o.accounts
                .push((r.try_get(0)?, r.try_get(1)?, r.try_get::<i64, _>(2)? as u64));
        }
        for r in sqlx::query(
            "SELECT state, COUNT(*) FROM jobs WHERE created_ms > $1 GROUP BY state ORDER BY state",
        )
        .bind(now - 86_400_000)
        .fetch_all(db)
        .await?
        {
            o.runs_24h
                .push((r.try_get(0)?, r.try_get::<i64, _>(1)? as u64));
        }
        for r in sqlx::query(
            "SELECT state, COUNT(*) FROM orders WHERE state IN ('waiting', 'pending', 'sent', \
             'retry', 'failed') GROUP BY state ORDER BY state",
        )
        .fetch_all(db)
        .await?
        {
            o.orders
                .push((r.try_get(0)?, r.try_get::<i64, _>(1)? as u64));
        }
        let agents = self.queue.agents(&Page::first(PAGE_MAX)).await?;
        o.agents = agents.len() as u64;
        o.agents_online = agents.iter().filter(|a| online(a, now)).count() as u64;
        o.attention = self.attention(&o, &agents, now).await?;
        Ok(o)
    }

    async fn attention(
        &self,
        o: &Overview,
        agents: &[idgard_protocol::AgentView],
        now: i64,
    ) -> Result<Vec<Attention>> {
        let db = &self.queue.db.read;
        let mut out = Vec::new();
        for r in sqlx::query(
            "SELECT id, name FROM jobs WHERE state = 'blocked' ORDER BY id DESC LIMIT 20",
        )
        .fetch_all(db)
        .await?
        {
            let id: i64 = r.try_get(0)?;
            out.push(Attention {
                kind: "blocked-run".into(),
                text: format!(
                    "Run {id} of {} waits for approval",
                    r.try_get::<String, _>(1)?
                ),
                link: format!("/runs/{id}"),
            });
        }
        if let Some((_, n)) = o.orders.iter().find(|(s, _)| s == "failed") {
            out.push(Attention {
                kind: "failed-orders".into(),
                text: format!("{n} orders failed for good"),
                link: "/orders?state=failed".into(),
            });
        }
        for (connection, situation, n) in &o.accounts {
            if situation == "unlinked" || situation == "unmatched" {
                out.push(Attention {
                    kind: "accounts-to-review".into(),
                    text: format!("{n} {situation} accounts in {connection}"),
                    link: format!("/connections/{connection}?situation={situation}"),
                });
            }
        }
        for r in sqlx::query(
            "SELECT id, job_id FROM tasks WHERE state = 'lost' ORDER BY id DESC LIMIT 20",
        )
        .fetch_all(db)
        .await?
        {
            let id: i64 = r.try_get(0)?;
            let job: Option<i64> = r.try_get(1)?;
            out.push(Attention {
                kind: "lost-task".into(),
                text: format!("Task {id} was lost with its agent: check what it did"),
                link: job.map_or("/jobs".into(), |j| format!("/runs/{j}")),
            });
        }
        for a in agents.iter().filter(|a| a.enrolled && !online(a, now)) {
            out.push(Attention {
                kind: "offline-agent".into(),
                text: format!("Agent {} is offline", a.name),
                link: "/agents".into(),
            });
        }
        Ok(out)
    }

    /// Identities whose key starts with `prefix`, by key.
    pub async fn search_identities(&self, prefix: &str, page: &Page) -> Result<Vec<EntryView>> {
        let Some(rules) = &self.rules else {
            return Ok(Vec::new());
        };
        let source = &rules.identities.connection;
        // Keys from `prefix` up to the last string starting with it: a range over the index.
        let upper = format!("{prefix}\u{10FFFF}");
        let after = page.after.as_deref().unwrap_or("");
        let from = if after >= prefix { after } else { prefix };
        let rows = sqlx::query(
            "SELECT entity_type, key, attrs, valid_from FROM entries WHERE connection = $1 \
             AND entity_type = $2 AND valid_to IS NULL AND key >= $3 AND key > $4 AND key < $5 \
             ORDER BY key LIMIT $6",
        )
        .bind(source)
        .bind(&rules.identities.entity_type)
        .bind(from)
        .bind(after)
        .bind(&upper)
        .bind(page.sql_limit())
        .fetch_all(&self.queue.db.read)
        .await?;
        rows.iter().map(super::search::identity_found).collect()
    }

    /// Every connection the rules, the agents or the repository name.
    pub async fn connections(&self) -> Result<Vec<ConnectionView>> {
        let db = &self.queue.db.read;
        let mut by_name = std::collections::BTreeMap::<String, ConnectionView>::new();
        let blank = |name: &str| ConnectionView {
            name: name.to_owned(),
            agent: None,
            connector: None,
            role: None,
            entries: 0,
            last_sync_ms: None,
            last_sync_mode: None,
            last_sync_report: None,
        };
        if let Some(rules) = &self.rules {
            by_name
                .entry(rules.identities.connection.clone())
                .or_insert_with(|| blank(&rules.identities.connection))
                .role = Some("source".into());
            for t in &rules.targets {
                by_name
                    .entry(t.connection.clone())
                    .or_insert_with(|| blank(&t.connection))
                    .role = Some("target".into());
            }
        }
        for a in self.queue.agents(&Page::first(PAGE_MAX)).await? {
            for c in &a.connections {
                let v = by_name
                    .entry(c.name.clone())
                    .or_insert_with(|| blank(&c.name));
                v.agent = Some(a.name.clone());
                v.connector = Some(format!("{} {}", c.connector, c.version));
            }
        }
        for r in sqlx::query(
            "SELECT connection, COUNT(*) FROM entries WHERE valid_to IS NULL GROUP BY connection",
        )
        .fetch_all(db)
        .await?
        {
            let name: String = r.try_get(0)?;
            by_name
                .entry(name.clone())
                .or_insert_with(|| blank(&name))
                .entries = r.try_get::<i64, _>(1)? as u64;
        }
        for v in by_name.values_mut() {
            if let Some(r) = sqlx::query(
                "SELECT created_ms, mode, report FROM syncs WHERE connection = $1 \
                 ORDER BY id DESC LIMIT 1",
            )
            .bind(&v.name)
            .fetch_optional(db)
            .await?
            {
                v.last_sync_ms = Some(r.try_get(0)?);
                v.last_sync_mode = Some(r.try_get(1)?);
                v.last_sync_report = serde_json::from_str(&r.try_get::<String, _>(2)?).ok();
            }
        }
        Ok(by_name.into_values().collect())
    }

    /// The jobs the rules declare, with their next firing and their last run.
    pub async fn declared_jobs(&self) -> Result<Vec<DeclaredJobView>> {
        let Some(rules) = &self.rules else {
            return Ok(Vec::new());
        };
        let db = &self.queue.db.read;
        let mut out = Vec::new();
        for def in &rules.jobs {
            let next: Option<i64> =
                sqlx::query("SELECT MIN(next_ms) FROM schedules WHERE name = $1 OR name = $2")
                    .bind(format!("{}:complete", def.name))
                    .bind(format!("{}:incremental", def.name))
                    .fetch_one(db)
                    .await?
                    .try_get(0)?;
            let last = sqlx::query(
                "SELECT id, state FROM jobs WHERE definition = $1 ORDER BY id DESC LIMIT 1",
            )
            .bind(&def.name)
            .fetch_optional(db)
            .await?;
            let last_run = match last {
                Some(r) => {
                    let state: String = r.try_get(1)?;
                    JobState::parse(&state).map(|s| (r.try_get::<i64, _>(0).unwrap_or(0), s))
                }
                None => None,
            };
            out.push(DeclaredJobView {
                name: def.name.clone(),
                connections: def.connections.clone(),
                schedule: def.schedule.as_ref().map(|s| s.cron.clone()),
                incremental_schedule: def.incremental_schedule.as_ref().map(|s| s.cron.clone()),
                next_ms: next,
                last_run,
            });
        }
        Ok(out)
    }
}
