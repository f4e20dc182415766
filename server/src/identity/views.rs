//! The repository as administrators read it: entries and their history, links, orders, and one
//! identity with everything it has. Every list pages by key ([`Page`]); every filter is checked
//! (an unknown connection is "not found", never an empty list).

use super::Engine;
use super::repo::parse_attrs;
use crate::error::{Error, Result};
use crate::page::Page;
use idgard_protocol::{
    AccountView, EntryView, IdentityView, LinkView, OrderState, OrderView, Situation, VersionView,
};
use sqlx::Row;
use sqlx::any::AnyRow;

/// What `GET /api/v1/orders` may be narrowed to.
#[derive(Debug, Clone, Default)]
pub struct OrderFilter {
    /// The job that computed them.
    pub job: Option<i64>,
    /// The target connection.
    pub connection: Option<String>,
    /// Their state.
    pub state: Option<OrderState>,
    /// The identity they serve.
    pub identity: Option<String>,
    /// Their kind (`create`, `update`, `delete`, `enable`, `disable`, `set-password`).
    pub kind: Option<String>,
}

/// The kinds an order may have.
pub const ORDER_KINDS: [&str; 6] = [
    "create",
    "update",
    "delete",
    "enable",
    "disable",
    "set-password",
];

/// Entries read to learn a connection's attribute names.
pub const NAMES_SAMPLE: i64 = 1000;

const ORDER_COLUMNS: &str = "id, job_id, connection, entity_type, key, identity, kind, body, \
     state, attempts, message, created_ms, updated_ms";

impl Engine {
    /// Fails with "not found" unless the connection is one this server knows: named by the
    /// rules, reported by an agent, or holding entries.
    pub async fn known_connection(&self, connection: &str) -> Result<()> {
        if let Some(rules) = &self.rules
            && (rules.identities.connection == connection
                || rules.targets.iter().any(|t| t.connection == connection))
        {
            return Ok(());
        }
        for agent in self
            .queue
            .agents(&Page::first(idgard_protocol::PAGE_MAX))
            .await?
        {
            if agent.connections.iter().any(|c| c.name == connection) {
                return Ok(());
            }
        }
        let held = sqlx::query("SELECT 1 FROM entries WHERE connection = $1 LIMIT 1")
            .bind(connection)
            .fetch_optional(&self.queue.db.read)
            .await?;
        match held {
            Some(_) => Ok(()),
            None => Err(Error::not_found(format!(
                "no connection `{connection}`: no rule, agent or entry names it"
            ))),
        }
    }

    /// Current entries of a connection by key, with their link; `situation` keeps a target's
    /// accounts in that situation.
    pub async fn entries(
        &self,
        connection: &str,
        situation: Option<Situation>,
        page: &Page,
    ) -> Result<Vec<EntryView>> {
        self.known_connection(connection).await?;
        // With a situation, the links of that situation lead (an index holds them in key
        // order): a rare situation among millions of entries is found without reading them all.
        let sql = match situation {
            None => {
                "SELECT e.entity_type, e.key, e.attrs, e.valid_from, l.identity, l.situation \
                 FROM entries e LEFT JOIN links l ON l.connection = e.connection \
                 AND l.entity_type = e.entity_type AND l.key = e.key \
                 WHERE e.connection = $1 AND e.valid_to IS NULL AND e.key > $2 \
                 AND $3 IS NULL ORDER BY e.key LIMIT $4"
            }
            Some(_) => {
                "SELECT e.entity_type, e.key, e.attrs, e.valid_from, l.identity, l.situation \
                 FROM links l JOIN entries e ON e.connection = l.connection \
                 AND e.entity_type = l.entity_type AND e.key = l.key AND e.valid_to IS NULL \
                 WHERE l.connection = $1 AND l.key > $2 AND l.situation = $3 \
                 ORDER BY l.key LIMIT $4"
            }
        };
        let rows = sqlx::query(sql)
            .bind(connection)
            .bind(page.after.as_deref().unwrap_or(""))
            .bind(situation.map(Situation::as_str))
            .bind(page.sql_limit())
            .fetch_all(&self.queue.db.read)
            .await?;
        rows.iter().map(entry_view).collect()
    }

    /// One current entry and its link.
    pub async fn entry(&self, connection: &str, key: &str) -> Result<EntryView> {
        self.known_connection(connection).await?;
        let row = sqlx::query(
            "SELECT e.entity_type, e.key, e.attrs, e.valid_from, l.identity, l.situation \
             FROM entries e LEFT JOIN links l ON l.connection = e.connection \
             AND l.entity_type = e.entity_type AND l.key = e.key \
             WHERE e.connection = $1 AND e.valid_to IS NULL AND e.key = $2",
        )
        .bind(connection)
        .bind(key)
        .fetch_optional(&self.queue.db.read)
        .await?
        .ok_or_else(|| Error::not_found(format!("no entry `{key}` in `{connection}`")))?;
        entry_view(&row)
    }

