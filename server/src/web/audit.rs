//! The audit trail: who did what, from where, and how it ended. Sign-ins (both outcomes),
//! refusals and every action a person takes in the UI are recorded; administrators read it,
//! filter it and export it as CSV.

use crate::db::Db;
use crate::error::Result;
use crate::page::Page;
use crate::queue::Clock;
use idgard_protocol::AuditView;
use sqlx::Row;

/// How an audited event ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It was done.
    Done,
    /// It was refused (no right, bad token, wrong password...).
    Refused,
    /// It failed (the domain said no).
    Failed,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
        }
    }
}

/// One event to record.
#[derive(Debug, Clone, Default)]
pub struct Event<'a> {
    /// Who (absent: not signed in).
    pub user: Option<&'a str>,
    /// What: `signin`, `job.run`, `order.retry`...
    pub action: &'a str,
    /// On what (a job id, an agent's name...).
    pub target: Option<&'a str>,
    /// From where.
    pub address: Option<&'a str>,
    /// Why it was refused or failed, or what it did.
    pub detail: Option<&'a str>,
}

/// Which events to list.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this user's.
    pub user: Option<String>,
    /// Only actions starting with this (`signin`, `job.`).
    pub action: Option<String>,
    /// Only this outcome.
    pub outcome: Option<String>,
}

/// The trail.
#[derive(Clone)]
pub struct Audit {
    db: Db,
    clock: Clock,
}

impl Audit {
    /// The trail in `db`.
    pub fn new(db: Db, clock: Clock) -> Self {
        Self { db, clock }
    }

    /// Records agent `agent`'s answer to launch `id` (`accept`), and how it ended.
    pub async fn launch_answered(
        &self,
        agent: &str,
        id: &str,
        accept: bool,
        answered: &crate::error::Result<crate::queue::Launch>,
    ) {
        let (action, outcome, detail) = match answered {
            Ok(l) if accept => (
                "launch.accept",
                Outcome::Done,
                format!(
                    "launched by {}; run {}",
                    l.view.user,
                    l.view.job_id.unwrap_or(0)
                ),
            ),
            Ok(l) => (
                "launch.refuse",
                Outcome::Refused,
                format!(
                    "launched by {}: {}",
                    l.view.user,
                    l.view.reason.as_deref().unwrap_or("no reason given")
                ),
            ),
            Err(e) => ("launch.answer", Outcome::Failed, e.message.clone()),
        };
        let user = format!("agent:{agent}");
        let event = Event {
            user: Some(&user),
            action,
            target: Some(id),
            address: None,
            detail: Some(&detail),
        };
        self.record(event, outcome).await;
    }

    /// Records `event`. A failure to record is logged, never hides the answer to the request.
    pub async fn record(&self, event: Event<'_>, outcome: Outcome) {
        let r = sqlx::query(
            "INSERT INTO audit (at_ms, user_name, action, target, outcome, address, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind((self.clock)())
        .bind(event.user.map(no_nul))
        .bind(event.action)
        .bind(event.target.map(no_nul))
        .bind(outcome.as_str())
        .bind(event.address.map(no_nul))
        .bind(
            event
                .detail
                .map(|d| no_nul(d).chars().take(1000).collect::<String>()),
        )
        .execute(&self.db.pool)
        .await;
        if let Err(e) = r {
            tracing::error!(action = event.action, "cannot record an audit event: {e}");
        }
        tracing::info!(
            user = event.user.unwrap_or("-"),
            action = event.action,
            target = event.target.unwrap_or("-"),
            outcome = outcome.as_str(),
            detail = event.detail.unwrap_or(""),
            "audit"
        );
    }

    /// Events matching `filter`, newest first, paged by id (`after` = the last id seen).
    pub async fn list(&self, filter: &Filter, page: &Page) -> Result<Vec<AuditView>> {
        let rows = sqlx::query(
            "SELECT id, at_ms, user_name, action, target, outcome, address, detail FROM audit \
             WHERE ($1 IS NULL OR user_name = $1) AND ($2 IS NULL OR action LIKE $2) \
             AND ($3 IS NULL OR outcome = $3) AND ($4 IS NULL OR id < $4) \
             ORDER BY id DESC LIMIT $5",
        )
        .bind(filter.user.as_deref())
        .bind(
            filter
                .action
                .as_ref()
                .map(|a| format!("{}%", like_escape(a))),
        )
        .bind(filter.outcome.as_deref())
        .bind(page.after_id()?)
        .bind(page.sql_limit())
        .fetch_all(&self.db.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditView {
                    id: r.try_get(0)?,
                    at_ms: r.try_get(1)?,
                    user: r.try_get(2)?,
                    action: r.try_get(3)?,
                    target: r.try_get(4)?,
                    outcome: r.try_get(5)?,
                    address: r.try_get(6)?,
                    detail: r.try_get(7)?,
                })
            })
            .collect()
    }
}

/// `LIKE` treats `%` and `_` as wildcards: a filter means them literally.
fn like_escape(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, '%' | '_' | '\\'))
        .collect()
}

/// What a browser sent may hold NUL characters (`?error=%00`), which no database keeps in text:
/// the event is recorded with U+FFFD in their place rather than lost.
fn no_nul(s: &str) -> String {
    s.replace('\0', "\u{fffd}")
}
