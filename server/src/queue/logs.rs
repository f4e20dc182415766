//! Tasks' logs: chunks an agent sends while the task runs, numbered per attempt, kept within a
//! cap per attempt, and read back page by page.
//!
//! A chunk is accepted only from the agent that holds the attempt, while the task runs (the
//! agent sends its logs before it completes a task). A chunk sent again is kept as it was. Once
//! an attempt's lines or bytes reach the cap, one last line says so and later chunks are
//! dropped (and answered as accepted, so that the agent does not send them again).

use super::Queue;
use crate::error::{Error, Result};
use idgard_protocol::{LogLine, LogPage};
use sqlx::Row;

/// Chunk numbers go up to this.
pub const MAX_SEQ: u32 = 1_000_000;
/// Lines per page at most.
pub const MAX_PAGE_LINES: u32 = 10_000;

impl Queue {
    /// Stores a chunk of a task's log; a chunk already stored is kept as it was.
    pub async fn append_log(
        &self,
        agent: i64,
        task: i64,
        fence: i64,
        seq: u32,
        lines: &[LogLine],
    ) -> Result<()> {
        if seq > MAX_SEQ {
            return Err(Error::invalid(format!(
                "a log chunk's seq is at most {MAX_SEQ}"
            )));
        }
        let row = sqlx::query("SELECT agent_id, fence, state FROM tasks WHERE id = $1")
            .bind(task)
            .fetch_optional(&self.db.read)
            .await?;
        match row {
            Some(r) if r.try_get::<i64, _>(0)? == agent => {
                if r.try_get::<i64, _>(1)? != fence {
                    return Err(self.refusal_for(agent, task, fence).await?);
                }
                let state: String = r.try_get(2)?;
                if state != "claimed" && state != "running" {
                    return Err(Error::conflict(format!(
                        "task {task} is {state}: its log is closed"
                    )));
                }
            }
            _ => return Err(Error::not_found(format!("no task {task}"))),
        }
        let text = serde_json::to_string(lines).map_err(anyhow::Error::from)?;
        let (kept_lines, kept_bytes) = self.log_size(task, fence).await?;
        let max_lines = self.cfg.log_lines_per_task;
        let max_bytes = self.cfg.log_kib_per_task << 10;
        if kept_lines >= max_lines || kept_bytes >= max_bytes {
            return Ok(());
        }
        let (seq, text) = if kept_lines + lines.len() as u64 > max_lines
            || kept_bytes + text.len() as u64 > max_bytes
        {
            // The last chunk kept: a line saying why the rest is missing.
            let note = LogLine {
                level: "warn".into(),
                message: format!(
                    "the log of this attempt reached the server's cap ({max_lines} lines or \
                         {} KiB, queue.log_lines_per_task / queue.log_kib_per_task): later \
                         lines are dropped",
                    self.cfg.log_kib_per_task
                ),
                at_ms: self.now(),
            };
            let text = serde_json::to_string(&[note]).map_err(anyhow::Error::from)?;
            (MAX_SEQ as i64 + 1, text)
        } else {
            (seq as i64, text)
        };
        sqlx::query(
            "INSERT INTO task_logs (task_id, fence, seq, lines, line_count) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (task_id, fence, seq) DO NOTHING",
        )
        .bind(task)
        .bind(fence)
        .bind(seq)
        .bind(&text)
        .bind(if seq > MAX_SEQ as i64 {
            max_lines as i64
        } else {
            lines.len() as i64
        })
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }

    /// Lines and bytes kept of one attempt's log.
    async fn log_size(&self, task: i64, fence: i64) -> Result<(u64, u64)> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(line_count), 0) AS BIGINT), \
             CAST(COALESCE(SUM(LENGTH(lines)), 0) AS BIGINT) \
             FROM task_logs WHERE task_id = $1 AND fence = $2",
        )
        .bind(task)
        .bind(fence)
        .fetch_one(&self.db.read)
        .await?;
        Ok((
            row.try_get::<i64, _>(0)?.max(0) as u64,
            row.try_get::<i64, _>(1)?.max(0) as u64,
        ))
    }

    /// A page of a task's log, every attempt in order: whole chunks after `after` (a page's
    /// `next`), up to about `limit` lines.
    pub async fn task_log(&self, task: i64, after: Option<&str>, limit: u32) -> Result<LogPage> {
        let (fence, seq) = match after {
            None | Some("") => (-1, -1),
            Some(a) => a
                .split_once('.')
                .and_then(|(f, s)| Some((f.parse::<i64>().ok()?, s.parse::<i64>().ok()?)))
                .ok_or_else(|| Error::invalid(format!("`{a}` is not a log position")))?,
        };
        let limit = limit.clamp(1, MAX_PAGE_LINES) as usize;
        let rows = sqlx::query(
            "SELECT fence, seq, lines FROM task_logs WHERE task_id = $1 \
             AND (fence > $2 OR (fence = $2 AND seq > $3)) ORDER BY fence, seq LIMIT $4",
        )
        .bind(task)
        .bind(fence)
        .bind(seq)
        .bind(limit as i64 + 1)
        .fetch_all(&self.db.read)
        .await?;
        let mut page = LogPage {
            lines: Vec::new(),
            next: after.unwrap_or_default().to_owned(),
            more: false,
        };
        for (i, r) in rows.iter().enumerate() {
            if i > 0 && page.lines.len() >= limit || i == limit {
                page.more = true;
                break;
            }
            let lines: Vec<LogLine> =
                serde_json::from_str(&r.try_get::<String, _>(2)?).unwrap_or_default();
            page.lines.extend(lines);
            page.next = format!("{}.{}", r.try_get::<i64, _>(0)?, r.try_get::<i64, _>(1)?);
        }
        Ok(page)
    }
}
