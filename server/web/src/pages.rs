//! One model per page. Each holds the [`Chrome`] and what its template shows; the server fills
//! them from domain values and renders them.

use crate::Chrome;
use crate::diff::{Change, Step};
use askama::Template;
use idgard_protocol::{
    AgentView, AuditView, ConnectionReport, ConnectionView, DeclaredJobView, EntryView,
    IdentityView, JobView, LaunchState, LaunchView, LogLine, OrderView, Overview,
};

/// The sign-in page: one form or button per configured method.
#[derive(Template)]
#[template(path = "signin.html")]
pub struct SignIn<'a> {
    /// Around it.
    pub chrome: &'a Chrome,
    /// The development password is on.
    pub password: bool,
    /// LDAP sign-in is on.
    pub ldap: bool,
    /// The OIDC button's label, when OIDC is on.
    pub oidc: Option<String>,
    /// Why the last attempt failed.
    pub error: Option<String>,
    /// Where to go once signed in.
    pub next: String,
}

/// One of the user's sessions.
#[derive(Debug, Clone)]
pub struct SessionRow {
    /// The hash naming it.
    pub id: String,
    /// How it signed in.
    pub method: String,
    /// Signed in, ms.
    pub created_ms: i64,
    /// Last request, ms.
    pub seen_ms: i64,
    /// From where.
    pub address: String,
    /// The session showing this page.
    pub current: bool,
}

/// "Me": who I am, my roles, my sessions.
#[derive(Template)]
#[template(path = "me.html")]
pub struct Me<'a> {
    /// Around it.
    pub chrome: &'a Chrome,
    /// How this session signed in.
    pub method: String,
    /// Live sessions.
    pub sessions: Vec<SessionRow>,
}

/// The dashboard.
#[derive(Template)]
#[template(path = "dashboard.html")]
pub struct Dashboard<'a> {
    /// Around it.
    pub chrome: &'a Chrome,
    /// The figures.
    pub o: Overview,
    /// When they were taken, ms since the epoch.
    pub taken_ms: i64,
}

/// An identity in a search result.
#[derive(Debug, Clone)]
pub struct IdentityRow {
    /// Its key.
    pub key: String,
    /// A few of its attributes.
    pub summary: String,
}

/// Identity search.
#[derive(Template)]
#[template(path = "identities.html")]
pub struct Identities<'a> {
    /// Around it.
    pub chrome: &'a Chrome,
    /// The prefix searched.
    pub q: String,
    /// What matched by key.
    pub rows: Vec<IdentityRow>,
    /// The attribute identities are also searched by, if the rules name one.
    pub search: Option<String>,
    /// What matched by that attribute (first page only).
    pub by_name: Vec<IdentityRow>,
    /// There may be more name matches than shown.
    pub names_capped: bool,
    /// The key to page on from, when there is more.
    pub next: Option<String>,
}

/// One identity.
#[derive(Template)]
#[template(path = "identity.html")]
pub struct Identity<'a> {
    /// Around it.
    pub chrome: &'a Chrome,
    /// What it is and has.
    pub v: IdentityView,
    /// Its history, newest first.
    pub timeline: Vec<Step>,
}

/// The connections.
#[derive(Template)]
#[template(path = "connections.html")]
pub struct Connections<'a> {
    /// Around it.
    pub chrome: &'a Chrome,
    /// Them.
    pub rows: Vec<ConnectionView>,
    /// When their figures were taken, ms since the epoch.
    pub taken_ms: i64,
}

/// One connection's entries.
#[derive(Template)]
#[template(path = "connection.html")]
pub struct Connection<'a> {
    /// Around it.
    pub chrome: &'a Chrome,
    /// What it is.
    pub c: ConnectionView,
    /// The situation filtered on (empty: all).
    pub situation: String,
    /// The situations to choose from.
    pub situations: Vec<&'static str>,
    /// Entries.
    pub rows: Vec<EntryView>,
    /// The key to page on from.
    pub next: Option<String>,
}

/// One entry and its history.
#[derive(Template)]
#[template(path = "entry.html")]
pub struct Entry<'a> {
    /// Around it.
    pub chrome: &'a Chrome,
    /// Its connection.
    pub connection: String,
    /// It.
    pub e: EntryView,
    /// Its history, newest first.
    pub timeline: Vec<Step>,
}

/// Declared jobs and recent runs.
#[derive(Template)]
#[template(path = "jobs.html")]
pub struct Jobs<'a> {
    /// Around it.
    pub chrome: &'a Chrome,
    /// The declared jobs.
    pub declared: Vec<DeclaredJobView>,
    /// Recent runs, newest first.
    pub runs: Vec<JobView>,
    /// The id to page on from.
    pub next: Option<String>,
}

/// A task of a run, as its row shows it.
#[derive(Debug, Clone)]
pub struct TaskRow {
    /// Id.
    pub id: i64,
    /// Operation.
    pub operation: String,
    /// Connection.
    pub connection: String,
    /// State.
    pub state: String,
    /// Attempts, `1/3`.
    pub attempts: String,
    /// Units done.
    pub done: u64,
    /// Units in all, if known.
    pub total: Option<u64>,
    /// Percent, if the total is known.
    pub percent: Option<u64>,
    /// The last error.
    pub error: String,
    /// The result, as figures and samples.
    pub result: crate::report::Report,
}

