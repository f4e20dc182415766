//! Jobs: steps of tasks, their states, runs of declared jobs.

use crate::*;
use serde::{Deserialize, Serialize};

/// `POST /api/v1/jobs`: a job for one agent: steps run in order, the tasks of a step at once.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// The lease's fencing token.
    pub fence: i64,
}

/// `POST /api/v1/jobs/run`: a run of a declared job.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