    /// The attribute names the latest current entries of a connection hold (a sample of
    /// [`NAMES_SAMPLE`]); empty when it holds none.
    pub async fn attribute_names(
        &self,
        connection: &str,
    ) -> Result<std::collections::BTreeSet<String>> {
        let rows = sqlx::query(
            "SELECT attrs FROM entries WHERE connection = $1 AND valid_to IS NULL \
             ORDER BY id DESC LIMIT $2",
        )
        .bind(connection)
        .bind(NAMES_SAMPLE)
        .fetch_all(&self.queue.db.read)
        .await?;
        let mut names = std::collections::BTreeSet::new();
        for r in rows {
            names.extend(parse_attrs(&r.try_get::<String, _>(0)?)?.into_keys());
        }
        Ok(names)
    }

    /// Every version of one entry, oldest first.
    pub async fn history(&self, connection: &str, key: &str) -> Result<Vec<VersionView>> {
        self.known_connection(connection).await?;
        let versions = self.versions(connection, key).await?;
        if versions.is_empty() {
            return Err(Error::not_found(format!(
                "no entry `{key}` in `{connection}`"
            )));
        }
        Ok(versions)
    }

    async fn versions(&self, connection: &str, key: &str) -> Result<Vec<VersionView>> {
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
                Ok(VersionView {
                    entity_type: r.try_get(0)?,
                    attributes: parse_attrs(&r.try_get::<String, _>(1)?)?,
                    valid_from_ms: r.try_get(2)?,
                    valid_to_ms: r.try_get(3)?,
                    sync_id: r.try_get(4)?,
                })
            })
            .collect()
    }

    /// A target's accounts by key, in one situation (orphans: `unmatched`) or all.
    pub async fn links(
        &self,
        connection: &str,
        situation: Option<Situation>,
        page: &Page,
    ) -> Result<Vec<LinkView>> {
        self.known_connection(connection).await?;
        let rows = sqlx::query(
            "SELECT entity_type, key, identity, situation, updated_ms FROM links \
             WHERE connection = $1 AND ($2 IS NULL OR situation = $2) AND key > $3 \
             ORDER BY key, entity_type LIMIT $4",
        )
        .bind(connection)
        .bind(situation.map(Situation::as_str))
        .bind(page.after.as_deref().unwrap_or(""))
        .bind(page.sql_limit())
        .fetch_all(&self.queue.db.read)
        .await?;
        rows.iter().map(link_view).collect()
    }

    /// Orders, newest first; `page.after` is the last order id of the previous page.
    pub async fn orders(&self, filter: &OrderFilter, page: &Page) -> Result<Vec<OrderView>> {
        if let Some(job) = filter.job {
            self.queue.job(job).await?;
        }
        if let Some(c) = &filter.connection {
            self.known_connection(c).await?;
        }
        if let Some(k) = &filter.kind
            && !ORDER_KINDS.contains(&k.as_str())
        {
            return Err(Error::invalid(format!(
                "kind `{k}`: one of {}",
                ORDER_KINDS.join(", ")
            )));
        }
        let after = match &page.after {
            None => None,
            Some(id) => Some(
                sqlx::query("SELECT created_ms FROM orders WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.queue.db.read)
                    .await?
                    .ok_or_else(|| Error::invalid(format!("after={id}: no such order")))?
                    .try_get::<i64, _>(0)?,
            ),
        };
        let sql = format!(
            "SELECT {ORDER_COLUMNS} FROM orders \
             WHERE ($1 IS NULL OR job_id = $1) AND ($2 IS NULL OR connection = $2) \
             AND ($3 IS NULL OR state = $3) AND ($4 IS NULL OR identity = $4) \
             AND ($5 IS NULL OR created_ms < $5 OR (created_ms = $5 AND id > $6)) \
             AND ($8 IS NULL OR kind = $8) ORDER BY created_ms DESC, id LIMIT $7"
        );
        let rows = sqlx::query(&sql)
            .bind(filter.job)
            .bind(filter.connection.as_deref())
            .bind(filter.state.map(OrderState::as_str))
            .bind(filter.identity.as_deref())
            .bind(after)
            .bind(page.after.as_deref().unwrap_or(""))
            .bind(page.sql_limit())
            .bind(filter.kind.as_deref())
            .fetch_all(&self.queue.db.read)
            .await?;
        rows.iter().map(order_view).collect()
    }

    /// One order.
    pub async fn order(&self, id: &str) -> Result<OrderView> {
        let row = sqlx::query(&format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.queue.db.read)
            .await?
            .ok_or_else(|| Error::not_found(format!("no order `{id}`")))?;
        order_view(&row)
    }

    /// One identity: its attributes and history in the source, its accounts in every target
    /// and the orders for it still under way.
    pub async fn identity(&self, key: &str) -> Result<IdentityView> {
        let rules = self.rules.as_ref().ok_or_else(|| {
            Error::conflict(
                "this server has no rules: it knows no identities (start it with --rules)",
            )
        })?;
        let source = &rules.identities.connection;
        let history = self.versions(source, key).await?;
        let mut accounts = Vec::new();
        for t in &rules.targets {
            accounts.extend(self.accounts_of(&t.connection, key).await?);
        }
        if history.is_empty() && accounts.is_empty() {
            return Err(Error::not_found(format!(
                "no identity `{key}` in `{source}`"
            )));
        }
        let attributes = history
            .last()
            .filter(|v| v.valid_to_ms.is_none())
            .map(|v| v.attributes.clone());
        let rows = sqlx::query(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE identity = $1 \
             AND state IN ('waiting', 'pending', 'sent', 'retry') ORDER BY created_ms, id"
        ))
        .bind(key)
        .fetch_all(&self.queue.db.read)
        .await?;
        Ok(IdentityView {
            key: key.to_owned(),
            connection: source.clone(),
            attributes,
            accounts,
            orders: rows.iter().map(order_view).collect::<Result<_>>()?,
            history,
        })
    }

    /// An identity's accounts in one target, with their current attributes.
    async fn accounts_of(&self, connection: &str, identity: &str) -> Result<Vec<AccountView>> {
        let rows = sqlx::query(
            "SELECT l.entity_type, l.key, l.identity, l.situation, l.updated_ms, l.connection, \
             e.attrs FROM links l LEFT JOIN entries e ON e.connection = l.connection \
             AND e.entity_type = l.entity_type AND e.key = l.key AND e.valid_to IS NULL \
             WHERE l.connection = $1 AND l.identity = $2 ORDER BY l.key",
        )
        .bind(connection)
        .bind(identity)
        .fetch_all(&self.queue.db.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AccountView {
                    link: link_view(r)?,
                    connection: r.try_get(5)?,
                    attributes: r
                        .try_get::<Option<String>, _>(6)?
                        .map(|a| parse_attrs(&a))
                        .transpose()?,
                })
            })
            .collect()
    }
}

