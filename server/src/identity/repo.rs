//! The identity repository: collected entries with their history.
//!
//! Every version of an entry is a row; the current one has `valid_to` NULL. A version written
//! by a fulfilled order has `sync_id` 0 until an export confirms it (see `sync.rs`).

use super::rules::Attrs;
pub use super::sync::SyncReport;
use crate::db::{Col, Tx, in_list, multi_row_values};
use crate::error::{Error, Result};
use serde::Serialize;
use sqlx::Row;
use std::collections::HashMap;

/// Rows per multi-row statement (SQLite allows 32,766 parameters).
const ROWS_PER_INSERT: usize = 100;
/// Keys per `IN (...)` lookup.
const KEYS_PER_LOOKUP: usize = 100;

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

/// Canonical JSON of attributes (names sorted) and its hash.
pub fn encode_attrs(attrs: &Attrs) -> (String, i64) {
    let json = serde_json::to_string(attrs).expect("strings serialise");
    let hash = xxhash_rust::xxh3::xxh3_64(json.as_bytes()) as i64;
    (json, hash)
}

pub(crate) fn held_key(entity_type: &str, key: &str) -> String {
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
