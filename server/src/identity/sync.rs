//! Synchronisation: an export upload into the repository.
//!
//! It reads the upload frame by frame and, inside one transaction, closes the versions that
//! changed or disappeared and inserts the new ones: a failure, or a server killed in the middle,
//! leaves the repository as it was. The `syncs` row keyed by the upload makes a replay apply
//! nothing.
//!
//! An export that reports what a fulfilled order wrote (the target's own echo of provisioning)
//! *confirms* that version instead of changing it: when every attribute the fulfilled version
//! holds has the same values in the export, the version takes the export's attributes in place,
//! keeps its `sync_id` 0, and counts as `confirmed`, so that the next incremental provisioning
//! does not look at that identity again.

use super::Engine;
use super::repo::{Checked, close_versions, encode_attrs, held_key, insert_versions, parse_attrs};
use super::rules::{Attrs, Changes, Thresholds};
use crate::db::{Col, Tx, in_list, multi_row_values};
use crate::error::{Error, Result};
use crate::queue::{chunk, chunk_starts};
use futures_util::TryStreamExt as _;
use idgard_protocol::frames;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use std::collections::{HashMap, HashSet};

/// Samples of rejected rows kept in a report.
const SAMPLES: usize = 10;
/// Keys per `IN (...)` lookup.
const KEYS_PER_LOOKUP: usize = 100;
/// Confirmations per statement.
const ROWS_PER_CONFIRM: usize = 100;
/// Rows kept before they are written.
const ROWS_PER_FLUSH: usize = 400;

/// What a synchronisation did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SyncReport {
    /// Its id (the `sync_id` of the versions it wrote).
    pub sync_id: i64,
    /// The upload it read.
    pub upload_id: i64,
    /// The connection.
    pub connection: String,
    /// `full` or `incremental`.
    pub mode: String,
    /// Entries read from the upload.
    pub received: u64,
    /// New entries.
    pub inserted: u64,
    /// Entries whose attributes changed.
    pub updated: u64,
    /// Entries gone (absent from a full export, or deleted in an incremental one).
    pub deleted: u64,
    /// Entries that confirm what a fulfilled order wrote (not changes).
    #[serde(default)]
    pub confirmed: u64,
    /// Entries read and found equal.
    pub unchanged: u64,
    /// Entries without a key, not stored.
    pub missing_key: u64,
    /// Entries whose key was already read in this upload; the first one is kept.
    pub duplicates: u64,
    /// Some of the rejected entries, for people.
    pub samples: Vec<String>,
    /// Current entries before the run.
    pub held_before: u64,
    /// Time spent, ms.
    pub elapsed_ms: u64,
    /// True when this answer is a replay of an earlier run on the same upload.
    #[serde(default)]
    pub replayed: bool,
    /// True for a dry run: counted, nothing kept.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

impl SyncReport {
    /// The counts a threshold looks at.
    pub fn changes(&self) -> Changes {
        Changes {
            inserts: self.inserted,
            updates: self.updated,
            deletes: self.deleted,
        }
    }
}

/// One current version, as a synchronisation compares it.
struct Held {
    id: i64,
    hash: i64,
    /// Written by a fulfilled order, not yet confirmed by an export (`sync_id` 0).
    fulfilled: bool,
}

/// A version to insert.
struct NewRow {
    entity_type: String,
    key: String,
    attrs: String,
    hash: i64,
}

/// What one synchronisation has decided and not written yet.
#[derive(Default)]
struct Pending {
    closes: Vec<i64>,
    inserts: Vec<NewRow>,
    /// Fulfilled versions the export confirms: id, new attributes, hash.
    confirms: Vec<(i64, String, i64)>,
    /// Fulfilled versions whose hash differs: id, the new version, its attributes.
    candidates: Vec<(i64, NewRow, Attrs)>,
}

