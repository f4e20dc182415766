//! The idgard server's HTTP API, as types.
//!
//! Every body is JSON. Errors answer with an [`ApiError`] and a 4xx or 5xx status; the `code`
//! is stable, the `message` is for people. The endpoints, states and timeouts are described in
//! `docs/protocol.md`.

use serde::{Deserialize, Serialize};

pub use idgard_model::contract as model;
pub use idgard_model::frames;

/// The version of this API, in every path: `/api/v1/...`.
pub const API: &str = "/api/v1";

/// How the server says no.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// Stable, machine-readable: `bad_request`, `unauthorized`, `not_found`, `stale_lease`, ...
    pub code: String,
    /// What went wrong and, where it helps, what to do.
    pub message: String,
}

/// The body of an error answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ApiError,
}

// ---------------------------------------------------------------------------------------------
// Enrolment and tokens

/// `POST /api/v1/enrol`: an agent trades its one-time enrolment token for credentials.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrolRequest {
    /// The token `idgard-server agent add` printed.
    pub token: String,
}

/// The credentials an agent keeps; the server stores only a hash of the secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnrolAnswer {
    /// The agent's id.
    pub agent_id: i64,
    /// The agent's name.
    pub agent_name: String,
    /// The client secret (shown once).
    pub client_secret: String,
}

/// `POST /api/v1/agent/token`: credentials for a short-lived access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// The agent's id.
    pub agent_id: i64,
    /// Its client secret.
    pub client_secret: String,
}

/// A signed access token (RS256 JWT).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenAnswer {
    /// The token, sent as `Authorization: Bearer <token>`.
    pub access_token: String,
    /// Seconds until it expires.
    pub expires_in: u64,
}

// ---------------------------------------------------------------------------------------------
// Agents

/// A connection an agent owns, as it reports it when it starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionReport {
    /// The connection's name.
    pub name: String,
    /// Its connector's name.
    pub connector: String,
    /// The connector's version.
    pub version: String,
    /// The operations the connector supports.
    pub operations: Vec<String>,
}

/// `POST /api/v1/agent/hello`: sent when an agent starts and when its connections change.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hello {
    /// The agent's version.
    pub version: String,
    /// Every connection the agent serves now.
    pub connections: Vec<ConnectionReport>,
    /// True on the first hello after the agent process started: tasks it held before are no
    /// longer running and go back to the queue at once (or are marked lost).
    #[serde(default)]
    pub restarted: bool,
}

/// The server's timings and limits, answered to a hello.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Timings {
    /// The largest upload chunk the server takes, in bytes.
    pub chunk_bytes: u64,
    /// How long a lease lasts without a heartbeat, in ms.
    pub lease_ms: u64,
    /// How often to send heartbeats, in ms.
    pub heartbeat_ms: u64,
    /// The longest the server holds a poll, in ms.
    pub poll_wait_ms: u64,
    /// How long a claimed task waits for its first heartbeat (its acknowledgement), in ms.
    pub ack_ms: u64,
}

/// An agent as administrators see it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentView {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Whether it has enrolled.
    pub enrolled: bool,
    /// When it last polled or reported, ms since the epoch.
    pub last_seen_ms: Option<i64>,
    /// Its connections, as last reported.
    pub connections: Vec<ConnectionReport>,
}

/// `POST /api/v1/agents`: create an agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAgent {
    /// Its name: lower-case letters, digits, `-` and `_`.
    pub name: String,
}

/// A new agent and its one-time enrolment token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewAgentAnswer {
    /// The agent.
    pub agent: AgentView,
    /// The enrolment token (shown once; valid until `expires_ms`).
    pub enrolment_token: String,
    /// When the token expires, ms since the epoch.
    pub expires_ms: i64,
}

// ---------------------------------------------------------------------------------------------
// Tasks

