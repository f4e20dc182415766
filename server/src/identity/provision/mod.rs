//! Provisioning: desired state (from the identities and the rules) against collected state
//! (the target's entries) gives orders; agents fulfil them and their results come back here.
//!
//! A complete computation looks at every identity; an incremental one only at the identities
//! whose source entries changed since the last computation for that target, the accounts that
//! changed in the target, and the accounts of identities that left (their delete may be due).
//! So its cost follows the changes, not the size of the repository.

use super::Engine;
use crate::error::{Error, Result};
mod deps;
mod groups;
mod orders;
mod plan;
mod store;

pub use orders::{Shape, StoredOrder, after};

use super::repo::{Checked, current_of, parse_attrs};
use super::rules::{Attrs, Changes, Rules, Target};
use crate::db::{Col, Tx, in_list, multi_row_values};
use futures_util::TryStreamExt as _;
use idgard_protocol::OrderState;
use idgard_protocol::model::OrderKind;
use plan::Loaded;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use std::collections::{BTreeSet, HashMap, HashSet};

/// What a provisioning computation found and decided.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ProvisionReport {
    /// The target connection.
    pub connection: String,
    /// `complete` or `incremental`.
    pub mode: String,
    /// Whether the orders were only shown.
    pub dry_run: bool,
    /// Identities looked at.
    pub identities: u64,
    /// Orders by kind.
    pub creates: u64,
    /// Updates.
    pub updates: u64,
    /// Enables.
    pub enables: u64,
    /// Disables.
    pub disables: u64,
    /// Deletes.
    pub deletes: u64,
    /// Groups created (each counted among the creates).
    pub groups_created: u64,
    /// Accounts added to groups (each an update of a group, or part of a new group's create).
    pub members_added: u64,
    /// Accounts removed from groups (each an update of a group).
    pub members_removed: u64,
    /// Accounts newly linked to an identity by correlation.
    pub linked: u64,
    /// Accounts matched but left for review.
    pub unlinked: u64,
    /// Accounts no identity matches (orphans).
    pub unmatched: u64,
    /// Identities skipped because an order for them is still in flight.
    pub in_flight: u64,
    /// Identities whose rules could not be evaluated, or whose account key conflicts (see
    /// `samples`).
    pub errors: u64,
    /// Identities whose computed account key is another identity's.
    pub conflicts: u64,
    /// Some errors, for people.
    pub samples: Vec<String>,
    /// Current entries of the target before the run.
    pub held_before: u64,
    /// Time spent, ms.
    pub elapsed_ms: u64,
}

impl ProvisionReport {
    /// Counts an order.
    pub fn count(&mut self, kind: &OrderKind) {
        match kind {
            OrderKind::Create { .. } => self.creates += 1,
            OrderKind::Update { .. } => self.updates += 1,
            OrderKind::Enable => self.enables += 1,
            OrderKind::Disable => self.disables += 1,
            OrderKind::Delete => self.deletes += 1,
            OrderKind::SetPassword { .. } => {}
        }
    }

    /// Counts an error and keeps the first ten for people.
    pub fn error(&mut self, sample: String) {
        self.errors += 1;
        if self.samples.len() < 10 {
            self.samples.push(sample);
        }
    }

    /// Orders computed.
    pub fn orders(&self) -> u64 {
        self.creates + self.updates + self.enables + self.disables + self.deletes
    }

    /// The counts a threshold looks at: enable and disable count as updates.
    pub fn changes(&self) -> Changes {
        Changes {
            inserts: self.creates,
            updates: self.updates + self.enables + self.disables,
            deletes: self.deletes,
        }
    }
}

async fn max_sync(tx: &mut Tx, connection: &str) -> Result<i64> {
    Ok(
        sqlx::query("SELECT COALESCE(MAX(id), 0) FROM syncs WHERE connection = $1")
            .bind(connection)
            .fetch_one(&mut **tx)
            .await?
            .try_get(0)?,
    )
}

