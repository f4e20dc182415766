//! Tasks: specs, arguments and results, states, polls, heartbeats, logs, uploads, completions.

use crate::*;
use serde::{Deserialize, Serialize};

/// What a task asks of an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Operation {
    /// Export a connection's entries (full or incremental); the result is an upload.
    Export,
    /// Carry out orders on a connection.
    Fulfill,
    /// Check that a connection's system can be reached.
    TestConnection,
    /// Read a connection's schema.
    Schema,
    /// Nothing: the agent completes it at once (health checks, benchmarks).
    Noop,
    /// Bring the job's export of a connection into the repository. Runs on the server, started
    /// by the agent that owns the job (`POST /api/v1/agent/tasks/{id}/run`).
    Synchronize,
    /// Compute a target connection's provisioning orders. Runs on the server, like
    /// `synchronize`.
    Provision,
}

impl Operation {
    /// Whether running the task again after a lost agent is harmless. A fulfil that may have
    /// half-run is not repeated by the queue: it is marked lost for someone to look at.
    pub fn repeat_safe(self) -> bool {
        !matches!(self, Operation::Fulfill)
    }

    /// Whether the server does the work (the agent only starts it and holds the lease).
    pub fn on_server(self) -> bool {
        matches!(self, Operation::Synchronize | Operation::Provision)
    }

    /// What its progress counts, for people (`1200/5000 entries`).
    pub fn unit(self) -> &'static str {
        match self {
            Operation::Export | Operation::Synchronize => "entries",
            Operation::Fulfill => "orders",
            Operation::Provision => "identities",
            Operation::TestConnection | Operation::Schema | Operation::Noop => "steps",
        }
    }

    /// Its name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Export => "export",
            Operation::Fulfill => "fulfill",
            Operation::TestConnection => "test-connection",
            Operation::Schema => "schema",
            Operation::Noop => "noop",
            Operation::Synchronize => "synchronize",
            Operation::Provision => "provision",
        }
    }

    /// Parses an API name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "export" => Operation::Export,
            "fulfill" => Operation::Fulfill,
            "test-connection" => Operation::TestConnection,
            "schema" => Operation::Schema,
            "noop" => Operation::Noop,
            "synchronize" => Operation::Synchronize,
            "provision" => Operation::Provision,
            _ => return None,
        })
    }
}

/// A task's arguments, typed: what its operation is asked. They travel and are stored as the JSON
/// object of [`TaskSpec::args`] and [`Assignment::args`]; absent fields are false or none, and
/// unknown fields are refused when the task is created (a typo must not silently do nothing).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct TaskArgs {
    /// Export: only what changed since the saved cursor. Synchronize: the upload is incremental.
    pub incremental: bool,
    /// Export: the position to start from, set by the server when it hands out an incremental
    /// export (the cursor of the last export it synchronized of the connection).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<model::Cursor>,
    /// Fulfil: the orders to carry out (a task made by hand).
    pub orders: Option<Vec<model::Order>>,
    /// Fulfil: the orders the server holds for the task (the pipeline's fulfil); they carry ids
    /// and converge when repeated, so such a task is safe to run again.
    pub server_orders: bool,
    /// Synchronize outside a job: the upload to read.
    pub upload_id: Option<i64>,
    /// Provision: every identity (a complete run), not only those that changed.
    pub complete: bool,
    /// Synchronize: count what would change and keep nothing. Provision: compute the orders as
    /// if the job's exports were synchronized, keep only those orders (`dry`, never sent).
    pub dry_run: bool,
    /// Synchronize or provision: a tripped threshold was approved.
    pub approved: bool,
}

impl TaskArgs {
    /// Reads a task's `args` (`null` is no arguments).
    pub fn parse(args: &serde_json::Value) -> Result<Self, String> {
        if args.is_null() {
            return Ok(Self::default());
        }
        Self::deserialize(args).map_err(|e| format!("task arguments: {e}"))
    }

