//! Orders carried out on the service, in order. A run of creates of one entity type goes out side by side
//! (`concurrency` at a time); other orders find their resource by key (`userName`, a group's
//! `displayName`) and change it with PATCH, carrying its ETag when the service offers them (a
//! resource changed meanwhile is read again and the order tried once more).

use crate::client::{Scim, busy, explain};
use crate::config::Config;
use crate::map;
use crate::{ACCOUNT, GROUP};
use idgard_sdk::http::{Request, Response, query_value};
use idgard_sdk::{ChangeOp, Error, ErrorKind, Order, OrderKind, OrderResult};
use serde_json::Value;
use std::collections::HashMap;

/// A resource found by key.
#[derive(Clone)]
struct Found {
    id: String,
    version: Option<String>,
    /// The resource as the service gave it (multi-valued attributes are changed from it).
    resource: Value,
}

/// What fulfil keeps while it works: resources found by key.
struct Work<'a> {
    scim: &'a Scim,
    config: &'a Config,
    found: HashMap<(String, String), Option<Found>>,
}

/// Carries out every order; one result per order, in order.
pub fn fulfil(scim: &Scim, config: &Config, orders: Vec<Order>) -> Vec<OrderResult> {
    let mut w = Work {
        scim,
        config,
        found: HashMap::new(),
    };
    let mut results = Vec::with_capacity(orders.len());
    let mut creates: Vec<Order> = Vec::new();
    for order in orders {
        let create = matches!(order.kind, OrderKind::Create(_));
        // A run of creates of one entity type goes out together: a group created after users
        // finds them.
        if !create
            || creates
                .first()
                .is_some_and(|c| c.entity_type != order.entity_type)
        {
            results.extend(w.create_all(std::mem::take(&mut creates)));
        }
        if create {
            creates.push(order);
        } else {
            results.push(w.one(&order));
        }
    }
    results.extend(w.create_all(creates));
    results
}

fn endpoint(entity_type: &str) -> Option<(&'static str, &'static str)> {
    match entity_type {
        ACCOUNT => Some(("/Users", "userName")),
        GROUP => Some(("/Groups", "displayName")),
        _ => None,
    }
}

/// An order's outcome from a failed request: `unavailable` is tried again later.
fn from_error(order: &Order, e: Error) -> OrderResult {
    match e.kind {
        ErrorKind::Unavailable => OrderResult::retry_later(&order.id, e.message),
        _ => OrderResult::failed(&order.id, e.message),
    }
}

/// An order's outcome from the service's answer to it.
fn from_answer(order: &Order, answer: &Response, doing: &str) -> OrderResult {
    let s = answer.status();
    if (200..300).contains(&s) {
        return OrderResult::done(&order.id);
    }
    let message = format!(
        "{doing} {} `{}`: the service answered {}",
        order.entity_type,
        order.key,
        explain(answer)
    );
    if busy(answer) || s >= 500 {
        OrderResult::retry_later(&order.id, message)
    } else if s == 409 {
        OrderResult::failed(&order.id, format!("{message} (it already exists)"))
    } else {
        OrderResult::failed(&order.id, message)
    }
}