impl Engine {
    /// Computes a target's orders and stores them (or, for a dry run, shows them), in one
    /// transaction: a threshold exceeded keeps nothing.
    pub async fn provision(
        &self,
        rules: &Rules,
        target: &str,
        job: Option<i64>,
        complete: bool,
        dry_run: bool,
        approved: bool,
    ) -> Result<Checked<ProvisionReport>> {
        let mut tx = self.queue.begin_large().await?;
        let checked = self
            .provision_in(&mut tx, rules, target, job, complete, dry_run, approved)
            .await?;
        let commit = matches!(checked, Checked::Done(_));
        self.queue.end_large(tx, commit).await?;
        Ok(checked)
    }

    /// [`Engine::provision`] inside `tx` (the caller commits, or rolls back a blocked run).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn provision_in(
        &self,
        tx: &mut Tx,
        rules: &Rules,
        target: &str,
        job: Option<i64>,
        complete: bool,
        dry_run: bool,
        approved: bool,
    ) -> Result<Checked<ProvisionReport>> {
        let started = std::time::Instant::now();
        let t = rules.target(target).ok_or_else(|| {
            Error::invalid(format!(
                "`{target}` is not a target in the rules ({})",
                rules.origin
            ))
        })?;
        let src = &rules.identities.connection;
        let now = self.queue.now();
        let mut report = ProvisionReport {
            connection: target.to_owned(),
            mode: if complete { "complete" } else { "incremental" }.into(),
            dry_run,
            ..Default::default()
        };
        report.held_before =
            sqlx::query("SELECT COUNT(*) FROM entries WHERE connection = $1 AND valid_to IS NULL")
                .bind(target)
                .fetch_one(&mut **tx)
                .await?
                .try_get::<i64, _>(0)? as u64;
        let mark = sqlx::query(
            "SELECT source_sync, target_sync FROM provision_marks WHERE connection = $1",
        )
        .bind(target)
        .fetch_optional(&mut **tx)
        .await?;
        let (source_mark, target_mark) = match (&mark, complete) {
            (Some(r), false) => (r.try_get::<i64, _>(0)?, r.try_get::<i64, _>(1)?),
            _ => (-1, -1),
        };
        let source_now = max_sync(tx, src).await?;
        let target_now = max_sync(tx, target).await?;
        let ev = rules.evaluator();

        // 1. Correlate the target's accounts that have no link yet.
        let sql = format!(
            "SELECT e.key, e.attrs FROM entries e LEFT JOIN links l ON l.connection = e.connection \
             AND l.entity_type = e.entity_type AND l.key = e.key \
             WHERE e.connection = $1 AND e.entity_type = $2 AND e.valid_to IS NULL \
             AND l.key IS NULL{}",
            if complete { "" } else { " AND e.sync_id > $3" }
        );
        let mut q = sqlx::query(&sql).bind(target).bind(&t.entity_type);
        if !complete {
            q = q.bind(target_mark);
        }
        let unlinked_accounts: Vec<(String, String)> = q
            .fetch_all(&mut **tx)
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_>>()?;
        let mut touched: BTreeSet<String> = BTreeSet::new();
        if !unlinked_accounts.is_empty() {
            let mut wanted: Vec<(String, Option<String>)> = Vec::new();
            for (key, attrs) in &unlinked_accounts {
                let attrs = parse_attrs(attrs)?;
                let value = ev.account(&attrs).values(&t.correlation.account);
                match value {
                    Ok(v) => wanted.push((key.clone(), v.into_iter().next())),
                    Err(e) => {
                        report.errors += 1;
                        if report.samples.len() < 10 {
                            report.samples.push(format!("account `{key}`: {e}"));
                        }
                        wanted.push((key.clone(), None));
                    }
                }
            }
            let found = self
                .identities_by(
                    tx,
                    rules,
                    t,
                    wanted.iter().filter_map(|w| w.1.clone()).collect(),
                )
                .await?;
            let mut links = Vec::with_capacity(wanted.len());
            for (key, value) in wanted {
                let identity = value.and_then(|v| found.get(&v).cloned());
                let situation = match (&identity, t.correlation.auto_link) {
                    (Some(_), true) => {
                        report.linked += 1;
                        "linked"
                    }
                    (Some(_), false) => {
                        report.unlinked += 1;
                        "unlinked"
                    }
                    (None, _) => {
                        report.unmatched += 1;
                        "unmatched"
                    }
                };
                if let (Some(i), true) = (&identity, t.correlation.auto_link) {
                    touched.insert(i.clone());
                }
                links.push((key, identity, situation));
            }
            // A dry run keeps nothing but its orders, marked as shown only.
            for chunk in links.chunks(80).filter(|_| !dry_run) {
                let cols = [0, 1, 2, 3, 4, 5].map(Col::Row);
                let sql = format!(
                    "INSERT INTO links (connection, entity_type, key, identity, situation, updated_ms) VALUES {}",
                    multi_row_values(chunk.len(), 0, 6, &cols)
                );
                let mut q = sqlx::query(&sql);
                for (key, identity, situation) in chunk {
                    q = q
                        .bind(target)
                        .bind(&t.entity_type)
                        .bind(key)
                        .bind(identity.clone())
                        .bind(*situation)
                        .bind(now);
                }
                q.execute(&mut **tx).await?;
            }
        }

        // 2. The identities to look at.
        let mut keys: BTreeSet<String> = touched;
        {
            let sql = if complete {
                "SELECT DISTINCT key FROM entries WHERE connection = $1 AND entity_type = $2 \
                 AND (valid_to IS NULL OR sync_id > $3)"
            } else {
                // Versions written, and versions ended (deletions), since the mark.
                "SELECT key FROM entries WHERE connection = $1 AND entity_type = $2 AND sync_id > $3 \
                 UNION SELECT key FROM entries WHERE connection = $1 AND entity_type = $2 AND closed_by > $3"
            };
            let mut rows = sqlx::query(sql)
                .bind(src)
                .bind(&rules.identities.entity_type)
                .bind(source_mark)
                .fetch(&mut **tx);
            while let Some(r) = rows.try_next().await? {
                keys.insert(r.try_get(0)?);
            }
        }
        {
            // Accounts that changed in the target, and identities whose accounts wait for a
            // leave action (their delete may be due now); a complete run takes every link.
            let sql = if complete {
                "SELECT DISTINCT identity FROM links WHERE connection = $1 AND identity IS NOT NULL \
                 AND situation IN ('linked', 'deleted')"
                    .to_owned()
            } else {
                // From the changed versions to their links (each side by an index), so that the
                // cost follows the changes, not the number of links.
                "SELECT l.identity FROM links l WHERE l.connection = $1 AND l.situation = 'deleted' \
                 AND l.identity IS NOT NULL \
                 UNION SELECT l.identity FROM entries e JOIN links l ON l.connection = e.connection \
                 AND l.entity_type = e.entity_type AND l.key = e.key \
                 WHERE e.connection = $1 AND e.sync_id > $2 AND l.situation = 'linked' AND l.identity IS NOT NULL \
                 UNION SELECT l.identity FROM entries e JOIN links l ON l.connection = e.connection \
                 AND l.entity_type = e.entity_type AND l.key = e.key \
                 WHERE e.connection = $1 AND e.closed_by > $2 AND l.situation = 'linked' AND l.identity IS NOT NULL"
                    .to_owned()
            };
            let mut q = sqlx::query(&sql).bind(target);
            if !complete {
                q = q.bind(target_mark);
            }
            let mut rows = q.fetch(&mut **tx);
            while let Some(r) = rows.try_next().await? {
                keys.insert(r.try_get(0)?);
            }
        }
        // Identities whose account someone confirmed since the last provisioning.
        for r in sqlx::query("SELECT identity FROM links_reviewed WHERE connection = $1")
            .bind(target)
            .fetch_all(&mut **tx)
            .await?
        {
            keys.insert(r.try_get(0)?);
        }
        report.identities = keys.len() as u64;

        // 3. Desired against collected, identity by identity (in slices).
        let keys: Vec<String> = keys.into_iter().collect();
        // Orders are stored slice by slice (a threshold or a failure rolls them all back).
        let state = if dry_run {
            OrderState::Dry
        } else {
            OrderState::Pending
        };
        let mut gone_links: Vec<String> = Vec::new();
        let mut superseded = 0u64;
        let mut run = plan::Run {
            claimed: HashSet::new(),
            groups: match &t.groups {
                Some(g) => Some(store::load_groups(tx, target, g, &ev).await?),
                None => None,
            },
        };
        // Creates dropped as conflicts: what waited for them is dropped too.
        let mut dropped: HashSet<String> = HashSet::new();
        for (n, slice) in keys.chunks(100).enumerate() {
            crate::queue::live::report((n * 100) as u64, Some(keys.len() as u64));
            let refs: Vec<&str> = slice.iter().map(String::as_str).collect();
            let people = current_of(tx, src, &refs, true).await?;
            let prefix = format!("{}\0", rules.identities.entity_type);
            let mut left: HashMap<String, i64> = HashMap::new();
            let absent: Vec<&str> = refs
                .iter()
                .copied()
                .filter(|k| !people.contains_key(&format!("{prefix}{k}")))
                .collect();
            if !absent.is_empty() {
                let sql = format!(
                    "SELECT key, MAX(valid_to) FROM entries WHERE connection = $1 AND key IN ({}) GROUP BY key",
                    in_list(1, absent.len())
                );
                let mut q = sqlx::query(&sql).bind(src);
                for k in &absent {
                    q = q.bind(*k);
                }
                for r in q.fetch_all(&mut **tx).await? {
                    left.insert(
                        r.try_get(0)?,
                        r.try_get::<Option<i64>, _>(1)?.unwrap_or(now),
                    );
                }
            }
            // Their accounts.
            let sql = format!(
                "SELECT key, identity, situation FROM links WHERE connection = $1 AND entity_type = $2 \
                 AND situation IN ('linked', 'deleted', 'unlinked') AND identity IN ({})",
                in_list(2, refs.len())
            );
            let mut q = sqlx::query(&sql).bind(target).bind(&t.entity_type);
            for k in &refs {
                q = q.bind(*k);
            }
            let mut accounts: HashMap<String, Vec<String>> = HashMap::new();
            let mut reviewing: HashSet<String> = HashSet::new();
            for r in q.fetch_all(&mut **tx).await? {
                if r.try_get::<String, _>(2)? == "unlinked" {
                    reviewing.insert(r.try_get(1)?);
                    continue;
                }
                accounts
                    .entry(r.try_get(1)?)
                    .or_default()
                    .push(r.try_get(0)?);
            }
            let account_keys: Vec<&str> = accounts.values().flatten().map(String::as_str).collect();
            let collected = current_of(tx, target, &account_keys, true).await?;
            let mut mine: HashMap<String, Vec<(String, Attrs)>> = HashMap::new();
            for (identity, keys) in accounts {
                let mut held = Vec::with_capacity(keys.len());
                for k in keys {
                    if let Some((_, _, Some(a))) = collected.get(&format!("{}\0{k}", t.entity_type))
                    {
                        held.push((k, parse_attrs(a)?));
                    }
                }
                mine.insert(identity, held);
            }
            // Orders still in flight hold their identity back; pending ones are replaced. The
            // query reads by identity only, so that the identity index serves it.
            let sql = format!(
                "SELECT id, identity, state FROM orders WHERE identity IN ({}) AND connection = $1",
                in_list(1, refs.len())
            );
            let mut q = sqlx::query(&sql).bind(target);
            for k in &refs {
                q = q.bind(*k);
            }
            let mut busy: HashSet<String> = HashSet::new();
            let mut replaced: Vec<String> = Vec::new();
            for r in q.fetch_all(&mut **tx).await? {
                match r.try_get::<String, _>(2)?.as_str() {
                    "sent" | "retry" => {
                        busy.insert(r.try_get(1)?);
                    }
                    "pending" | "waiting" => replaced.push(r.try_get(0)?),
                    _ => {}
                }
            }
            if !dry_run && !replaced.is_empty() {
                let sql = format!(
                    "UPDATE orders SET state = 'superseded', updated_ms = $1 WHERE id IN ({})",
                    in_list(1, replaced.len())
                );
                let mut q = sqlx::query(&sql).bind(now);
                for id in &replaced {
                    q = q.bind(id);
                }
                superseded += q.execute(&mut **tx).await?.rows_affected();
            }
            let loaded = Loaded {
                people: people
                    .into_iter()
                    .filter_map(|(k, (_, _, a))| Some((k.strip_prefix(&prefix)?.to_owned(), a?)))
                    .collect(),
                left,
                accounts: mine,
                busy,
                reviewing,
            };
            let plan = plan::plan(rules, t, now, slice, &loaded, &mut run, &mut report);
            gone_links.extend(plan.gone);
            let (mut planned, mut waits) = (plan.orders, plan.deps);
            dropped.extend(store::drop_taken_keys(tx, target, &mut planned, &mut report).await?);
            plan::forget(&mut planned, &mut waits, &dropped);
            store::insert_orders(tx, job, target, state, &planned, &waits, now).await?;
            if !dry_run && !replaced.is_empty() {
                // What waited for the others is released (a group's create goes on without
                // that member).
                deps::settle(tx, &replaced, now).await?;
            }
        }
        if let Some(g) = run.groups {
            let (mut planned, mut waits) = g.finish();
            plan::forget(&mut planned, &mut waits, &dropped);
            store::insert_orders(tx, job, target, state, &planned, &waits, now).await?;
        }
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        if !approved
            && !dry_run
            && let Some(reason) = rules
                .thresholds(target)
                .exceeded(&report.changes(), report.held_before)
        {
            return Ok(Checked::Blocked {
                reason: format!("provisioning `{target}`: {reason}"),
                report,
            });
        }
        if !dry_run {
            if !gone_links.is_empty() {
                for chunk in gone_links.chunks(100) {
                    let sql = format!(
                        "UPDATE links SET situation = 'deleted', updated_ms = $1 WHERE connection = $2 \
                         AND situation = 'linked' AND identity IN ({})",
                        in_list(2, chunk.len())
                    );
                    let mut q = sqlx::query(&sql).bind(now).bind(target);
                    for k in chunk {
                        q = q.bind(k);
                    }
                    q.execute(&mut **tx).await?;
                }
            }
            sqlx::query("DELETE FROM provision_marks WHERE connection = $1")
                .bind(target)
                .execute(&mut **tx)
                .await?;
            sqlx::query("DELETE FROM links_reviewed WHERE connection = $1")
                .bind(target)
                .execute(&mut **tx)
                .await?;
            sqlx::query(
                "INSERT INTO provision_marks (connection, source_sync, target_sync) VALUES ($1, $2, $3)",
            )
            .bind(target)
            .bind(source_now)
            .bind(target_now)
            .execute(&mut **tx)
            .await?;
        }
        tracing::info!(
            target,
            mode = report.mode,
            dry_run,
            identities = report.identities,
            orders = report.orders(),
            superseded,
            errors = report.errors,
            "provisioning computed in {} ms",
            report.elapsed_ms
        );
        Ok(Checked::Done(report))
    }

    /// Identities by the correlation's identity attribute (or key): value → identity key.
    async fn identities_by(
        &self,
        tx: &mut Tx,
        rules: &Rules,
        t: &Target,
        values: Vec<String>,
    ) -> Result<HashMap<String, String>> {
        let src = &rules.identities.connection;
        let mut out = HashMap::new();
        match &t.correlation.identity {
            None => {
                let refs: Vec<&str> = values.iter().map(String::as_str).collect();
                let prefix = format!("{}\0", rules.identities.entity_type);
                for k in current_of(tx, src, &refs, false).await?.into_keys() {
                    if let Some(key) = k.strip_prefix(&prefix) {
                        out.insert(key.to_owned(), key.to_owned());
                    }
                }
            }
            Some(attr) => {
                // An attribute is not indexed: read the identities once.
                let wanted: HashSet<String> = values.into_iter().collect();
                let mut rows = sqlx::query(
                    "SELECT key, attrs FROM entries WHERE connection = $1 AND entity_type = $2 AND valid_to IS NULL",
                )
                .bind(src)
                .bind(&rules.identities.entity_type)
                .fetch(&mut **tx);
                while let Some(r) = rows.try_next().await? {
                    let attrs = parse_attrs(&r.try_get::<String, _>(1)?)?;
                    if let Some(v) = attrs.get(attr).and_then(|v| v.first())
                        && wanted.contains(v)
                    {
                        out.insert(v.clone(), r.try_get(0)?);
                    }
                }
            }
        }
        Ok(out)
    }
}