    /// Reads stored `args` text; what cannot be read counts as no arguments.
    pub fn parse_stored(text: &str) -> Self {
        serde_json::from_str(text).unwrap_or_default()
    }
}

/// An export task's result (its `result` JSON): what the connector exported, and the upload of
/// its entries, which the agent fills in once the upload is complete. Read leniently: results
/// written by hand or by older agents may carry only some fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct ExportResult {
    /// The upload holding the entries (required when the task completes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload_id: Option<i64>,
    /// Entries exported.
    pub entries: u64,
    /// Source records the connector could not read.
    pub rejected: u64,
    /// Batches.
    pub batches: u64,
    /// Bytes of entries.
    pub bytes: u64,
    /// The connector's peak linear memory, in bytes.
    pub peak_memory: u64,
    /// Whether the export was incremental.
    pub incremental: bool,
    /// Where the next incremental export starts, if the connector gave a position. The server
    /// keeps it once this export is synchronized, and hands it to the next incremental export.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<model::Cursor>,
}

impl ExportResult {
    /// Reads a task's result; `None` when it is not an object of these fields.
    pub fn parse(result: &serde_json::Value) -> Option<Self> {
        Self::deserialize(result).ok()
    }

    /// The result as stored and sent.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("an export result serialises")
    }
}

/// A task to create (alone, or as part of a job step).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// The connection it runs on (empty for `noop`).
    #[serde(default)]
    pub connection: String,
    /// What to do.
    pub operation: Operation,
    /// Operation arguments: `{"incremental": true}` for an export, `{"orders": [...]}` for a
    /// fulfil.
    #[serde(default)]
    pub args: serde_json::Value,
    /// Attempts before the task fails for good (default 3).
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Longest run, in seconds, once started (default 3600).
    #[serde(default)]
    pub timeout_s: Option<u64>,
    /// In a job, the agent that runs it when not the job's own (a job over connections of
    /// several agents: each task goes to the agent of its connection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
}

/// `POST /api/v1/tasks`: tasks outside any job, for one agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewTasks {
    /// The agent's name.
    pub agent: String,
    /// The tasks (at most 10,000).
    #[cfg_attr(feature = "openapi", schema(max_items = 10_000))]
    pub tasks: Vec<TaskSpec>,
}

/// Ids of created tasks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedTasks {
    /// In the order asked.
    pub ids: Vec<i64>,
}

/// `POST /api/v1/agent/poll`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PollRequest {
    /// Tasks the agent can take now (at least 1).
    pub capacity: u32,
    /// How long the agent is willing to wait, in ms (the server caps it).
    #[serde(default)]
    pub wait_ms: Option<u64>,
    /// The agent's figures, when they changed since its last poll (the server shows them at
    /// `/metrics`: the agent keeps no listening socket).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub figures: Option<AgentFigures>,
    /// The tag of the package offers the agent holds ([`crate::PackageOffers`]); absent before
    /// it got any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packages: Option<String>,
}

/// What an agent measured of its connectors' runs since it started: counters, by connection
/// and operation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AgentFigures {
    /// One line per connection and operation run.
    pub connectors: Vec<ConnectorFigures>,
}

/// Figures of one connection's runs of one operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ConnectorFigures {
    /// The connection.
    pub connection: String,
    /// The operation.
    pub operation: Operation,
    /// Runs ended.
    pub runs: u64,
    /// Runs that failed (a connector error, a trap, a limit).
    pub failures: u64,
    /// Seconds spent running, in all.
    pub seconds: f64,
    /// Runs stopped by a limit, by limit (`memory`, `deadline`, `disk`...).
    #[serde(default)]
    pub limit_hits: std::collections::BTreeMap<String, u64>,
}

/// Lines of figures an agent may send at most.
pub const FIGURES_MAX: usize = 1000;