fn situation_of(stored: &str) -> Result<Situation> {
    Situation::parse(stored)
        .ok_or_else(|| Error::from(anyhow::anyhow!("stored situation `{stored}`")))
}

fn entry_view(r: &AnyRow) -> Result<EntryView> {
    Ok(EntryView {
        entity_type: r.try_get(0)?,
        key: r.try_get(1)?,
        attributes: parse_attrs(&r.try_get::<String, _>(2)?)?,
        valid_from_ms: r.try_get(3)?,
        identity: r.try_get(4)?,
        situation: r
            .try_get::<Option<String>, _>(5)?
            .map(|s| situation_of(&s))
            .transpose()?,
    })
}

fn link_view(r: &AnyRow) -> Result<LinkView> {
    Ok(LinkView {
        entity_type: r.try_get(0)?,
        key: r.try_get(1)?,
        identity: r.try_get(2)?,
        situation: situation_of(&r.try_get::<String, _>(3)?)?,
        updated_ms: r.try_get(4)?,
    })
}

fn order_view(r: &AnyRow) -> Result<OrderView> {
    let state: String = r.try_get(8)?;
    Ok(OrderView {
        id: r.try_get(0)?,
        job_id: r.try_get(1)?,
        connection: r.try_get(2)?,
        entity_type: r.try_get(3)?,
        key: r.try_get(4)?,
        identity: r.try_get(5)?,
        kind: r.try_get(6)?,
        order: serde_json::from_str(&r.try_get::<String, _>(7)?)
            .map_err(|e| anyhow::anyhow!("stored order: {e}"))?,
        state: OrderState::parse(&state)
            .ok_or_else(|| anyhow::anyhow!("stored order state `{state}`"))?,
        attempts: r.try_get::<i64, _>(9)? as u32,
        message: r.try_get(10)?,
        created_ms: r.try_get(11)?,
        updated_ms: r.try_get(12)?,
    })
}
