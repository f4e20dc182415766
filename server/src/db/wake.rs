//! Wake-ups of the long polls held in this process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// One agent's wake-up: held polls wait on `notify`; `generation` tells a held poll that a newer
/// one replaced it.
#[derive(Debug, Default)]
pub struct AgentWaker {
    /// Signalled when the agent may have work or a cancellation.
    pub notify: Notify,
    /// Bumped by each new poll.
    pub generation: std::sync::atomic::AtomicU64,
}

/// Wake-ups for the polls held in this process.
#[derive(Debug, Clone, Default)]
pub struct Wakers(Arc<Mutex<HashMap<i64, Arc<AgentWaker>>>>);

impl Wakers {
    /// The waker of an agent.
    pub fn get(&self, agent: i64) -> Arc<AgentWaker> {
        self.0
            .lock()
            .expect("wakers")
            .entry(agent)
            .or_default()
            .clone()
    }

    /// Wakes the agent's poll in this process (a permit is kept if none is held).
    pub fn wake_local(&self, agent: i64) {
        if let Some(w) = self.0.lock().expect("wakers").get(&agent) {
            w.notify.notify_one();
        }
    }
}