/// A claimed task, leased to the agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Assignment {
    /// The task's id.
    pub id: i64,
    /// The fencing token: every later call about this task carries it; a call with an older one
    /// is refused (409).
    pub fence: i64,
    /// The connection.
    pub connection: String,
    /// The operation.
    pub operation: Operation,
    /// Its arguments.
    pub args: serde_json::Value,
    /// Which attempt this is (1 for the first).
    pub attempt: u32,
    /// Longest run, in ms.
    pub timeout_ms: u64,
}

/// What a poll brings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PollAnswer {
    /// New tasks (acknowledge each with a heartbeat before the ack deadline).
    pub tasks: Vec<Assignment>,
    /// Tasks the agent holds that were cancelled: stop them and complete them as cancelled.
    pub cancel: Vec<i64>,
    /// True when a newer poll from the same agent replaced this one.
    #[serde(default)]
    pub superseded: bool,
    /// Runs launched from the browser for this agent to accept or refuse.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub launches: Vec<crate::LaunchOffer>,
    /// The packages offered to the agent, when they changed since the tag its poll sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packages: Option<crate::PackageOffers>,
}

/// `POST /api/v1/agent/tasks/{id}/heartbeat`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// The lease's fencing token.
    pub fence: i64,
    /// Progress: items done.
    #[serde(default)]
    pub done: Option<u64>,
    /// Progress: items in all, when known.
    #[serde(default)]
    pub total: Option<u64>,
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeartbeatAnswer {
    /// The lease now ends this many ms from now.
    pub lease_ms: u64,
    /// The task was cancelled: stop and complete it as cancelled.
    pub cancel: bool,
}

/// One line of a task's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogLine {
    /// When, ms since the epoch (agent clock).
    pub at_ms: i64,
    /// `trace`, `debug`, `info`, `warn` or `error`.
    pub level: String,
    /// The text.
    pub message: String,
}

/// `GET /api/v1/tasks/{id}/log?after=POS&limit=N`: a page of a task's log, every attempt in
/// order. Ask again with `after` = `next` for what follows (also to follow a running task).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogPage {
    /// The lines.
    pub lines: Vec<LogLine>,
    /// The position after the last line of this page (the `after` given, when it is empty).
    pub next: String,
    /// Whether more lines are stored beyond this page.
    pub more: bool,
}

/// `POST /api/v1/agent/tasks/{id}/logs`: a chunk of log lines. Chunks are numbered from 0; a
/// chunk sent twice is stored once.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LogChunk {
    /// The lease's fencing token.
    pub fence: i64,
    /// The chunk's number within this attempt.
    pub seq: u32,
    /// Its lines (at most 10,000).
    #[cfg_attr(feature = "openapi", schema(max_items = 10_000))]
    pub lines: Vec<LogLine>,
}

/// `POST /api/v1/agent/tasks/{id}/uploads`: open (or find again) an upload slot.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewUpload {
    /// The lease's fencing token.
    pub fence: i64,
    /// The upload's name within the task (`entries`, ...).
    pub name: String,
    /// Its total size in bytes.
    pub size: u64,
    /// SHA-256 of the whole content, hex.
    pub sha256: String,
}

/// An upload slot and how far it got.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UploadView {
    /// The slot's id.
    pub id: i64,
    /// The task it belongs to.
    pub task_id: i64,
    /// Its name.
    pub name: String,
    /// Total size.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
    /// Bytes received so far: the next chunk starts here.
    pub received: u64,
    /// True once all bytes arrived and the checksum matched.
    pub complete: bool,
    /// Entries in it, once complete (export uploads).
    pub entries: Option<u64>,
}

/// How a task ended, as the agent reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum TaskOutcome {
    /// It worked; `result` depends on the operation.
    Succeeded {
        /// Export: its summary and upload id; fulfil: one result per order; ...
        #[serde(default)]
        result: serde_json::Value,
    },
    /// It did not work.
    Failed {
        /// Why.
        error: String,
        /// Whether another attempt may succeed (the queue retries with backoff).
        #[serde(default)]
        retryable: bool,
    },
    /// It stopped because it was cancelled.
    Cancelled,
}

