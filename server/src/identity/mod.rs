//! The identity repository and the pipeline over it: the rules (what each target should hold),
//! the repository of what sources and targets hold (synchronize), provisioning (the orders that
//! close the gap), and declared jobs that run these steps on a schedule.
//!
//! It sits on the queue: its steps are tasks, run by agents or, for synchronize and provision,
//! by the server for the agent that holds their lease.

pub mod dry;
pub mod launch;
pub mod operate;
pub mod overview;
pub mod pipeline;
pub mod provision;
pub mod repo;
pub mod rules;
pub mod search;
pub mod sync;
pub mod views;

use crate::queue::Queue;
use std::sync::Arc;

/// The identity engine: the queue it runs on and the rules, when the server was given some.
#[derive(Clone)]
pub struct Engine {
    /// The queue.
    pub queue: Queue,
    /// The provisioning rules.
    pub rules: Option<Arc<rules::Rules>>,
}
