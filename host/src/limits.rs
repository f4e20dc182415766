//! The limits every connector run is held to. Each one defends the agent (and the network it sits
//! in) against a connector that is buggy or hostile.

use serde::Deserialize;
use std::time::Duration;

/// How often the engine's epoch advances; deadlines are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Limits of one run. Defaults suit an HR export of a few million rows; a connection may lower or
/// raise them in its configuration (`[limits]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Linear memory of the connector, in MiB. Defends against a connector that allocates
    /// without bound (a memory bomb) taking the agent's memory; growth past it fails in the
    /// guest, which then usually aborts, and the run is reported as over its memory limit.
    pub memory_mib: u32,
    /// Wall-clock time of one run, in seconds. Defends against infinite loops and hung calls:
    /// the engine interrupts the guest at the next epoch check (within about 10 ms).
    pub deadline_secs: u64,
    /// Total bytes of entries one export may hand to the host, in MiB. Defends the agent's disk
    /// and the server against a connector that emits without end.
    pub max_output_mib: u64,
    /// Largest single batch of entries, in MiB. Bounds what the host holds at once.
    pub max_batch_mib: u32,
    /// Bytes of log messages kept per run, in KiB, each line counted at least
    /// [`LOG_LINE_COST`] bytes (so empty lines are not free). Past it messages are counted and
    /// dropped (the run goes on), so a log flood cannot fill the task log or the agent's memory.
    pub max_log_kib: u32,
    /// Most data the guest may pass to the host in one call (hostcall fuel), in MiB. Bounds what
    /// the host allocates on the guest's behalf for strings and lists (order results, schemas).
    pub max_call_mib: u32,
    /// Bytes one run may write into its folders (the collection folder and read-write grants),
    /// in MiB, counting every write and every growth of a file (a sparse file counts its
    /// length). Defends the agent's disk against a connector that writes without end.
    pub max_disk_mib: u64,
    /// Files, folders and links one run may create. Defends the file system's inodes and every
    /// later reader of the folder (a folder of 200,000 files) against a file flood.
    pub max_files: u64,
    /// Handles the connector may hold at once (open files and folders, streams, sockets).
    /// Defends the agent's file descriptors, which every connection and the agent itself share.
    pub max_handles: u32,
    /// Largest incremental cursor an export may return, in KiB. The agent keeps the cursor and
    /// hands it back at the next run; a huge one would be stored and copied for ever.
    pub max_cursor_kib: u32,
}

/// What each log line costs against `max_log_kib` at least, whatever its length: what keeping
/// and shipping a line costs the agent besides its text.
pub const LOG_LINE_COST: usize = 64;

/// The most `max_handles` a connection may set. The agent raises its descriptor limit at start
/// and keeps room for itself beyond what its concurrent runs may hold.
pub const MAX_HANDLES: u32 = 4096;

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_mib: 512,
            deadline_secs: 3600,
            max_output_mib: 8 * 1024,
            max_batch_mib: 16,
            max_log_kib: 1024,
            max_call_mib: 64,
            max_disk_mib: 8 * 1024,
            max_files: 10_000,
            max_handles: 256,
            max_cursor_kib: 1024,
        }
    }
}

impl Limits {
    /// The deadline as a duration.
    pub fn deadline(&self) -> Duration {
        Duration::from_secs(self.deadline_secs)
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        (self.memory_mib as usize) << 20
    }
}

/// Which limit stopped a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitHit {
    /// Linear memory could not grow past `memory_mib`.
    Memory,
    /// The run exceeded `deadline_secs`.
    Deadline,
    /// The export exceeded `max_output_mib`.
    Output,
    /// One batch exceeded `max_batch_mib`.
    Batch,
    /// The run wrote more than `max_disk_mib` into its folders.
    Disk,
    /// The run created more than `max_files` files, folders and links.
    Files,
    /// The connector held more than `max_handles` handles at once.
    Handles,
    /// The export returned a cursor larger than `max_cursor_kib`.
    Cursor,
}

impl std::fmt::Display for LimitHit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LimitHit::Memory => "memory limit",
            LimitHit::Deadline => "deadline",
            LimitHit::Output => "output limit",
            LimitHit::Batch => "batch size limit",
            LimitHit::Disk => "disk quota",
            LimitHit::Files => "file quota",
            LimitHit::Handles => "open handles limit",
            LimitHit::Cursor => "cursor size limit",
        })
    }
}
