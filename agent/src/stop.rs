//! Stopping the agent: SIGTERM or SIGINT ends polling and gives running tasks the shutdown
//! grace; a second signal stops it at once. What was finished is in the spool and is reported at
//! the next start; the server hands out again what was not.

use crate::daemon::Agent;
use anyhow::{Context, Result};
use idgard_host::Cancel;
use std::sync::atomic::Ordering;
use std::time::Duration;

impl Agent {
    /// Lets running tasks finish within the shutdown grace, then cancels what still runs; the
    /// host ends a cancelled run at once, whatever its connector is doing. A second signal
    /// stops the agent at once: what was finished is in the spool and is reported at the next
    /// start; the server hands out again what was not.
    pub(crate) async fn stop_tasks(&self, signals: &mut Signals) {
        self.stopping.store(true, Ordering::SeqCst);
        let held = self.running.lock().expect("running").len();
        if held == 0 {
            return;
        }
        let grace = Duration::from_secs(self.config.shutdown_grace_secs);
        tracing::info!(
            "stopping: waiting up to {grace:?} for {held} running task(s) to finish \
             (signal again to stop at once)"
        );
        let now = tokio::select! {
            done = tokio::time::timeout(grace, self.all_finished()) => {
                if done.is_ok() {
                    return;
                }
                false
            }
            _ = signals.recv() => true,
        };
        let left: Vec<Cancel> = self
            .running
            .lock()
            .expect("running")
            .values()
            .cloned()
            .collect();
        if now {
            tracing::warn!(
                "second signal: stopping at once; {} task(s) left to the server to hand out again",
                left.len()
            );
        } else {
            tracing::warn!(
                "stopping: {} task(s) still running after {grace:?}; stopping them (the server will hand them out again)",
                left.len()
            );
        }
        for c in left {
            c.cancel();
        }
        if now {
            return;
        }
        tokio::select! {
            _ = self.all_finished() => {}
            _ = signals.recv() => tracing::warn!("second signal: stopping at once"),
        }
    }

    async fn all_finished(&self) {
        while !self.running.lock().expect("running").is_empty() {
            self.finished.notified().await;
        }
    }
}

/// SIGINT and SIGTERM: the first asks the agent to stop (tasks get the shutdown grace), a
/// second to stop at once.
pub(crate) struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    pub(crate) fn new() -> Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
        })
    }

    /// The next signal (cancel-safe: usable in `select!`).
    pub(crate) async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}
