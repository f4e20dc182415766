//! The identity repository: collected entries with their history, and synchronisation.
//!
//! Every version of an entry is a row; the current one has `valid_to` NULL. A synchronisation
//! reads an export upload frame by frame and, inside one transaction, closes the versions that
//! changed or disappeared and inserts the new ones: a failure, or a server killed in the middle,
//! leaves the repository as it was. The `syncs` row keyed by the upload makes a replay apply
//! nothing.

use super::Engine;
use super::rules::{Attrs, Changes};
use crate::db::{Col, Tx, in_list, multi_row_values};
use crate::error::{Error, Result};
use futures_util::TryStreamExt as _;
use idgard_protocol::frames;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use std::collections::{HashMap, HashSet};

/// Rows per multi-row statement (SQLite allows 32,766 parameters).
const ROWS_PER_INSERT: usize = 100;
/// Keys per `IN (...)` lookup.
const KEYS_PER_LOOKUP: usize = 100;
/// Samples of rejected rows kept in a report.
const SAMPLES: usize = 10;

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

/// How a run that a threshold may stop ended.
pub enum Checked<T> {
    /// Applied.
    Done(T),
    /// Not applied: a threshold was exceeded.
    Blocked {
        /// Why, for people.
        reason: String,
        /// What would have happened.
        report: T,
    },
}

impl<T: Serialize> Checked<T> {
    /// The same, with the report as JSON.
    pub fn into_json(self) -> Checked<serde_json::Value> {
        match self {
            Checked::Done(r) => Checked::Done(serde_json::json!(r)),
            Checked::Blocked { reason, report } => Checked::Blocked {
                reason,
                report: serde_json::json!(report),
            },
        }
    }
}

/// One current version, as a synchronisation compares it.
struct Held {
    id: i64,
    hash: i64,
}

/// A version to insert.
struct NewRow {
    entity_type: String,
    key: String,
    attrs: String,
    hash: i64,
}

/// Canonical JSON of attributes (names sorted) and its hash.
pub fn encode_attrs(attrs: &Attrs) -> (String, i64) {
    let json = serde_json::to_string(attrs).expect("strings serialise");
    let hash = xxhash_rust::xxh3::xxh3_64(json.as_bytes()) as i64;
    (json, hash)
}

fn held_key(entity_type: &str, key: &str) -> String {
    let mut k = String::with_capacity(entity_type.len() + key.len() + 1);
    k.push_str(entity_type);
    k.push('\0');
    k.push_str(key);
    k
}

