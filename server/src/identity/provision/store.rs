//! Storing a computation's orders, and reading what planning needs beyond the identities and
//! their accounts: the target's groups, and keys other identities hold.

use super::ProvisionReport;
use super::deps;
use super::groups::{Dep, GroupPlanner};
use super::plan::Planned;
use crate::db::{Col, Tx, in_list, multi_row_values};
use crate::error::Result;
use crate::identity::repo::parse_attrs;
use crate::identity::rules::{Evaluator, Groups};
use futures_util::TryStreamExt as _;
use idgard_protocol::OrderState;
use idgard_protocol::model::OrderKind;
use sqlx::Row;
use std::collections::{HashMap, HashSet};

/// Stores computed orders; those that wait for others (`deps`) are stored `waiting`, with
/// their dependencies (a dry run stores neither).
pub async fn insert_orders(
    tx: &mut Tx,
    job: Option<i64>,
    target: &str,
    state: OrderState,
    planned: &[Planned],
    deps: &[Dep],
    now: i64,
) -> Result<()> {
    let dry = state == OrderState::Dry;
    let waits: HashSet<&str> = deps.iter().map(|d| d.order.as_str()).collect();
    for chunk in planned.chunks(100) {
        // The job, the target and the time are bound once per statement ($1 to $3).
        use Col::{Row, Shared};
        let values = multi_row_values(
            chunk.len(),
            3,
            7,
            &[
                Row(0),
                Shared(1),
                Shared(2),
                Row(1),
                Row(2),
                Row(3),
                Row(4),
                Row(5),
                Row(6),
                Shared(3),
                Shared(3),
                Shared(3),
            ],
        );
        let sql = format!(
            "INSERT INTO orders (id, job_id, connection, entity_type, key, identity, kind, body, state, \
             next_ms, created_ms, updated_ms) VALUES {values}"
        );
        let mut q = sqlx::query(&sql).bind(job).bind(target).bind(now);
        for p in chunk {
            let state = if !dry && waits.contains(p.order.id.as_str()) {
                OrderState::Waiting
            } else {
                state
            };
            q = q
                .bind(&p.order.id)
                .bind(&p.order.entity_type)
                .bind(&p.order.key)
                .bind(p.identity.clone())
                .bind(p.order.kind.name())
                .bind(serde_json::to_string(&p.order).expect("orders serialise"))
                .bind(state.as_str());
        }
        q.execute(&mut **tx).await?;
    }
    if !dry {
        deps::insert(tx, deps).await?;
    }
    Ok(())
}

/// A create for a key the target already holds as another identity's account is a conflict,
/// not a takeover; a create for a key whose account waits for review (`unlinked`) waits for
/// that review. Such creates are dropped and counted. Returns the ids of the orders dropped.
pub async fn drop_taken_keys(
    tx: &mut Tx,
    target: &str,
    planned: &mut Vec<Planned>,
    report: &mut ProvisionReport,
) -> Result<HashSet<String>> {
    let creates: Vec<&str> = planned
        .iter()
        .filter(|p| p.identity.is_some() && matches!(p.order.kind, OrderKind::Create { .. }))
        .map(|p| p.order.key.as_str())
        .collect();
    if creates.is_empty() {
        return Ok(HashSet::new());
    }
    let sql = format!(
        "SELECT key, identity, situation FROM links WHERE connection = $1 \
         AND situation IN ('linked', 'deleted', 'unlinked') AND key IN ({})",
        in_list(1, creates.len())
    );
    let mut q = sqlx::query(&sql).bind(target);
    for k in &creates {
        q = q.bind(*k);
    }
    let mut owners: HashMap<String, Option<String>> = HashMap::new();
    let mut reviewed: HashSet<String> = HashSet::new();
    for r in q.fetch_all(&mut **tx).await? {
        let key: String = r.try_get(0)?;
        if r.try_get::<String, _>(2)? == "unlinked" {
            reviewed.insert(key);
        } else {
            owners.insert(key, r.try_get(1)?);
        }
    }
    let mut dropped: HashSet<String> = HashSet::new();
    planned.retain(|p| {
        let create = matches!(p.order.kind, OrderKind::Create { .. }) && p.identity.is_some();
        if create && reviewed.contains(&p.order.key) {
            report.creates -= 1;
            report.error(format!(
                "identity `{}`: account `{}` exists and waits for review; confirm or reject the \
                 match on the connection's page: no account is created meanwhile",
                p.identity.as_deref().unwrap_or("?"),
                p.order.key
            ));
            dropped.insert(p.order.id.clone());
            return false;
        }
        let taken = create
            && owners
                .get(&p.order.key)
                .is_some_and(|owner| owner.as_ref() != p.identity.as_ref());
        if taken {
            report.creates -= 1;
            report.conflicts += 1;
            report.error(format!(
                "identity `{}`: account `{}` already belongs to identity `{}`; no account is created",
                p.identity.as_deref().unwrap_or("?"),
                p.order.key,
                owners[&p.order.key].as_deref().unwrap_or("?")
            ));
            dropped.insert(p.order.id.clone());
        }
        !taken
    });
    Ok(dropped)
}

/// The target's groups (current entries of the groups' entity type) and the creates of groups
/// still under way, for membership planning.
pub async fn load_groups<'r>(
    tx: &mut Tx,
    target: &str,
    rules: &'r Groups,
    ev: &Evaluator<'_>,
) -> Result<GroupPlanner<'r>> {
    let mut planner = GroupPlanner::new(rules);
    {
        let mut rows = sqlx::query(
            "SELECT key, attrs FROM entries WHERE connection = $1 AND entity_type = $2 AND valid_to IS NULL",
        )
        .bind(target)
        .bind(&rules.entity_type)
        .fetch(&mut **tx);
        while let Some(r) = rows.try_next().await? {
            let mut attrs = parse_attrs(&r.try_get::<String, _>(1)?)?;
            let Some(name) = attrs
                .get(&rules.name_attribute)
                .and_then(|v| v.first())
                .cloned()
            else {
                continue;
            };
            let members = attrs.remove(&rules.member_attribute).unwrap_or_default();
            let key: String = r.try_get(0)?;
            planner.hold(ev, &key, &name, &members);
        }
    }
    let rows = sqlx::query(
        "SELECT id, body, state FROM orders WHERE connection = $1 AND entity_type = $2 \
         AND kind = 'create' AND identity IS NULL AND state IN ('waiting', 'pending', 'sent', 'retry')",
    )
    .bind(target)
    .bind(&rules.entity_type)
    .fetch_all(&mut **tx)
    .await?;
    for r in rows {
        let order: idgard_protocol::model::Order =
            serde_json::from_str(&r.try_get::<String, _>(1)?)
                .map_err(|e| anyhow::anyhow!("stored order: {e}"))?;
        if let OrderKind::Create { attributes } = &order.kind
            && let Some(name) = attributes
                .get(&rules.name_attribute)
                .and_then(|v| v.first())
        {
            let waiting = r.try_get::<String, _>(2)? == "waiting";
            planner.creating(name, r.try_get(0)?, waiting);
        }
    }
    Ok(planner)
}
