//! Orders on their way: handed to fulfil tasks page by page, their results recorded, and the
//! repository brought in line with what was done, a piece of results at a time.

use super::super::Engine;
use super::super::repo::{close_versions, current_of, encode_attrs, insert_versions, parse_attrs};
use super::super::rules::Attrs;
use crate::db::{Col, Tx, in_list, multi_row_values};
use crate::error::{Error, Result};
use crate::queue::require_lease;
use idgard_protocol::model::{ChangeOp, Order, OrderKind, OrderOutcome};
use idgard_protocol::{OrderResults, OrderResultsAnswer, OrderState, TaskOrders};
use sqlx::Row;
use std::collections::HashMap;

/// Orders handed to a fulfil task in one page at most.
const ORDERS_PER_PAGE: i64 = 5_000;

/// Ready orders of a target not yet handed to this task (`$1` target, `$2` now, `$3` task).
const READY: &str = "FROM orders WHERE connection = $1 AND state IN ('pending', 'retry') \
     AND next_ms <= $2 AND (task_id IS NULL OR task_id <> $3)";

/// The same in one state (`$4`), in the order of the `orders_ready` index (no sort).
const READY_IN: &str = "FROM orders WHERE connection = $1 AND state = $4 \
     AND next_ms <= $2 AND (task_id IS NULL OR task_id <> $3) ORDER BY next_ms";

impl Engine {
    /// The next page of a fulfil task's orders: those it was given and has not answered (a
    /// restarted agent), or else the next ready ones, now marked as sent with it. An empty page
    /// means the task is done. An order is handed to one task once.
    ///
    /// `fresh`: the agent still holds orders it was given (it carries them out, or their results
    /// are on their way) and asks for the next ready ones beside them; an empty page then means
    /// only that none is ready now.
    pub async fn task_orders(
        &self,
        agent: i64,
        task: i64,
        fence: i64,
        fresh: bool,
    ) -> Result<TaskOrders<StoredOrder>> {
        let now = self.queue.now();
        let mut tx = self.queue.begin().await?;
        let held = require_lease(&mut tx, agent, task, fence).await?;
        if held.operation != "fulfill" {
            return Err(Error::invalid(format!("task {task} is not a fulfil task")));
        }
        let connection = held.connection;
        if !fresh {
            let orders = outstanding(&mut tx, &connection, task).await?;
            if !orders.is_empty() {
                tx.commit().await?;
                return Ok(TaskOrders {
                    orders,
                    remaining: None,
                });
            }
        }
        let first = sqlx::query("SELECT 1 FROM orders WHERE task_id = $1 LIMIT 1")
            .bind(task)
            .fetch_optional(&mut *tx)
            .await?
            .is_none();
        if first {
            // Orders waiting for orders that already ended go on (a repair: see `sweep`).
            super::deps::sweep(&mut tx, &connection, now).await?;
            // Orders sent with a task that ended without their result are ready again.
            sqlx::query(
                "UPDATE orders SET state = 'retry' WHERE connection = $1 AND state = 'sent' \
                 AND task_id IN (SELECT id FROM tasks WHERE connection = $1 AND state IN \
                 ('succeeded', 'failed', 'cancelled', 'lost'))",
            )
            .bind(&connection)
            .execute(&mut *tx)
            .await?;
        }
        let ready = hand_out(&mut tx, &connection, task, now).await?;
        let mut remaining = None;
        if first {
            let left: i64 = sqlx::query(&format!("SELECT COUNT(*) {READY}"))
                .bind(&connection)
                .bind(now)
                .bind(task)
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
            remaining = Some(left as u64);
        }
        let orders = bodies(&mut tx, &ready).await?;
        tx.commit().await?;
        Ok(TaskOrders { orders, remaining })
    }