/// Writes versions in multi-row statements.
pub(crate) async fn insert_versions(
    tx: &mut Tx,
    connection: &str,
    rows: &[(&str, &str, &str, i64)],
    now: i64,
    sync_id: i64,
) -> Result<()> {
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        // The connection, the time and the sync are bound once per statement ($1 to $3).
        use Col::{Row, Shared};
        let values = multi_row_values(
            chunk.len(),
            3,
            4,
            &[
                Shared(1),
                Row(0),
                Row(1),
                Row(2),
                Row(3),
                Shared(2),
                Shared(3),
            ],
        );
        let sql = format!(
            "INSERT INTO entries (connection, entity_type, key, attrs, hash, valid_from, sync_id) VALUES {values}"
        );
        let mut q = sqlx::query(&sql).bind(connection).bind(now).bind(sync_id);
        for (etype, key, attrs, hash) in chunk {
            q = q.bind(*etype).bind(*key).bind(*attrs).bind(*hash);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Ends current versions.
/// `closed_by` is the synchronisation that ended them (0 for a fulfilled order), so that the
/// next incremental provisioning sees deletions as changes.
pub(crate) async fn close_versions(
    tx: &mut Tx,
    ids: &[i64],
    now: i64,
    closed_by: i64,
) -> Result<()> {
    for chunk in ids.chunks(KEYS_PER_LOOKUP) {
        let sql = format!(
            "UPDATE entries SET valid_to = $1, closed_by = $2 WHERE id IN ({})",
            in_list(2, chunk.len())
        );
        let mut q = sqlx::query(&sql).bind(now).bind(closed_by);
        for id in chunk {
            q = q.bind(*id);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Current versions of some keys of a connection: held key → (id, hash, attrs).
pub(crate) async fn current_of(
    tx: &mut Tx,
    connection: &str,
    keys: &[&str],
    with_attrs: bool,
) -> Result<HashMap<String, (i64, i64, Option<String>)>> {
    let mut out = HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(KEYS_PER_LOOKUP) {
        let sql = format!(
            "SELECT id, entity_type, key, hash{} FROM entries WHERE connection = $1 \
             AND valid_to IS NULL AND key IN ({})",
            if with_attrs { ", attrs" } else { "" },
            in_list(1, chunk.len())
        );
        let mut q = sqlx::query(&sql).bind(connection);
        for k in chunk {
            q = q.bind(*k);
        }
        for row in q.fetch_all(&mut **tx).await? {
            let etype: String = row.try_get(1)?;
            let key: String = row.try_get(2)?;
            let attrs = if with_attrs {
                Some(row.try_get::<String, _>(4)?)
            } else {
                None
            };
            out.insert(
                held_key(&etype, &key),
                (row.try_get(0)?, row.try_get(3)?, attrs),
            );
        }
    }
    Ok(out)
}

/// Parses stored attributes.
pub fn parse_attrs(json: &str) -> Result<Attrs> {
    serde_json::from_str(json)
        .map_err(|e| Error::from(anyhow::anyhow!("stored attributes are not valid: {e}")))
}

impl Engine {
    /// Brings an export upload into the repository, in one transaction. `threshold` is
    /// checked before anything is kept; a replay on the same upload answers the first report.
    pub async fn synchronize(
        &self,
        connection: &str,
        upload_id: i64,
        incremental: bool,
        job: Option<i64>,
        thresholds: Option<&super::rules::Thresholds>,
    ) -> Result<Checked<SyncReport>> {
        let started = std::time::Instant::now();
        let now = self.queue.now();
        let mut tx = self.queue.begin().await?;
        if let Some(row) = sqlx::query("SELECT report FROM syncs WHERE upload_id = $1")
            .bind(upload_id)
            .fetch_optional(&mut *tx)
            .await?
        {
            let mut report: SyncReport = serde_json::from_str(&row.try_get::<String, _>(0)?)
                .map_err(|e| anyhow::anyhow!("stored sync report: {e}"))?;
            report.replayed = true;
            return Ok(Checked::Done(report));
        }
        let upload = sqlx::query("SELECT complete, name FROM uploads WHERE id = $1")
            .bind(upload_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| Error::not_found(format!("no upload {upload_id}")))?;
        if upload.try_get::<i64, _>(0)? == 0 || upload.try_get::<String, _>(1)? != "entries" {
            return Err(Error::conflict(format!(
                "upload {upload_id} is not a complete export"
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
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        let mut report = SyncReport {
            sync_id,
            upload_id,
            connection: connection.to_owned(),
            mode: mode.to_owned(),
            ..Default::default()
        };
        report.held_before =
            sqlx::query("SELECT COUNT(*) FROM entries WHERE connection = $1 AND valid_to IS NULL")
                .bind(connection)
                .fetch_one(&mut *tx)
                .await?
                .try_get::<i64, _>(0)? as u64;

        // A full run compares against everything held, read once; an incremental one looks up
        // only the keys it receives.
        let mut held: HashMap<String, Held> = HashMap::new();
        if !incremental {
            held.reserve(report.held_before as usize);
            let mut rows = sqlx::query(
                "SELECT id, entity_type, key, hash FROM entries WHERE connection = $1 AND valid_to IS NULL",
            )
            .bind(connection)
            .fetch(&mut *tx);
            while let Some(row) = rows.try_next().await? {
                let etype: String = row.try_get(1)?;
                let key: String = row.try_get(2)?;
                held.insert(
                    held_key(&etype, &key),
                    Held {
                        id: row.try_get(0)?,
                        hash: row.try_get(3)?,
                    },
                );
            }
        }
        let mut seen: HashSet<String> = HashSet::new();
        let starts: Vec<i64> = sqlx::query(
            "SELECT start_at FROM upload_chunks WHERE upload_id = $1 ORDER BY start_at",
        )
        .bind(upload_id)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<std::result::Result<_, _>>()?;
        let mut frames = frames::Reader::new();
        let mut closes: Vec<i64> = Vec::new();
        let mut inserts: Vec<NewRow> = Vec::new();
        for start in starts {
            let data: Vec<u8> = sqlx::query(
                "SELECT data FROM upload_chunks WHERE upload_id = $1 AND start_at = $2",
            )
            .bind(upload_id)
            .bind(start)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
            frames.push(&data);
            while let Some((_, batch)) = frames.next_frame() {
                self.sync_batch(
                    &mut tx,
                    connection,
                    batch,
                    incremental,
                    &mut held,
                    &mut seen,
                    &mut report,
                    &mut closes,
                    &mut inserts,
                )
                .await?;
                if inserts.len() >= ROWS_PER_INSERT * 4 {
                    flush(&mut tx, connection, &mut closes, &mut inserts, now, sync_id).await?;
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
            closes.extend(held.values().map(|h| h.id));
        }
        flush(&mut tx, connection, &mut closes, &mut inserts, now, sync_id).await?;
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        if let Some(t) = thresholds
            && let Some(reason) = t.exceeded(&report.changes(), report.held_before)
        {
            tx.rollback().await?;
            return Ok(Checked::Blocked {
                reason: format!("synchronize `{connection}`: {reason}"),
                report,
            });
        }
        sqlx::query("UPDATE syncs SET report = $1 WHERE id = $2")
            .bind(serde_json::to_string(&report).expect("report serialises"))
            .bind(sync_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(
            connection,
            upload = upload_id,
            mode,
            received = report.received,
            inserted = report.inserted,
            updated = report.updated,
            deleted = report.deleted,
            rejected = report.missing_key + report.duplicates,
            "synchronized in {} ms",
            report.elapsed_ms
        );
        Ok(Checked::Done(report))
    }

    #[allow(clippy::too_many_arguments)]
    async fn sync_batch(
        &self,
        tx: &mut Tx,
        connection: &str,
        batch: &[u8],
        incremental: bool,
        held: &mut HashMap<String, Held>,
        seen: &mut HashSet<String>,
        report: &mut SyncReport,
        closes: &mut Vec<i64>,
        inserts: &mut Vec<NewRow>,
    ) -> Result<()> {
        let entries: Vec<_> = idgard_model::wire::decode(batch)
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::invalid(format!("the upload holds an invalid batch: {e}")))?;
        if incremental {
            let keys: Vec<&str> = entries
                .iter()
                .map(|e| e.key)
                .filter(|k| !k.is_empty())
                .collect();
            for (k, (id, hash, _)) in current_of(tx, connection, &keys, false).await? {
                held.insert(k, Held { id, hash });
            }
        }
        for e in entries {
            report.received += 1;
            if e.key.trim().is_empty() {
                report.missing_key += 1;
                if report.samples.len() < SAMPLES {
                    let attrs: Vec<String> = e
                        .attributes()
                        .take(4)
                        .map(|(n, v)| format!("{n}={}", v.join("|")))
                        .collect();
                    report.samples.push(format!(
                        "{} without a key ({})",
                        e.entity_type,
                        attrs.join(", ")
                    ));
                }
                continue;
            }
            let hk = held_key(e.entity_type, e.key);
            if !seen.insert(hk.clone()) {
                report.duplicates += 1;
                if report.samples.len() < SAMPLES {
                    report.samples.push(format!(
                        "{} `{}` appears more than once; the first one is kept",
                        e.entity_type, e.key
                    ));
                }
                continue;
            }
            let old = held.remove(&hk);
            match e.op {
                idgard_model::wire::EntryOp::Delete => match old {
                    Some(o) => {
                        report.deleted += 1;
                        closes.push(o.id);
                    }
                    None => report.unchanged += 1,
                },
                idgard_model::wire::EntryOp::Upsert => {
                    let attrs: Attrs = e
                        .attributes()
                        .map(|(n, v)| (n.to_owned(), v.into_iter().map(str::to_owned).collect()))
                        .collect();
                    let (json, hash) = encode_attrs(&attrs);
                    match old {
                        Some(o) if o.hash == hash => {
                            report.unchanged += 1;
                            continue;
                        }
                        Some(o) => {
                            report.updated += 1;
                            closes.push(o.id);
                        }
                        None => report.inserted += 1,
                    }
                    inserts.push(NewRow {
                        entity_type: e.entity_type.to_owned(),
                        key: e.key.to_owned(),
                        attrs: json,
                        hash,
                    });
                }
            }
        }
        if incremental {
            held.clear();
        }
        Ok(())
    }

    /// Current entries of a connection, by key order, for the API.
    pub async fn entries(
        &self,
        connection: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<serde_json::Value>> {
        let rows = sqlx::query(
            "SELECT e.entity_type, e.key, e.attrs, e.valid_from, l.identity, l.situation \
             FROM entries e LEFT JOIN links l ON l.connection = e.connection \
             AND l.entity_type = e.entity_type AND l.key = e.key \
             WHERE e.connection = $1 AND e.valid_to IS NULL AND e.key > $2 \
             ORDER BY e.key LIMIT $3",
        )
        .bind(connection)
        .bind(after.unwrap_or(""))
        .bind(limit as i64)
        .fetch_all(&self.queue.db.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(serde_json::json!({
                    "entity_type": r.try_get::<String, _>(0)?,
                    "key": r.try_get::<String, _>(1)?,
                    "attributes": parse_attrs(&r.try_get::<String, _>(2)?)?,
                    "valid_from_ms": r.try_get::<i64, _>(3)?,
                    "identity": r.try_get::<Option<String>, _>(4)?,
                    "situation": r.try_get::<Option<String>, _>(5)?,
                }))
            })
            .collect()
    }

    /// Every version of one entry, oldest first.
    pub async fn history(&self, connection: &str, key: &str) -> Result<Vec<serde_json::Value>> {
        let rows = sqlx::query(
            "SELECT entity_type, attrs, valid_from, valid_to, sync_id FROM entries \
             WHERE connection = $1 AND key = $2 ORDER BY valid_from, id",
        )
        .bind(connection)
        .bind(key)
        .fetch_all(&self.queue.db.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(serde_json::json!({
                    "entity_type": r.try_get::<String, _>(0)?,
                    "attributes": parse_attrs(&r.try_get::<String, _>(1)?)?,
                    "valid_from_ms": r.try_get::<i64, _>(2)?,
                    "valid_to_ms": r.try_get::<Option<i64>, _>(3)?,
                    "sync_id": r.try_get::<i64, _>(4)?,
                }))
            })
            .collect()
    }
}

async fn flush(
    tx: &mut Tx,
    connection: &str,
    closes: &mut Vec<i64>,
    inserts: &mut Vec<NewRow>,
    now: i64,
    sync_id: i64,
) -> Result<()> {
    close_versions(tx, closes, now, sync_id).await?;
    closes.clear();
    let rows: Vec<(&str, &str, &str, i64)> = inserts
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
    inserts.clear();
    Ok(())
}
