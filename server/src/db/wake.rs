//! Wake-ups of the long polls held in this process, and from other processes on the same
//! embedded database: an administration command that queues tasks (`job create`, `job run`)
//! touches a file beside the SQLite file, which the serving process watches. (Replicas on
//! PostgreSQL wake each other with NOTIFY instead.)

use anyhow::{Context, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
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

    /// Wakes every poll held in this process (each looks for work again).
    pub fn wake_all(&self) {
        for w in self.0.lock().expect("wakers").values() {
            w.notify.notify_one();
        }
    }

    /// Wakes the agent's poll in this process (a permit is kept if none is held).
    pub fn wake_local(&self, agent: i64) {
        if let Some(w) = self.0.lock().expect("wakers").get(&agent) {
            w.notify.notify_one();
        }
    }
}

/// The file beside an embedded database that wakes the polls its server holds.
pub fn wake_file(sqlite_path: &str) -> PathBuf {
    PathBuf::from(format!("{sqlite_path}.wake"))
}

/// Tells the server of the embedded database, if one runs, that tasks were queued.
pub fn touch(file: &Path) {
    if let Err(e) = std::fs::write(file, crate::now_ms().to_string()) {
        tracing::warn!(
            "cannot wake the server's held polls through {}: agents see the new tasks at their \
             next poll ({e})",
            file.display()
        );
    }
}

/// Wakes every held poll when another process touches `file`; runs until the process ends.
pub fn watch(file: &Path, wakers: Wakers) -> Result<()> {
    use notify::{RecursiveMode, Watcher};
    std::fs::write(file, b"")
        .with_context(|| format!("cannot create the wake-up file {}", file.display()))?;
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| e.kind.is_modify() || e.kind.is_create()) {
            wakers.wake_all();
        }
    })?;
    watcher
        .watch(file, RecursiveMode::NonRecursive)
        .with_context(|| format!("cannot watch {}", file.display()))?;
    tokio::spawn(async move {
        let _watcher = watcher;
        std::future::pending::<()>().await
    });
    Ok(())
}