/// What a task asks of an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
#[serde(default, deny_unknown_fields)]
pub struct TaskArgs {
    /// Export: only what changed since the saved cursor. Synchronize: the upload is incremental.
    pub incremental: bool,
    /// Fulfil: the orders to carry out (a task made by hand).
    pub orders: Option<Vec<model::Order>>,
    /// Fulfil: the orders the server holds for the task (the pipeline's fulfil); they carry ids
    /// and converge when repeated, so such a task is safe to run again.
    pub server_orders: bool,
    /// Synchronize outside a job: the upload to read.
    pub upload_id: Option<i64>,
    /// Provision: every identity (a complete run), not only those that changed.
    pub complete: bool,
    /// Provision: compute and report, store no order.
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
}

/// `POST /api/v1/tasks`: tasks outside any job, for one agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTasks {
    /// The agent's name.
    pub agent: String,
    /// The tasks.
    pub tasks: Vec<TaskSpec>,
}

/// Ids of created tasks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedTasks {
    /// In the order asked.
    pub ids: Vec<i64>,
}

/// `POST /api/v1/agent/poll`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollRequest {
    /// Tasks the agent can take now (at least 1).
    pub capacity: u32,
    /// How long the agent is willing to wait, in ms (the server caps it).
    #[serde(default)]
    pub wait_ms: Option<u64>,
}

/// A claimed task, leased to the agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
pub struct PollAnswer {
    /// New tasks (acknowledge each with a heartbeat before the ack deadline).
    pub tasks: Vec<Assignment>,
    /// Tasks the agent holds that were cancelled: stop them and complete them as cancelled.
    pub cancel: Vec<i64>,
    /// True when a newer poll from the same agent replaced this one.
    #[serde(default)]
    pub superseded: bool,
}

/// `POST /api/v1/agent/tasks/{id}/heartbeat`.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
pub struct HeartbeatAnswer {
    /// The lease now ends this many ms from now.
    pub lease_ms: u64,
    /// The task was cancelled: stop and complete it as cancelled.
    pub cancel: bool,
}

/// One line of a task's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// When, ms since the epoch (agent clock).
    pub at_ms: i64,
    /// `trace`, `debug`, `info`, `warn` or `error`.
    pub level: String,
    /// The text.
    pub message: String,
}

/// `POST /api/v1/agent/tasks/{id}/logs`: a chunk of log lines. Chunks are numbered from 0; a
/// chunk sent twice is stored once.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogChunk {
    /// The lease's fencing token.
    pub fence: i64,
    /// The chunk's number within this attempt.
    pub seq: u32,
    /// Its lines.
    pub lines: Vec<LogLine>,
}

/// `POST /api/v1/agent/tasks/{id}/uploads`: open (or find again) an upload slot.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
#[serde(deny_unknown_fields)]
pub struct Completion {
    /// The lease's fencing token.
    pub fence: i64,
    /// The outcome.
    pub outcome: TaskOutcome,
}

/// A task's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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

// ---------------------------------------------------------------------------------------------
// Jobs

/// `POST /api/v1/jobs`: a job for one agent: steps run in order, the tasks of a step at once.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewJob {
    /// The agent's name.
    pub agent: String,
    /// A name for people.
    #[serde(default)]
    pub name: Option<String>,
    /// The steps.
    pub steps: Vec<Vec<TaskSpec>>,
    /// Start it at once (default true).
    #[serde(default)]
    pub start: Option<bool>,
}

/// A job's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobState {
    /// Created, not started.
    Pending,
    /// A step is running.
    Running,
    /// Every step succeeded.
    Succeeded,
    /// A task failed or was lost; later steps did not run.
    Failed,
    /// Cancelled.
    Cancelled,
    /// A threshold stopped it; it goes on once approved (`POST /api/v1/jobs/{id}/approve`).
    Blocked,
}

impl JobState {
    /// Its name in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::Blocked => "blocked",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => JobState::Pending,
            "running" => JobState::Running,
            "succeeded" => JobState::Succeeded,
            "failed" => JobState::Failed,
            "cancelled" => JobState::Cancelled,
            "blocked" => JobState::Blocked,
            _ => return None,
        })
    }
}

