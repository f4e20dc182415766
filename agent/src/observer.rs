//! What a task's connector run produces, taken in by the agent: entries framed into the spool
//! file (hashed as they go, sealed as they are written), progress into the heartbeat's counters, log lines into a bounded
//! queue that the log shipper drains. Nothing a connector does can make this grow without bound:
//! the host caps a run's log, and the queue drops (and counts) lines it has no room for.

use anyhow::bail;
use idgard_host::{Cancel, Level, Observer};
use idgard_protocol::{LogLine, frames};
use idgard_vault::SealedWriter;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::sync::mpsc;

/// Log lines of one task waiting to be shipped. The shipper sends up to 1,000 lines every half
/// second; past this the lines are dropped and counted, so a slow server or a chatty connector
/// costs a bounded amount of memory.
pub const LOG_QUEUE: usize = 10_000;

/// Receives a run's output: entries framed into the spool file, logs to the shipper.
pub struct TaskObserver {
    /// The export's entries file, sealed as it is written.
    out: Option<SealedWriter<std::fs::File>>,
    hash: Sha256,
    size: u64,
    cancel: Cancel,
    progress: Arc<(AtomicU64, AtomicU64)>,
    log: mpsc::Sender<LogLine>,
    /// Lines the queue had no room for since the last one that went in.
    dropped: u64,
    done: Arc<Mutex<Option<(u64, String)>>>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl TaskObserver {
    /// An observer writing entries to `out` (exports) or nowhere.
    pub fn new(
        out: Option<SealedWriter<std::fs::File>>,
        cancel: Cancel,
        progress: Arc<(AtomicU64, AtomicU64)>,
        log: mpsc::Sender<LogLine>,
    ) -> Self {
        Self {
            out,
            hash: Sha256::new(),
            size: 0,
            cancel,
            progress,
            log,
            dropped: 0,
            done: Arc::new(Mutex::new(None)),
        }
    }

    /// Where the entries file's size and SHA-256 appear once the observer is dropped.
    pub fn done(&self) -> Arc<Mutex<Option<(u64, String)>>> {
        self.done.clone()
    }

    fn queue(&mut self, level: &str, message: String) -> bool {
        let line = LogLine {
            at_ms: now_ms(),
            level: level.into(),
            message,
        };
        self.log.try_send(line).is_ok()
    }

    /// Queues the notice of lines dropped so far, if any; false when there is still no room.
    fn report_dropped(&mut self) -> bool {
        if self.dropped == 0 {
            return true;
        }
        let notice = format!(
            "{} log lines dropped: the agent's log queue was full",
            self.dropped
        );
        if !self.queue("warn", notice) {
            return false;
        }
        self.dropped = 0;
        true
    }
}

impl Observer for TaskObserver {
    fn log(&mut self, level: Level, message: &str) {
        if !self.report_dropped() {
            self.dropped += 1;
            return;
        }
        let level = match level {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        };
        if !self.queue(level, message.into()) {
            self.dropped += 1;
        }
    }

    fn progress(&mut self, done: u64, total: Option<u64>, _message: &str) {
        self.progress.0.store(done, Ordering::Relaxed);
        self.progress
            .1
            .store(total.unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn entries(&mut self, batch: &[u8], count: u32) -> anyhow::Result<()> {
        if self.cancel.is_cancelled() {
            bail!("cancelled");
        }
        let Some(out) = &mut self.out else {
            return Ok(());
        };
        let header = frames::header(count, batch.len() as u32);
        out.write_all(&header)?;
        out.write_all(batch)?;
        self.hash.update(header);
        self.hash.update(batch);
        self.size += (header.len() + batch.len()) as u64;
        Ok(())
    }
}

impl Drop for TaskObserver {
    fn drop(&mut self) {
        self.report_dropped();
        if let Some(out) = self.out.take() {
            let flushed = out.finish().and_then(|f| f.sync_all()).is_ok();
            if flushed {
                let hash = std::mem::take(&mut self.hash);
                *self.done.lock().expect("done") = Some((self.size, hex::encode(hash.finalize())));
            }
        }
    }
}