    /// Records results of a fulfil task's orders; a done order is applied to the repository.
    /// Results of orders that already have one are ignored (a replay).
    pub async fn order_results(
        &self,
        agent: i64,
        task: i64,
        body: &OrderResults,
    ) -> Result<OrderResultsAnswer> {
        let now = self.queue.now();
        let mut tx = self.queue.begin().await?;
        require_lease(&mut tx, agent, task, body.fence).await?;
        let given = given(&mut tx, task, body).await?;
        let mut answer = OrderResultsAnswer::default();
        // Each with the key the managed system gave a created entry, when it keys entries itself.
        let mut done: Vec<(&Given, &str, Option<&str>)> = Vec::new();
        // Orders that failed for good: what waits for them is released.
        let mut failed: Vec<String> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for r in &body.results {
            let g = &given[&r.id];
            if g.state != "sent" || !seen.insert(r.id.as_str()) {
                answer.ignored += 1;
                continue;
            }
            answer.recorded += 1;
            match &r.outcome {
                OrderOutcome::Done => done.push((g, r.id.as_str(), None)),
                OrderOutcome::Created(key) => done.push((g, r.id.as_str(), Some(key.as_str()))),
                OrderOutcome::Failed(m) | OrderOutcome::RetryLater(m) => {
                    let retry_later = matches!(r.outcome, OrderOutcome::RetryLater(_));
                    let state = self
                        .record_failure(&mut tx, &r.id, g, m, retry_later, now)
                        .await?;
                    if state == OrderState::Failed {
                        failed.push(r.id.clone());
                    }
                }
            }
        }
        let mut by_connection: HashMap<&str, Vec<(Option<String>, Order)>> = HashMap::new();
        for (g, _, created) in &done {
            let mut order = g.order.clone();
            if let Some(key) = created {
                // The account is held under the key the target's exports will report.
                order.key = (*key).to_owned();
            }
            by_connection
                .entry(g.connection.as_str())
                .or_default()
                .push((g.identity.clone(), order));
        }
        for (connection, orders) in by_connection {
            let target = self.rules.as_ref().and_then(|r| r.target(connection));
            let shape = Shape {
                enabled: target.and_then(|t| t.enabled_attribute.as_deref()),
                key: target.and_then(|t| t.key_attribute.as_deref()),
            };
            apply_done(&mut tx, connection, &orders, shape, now).await?;
        }
        let ids: Vec<&str> = done.iter().map(|(_, id, _)| *id).collect();
        for chunk in ids.chunks(100) {
            let sql = format!(
                "UPDATE orders SET state = 'done', message = NULL, next_ms = $1, updated_ms = $1 \
                 WHERE id IN ({})",
                in_list(1, chunk.len())
            );
            let mut q = sqlx::query(&sql).bind(now);
            for id in chunk {
                q = q.bind(*id);
            }
            q.execute(&mut *tx).await?;
        }
        let created: HashMap<&str, &str> = done
            .iter()
            .filter_map(|(_, id, key)| Some((*id, (*key)?)))
            .collect();
        super::deps::keep_created_keys(&mut tx, &created).await?;
        let ended: Vec<String> = ids.iter().map(|i| (*i).to_owned()).chain(failed).collect();
        super::deps::settle(&mut tx, &ended, now).await?;
        tx.commit().await?;
        Ok(answer)
    }

    /// A failed order is offered again after a delay (doubling) until its attempts are used
    /// up; one the connector asked to come back to later uses up no attempt.
    async fn record_failure(
        &self,
        tx: &mut Tx,
        id: &str,
        g: &Given,
        message: &str,
        retry_later: bool,
        now: i64,
    ) -> Result<OrderState> {
        let target = self
            .rules
            .as_ref()
            .and_then(|r| r.target(&g.connection).cloned());
        let (max, after) = target
            .map(|t| (t.max_attempts as i64, t.retry_after_s as i64))
            .unwrap_or((3, 60));
        let (state, next, attempts) = if retry_later {
            (OrderState::Retry, now + after * 1000, g.attempts - 1)
        } else if g.attempts >= max {
            (OrderState::Failed, now, g.attempts)
        } else {
            let backoff = after * 1000 * (1i64 << (g.attempts - 1).clamp(0, 10));
            (OrderState::Retry, now + backoff, g.attempts)
        };
        sqlx::query(
            "UPDATE orders SET state = $1, message = $2, next_ms = $3, updated_ms = $4, attempts = $5 \
             WHERE id = $6",
        )
        .bind(state.as_str())
        .bind(message)
        .bind(next)
        .bind(now)
        .bind(attempts)
        .bind(id)
        .execute(&mut **tx)
        .await?;
        Ok(state)
    }
}

/// An order as stored (its JSON), handed to a fulfil task without being read again.
pub type StoredOrder = Box<serde_json::value::RawValue>;

