//! What a finished task leaves in `work/spool/` until the server has it, so a restart loses
//! nothing: written first, replayed at start, removed once delivered. Sealed, like the export's
//! entries file it may name (`crate::sealed`).

use crate::daemon::Agent;
use anyhow::Result;
use idgard_protocol::TaskOutcome;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// What a finished task leaves in the spool until the server has it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Spooled {
    pub(crate) task: i64,
    pub(crate) fence: i64,
    pub(crate) connection: String,
    /// The export's entries file and its checksum.
    pub(crate) upload: Option<SpooledUpload>,
    pub(crate) outcome: Option<TaskOutcome>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SpooledUpload {
    pub(crate) path: PathBuf,
    pub(crate) size: u64,
    pub(crate) sha256: String,
}

impl Agent {
    pub(crate) fn spool_path(&self, task: i64, fence: i64) -> PathBuf {
        self.config
            .work
            .join("spool")
            .join(format!("task-{task}-{fence}.json"))
    }

    /// Sends what finished before a restart; drops what the server no longer wants.
    pub(crate) async fn replay_spool(&self) {
        let dir = self.config.work.join("spool");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        let mut kept = std::collections::HashSet::new();
        let mut outputs = Vec::new();
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().is_some_and(|x| x == "entries") {
                outputs.push(path);
                continue;
            }
            // Task results only: a fulfilment's results (`orders-<task>.json`) are resumed by
            // the task itself when the server hands it out again.
            let task_result = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("task-") && n.ends_with(".json"));
            if !task_result {
                continue;
            }
            let spooled: Option<Spooled> = idgard_vault::read_file(&self.vault, &path)
                .inspect_err(|e| tracing::warn!("{e}"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            match spooled {
                Some(s) if s.outcome.is_some() => {
                    tracing::info!(task = s.task, "sending a result saved before the restart");
                    if let Some(u) = &s.upload {
                        kept.insert(u.path.clone());
                    }
                    self.deliver(s).await;
                }
                Some(s) => {
                    tracing::info!(
                        task = s.task,
                        "task was interrupted by the restart; the server sends it again"
                    );
                    self.forget(&s);
                }
                None => {
                    tracing::warn!(file = %path.display(), "unreadable spool file removed");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        // Output of runs the restart interrupted: their tasks run again.
        for path in outputs {
            if !kept.contains(&path) {
                let _ = std::fs::remove_file(&path);
            }
        }
    }

    pub(crate) fn forget(&self, s: &Spooled) {
        if let Some(u) = &s.upload {
            let _ = std::fs::remove_file(&u.path);
        }
        let _ = std::fs::remove_file(self.spool_path(s.task, s.fence));
    }

    pub(crate) fn save(&self, s: &Spooled) -> Result<()> {
        let path = self.spool_path(s.task, s.fence);
        Ok(idgard_vault::write_file(
            &self.vault,
            &path,
            &serde_json::to_vec(s)?,
        )?)
    }
}