impl Engine {
    /// Brings an export upload into the repository, in one transaction. `thresholds` are
    /// checked before anything is kept; a replay on the same upload answers the first report.
    /// Once kept, the export's cursor is where the connection's next incremental export starts.
    pub async fn synchronize(
        &self,
        connection: &str,
        upload_id: i64,
        incremental: bool,
        job: Option<i64>,
        thresholds: Option<&Thresholds>,
    ) -> Result<Checked<SyncReport>> {
        let now = self.queue.now();
        let mut tx = self.queue.begin_large().await?;
        let report = self
            .synchronize_in(&mut tx, connection, upload_id, incremental, job, now)
            .await?;
        if report.replayed {
            self.queue.end_large(tx, false).await?;
            return Ok(Checked::Done(report));
        }
        if let Some(t) = thresholds
            && let Some(reason) = t.exceeded(&report.changes(), report.held_before)
        {
            self.queue.end_large(tx, false).await?;
            return Ok(Checked::Blocked {
                reason: format!("synchronize `{connection}`: {reason}"),
                report,
            });
        }
        crate::queue::Queue::keep_cursor(&mut tx, connection, upload_id, now).await?;
        sqlx::query("UPDATE syncs SET report = $1 WHERE id = $2")
            .bind(serde_json::to_string(&report).expect("report serialises"))
            .bind(report.sync_id)
            .execute(&mut *tx)
            .await?;
        self.queue.end_large(tx, true).await?;
        log(connection, &report, "synchronized");
        Ok(Checked::Done(report))
    }

    /// What synchronizing an upload would change, keeping nothing (a dry run): the repository
    /// and the connection's cursor stay as they were.
    pub async fn synchronize_dry(
        &self,
        connection: &str,
        upload_id: i64,
        incremental: bool,
        job: Option<i64>,
    ) -> Result<SyncReport> {
        let mut tx = self.queue.begin_large().await?;
        let mut report = self
            .synchronize_in(
                &mut tx,
                connection,
                upload_id,
                incremental,
                job,
                self.queue.now(),
            )
            .await?;
        self.queue.end_large(tx, false).await?;
        report.dry_run = true;
        log(
            connection,
            &report,
            "synchronize computed (dry run, nothing kept)",
        );
        Ok(report)
    }

    /// Applies an upload inside `tx` (the caller commits or rolls back).
    pub(crate) async fn synchronize_in(
        &self,
        tx: &mut Tx,
        connection: &str,
        upload_id: i64,
        incremental: bool,
        job: Option<i64>,
        now: i64,
    ) -> Result<SyncReport> {
        let started = std::time::Instant::now();
        let mut report = match begin(tx, connection, upload_id, incremental, job, now).await? {
            Ok(report) => report,
            Err(mut replayed) => {
                replayed.replayed = true;
                return Ok(replayed);
            }
        };
        // A full run compares against everything held, read once; an incremental one looks up
        // only the keys it receives.
        let mut held = if incremental {
            HashMap::new()
        } else {
            held_all(tx, connection, report.held_before).await?
        };
        let mut seen: HashSet<String> = HashSet::new();
        let mut pending = Pending::default();
        let total = sqlx::query("SELECT entries FROM uploads WHERE id = $1")
            .bind(upload_id)
            .fetch_optional(&mut **tx)
            .await?
            .and_then(|r| r.try_get::<Option<i64>, _>(0).ok().flatten())
            .map(|n| n as u64);
        let starts = chunk_starts(&mut **tx, upload_id).await?;
        let mut frames = frames::Reader::new();
        for start in starts {
            let data = chunk(&mut **tx, &self.queue.sealer, upload_id, start).await?;
            frames.push(&data);
            while let Some((_, batch)) = frames.next_frame() {
                if incremental {
                    held = held_of(tx, connection, batch).await?;
                }
                compare(batch, &mut held, &mut seen, &mut report, &mut pending)?;
                crate::queue::live::report(report.received, total);
                confirm(tx, &mut report, &mut pending).await?;
                if pending.inserts.len() + pending.confirms.len() >= ROWS_PER_FLUSH {
                    pending.flush(tx, connection, now, report.sync_id).await?;
                }
            }
        }
        if let Err(at) = frames.finish() {
            return Err(Error::invalid(format!(
                "upload {upload_id} ends inside the frame at byte {at}"
            )));
        }
        if !incremental {
            report.deleted += held.len() as u64;
            pending.closes.extend(held.values().map(|h| h.id));
        }
        pending.flush(tx, connection, now, report.sync_id).await?;
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        Ok(report)
    }
}

fn log(connection: &str, report: &SyncReport, what: &str) {
    tracing::info!(
        connection,
        upload = report.upload_id,
        mode = report.mode,
        received = report.received,
        inserted = report.inserted,
        updated = report.updated,
        deleted = report.deleted,
        confirmed = report.confirmed,
        rejected = report.missing_key + report.duplicates,
        "{what} in {} ms",
        report.elapsed_ms
    );
}

