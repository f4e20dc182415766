//! How far the tasks this server runs itself (synchronize, provision) have got, kept in memory
//! while they run: their transaction holds SQLite's one writer, so their progress cannot be
//! written to the database meanwhile. A task's view shows it while it runs on this server.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

/// Done and, when known, total.
pub type Progress = (u64, Option<u64>);

/// The progress of each task running here.
#[derive(Clone, Default)]
pub struct Live(Arc<Mutex<HashMap<i64, Progress>>>);

tokio::task_local! {
    static CURRENT: (Live, i64);
}

impl Live {
    /// Runs `work` as task `task`: what it [`report`]s is this task's progress until it ends.
    pub async fn run<F: Future>(&self, task: i64, work: F) -> F::Output {
        let out = CURRENT.scope((self.clone(), task), work).await;
        self.lock().remove(&task);
        out
    }

    /// A running task's progress.
    pub fn get(&self, task: i64) -> Option<Progress> {
        self.lock().get(&task).copied()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Progress>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Reports the progress of the task being run (nothing outside [`Live::run`]: a synchronize
/// called by a test or a tool).
pub fn report(done: u64, total: Option<u64>) {
    let _ = CURRENT.try_with(|(live, task)| {
        live.lock().insert(*task, (done, total));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn progress_is_seen_while_the_task_runs_and_forgotten_after() {
        let live = Live::default();
        let seen = live
            .run(7, async {
                report(10, Some(40));
                live.get(7)
            })
            .await;
        assert_eq!(seen, Some((10, Some(40))));
        assert_eq!(live.get(7), None);
        report(1, None); // outside a task: ignored
        assert_eq!(live.get(7), None);
    }
}