/// The orders a task was given and has not answered, in order. Read through the target's
/// orders in the `sent` state (few: a page per running task), not through the task's index,
/// which holds every order the task ever had.
/// Marks the next page of ready orders of `connection` (pending ones first, then those to retry)
/// as sent with `task`; returns their ids, in the order they were ready.
async fn hand_out(tx: &mut Tx, connection: &str, task: i64, now: i64) -> Result<Vec<String>> {
    let mut ready: Vec<String> = Vec::new();
    for state in ["pending", "retry"] {
        let room = ORDERS_PER_PAGE - ready.len() as i64;
        if room <= 0 {
            break;
        }
        let rows = sqlx::query(&format!("SELECT id {READY_IN} LIMIT $5"))
            .bind(connection)
            .bind(now)
            .bind(task)
            .bind(state)
            .bind(room)
            .fetch_all(&mut **tx)
            .await?;
        for r in rows {
            ready.push(r.try_get(0)?);
        }
    }
    for chunk in ready.chunks(100) {
        let sql = format!(
            "UPDATE orders SET state = 'sent', task_id = $1, attempts = attempts + 1, updated_ms = $2 \
             WHERE id IN ({})",
            in_list(2, chunk.len())
        );
        let mut q = sqlx::query(&sql).bind(task).bind(now);
        for id in chunk {
            q = q.bind(id);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(ready)
}

/// The stored bodies of the orders `ids`, in that order.
async fn bodies(tx: &mut Tx, ids: &[String]) -> Result<Vec<StoredOrder>> {
    let mut by_id: HashMap<String, String> = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(100) {
        let sql = format!(
            "SELECT id, body FROM orders WHERE id IN ({})",
            in_list(0, chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(id);
        }
        for r in q.fetch_all(&mut **tx).await? {
            by_id.insert(r.try_get(0)?, r.try_get(1)?);
        }
    }
    ids.iter()
        .filter_map(|id| by_id.remove(id))
        .map(|body| {
            serde_json::value::RawValue::from_string(body)
                .map_err(|e| Error::from(anyhow::anyhow!("stored order: {e}")))
        })
        .collect()
}

async fn outstanding(tx: &mut Tx, connection: &str, task: i64) -> Result<Vec<StoredOrder>> {
    let mut out = Vec::new();
    let rows = sqlx::query(
        "SELECT body, task_id FROM orders WHERE connection = $1 AND state = 'sent' ORDER BY next_ms",
    )
    .bind(connection)
    .fetch_all(&mut **tx)
    .await?;
    for r in rows {
        if r.try_get::<Option<i64>, _>(1)? != Some(task) {
            continue;
        }
        out.push(
            serde_json::value::RawValue::from_string(r.try_get::<String, _>(0)?)
                .map_err(|e| Error::from(anyhow::anyhow!("stored order: {e}")))?,
        );
    }
    Ok(out)
}

/// An order as stored, for its result.
struct Given {
    connection: String,
    identity: Option<String>,
    order: Order,
    state: String,
    attempts: i64,
}

/// The orders the results are about; every one must have been given to this task.
async fn given(tx: &mut Tx, task: i64, body: &OrderResults) -> Result<HashMap<String, Given>> {
    let ids: Vec<&str> = body.results.iter().map(|r| r.id.as_str()).collect();
    let mut out = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(100) {
        // By id alone (the primary key): the task's index would read all its orders.
        let sql = format!(
            "SELECT id, connection, identity, body, state, attempts, task_id FROM orders \
             WHERE id IN ({})",
            in_list(0, chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(*id);
        }
        for r in q.fetch_all(&mut **tx).await? {
            if r.try_get::<Option<i64>, _>(6)? != Some(task) {
                continue;
            }
            out.insert(
                r.try_get(0)?,
                Given {
                    connection: r.try_get(1)?,
                    identity: r.try_get(2)?,
                    order: serde_json::from_str(&r.try_get::<String, _>(3)?)
                        .map_err(|e| anyhow::anyhow!("stored order: {e}"))?,
                    state: r.try_get(4)?,
                    attempts: r.try_get(5)?,
                },
            );
        }
    }
    if let Some(r) = body.results.iter().find(|r| !out.contains_key(&r.id)) {
        return Err(Error::invalid(format!(
            "order `{}` was not given to task {task}",
            r.id
        )));
    }
    Ok(out)
}

/// The attributes a target sets by itself: whether an account is enabled, and its key under a
/// name of its own.
#[derive(Debug, Clone, Copy, Default)]
pub struct Shape<'a> {
    /// `enabled_attribute` of the target.
    pub enabled: Option<&'a str>,
    /// `key_attribute` of the target.
    pub key: Option<&'a str>,
}

/// What an account holds after an order was carried out, from what it held (`None`: the
/// account is gone).
pub fn after(held: Option<Attrs>, order: &Order, shape: Shape<'_>) -> Option<Attrs> {
    let enabled = shape.enabled;
    let mut attrs = held.unwrap_or_default();
    match &order.kind {
        OrderKind::Create { attributes } => {
            attrs = attributes.clone();
            if let Some(k) = shape.key {
                attrs.insert(k.to_owned(), vec![order.key.clone()]);
            }
        }
        OrderKind::Update { changes } => {
            for c in changes {
                let v = attrs.entry(c.name.clone()).or_default();
                match c.op {
                    ChangeOp::Replace => *v = c.values.clone(),
                    ChangeOp::Add => {
                        for x in &c.values {
                            if !v.contains(x) {
                                v.push(x.clone());
                            }
                        }
                    }
                    ChangeOp::Remove => v.retain(|x| !c.values.contains(x)),
                }
            }
        }
        OrderKind::Enable | OrderKind::Disable => {
            if let Some(e) = enabled {
                let on = matches!(order.kind, OrderKind::Enable);
                attrs.insert(e.to_owned(), vec![on.to_string()]);
            }
        }
        OrderKind::Delete => return None,
        OrderKind::SetPassword { .. } => {}
    }
    Some(attrs)
}

/// The repository after done orders of one target, set at a time: for each account the
/// orders touched, its current version ends and one new version holds what the last of them
/// left (`sync_id` 0: written by fulfilment, until an export confirms it); a created account
/// is linked to its identity, a deleted one unlinked. A set-password changes nothing here.
async fn apply_done(
    tx: &mut Tx,
    connection: &str,
    orders: &[(Option<String>, Order)],
    shape: Shape<'_>,
    now: i64,
) -> Result<()> {
    let touched: Vec<&(Option<String>, Order)> = orders
        .iter()
        .filter(|(_, o)| !matches!(o.kind, OrderKind::SetPassword { .. }))
        .collect();
    let keys: Vec<&str> = touched.iter().map(|(_, o)| o.key.as_str()).collect();
    let current = current_of(tx, connection, &keys, true).await?;
    // Account (type, key) → (version to end, what it holds now, its link: None = untouched).
    type State = (Option<i64>, Option<Attrs>, Option<Option<String>>);
    let mut accounts: HashMap<(String, String), State> = HashMap::new();
    let mut order_of_keys: Vec<(String, String)> = Vec::new();
    for (identity, o) in touched {
        let id = (o.entity_type.clone(), o.key.clone());
        let state = match accounts.entry(id.clone()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                order_of_keys.push(id.clone());
                let held = current.get(&format!("{}\0{}", o.entity_type, o.key));
                let attrs = match held {
                    Some((_, _, Some(a))) => Some(parse_attrs(a)?),
                    _ => None,
                };
                e.insert((held.map(|h| h.0), attrs, None))
            }
        };
        state.1 = after(state.1.take(), o, shape);
        match o.kind {
            OrderKind::Create { .. } => state.2 = Some(identity.clone()),
            OrderKind::Delete => state.2 = Some(None),
            _ => {}
        }
    }
    let ends: Vec<i64> = accounts.values().filter_map(|s| s.0).collect();
    close_versions(tx, &ends, now, 0).await?;
    let encoded: Vec<(&str, &str, String, i64)> = order_of_keys
        .iter()
        .filter_map(|k| {
            let attrs = accounts[k].1.as_ref()?;
            let (json, hash) = encode_attrs(attrs);
            Some((k.0.as_str(), k.1.as_str(), json, hash))
        })
        .collect();
    let rows: Vec<(&str, &str, &str, i64)> = encoded
        .iter()
        .map(|(t, k, j, h)| (*t, *k, j.as_str(), *h))
        .collect();
    insert_versions(tx, connection, &rows, now, 0).await?;
    let relinked: Vec<(&(String, String), &Option<String>)> = order_of_keys
        .iter()
        .filter_map(|k| accounts[k].2.as_ref().map(|l| (k, l)))
        .collect();
    for chunk in relinked.chunks(100) {
        let mut by_type: HashMap<&str, Vec<&str>> = HashMap::new();
        for (k, _) in chunk {
            by_type.entry(k.0.as_str()).or_default().push(k.1.as_str());
        }
        for (entity_type, keys) in by_type {
            let sql = format!(
                "DELETE FROM links WHERE connection = $1 AND entity_type = $2 AND key IN ({})",
                in_list(2, keys.len())
            );
            let mut q = sqlx::query(&sql).bind(connection).bind(entity_type);
            for k in keys {
                q = q.bind(k);
            }
            q.execute(&mut **tx).await?;
        }
        let linked: Vec<_> = chunk.iter().filter(|(_, l)| l.is_some()).collect();
        if linked.is_empty() {
            continue;
        }
        let sql = format!(
            "INSERT INTO links (connection, entity_type, key, identity, situation, updated_ms) VALUES {}",
            multi_row_values(
                linked.len(),
                3,
                3,
                &[
                    Col::Shared(1),
                    Col::Row(0),
                    Col::Row(1),
                    Col::Row(2),
                    Col::Shared(2),
                    Col::Shared(3)
                ]
            )
        );
        let mut q = sqlx::query(&sql).bind(connection).bind("linked").bind(now);
        for (k, l) in linked {
            q = q.bind(&k.0).bind(&k.1).bind((*l).clone());
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}
