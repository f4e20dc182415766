//! Uploads: resumable, checksummed, into slots the server creates for one attempt of a task.
//!
//! A slot is keyed by (task, fence, name): the same attempt asking again gets the same slot and
//! resumes where it stopped; another attempt gets its own. Chunks must start where the slot's
//! received bytes end. When the last byte arrives the whole content is hashed; a mismatch
//! empties the slot. Only a complete slot can be named by a task's result, and a task completes
//! once, so a retried upload is never applied twice. Chunks are stored in the database, so that
//! every replica sees them.

use super::Queue;
use super::lease::require_lease;
use crate::error::{Error, Result};
use futures_util::{StreamExt as _, TryStreamExt as _};
use idgard_protocol::{NewUpload, UploadView, frames};
use sha2::{Digest, Sha256};
use sqlx::Row;

fn upload_view(row: &sqlx::any::AnyRow) -> Result<UploadView> {
    Ok(UploadView {
        id: row.try_get(0)?,
        task_id: row.try_get(1)?,
        name: row.try_get(2)?,
        size: row.try_get::<i64, _>(3)? as u64,
        sha256: row.try_get(4)?,
        received: row.try_get::<i64, _>(5)? as u64,
        complete: row.try_get::<i64, _>(6)? != 0,
        entries: row.try_get::<Option<i64>, _>(7)?.map(|e| e as u64),
    })
}

const UPLOAD_COLUMNS: &str = "id, task_id, name, size, sha256, received, complete, entries";