/// One run: its steps, tasks, progress, log tail, and what may be done to it.
#[derive(Template)]
#[template(path = "run.html")]
pub struct Run<'a> {
    /// Around it.
    pub chrome: &'a Chrome,
    /// It.
    pub job: JobView,
    /// Its tasks.
    pub tasks: Vec<TaskRow>,
    /// Why it is blocked (empty while it is not).
    pub blocked: crate::report::Report,
    /// The log's last lines (of its latest task).
    pub log: Vec<LogLine>,
    /// The person may cancel it now.
    pub can_cancel: bool,
    /// The person may approve it now.
    pub can_approve: bool,
    /// Why the person may not approve it, when they are an approver.
    pub no_approve: String,
    /// It is not over: the page follows it live.
    pub live: bool,
}

/// A run launched from the browser, while its agent answers.
#[derive(Template)]
#[template(path = "launch.html")]
pub struct Launch<'a> {
    /// Around it.
    pub chrome: &'a Chrome,
    /// It.
    pub l: LaunchView,
    /// Still waiting for the agent: the page reloads itself.
    pub pending: bool,
    /// How long the agent had to answer, in seconds.
    pub ttl_s: i64,
}

/// A connection as its agent reported it, with its connector.
#[derive(Debug, Clone)]
pub struct ConnectorRow {
    /// The agent.
    pub agent: String,
    /// What the agent reported.
    pub report: ConnectionReport,
}

/// Connectors: what each asks for beside what its connection grants.
#[derive(Template)]
#[template(path = "connectors.html")]
pub struct Connectors<'a> {
    /// Around it.
    pub chrome: &'a Chrome,
    /// One per connection.
    pub rows: Vec<ConnectorRow>,
}

/// Runs waiting for approval.
#[derive(Template)]
#[template(path = "approvals.html")]
pub struct Approvals<'a> {
    /// Around it.
    pub chrome: &'a Chrome,
    /// The blocked runs, with their reason, pretty.
    pub runs: Vec<(JobView, String)>,
}

/// The filters of the orders page.
#[derive(Debug, Clone, Default)]
pub struct OrderFilters {
    /// Run id.
    pub job: String,
    /// Connection.
    pub connection: String,
    /// State.
    pub state: String,
    /// Identity.
    pub identity: String,
    /// Kind.
    pub kind: String,
}

/// Orders.
#[derive(Template)]
#[template(path = "orders.html")]
pub struct Orders<'a> {
    /// Around it.
    pub chrome: &'a Chrome,
    /// What it is filtered on.
    pub f: OrderFilters,
    /// The states to choose from.
    pub states: Vec<&'static str>,
    /// The kinds to choose from.
    pub kinds: Vec<&'static str>,
    /// Them.
    pub rows: Vec<OrderView>,
    /// The id to page on from.
    pub next: Option<String>,
    /// What the last action did.
    pub notice: Option<String>,
}

/// One order.
#[derive(Template)]
#[template(path = "order.html")]
pub struct Order<'a> {
    /// Around it.
    pub chrome: &'a Chrome,
    /// It.
    pub o: OrderView,
    /// Per attribute: the account's current values → what the order writes.
    pub changes: Vec<Change>,
}

/// A token just made for an agent, shown once.
#[derive(Debug, Clone)]
pub struct Enrolment {
    /// The agent.
    pub agent: String,
    /// The token.
    pub token: String,
    /// The command that enrols with it.
    pub command: String,
}

/// Agents.
#[derive(Template)]
#[template(path = "agents.html")]
pub struct Agents<'a> {
    /// Around it.
    pub chrome: &'a Chrome,
    /// Them.
    pub rows: Vec<AgentView>,
    /// Online window, ms.
    pub online_ms: i64,
    /// A token just made.
    pub enrolment: Option<Enrolment>,
}

/// The filters of the audit trail.
#[derive(Debug, Clone, Default)]
pub struct AuditFilters {
    /// User.
    pub user: String,
    /// Action prefix.
    pub action: String,
    /// Outcome.
    pub outcome: String,
}

/// The audit trail.
#[derive(Template)]
#[template(path = "audit.html")]
pub struct Audit<'a> {
    /// Around it.
    pub chrome: &'a Chrome,
    /// What it is filtered on.
    pub f: AuditFilters,
    /// Events, newest first.
    pub rows: Vec<AuditView>,
    /// The id to page on from.
    pub next: Option<String>,
    /// The CSV export's address with these filters.
    pub csv: String,
}

/// An error, a refusal, a missing page.
#[derive(Template)]
#[template(path = "problem.html")]
pub struct Problem<'a> {
    /// Around it.
    pub chrome: &'a Chrome,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong, in a few words.
    pub title: String,
    /// What to do about it.
    pub message: String,
}

impl Agents<'_> {
    /// Whether `a` was heard from within the online window.
    pub fn online(&self, a: &AgentView) -> bool {
        a.last_seen_ms
            .is_some_and(|s| s > self.chrome.now_ms - self.online_ms)
    }
}