/// Starts a synchronisation: the first report of a replayed upload (`Err`), or a new report
/// with its `syncs` row.
async fn begin(
    tx: &mut Tx,
    connection: &str,
    upload_id: i64,
    incremental: bool,
    job: Option<i64>,
    now: i64,
) -> Result<Result<SyncReport, SyncReport>> {
    if let Some(row) = sqlx::query("SELECT report FROM syncs WHERE upload_id = $1")
        .bind(upload_id)
        .fetch_optional(&mut **tx)
        .await?
    {
        let mut report: SyncReport = serde_json::from_str(&row.try_get::<String, _>(0)?)
            .map_err(|e| anyhow::anyhow!("stored sync report: {e}"))?;
        report.replayed = true;
        return Ok(Err(report));
    }
    let upload = sqlx::query("SELECT complete, name, pruned_ms FROM uploads WHERE id = $1")
        .bind(upload_id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| Error::not_found(format!("no upload {upload_id}")))?;
    if upload.try_get::<i64, _>(0)? == 0 || upload.try_get::<String, _>(1)? != "entries" {
        return Err(Error::conflict(format!(
            "upload {upload_id} is not a complete export"
        )));
    }
    if upload.try_get::<Option<i64>, _>(2)?.is_some() {
        return Err(Error::conflict(format!(
            "upload {upload_id} was removed after its retention (queue.upload_retention_h): \
             export again"
        )));
    }
    let mode = if incremental { "incremental" } else { "full" };
    let sync_id: i64 = sqlx::query(
        "INSERT INTO syncs (upload_id, job_id, connection, mode, report, created_ms) \
         VALUES ($1, $2, $3, $4, '{}', $5) RETURNING id",
    )
    .bind(upload_id)
    .bind(job)
    .bind(connection)
    .bind(mode)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?
    .try_get(0)?;
    let held_before =
        sqlx::query("SELECT COUNT(*) FROM entries WHERE connection = $1 AND valid_to IS NULL")
            .bind(connection)
            .fetch_one(&mut **tx)
            .await?
            .try_get::<i64, _>(0)? as u64;
    Ok(Ok(SyncReport {
        sync_id,
        upload_id,
        connection: connection.to_owned(),
        mode: mode.to_owned(),
        held_before,
        ..Default::default()
    }))
}

fn held_row(row: &sqlx::any::AnyRow) -> Result<(String, Held)> {
    let etype: String = row.try_get(1)?;
    let key: String = row.try_get(2)?;
    Ok((
        held_key(&etype, &key),
        Held {
            id: row.try_get(0)?,
            hash: row.try_get(3)?,
            fulfilled: row.try_get::<i64, _>(4)? == 0,
        },
    ))
}

/// Every current version of a connection.
async fn held_all(tx: &mut Tx, connection: &str, count: u64) -> Result<HashMap<String, Held>> {
    let mut held = HashMap::with_capacity(count as usize);
    let mut rows = sqlx::query(
        "SELECT id, entity_type, key, hash, sync_id FROM entries WHERE connection = $1 AND valid_to IS NULL",
    )
    .bind(connection)
    .fetch(&mut **tx);
    while let Some(row) = rows.try_next().await? {
        let (k, h) = held_row(&row)?;
        held.insert(k, h);
    }
    Ok(held)
}

/// The current versions of the keys of one batch.
async fn held_of(tx: &mut Tx, connection: &str, batch: &[u8]) -> Result<HashMap<String, Held>> {
    let keys: Vec<&str> = idgard_model::wire::decode(batch)
        .filter_map(|e| e.ok().map(|e| e.key))
        .filter(|k| !k.is_empty())
        .collect();
    let mut held = HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(KEYS_PER_LOOKUP) {
        let sql = format!(
            "SELECT id, entity_type, key, hash, sync_id FROM entries WHERE connection = $1 \
             AND valid_to IS NULL AND key IN ({})",
            in_list(1, chunk.len())
        );
        let mut q = sqlx::query(&sql).bind(connection);
        for k in chunk {
            q = q.bind(*k);
        }
        for row in q.fetch_all(&mut **tx).await? {
            let (k, h) = held_row(&row)?;
            held.insert(k, h);
        }
    }
    Ok(held)
}

fn sample(report: &mut SyncReport, text: impl FnOnce() -> String) {
    if report.samples.len() < SAMPLES {
        report.samples.push(text());
    }
}