impl Queue {
    /// Opens, or finds again, the slot for an upload of a task's current attempt.
    pub async fn open_upload(
        &self,
        agent: i64,
        task: i64,
        new: &NewUpload,
        max_bytes: u64,
    ) -> Result<UploadView> {
        if new.name.is_empty() || new.name.len() > 64 {
            return Err(Error::invalid("an upload's name is 1 to 64 characters"));
        }
        if new.sha256.len() != 64 || !new.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::invalid("sha256 must be 64 hexadecimal digits"));
        }
        if new.size > max_bytes {
            return Err(Error::too_large(format!(
                "an upload of {} bytes is over this server's limit of {max_bytes}",
                new.size
            )));
        }
        self.holds(agent, task, new.fence).await?;
        sqlx::query(
            "INSERT INTO uploads (task_id, agent_id, fence, name, size, sha256, created_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (task_id, fence, name) DO NOTHING",
        )
        .bind(task)
        .bind(agent)
        .bind(new.fence)
        .bind(&new.name)
        .bind(new.size as i64)
        .bind(new.sha256.to_ascii_lowercase())
        .bind(self.now())
        .execute(&self.db.pool)
        .await?;
        let sql = format!(
            "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE task_id = $1 AND fence = $2 AND name = $3"
        );
        let row = sqlx::query(&sql)
            .bind(task)
            .bind(new.fence)
            .bind(&new.name)
            .fetch_one(&self.db.pool)
            .await?;
        let view = upload_view(&row)?;
        if view.size != new.size || !view.sha256.eq_ignore_ascii_case(&new.sha256) {
            return Err(Error::conflict(format!(
                "upload `{}` of this attempt exists with another size or checksum",
                new.name
            )));
        }
        Ok(view)
    }

    /// Checks that an agent holds a task's current lease.
    async fn holds(&self, agent: i64, task: i64, fence: i64) -> Result<()> {
        let mut conn = self.db.pool.acquire().await?;
        require_lease(&mut conn, agent, task, fence).await.map(drop)
    }

    /// An upload slot, seen by its agent.
    pub async fn upload(&self, agent: Option<i64>, id: i64) -> Result<UploadView> {
        let sql = format!("SELECT {UPLOAD_COLUMNS}, agent_id FROM uploads WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.db.pool)
            .await?
            .ok_or_else(|| Error::not_found(format!("no upload {id}")))?;
        if agent.is_some_and(|a| a != row.try_get::<i64, _>(8).unwrap_or(-1)) {
            return Err(Error::not_found(format!("no upload {id}")));
        }
        upload_view(&row)
    }

    /// Appends a chunk at `offset`. The answer says how far the slot got; a chunk that does not
    /// start at the end of what was received is refused with 409 and the slot's state.
    pub async fn put_chunk(
        &self,
        agent: i64,
        id: i64,
        offset: u64,
        data: &[u8],
    ) -> Result<UploadView> {
        let view = self.upload(Some(agent), id).await?;
        let fence: i64 = sqlx::query("SELECT fence FROM uploads WHERE id = $1")
            .bind(id)
            .fetch_one(&self.db.pool)
            .await?
            .try_get(0)?;
        self.holds(agent, view.task_id, fence).await?;
        if view.complete {
            return Ok(view);
        }
        if offset != view.received {
            return Err(Error::conflict(format!(
                "upload {id}: the next chunk starts at byte {}, not {offset}",
                view.received
            )));
        }
        if offset + data.len() as u64 > view.size {
            return Err(Error::invalid(format!(
                "upload {id}: {} bytes at {offset} go past its size of {}",
                data.len(),
                view.size
            )));
        }
        if data.is_empty() && view.size != 0 {
            return Err(Error::invalid("an empty chunk"));
        }
        let mut tx = self.db.pool.begin().await?;
        // However large the upload, the writer holds its everyday cache while writing it.
        self.db.narrow(&mut tx).await?;
        let moved = sqlx::query(
            "UPDATE uploads SET received = received + $1 WHERE id = $2 AND received = $3",
        )
        .bind(data.len() as i64)
        .bind(id)
        .bind(offset as i64)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if moved != 1 {
            return Err(Error::conflict(format!(
                "upload {id}: another chunk at byte {offset} arrived first; ask for the slot's state"
            )));
        }
        // Sealed before it is written: an export's entries are a whole system's personal data.
        let sealed = self.sealer.seal_bytes(data)?;
        sqlx::query("INSERT INTO upload_chunks (upload_id, start_at, data) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(offset as i64)
            .bind(sealed)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        if offset + data.len() as u64 == view.size {
            return self.finish_upload(id).await;
        }
        self.upload(Some(agent), id).await
    }

    /// The content of an upload, chunk by chunk, in order: what is held in memory is one chunk,
    /// whatever the upload's size.
    pub fn upload_content(
        &self,
        id: i64,
    ) -> impl futures_util::Stream<Item = Result<Vec<u8>>> + Send + 'static {
        let db = self.db.read.clone();
        let sealer = self.sealer.clone();
        futures_util::stream::once(async move {
            let starts = chunk_starts(&db, id).await?;
            Ok::<_, Error>(futures_util::stream::iter(starts).then(move |start| {
                let (db, sealer) = (db.clone(), sealer.clone());
                async move { chunk(&db, &sealer, id, start).await }
            }))
        })
        .try_flatten()
    }

    /// All bytes are in: check the checksum and the frames, and count the entries, reading the
    /// upload chunk by chunk (memory does not grow with the upload).
    async fn finish_upload(&self, id: i64) -> Result<UploadView> {
        let view = self.upload(None, id).await?;
        let mut sha = Sha256::new();
        let mut count = EntryCount::new(view.name == "entries");
        for start in chunk_starts(&self.db.pool, id).await? {
            let data = chunk(&self.db.pool, &self.sealer, id, start).await?;
            sha.update(&data);
            count.push(&data);
        }
        let actual = hex::encode(sha.finalize());
        let checked = if actual != view.sha256 {
            Err(format!(
                "upload {id}: checksum mismatch (expected {}, received {actual}); the slot was emptied, send it again",
                view.sha256
            ))
        } else {
            count
                .finish()
                .map_err(|e| format!("upload {id}: {e}; the slot was emptied"))
        };
        match checked {
            Ok(entries) => {
                sqlx::query("UPDATE uploads SET complete = 1, entries = $1 WHERE id = $2")
                    .bind((view.name == "entries").then_some(entries as i64))
                    .bind(id)
                    .execute(&self.db.pool)
                    .await?;
                tracing::info!(
                    upload = id,
                    task = view.task_id,
                    bytes = view.size,
                    "upload complete"
                );
                self.upload(None, id).await
            }
            Err(message) => {
                let mut tx = self.db.pool.begin().await?;
                sqlx::query("DELETE FROM upload_chunks WHERE upload_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("UPDATE uploads SET received = 0 WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Err(Error::bad_upload(message))
            }
        }
    }

    /// Whether an upload's content was removed after its retention.
    pub async fn upload_pruned(&self, id: i64) -> Result<bool> {
        let row = sqlx::query("SELECT pruned_ms FROM uploads WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.db.read)
            .await?
            .ok_or_else(|| Error::not_found(format!("no upload {id}")))?;
        Ok(row.try_get::<Option<i64>, _>(0)?.is_some())
    }

    /// Removes the content of uploads whose task ended more than the retention ago, outside
    /// any job still under way (a blocked job keeps its export until it is approved or
    /// cancelled); their rows stay, marked. Returns how many were removed.
    pub async fn prune_uploads(&self) -> Result<u64> {
        let hours = self.cfg.upload_retention_h;
        if hours == 0 {
            return Ok(0);
        }
        let now = self.now();
        let before = now - (hours as i64).saturating_mul(3_600_000);
        let ids: Vec<i64> = sqlx::query(
            "SELECT u.id FROM uploads u JOIN tasks t ON t.id = u.task_id \
             WHERE u.pruned_ms IS NULL AND t.finished_ms IS NOT NULL AND t.finished_ms < $1 \
             AND (t.job_id IS NULL OR t.job_id IN \
             (SELECT id FROM jobs WHERE state IN ('succeeded', 'failed', 'cancelled'))) \
             ORDER BY u.id LIMIT 100",
        )
        .bind(before)
        .fetch_all(&self.db.read)
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<std::result::Result<_, _>>()?;
        for id in &ids {
            let mut tx = self.db.pool.begin().await?;
            sqlx::query("DELETE FROM upload_chunks WHERE upload_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE uploads SET pruned_ms = $1 WHERE id = $2")
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        if !ids.is_empty() {
            tracing::info!(
                uploads = ids.len(),
                "removed the content of uploads past their retention ({hours} h)"
            );
        }
        Ok(ids.len() as u64)
    }

    /// Uploads of a task.
    pub async fn uploads_of(&self, task: i64) -> Result<Vec<UploadView>> {
        let sql = format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE task_id = $1 ORDER BY id");
        sqlx::query(&sql)
            .bind(task)
            .fetch_all(&self.db.read)
            .await?
            .iter()
            .map(upload_view)
            .collect()
    }
}

/// The start of each chunk of an upload, in order.
pub(crate) async fn chunk_starts<'c, E>(db: E, upload: i64) -> Result<Vec<i64>>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    sqlx::query("SELECT start_at FROM upload_chunks WHERE upload_id = $1 ORDER BY start_at")
        .bind(upload)
        .fetch_all(db)
        .await?
        .iter()
        .map(|r| Ok(r.try_get(0)?))
        .collect()
}

/// One chunk of an upload, opened.
pub(crate) async fn chunk<'c, E>(
    db: E,
    sealer: &crate::seal::Sealer,
    upload: i64,
    start: i64,
) -> Result<Vec<u8>>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let stored: Vec<u8> =
        sqlx::query("SELECT data FROM upload_chunks WHERE upload_id = $1 AND start_at = $2")
            .bind(upload)
            .bind(start)
            .fetch_one(db)
            .await?
            .try_get(0)?;
    Ok(sealer.open_bytes(stored)?)
}

