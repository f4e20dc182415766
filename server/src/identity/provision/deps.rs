//! Orders that wait for others (`waiting`): stored with what they wait for, and released when
//! those end, taking from them what they need (a created key as a member value, or as their own
//! key). An order whose wait ended badly fails with a message that says which order it waited
//! for; one that only came after another goes on.

use super::groups::{Dep, Role};
use crate::db::{Col, Tx, in_list, multi_row_values};
use crate::error::Result;
use idgard_protocol::model::{Order, OrderKind};
use sqlx::Row;
use std::collections::{BTreeMap, HashMap};

/// Stores the dependencies of orders; an order given a new dependency that was ready waits
/// again (a group's create from an earlier computation that gains a member).
pub async fn insert(tx: &mut Tx, deps: &[Dep]) -> Result<()> {
    for chunk in deps.chunks(100) {
        let sql = format!(
            "UPDATE orders SET state = 'waiting' WHERE state = 'pending' AND id IN ({})",
            in_list(0, chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for d in chunk {
            q = q.bind(&d.order);
        }
        q.execute(&mut **tx).await?;
        let cols = [0, 1, 2, 3].map(Col::Row);
        let sql = format!(
            "INSERT INTO order_deps (order_id, on_id, role, attribute) VALUES {}",
            multi_row_values(chunk.len(), 0, 4, &cols)
        );
        let mut q = sqlx::query(&sql);
        for d in chunk {
            q = q
                .bind(&d.order)
                .bind(&d.on)
                .bind(d.role.as_str())
                .bind(d.attribute.clone());
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// One dependency of a waiting order on an order that ended.
struct Ended {
    on: String,
    role: Role,
    attribute: Option<String>,
    /// The key the ended order left (a created entry's), when it was done.
    key: Option<String>,
}

/// Releases the orders that wait for any of `ids` that has ended (done, failed for good or
/// superseded); ids of orders still under way are passed over. Orders failed here release
/// their own waiters in turn. Returns how many orders were released.
pub async fn settle(tx: &mut Tx, ids: &[String], now: i64) -> Result<u64> {
    let mut released = 0;
    let mut ended: Vec<String> = ids.to_vec();
    while !ended.is_empty() {
        let waiting = ended_deps(tx, &ended).await?;
        // Every dependency on these ended orders goes, in a few statements.
        let gone: Vec<&str> = waiting
            .values()
            .flatten()
            .map(|d| d.on.as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        for chunk in gone.chunks(100) {
            let sql = format!(
                "DELETE FROM order_deps WHERE on_id IN ({})",
                in_list(0, chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(*id);
            }
            q.execute(&mut **tx).await?;
        }
        ended = Vec::new();
        let orders: Vec<&String> = waiting.keys().collect();
        for chunk in orders.chunks(100) {
            let (bodies, left) = waiting_orders(tx, chunk).await?;
            for id in chunk {
                let Some(body) = bodies.get(*id) else {
                    continue;
                };
                let deps = &waiting[*id];
                let left = left.get(*id).copied().unwrap_or(0);
                match release(tx, id, body, deps, left, now).await? {
                    Released::Pending => released += 1,
                    Released::Failed => ended.push((*id).clone()),
                    Released::Still => {}
                }
            }
        }
    }
    Ok(released)
}

/// The dependencies on those of `ended` that have ended, by waiting order.
async fn ended_deps(tx: &mut Tx, ended: &[String]) -> Result<BTreeMap<String, Vec<Ended>>> {
    let mut waiting: BTreeMap<String, Vec<Ended>> = BTreeMap::new();
    for chunk in ended.chunks(100) {
        let sql = format!(
            "SELECT d.order_id, d.on_id, d.role, d.attribute, o.state, o.key FROM order_deps d \
             JOIN orders o ON o.id = d.on_id WHERE d.on_id IN ({}) \
             AND o.state IN ('done', 'failed', 'superseded')",
            in_list(0, chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(id);
        }
        for r in q.fetch_all(&mut **tx).await? {
            let role: String = r.try_get(2)?;
            let state: String = r.try_get(4)?;
            waiting.entry(r.try_get(0)?).or_default().push(Ended {
                on: r.try_get(1)?,
                role: Role::parse(&role)
                    .ok_or_else(|| anyhow::anyhow!("stored dependency role `{role}`"))?,
                attribute: r.try_get(3)?,
                key: (state == "done").then(|| r.try_get(5)).transpose()?,
            });
        }
    }
    Ok(waiting)
}

/// The bodies of those of `ids` still waiting, and how many dependencies each has left.
async fn waiting_orders(
    tx: &mut Tx,
    ids: &[&String],
) -> Result<(HashMap<String, String>, HashMap<String, i64>)> {
    let list = in_list(0, ids.len());
    let sql = format!("SELECT id, body FROM orders WHERE id IN ({list}) AND state = 'waiting'");
    let mut q = sqlx::query(&sql);
    for id in ids {
        q = q.bind(*id);
    }
    let mut bodies = HashMap::new();
    for r in q.fetch_all(&mut **tx).await? {
        bodies.insert(r.try_get(0)?, r.try_get(1)?);
    }
    let sql = format!(
        "SELECT order_id, COUNT(*) FROM order_deps WHERE order_id IN ({list}) GROUP BY order_id"
    );
    let mut q = sqlx::query(&sql);
    for id in ids {
        q = q.bind(*id);
    }
    let mut left = HashMap::new();
    for r in q.fetch_all(&mut **tx).await? {
        left.insert(r.try_get(0)?, r.try_get(1)?);
    }
    Ok((bodies, left))
}

enum Released {
    /// Ready to be sent.
    Pending,
    /// Failed for good.
    Failed,
    /// Still waiting for another order.
    Still,
}

/// Applies the ended dependencies of one waiting order (its stored `body`, `left` dependencies
/// still to end) and releases it when none remain.
async fn release(
    tx: &mut Tx,
    id: &str,
    body: &str,
    deps: &[Ended],
    left: i64,
    now: i64,
) -> Result<Released> {
    let mut order: Order =
        serde_json::from_str(body).map_err(|e| anyhow::anyhow!("stored order: {e}"))?;
    let failure = take(&mut order, deps);
    let failure = failure.or_else(|| (left == 0).then(|| lacks_member(&order)).flatten());
    let (state, released) = match (&failure, left) {
        (Some(_), _) => ("failed", Released::Failed),
        (None, 0) => ("pending", Released::Pending),
        (None, _) => ("waiting", Released::Still),
    };
    sqlx::query(
        "UPDATE orders SET state = $1, body = $2, key = $3, message = $4, next_ms = $5, \
         updated_ms = $5 WHERE id = $6",
    )
    .bind(state)
    .bind(serde_json::to_string(&order).expect("orders serialise"))
    .bind(&order.key)
    .bind(failure)
    .bind(now)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(released)
}

/// Takes from the ended orders what the waiting one needs; a failure if it cannot go on.
fn take(order: &mut Order, deps: &[Ended]) -> Option<String> {
    let mut failure = None;
    for d in deps {
        match (d.role, &d.key) {
            (Role::Member, Some(key)) => {
                let attr = d.attribute.as_deref().unwrap_or("member");
                add_value(order, attr, key);
            }
            // A member whose account was not created is left out of the group's create; an
            // update that adds only it fails below.
            (Role::Member, None) => {}
            (Role::Key, Some(key)) => order.key = key.clone(),
            (Role::Key, None) => {
                failure = Some(format!(
                    "the group it adds to was not created (order `{}`)",
                    d.on
                ));
            }
            (Role::After, _) => {}
        }
    }
    failure
}

fn add_value(order: &mut Order, attr: &str, value: &str) {
    let values = match &mut order.kind {
        OrderKind::Create { attributes } => attributes.entry(attr.to_owned()).or_default(),
        OrderKind::Update { changes } => match changes.iter_mut().find(|c| c.name == attr) {
            Some(c) => &mut c.values,
            None => return,
        },
        _ => return,
    };
    if !values.iter().any(|v| v == value) {
        values.push(value.to_owned());
    }
}

/// A membership update left with no member: its account was not created.
fn lacks_member(order: &Order) -> Option<String> {
    match &order.kind {
        OrderKind::Update { changes } if changes.iter().any(|c| c.values.is_empty()) => {
            Some("the account it adds was not created".to_owned())
        }
        _ => None,
    }
}

/// Keys the target gave created entries, kept on their orders for the orders that wait for
/// them.
pub async fn keep_created_keys(tx: &mut Tx, created: &HashMap<&str, &str>) -> Result<()> {
    let pairs: Vec<(&&str, &&str)> = created.iter().collect();
    for chunk in pairs.chunks(100) {
        let mut case = String::from("CASE id");
        for i in 0..chunk.len() {
            case.push_str(&format!(" WHEN ${} THEN ${}", 2 * i + 1, 2 * i + 2));
        }
        case.push_str(" END");
        let sql = format!(
            "UPDATE orders SET key = {case} WHERE id IN ({})",
            in_list(2 * chunk.len(), chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for (id, key) in chunk {
            q = q.bind(**id).bind(**key);
        }
        for (id, _) in chunk {
            q = q.bind(**id);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Orders of a connection waiting for orders that have ended: released now. A repair for a
/// wait stored after the order it waits for ended (two replicas at once); run when a fulfil
/// task starts.
pub async fn sweep(tx: &mut Tx, connection: &str, now: i64) -> Result<u64> {
    let ids: Vec<String> = sqlx::query(
        "SELECT DISTINCT d.on_id FROM order_deps d JOIN orders o ON o.id = d.on_id \
         WHERE o.connection = $1 AND o.state IN ('done', 'failed', 'superseded')",
    )
    .bind(connection)
    .fetch_all(&mut **tx)
    .await?
    .iter()
    .map(|r| r.try_get(0))
    .collect::<std::result::Result<_, _>>()?;
    settle(tx, &ids, now).await
}
