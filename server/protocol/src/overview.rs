//! What the dashboard and the lists of connections and declared jobs show, as the API serves it.

use serde::{Deserialize, Serialize};

/// `GET /api/v1/overview`: the state of the whole at a glance.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Overview {
    /// Identities present in the source.
    pub identities: u64,
    /// Accounts per target connection and situation: (connection, situation, count).
    pub accounts: Vec<(String, String, u64)>,
    /// Runs created in the last 24 hours, by state: (state, count).
    pub runs_24h: Vec<(String, u64)>,
    /// Orders by state, for the states that need a look or are under way: (state, count).
    pub orders: Vec<(String, u64)>,
    /// Agents seen within the online window, and all agents.
    pub agents_online: u64,
    /// All agents.
    pub agents: u64,
    /// What needs someone, most urgent first.
    pub attention: Vec<Attention>,
}

/// One thing that needs someone.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Attention {
    /// `blocked-run`, `failed-orders`, `accounts-to-review`, `lost-task`, `offline-agent`.
    pub kind: String,
    /// What, in a sentence.
    pub text: String,
    /// Where to look (a UI path).
    pub link: String,
}

/// `GET /api/v1/connections`: a connection as the repository knows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConnectionView {
    /// Its name.
    pub name: String,
    /// The agent that reported it, if one did.
    pub agent: Option<String>,
    /// The connector it runs, as the agent reported it.
    pub connector: Option<String>,
    /// `source`, `target`, or absent (named by no rule).
    pub role: Option<String>,
    /// Current entries held.
    pub entries: u64,
    /// The last synchronisation: when (ms), its mode and its report.
    pub last_sync_ms: Option<i64>,
    /// Its mode (`complete`, `incremental`).
    pub last_sync_mode: Option<String>,
    /// Its report.
    pub last_sync_report: Option<serde_json::Value>,
}

/// `GET /api/v1/declared-jobs`: a job the rules declare, its schedules and its last run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeclaredJobView {
    /// Its name.
    pub name: String,
    /// The connections it exports.
    pub connections: Vec<String>,
    /// The complete runs' schedule (cron), if any.
    pub schedule: Option<String>,
    /// The incremental runs' schedule, if any.
    pub incremental_schedule: Option<String>,
    /// When a schedule fires next, ms since the epoch.
    pub next_ms: Option<i64>,
    /// Its last run: id and state.
    pub last_run: Option<(i64, crate::JobState)>,
}

/// `GET /api/v1/audit`: one event of the audit trail.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditView {
    /// Its id (the trail pages by it, newest first).
    pub id: i64,
    /// When, ms since the epoch.
    pub at_ms: i64,
    /// Who (absent: nobody signed in).
    pub user: Option<String>,
    /// What: `signin.password`, `job.run`, `order.retry`...
    pub action: String,
    /// On what.
    pub target: Option<String>,
    /// `done`, `refused` or `failed`.
    pub outcome: String,
    /// From where.
    pub address: Option<String>,
    /// Why, or what it did.
    pub detail: Option<String>,
}