/// Compares one batch with what is held and decides: unchanged, new, changed, gone, or (for a
/// fulfilled version whose hash differs) to be confirmed or not once its attributes are read.
fn compare(
    batch: &[u8],
    held: &mut HashMap<String, Held>,
    seen: &mut HashSet<String>,
    report: &mut SyncReport,
    pending: &mut Pending,
) -> Result<()> {
    let entries: Vec<_> = idgard_model::wire::decode(batch)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::invalid(format!("the upload holds an invalid batch: {e}")))?;
    for e in entries {
        report.received += 1;
        if e.key.trim().is_empty() {
            report.missing_key += 1;
            sample(report, || {
                let attrs: Vec<String> = e
                    .attributes()
                    .take(4)
                    .map(|(n, v)| format!("{n}={}", v.join("|")))
                    .collect();
                format!("{} without a key ({})", e.entity_type, attrs.join(", "))
            });
            continue;
        }
        let hk = held_key(e.entity_type, e.key);
        if !seen.insert(hk.clone()) {
            report.duplicates += 1;
            sample(report, || {
                format!(
                    "{} `{}` appears more than once; the first one is kept",
                    e.entity_type, e.key
                )
            });
            continue;
        }
        let old = held.remove(&hk);
        if e.op == idgard_model::wire::EntryOp::Delete {
            match old {
                Some(o) => {
                    report.deleted += 1;
                    pending.closes.push(o.id);
                }
                None => report.unchanged += 1,
            }
            continue;
        }
        let attrs: Attrs = e
            .attributes()
            .map(|(n, v)| (n.to_owned(), v.into_iter().map(str::to_owned).collect()))
            .collect();
        let (json, hash) = encode_attrs(&attrs);
        let row = NewRow {
            entity_type: e.entity_type.to_owned(),
            key: e.key.to_owned(),
            attrs: json,
            hash,
        };
        match old {
            Some(o) if o.hash == hash => report.unchanged += 1,
            Some(o) if o.fulfilled => pending.candidates.push((o.id, row, attrs)),
            Some(o) => {
                report.updated += 1;
                pending.closes.push(o.id);
                pending.inserts.push(row);
            }
            None => {
                report.inserted += 1;
                pending.inserts.push(row);
            }
        }
    }
    Ok(())
}

/// Decides the candidates of `compare`: a fulfilled version is confirmed when the export holds
/// every one of its attributes with the same values; otherwise the entry changed.
async fn confirm(tx: &mut Tx, report: &mut SyncReport, pending: &mut Pending) -> Result<()> {
    if pending.candidates.is_empty() {
        return Ok(());
    }
    let candidates = std::mem::take(&mut pending.candidates);
    let mut written: HashMap<i64, Attrs> = HashMap::with_capacity(candidates.len());
    for chunk in candidates.chunks(KEYS_PER_LOOKUP) {
        let sql = format!(
            "SELECT id, attrs FROM entries WHERE id IN ({})",
            in_list(0, chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for (id, _, _) in chunk {
            q = q.bind(*id);
        }
        for row in q.fetch_all(&mut **tx).await? {
            written.insert(row.try_get(0)?, parse_attrs(&row.try_get::<String, _>(1)?)?);
        }
    }
    for (id, row, exported) in candidates {
        let echo = written
            .get(&id)
            .is_some_and(|w| w.iter().all(|(n, v)| exported.get(n) == Some(v)));
        if echo {
            report.confirmed += 1;
            pending.confirms.push((id, row.attrs, row.hash));
        } else {
            report.updated += 1;
            pending.closes.push(id);
            pending.inserts.push(row);
        }
    }
    Ok(())
}

impl Pending {
    /// Writes what was decided.
    async fn flush(&mut self, tx: &mut Tx, connection: &str, now: i64, sync_id: i64) -> Result<()> {
        close_versions(tx, &self.closes, now, sync_id).await?;
        self.closes.clear();
        let rows: Vec<(&str, &str, &str, i64)> = self
            .inserts
            .iter()
            .map(|r| {
                (
                    r.entity_type.as_str(),
                    r.key.as_str(),
                    r.attrs.as_str(),
                    r.hash,
                )
            })
            .collect();
        insert_versions(tx, connection, &rows, now, sync_id).await?;
        self.inserts.clear();
        // Confirmations go as multi-row updates (a statement per row costs a round trip each).
        for chunk in self.confirms.chunks(ROWS_PER_CONFIRM) {
            let values =
                multi_row_values(chunk.len(), 0, 3, &[Col::Row(0), Col::Row(1), Col::Row(2)]);
            let sql = format!(
                "WITH v (id, attrs, hash) AS (VALUES {values}) \
                 UPDATE entries SET attrs = v.attrs, hash = v.hash FROM v WHERE entries.id = v.id"
            );
            let mut q = sqlx::query(&sql);
            for (id, attrs, hash) in chunk {
                q = q.bind(*id).bind(attrs.as_str()).bind(*hash);
            }
            q.execute(&mut **tx).await?;
        }
        self.confirms.clear();
        Ok(())
    }
}