/// A job and its tasks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobView {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// The agent's name.
    pub agent: String,
    /// State.
    pub state: JobState,
    /// The step running now (0-based), or the last one run.
    pub step: u32,
    /// Steps in all.
    pub steps: u32,
    /// Its tasks so far.
    pub tasks: Vec<TaskView>,
    /// The declared job it is a run of, if any.
    #[serde(default)]
    pub definition: Option<String>,
    /// `complete` or `incremental`, for a declared job's run.
    #[serde(default)]
    pub mode: Option<String>,
    /// Why it is blocked, while it is.
    #[serde(default)]
    pub blocked: Option<serde_json::Value>,
    /// Created, ms since the epoch.
    pub created_ms: i64,
    /// Finished, ms since the epoch.
    pub finished_ms: Option<i64>,
}

/// `POST /api/v1/agent/tasks/{id}/run`: the agent that holds a server-side task asks the
/// server to do it. The answer is the task, final.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// The lease's fencing token.
    pub fence: i64,
}

/// `POST /api/v1/jobs/run`: a run of a declared job.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunJob {
    /// The declared job's name.
    pub job: String,
    /// A complete run (export everything) or an incremental one (default complete).
    #[serde(default)]
    pub incremental: bool,
    /// Compute the orders and show them without sending them.
    #[serde(default)]
    pub dry_run: bool,
}

// ---------------------------------------------------------------------------------------------
// Provisioning orders

/// An order's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OrderState {
    /// Waiting for a fulfil task.
    Pending,
    /// Handed to an agent in a fulfil task.
    Sent,
    /// Carried out; the repository reflects it.
    Done,
    /// Failed or asked to retry; sent again after `next_ms`.
    Retry,
    /// Failed for good (attempts used up); kept with its message.
    Failed,
    /// Computed by a dry run; never sent.
    Dry,
    /// Replaced by a newer computation before it was sent.
    Superseded,
}

impl OrderState {
    /// Its name in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::Pending => "pending",
            OrderState::Sent => "sent",
            OrderState::Done => "done",
            OrderState::Retry => "retry",
            OrderState::Failed => "failed",
            OrderState::Dry => "dry",
            OrderState::Superseded => "superseded",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => OrderState::Pending,
            "sent" => OrderState::Sent,
            "done" => OrderState::Done,
            "retry" => OrderState::Retry,
            "failed" => OrderState::Failed,
            "dry" => OrderState::Dry,
            "superseded" => OrderState::Superseded,
            _ => return None,
        })
    }
}

/// An order as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderView {
    /// Id (unique; results are matched on it).
    pub id: String,
    /// The job that computed it.
    pub job_id: Option<i64>,
    /// The target connection.
    pub connection: String,
    /// The entity type.
    pub entity_type: String,
    /// The entry's key in the target.
    pub key: String,
    /// The identity it serves, if any.
    pub identity: Option<String>,
    /// `create`, `update`, `delete`, `enable`, `disable`.
    pub kind: String,
    /// The order as the connector receives it.
    pub order: model::Order,
    /// State.
    pub state: OrderState,
    /// Attempts made.
    pub attempts: u32,
    /// The last message from the connector.
    pub message: Option<String>,
    /// Created, ms since the epoch.
    pub created_ms: i64,
    /// Last change, ms since the epoch.
    pub updated_ms: i64,
}

/// `GET /api/v1/agent/tasks/{id}/orders?fence=N`: the orders of a fulfil task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskOrders {
    /// The orders, in the order to carry them out.
    pub orders: Vec<model::Order>,
}

/// `POST /api/v1/agent/tasks/{id}/order-results`: results of some of a fulfil task's orders.
/// Sending a result twice is harmless.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderResults {
    /// The lease's fencing token.
    pub fence: i64,
    /// One per order, matched by id.
    pub results: Vec<model::OrderResult>,
}

/// The answer to [`OrderResults`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OrderResultsAnswer {
    /// Results recorded now.
    pub recorded: u32,
    /// Results for orders already final (replays), ignored.
    pub ignored: u32,
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