/// `POST /api/v1/agent/tasks/{id}/complete`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Completion {
    /// The lease's fencing token.
    pub fence: i64,
    /// The outcome.
    pub outcome: TaskOutcome,
}

/// A task's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum TaskState {
    /// Waiting for an agent (maybe not before `run_after`).
    Queued,
    /// Claimed by a poll, not yet acknowledged.
    Claimed,
    /// Acknowledged and running.
    Running,
    /// Finished well.
    Succeeded,
    /// Finished badly, no attempt left.
    Failed,
    /// Cancelled.
    Cancelled,
    /// Its agent was lost while running a task that is not safe to repeat.
    Lost,
    /// Stopped by a threshold: its job waits for an approval.
    Blocked,
}

impl TaskState {
    /// Its name in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Queued => "queued",
            TaskState::Claimed => "claimed",
            TaskState::Running => "running",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::Cancelled => "cancelled",
            TaskState::Lost => "lost",
            TaskState::Blocked => "blocked",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => TaskState::Queued,
            "claimed" => TaskState::Claimed,
            "running" => TaskState::Running,
            "succeeded" => TaskState::Succeeded,
            "failed" => TaskState::Failed,
            "cancelled" => TaskState::Cancelled,
            "lost" => TaskState::Lost,
            "blocked" => TaskState::Blocked,
            _ => return None,
        })
    }

    /// Whether nothing more happens to the task.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskState::Succeeded
                | TaskState::Failed
                | TaskState::Cancelled
                | TaskState::Lost
                | TaskState::Blocked
        )
    }
}

/// A task as administrators (and its agent, on completion) see it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskView {
    /// Id.
    pub id: i64,
    /// The agent's name.
    pub agent: String,
    /// The job, if any.
    pub job_id: Option<i64>,
    /// The connection.
    pub connection: String,
    /// The operation.
    pub operation: Operation,
    /// State.
    pub state: TaskState,
    /// Attempts started.
    pub attempts: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// The result, once succeeded.
    pub result: Option<serde_json::Value>,
    /// The last error.
    pub error: Option<String>,
    /// Progress: done, total.
    pub progress: Option<(u64, Option<u64>)>,
    /// Created, ms since the epoch.
    pub created_ms: i64,
    /// Finished, ms since the epoch.
    pub finished_ms: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn task_args_are_typed_and_typos_are_refused() {
        assert_eq!(TaskArgs::parse(&json!(null)), Ok(TaskArgs::default()));
        let a = TaskArgs::parse(&json!({ "incremental": true, "upload_id": 7 })).unwrap();
        assert!(a.incremental && a.upload_id == Some(7) && !a.server_orders);
        let err = TaskArgs::parse(&json!({ "incremantal": true })).unwrap_err();
        assert!(err.contains("unknown field `incremantal`"), "{err}");
        assert!(TaskArgs::parse(&json!({ "dry_run": "yes" })).is_err());
        assert!(TaskArgs::parse_stored(r#"{"server_orders":true}"#).server_orders);
        assert_eq!(TaskArgs::parse_stored("not json"), TaskArgs::default());
    }

    #[test]
    fn export_results_read_what_older_agents_and_hands_wrote() {
        let r = ExportResult::parse(&json!({ "upload_id": 3, "entries": 10 })).unwrap();
        assert_eq!(
            (r.upload_id, r.entries, r.incremental),
            (Some(3), 10, false)
        );
        let fresh = ExportResult {
            entries: 1,
            ..Default::default()
        };
        assert!(
            fresh.to_json().get("upload_id").is_none(),
            "filled in after the upload"
        );
        assert!(ExportResult::parse(&json!("done")).is_none());
    }
}
