//! Finding identities by a name: the attribute the rules name in `identities.search` (its first
//! value, by prefix, case aside), served by an index over that expression which the server
//! creates when it starts with such rules.

use super::Engine;
use crate::db::Backend;
use crate::error::Result;
use idgard_protocol::EntryView;
use sqlx::Row;

/// Most identities a name search answers; people narrow the name for more.
pub const NAME_MATCHES: u32 = 100;

/// The lower-cased first value of attribute `attr` of an entry, in `backend`'s SQL (the same
/// text in the index and in the query, so that the index serves it). `attr` is checked when the
/// rules are read: letters, digits and `_` only.
fn name_expr(backend: Backend, attr: &str) -> String {
    match backend {
        Backend::Sqlite => format!("lower(json_extract(attrs, '$.{attr}[0]'))"),
        Backend::Postgres => format!("(lower((attrs::jsonb) -> '{attr}' ->> 0) COLLATE \"C\")"),
    }
}

impl Engine {
    /// Creates the index name searches use, if the rules name a search attribute and it does
    /// not exist yet (once per attribute: a few seconds over millions of entries).
    pub async fn prepare_search(&self) -> Result<()> {
        let Some(attr) = self
            .rules
            .as_ref()
            .and_then(|r| r.identities.search.clone())
        else {
            return Ok(());
        };
        let started = std::time::Instant::now();
        let expr = name_expr(self.queue.db.backend, &attr);
        sqlx::query(&format!(
            "CREATE INDEX IF NOT EXISTS entries_search_{attr} ON entries \
             (connection, entity_type, {expr}, key) WHERE valid_to IS NULL"
        ))
        .execute(&self.queue.db.pool)
        .await?;
        tracing::info!(
            attribute = attr,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "identities can be searched by name"
        );
        Ok(())
    }

    /// Identities whose search attribute starts with `prefix` (case aside), by that name then
    /// key; at most [`NAME_MATCHES`]. Empty when the rules name no search attribute.
    pub async fn search_names(&self, prefix: &str) -> Result<Vec<EntryView>> {
        let Some(rules) = &self.rules else {
            return Ok(Vec::new());
        };
        let Some(attr) = &rules.identities.search else {
            return Ok(Vec::new());
        };
        let expr = name_expr(self.queue.db.backend, attr);
        let low = prefix.to_lowercase();
        let high = format!("{low}\u{10FFFF}");
        let rows = sqlx::query(&format!(
            "SELECT entity_type, key, attrs, valid_from FROM entries WHERE connection = $1 \
             AND entity_type = $2 AND valid_to IS NULL AND {expr} >= $3 AND {expr} < $4 \
             ORDER BY {expr}, key LIMIT $5"
        ))
        .bind(&rules.identities.connection)
        .bind(&rules.identities.entity_type)
        .bind(&low)
        .bind(&high)
        .bind(i64::from(NAME_MATCHES))
        .fetch_all(&self.queue.db.read)
        .await?;
        rows.iter().map(identity_found).collect()
    }
}

/// An identity a search found: a row of `entity_type, key, attrs, valid_from`.
pub(super) fn identity_found(r: &sqlx::any::AnyRow) -> Result<EntryView> {
    Ok(EntryView {
        entity_type: r.try_get(0)?,
        key: r.try_get(1)?,
        attributes: super::repo::parse_attrs(&r.try_get::<String, _>(2)?)?,
        valid_from_ms: r.try_get(3)?,
        identity: None,
        situation: None,
    })
}