/// A frame larger than this is refused (an agent's batches are far smaller).
const MAX_FRAME: usize = 256 << 20;

/// Counts the entries of an export upload as its bytes go by, every batch checked against the
/// wire format; the first error is kept.
struct EntryCount {
    frames: Option<frames::Reader>,
    batches: u64,
    total: u64,
    error: Option<String>,
}

impl EntryCount {
    /// Counting when `entries` (an export's entries); otherwise only the checksum matters.
    fn new(entries: bool) -> Self {
        Self {
            frames: entries.then(frames::Reader::new),
            batches: 0,
            total: 0,
            error: None,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        let Some(frames) = self.frames.as_mut() else {
            return;
        };
        if self.error.is_some() {
            return;
        }
        frames.push(bytes);
        while let Some((entries, batch)) = frames.next_frame() {
            let i = self.batches;
            self.batches += 1;
            let mut n = 0u32;
            for entry in idgard_model::wire::decode(batch) {
                if let Err(e) = entry {
                    self.error = Some(format!("batch {i}: {e}"));
                    return;
                }
                n += 1;
            }
            if n != entries {
                self.error = Some(format!("batch {i} says {entries} entries but holds {n}"));
                return;
            }
            self.total += u64::from(n);
        }
        if frames.pending() > MAX_FRAME {
            self.error = Some(format!(
                "batch {} is larger than {} MiB",
                self.batches,
                MAX_FRAME >> 20
            ));
        }
    }

    fn finish(self) -> Result<u64, String> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if let Some(frames) = &self.frames {
            frames
                .finish()
                .map_err(|at| format!("a frame at byte {at} is cut short"))?;
        }
        Ok(self.total)
    }
}