impl Work<'_> {
    fn create_all(&mut self, creates: Vec<Order>) -> Vec<OrderResult> {
        let mut results: Vec<Option<OrderResult>> = vec![None; creates.len()];
        let mut requests = Vec::new();
        let mut sent = Vec::new();
        for (i, order) in creates.iter().enumerate() {
            match self.create_request(order) {
                Ok(r) => {
                    requests.push(r);
                    sent.push(i);
                }
                Err(e) => results[i] = Some(e),
            }
        }
        let answers = self
            .scim
            .send_many(requests, self.config.concurrency as usize);
        for (i, answer) in sent.into_iter().zip(answers) {
            let order = &creates[i];
            results[i] = Some(match answer {
                Ok(a) => {
                    if a.status() == 201
                        && let Ok(v) = a.json::<Value>()
                        && let Some(id) = v["id"].as_str()
                    {
                        let version = v["meta"]["version"].as_str().map(str::to_owned);
                        let id = id.to_owned();
                        self.found.insert(
                            (order.entity_type.clone(), order.key.clone()),
                            Some(Found {
                                id,
                                version,
                                resource: v,
                            }),
                        );
                    }
                    from_answer(order, &a, "creating")
                }
                Err(e) => from_error(order, e),
            });
        }
        results
            .into_iter()
            .map(|r| r.expect("every create has an outcome"))
            .collect()
    }

    fn create_request(&mut self, order: &Order) -> Result<Request, OrderResult> {
        let OrderKind::Create(attributes) = &order.kind else {
            unreachable!("only creates are batched")
        };
        let failed = |m: String| OrderResult::failed(&order.id, m);
        let (path, body) = match order.entity_type.as_str() {
            ACCOUNT => (
                "/Users",
                map::new_user(&order.key, attributes).map_err(failed)?,
            ),
            GROUP => {
                let keys: Vec<String> = attributes
                    .iter()
                    .filter(|a| a.name == "member")
                    .flat_map(|a| a.values.iter().cloned())
                    .collect();
                let ids = self.ids(&keys).map_err(|e| from_error(order, e))?;
                ("/Groups", map::new_group(&order.key, &ids))
            }
            other => return Err(failed(format!("the SCIM connector keeps no `{other}`"))),
        };
        self.scim
            .with_body("POST", path, &body)
            .map_err(|e| from_error(order, e))
    }

    /// The ids of users by their keys; a key the service does not know fails the order.
    fn ids(&mut self, keys: &[String]) -> Result<Vec<String>, Error> {
        keys.iter()
            .map(|k| match self.find(ACCOUNT, k)? {
                Some(f) => Ok(f.id),
                None => Err(Error::invalid_data(format!(
                    "member `{k}` is no user of the service"
                ))),
            })
            .collect()
    }

    /// A resource by key, asked once per run.
    fn find(&mut self, entity_type: &str, key: &str) -> Result<Option<Found>, Error> {
        let k = (entity_type.to_owned(), key.to_owned());
        if let Some(f) = self.found.get(&k) {
            return Ok(f.clone());
        }
        let (path, attribute) = endpoint(entity_type).ok_or_else(|| {
            Error::configuration(format!("the SCIM connector keeps no `{entity_type}`"))
        })?;
        if !self.scim.filter {
            return Err(Error::unsupported(
                "changing resources of a service without filters (the connector finds a \
                 resource by its key with one)",
            ));
        }
        let filter = query_value(&format!("{attribute} eq {}", map::quoted(key)));
        let answer = self
            .scim
            .send(self.scim.get(&format!("{path}?filter={filter}&count=2")))?;
        if answer.status() != 200 {
            return Err(crate::export::status_error(
                &answer,
                &format!("finding {entity_type} `{key}`"),
            ));
        }
        let page: Value = answer.json()?;
        let resources = page["Resources"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        // Filters on userName ignore case; the key must match exactly.
        let found = resources
            .iter()
            .find(|r| r[attribute] == key)
            .and_then(|r| {
                Some(Found {
                    id: r["id"].as_str()?.to_owned(),
                    version: r["meta"]["version"].as_str().map(str::to_owned),
                    resource: r.clone(),
                })
            });
        self.found.insert(k, found.clone());
        Ok(found)
    }

    fn one(&mut self, order: &Order) -> OrderResult {
        match self.try_one(order, true) {
            Ok(r) => r,
            Err(e) => from_error(order, e),
        }
    }

    fn try_one(&mut self, order: &Order, again: bool) -> Result<OrderResult, Error> {
        let Some((path, _)) = endpoint(&order.entity_type) else {
            return Ok(OrderResult::failed(
                &order.id,
                format!("the SCIM connector keeps no `{}`", order.entity_type),
            ));
        };
        let Some(found) = self.find(&order.entity_type, &order.key)? else {
            return Ok(match order.kind {
                // Already gone: a repeated delete is done.
                OrderKind::Delete => OrderResult::done(&order.id),
                _ => OrderResult::failed(
                    &order.id,
                    format!("no {} `{}` in the service", order.entity_type, order.key),
                ),
            });
        };
        let at = format!("{path}/{}", query_value(&found.id));
        let (request, doing) = match &order.kind {
            OrderKind::Delete => (Request::delete(self.scim.url(&at)), "deleting"),
            kind => {
                let ops = match self.operations(order, kind, &found.resource) {
                    Ok(ops) => ops,
                    Err(message) => return Ok(OrderResult::failed(&order.id, message)),
                };
                if ops.is_empty() {
                    return Ok(OrderResult::done(&order.id));
                }
                (
                    self.scim.with_body("PATCH", &at, &map::patch(ops))?,
                    "updating",
                )
            }
        };
        let request = match found.version.as_deref().filter(|_| self.scim.etag) {
            Some(v) => request.header("if-match", v),
            None => request,
        };
        let answer = self.scim.send(request)?;
        let key = (order.entity_type.clone(), order.key.clone());
        match answer.status() {
            // Changed meanwhile: read it again and try once more.
            412 if again => {
                self.found.remove(&key);
                return self.try_one(order, false);
            }
            412 => {
                self.found.remove(&key);
                return Ok(OrderResult::retry_later(
                    &order.id,
                    format!(
                        "{} `{}` changed twice while being updated (412)",
                        order.entity_type, order.key
                    ),
                ));
            }
            404 if matches!(order.kind, OrderKind::Delete) => {
                return Ok(OrderResult::done(&order.id));
            }
            s if (200..300).contains(&s) => {
                // The version changed; a later order on it reads it again.
                self.found.remove(&key);
                if matches!(order.kind, OrderKind::Delete) {
                    self.found.insert(key, None);
                }
            }
            _ => {}
        }
        Ok(from_answer(order, &answer, doing))
    }

    /// The PATCH operations of an order other than create and delete.
    fn operations(
        &mut self,
        order: &Order,
        kind: &OrderKind,
        current: &Value,
    ) -> Result<Vec<Value>, String> {
        let active =
            |on: bool| vec![serde_json::json!({"op": "replace", "path": "active", "value": on})];
        match kind {
            OrderKind::Enable if order.entity_type == ACCOUNT => Ok(active(true)),
            OrderKind::Disable if order.entity_type == ACCOUNT => Ok(active(false)),
            OrderKind::SetPassword(p) if order.entity_type == ACCOUNT => Ok(vec![
                serde_json::json!({"op": "replace", "path": "password", "value": p}),
            ]),
            OrderKind::Update(changes) if order.entity_type == ACCOUNT => {
                map::user_patch(changes, current)
            }
            OrderKind::Update(changes) => {
                let mut ops = Vec::new();
                for c in changes {
                    if c.name != "member" {
                        return Err(format!(
                            "a group's attribute `{}` is not written by the SCIM connector (only `member`)",
                            c.name
                        ));
                    }
                    let ids = if c.op == ChangeOp::Remove {
                        // A member gone from the service is gone from the group already.
                        let mut ids = Vec::new();
                        for k in &c.values {
                            if let Some(f) = self.find(ACCOUNT, k).map_err(|e| e.message)? {
                                ids.push(f.id);
                            }
                        }
                        ids
                    } else {
                        self.ids(&c.values).map_err(|e| e.message)?
                    };
                    ops.extend(map::member_patch(c.op, &ids));
                }
                Ok(ops)
            }
            other => Err(format!(
                "a {} cannot be {}",
                order.entity_type,
                kind_name(other)
            )),
        }
    }
}

fn kind_name(kind: &OrderKind) -> &'static str {
    match kind {
        OrderKind::Create(_) => "created",
        OrderKind::Update(_) => "updated",
        OrderKind::Delete => "deleted",
        OrderKind::Enable => "enabled",
        OrderKind::Disable => "disabled",
        OrderKind::SetPassword(_) => "given a password",
    }
}
