//! Provisioning orders and their results, as the API carries them.

use crate::*;
use serde::{Deserialize, Serialize};

/// An order's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum OrderState {
    /// Waiting for other orders to end first (an account's create before it joins a group, a
    /// group's removals before the account's delete); not handed to any task yet.
    Waiting,
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
            OrderState::Waiting => "waiting",
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
            "waiting" => OrderState::Waiting,
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

/// `GET /api/v1/agent/tasks/{id}/orders?fence=N`: the next page of a fulfil task's orders
/// (empty: the task is done). The next page comes once this one's results are recorded.
/// The server sends the orders as it stored them, without reading them again (`O` is then raw
/// JSON); the agent reads them as [`model::Order`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskOrders<O = model::Order> {
    /// The orders, in the order to carry them out.
    pub orders: Vec<O>,
    /// On the task's first page: how many ready orders wait beyond it (for progress).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining: Option<u64>,
}

/// `POST /api/v1/agent/tasks/{id}/order-results`: results of some of a fulfil task's orders.
/// Sending a result twice is harmless.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct OrderResults {
    /// The lease's fencing token.
    pub fence: i64,
    /// One per order, matched by id.
    pub results: Vec<model::OrderResult>,
}

/// The answer to [`OrderResults`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderResultsAnswer {
    /// Results recorded now.
    pub recorded: u32,
    /// Results for orders already final (replays), ignored.
    pub ignored: u32,
}
