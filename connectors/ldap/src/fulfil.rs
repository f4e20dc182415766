//! Carrying out orders: each order is one or two LDAP operations, and its own result, so that a
//! value the directory refuses fails that order and not the batch.

use crate::client::{Session, describe, transient};
use crate::dn;
use crate::export::key_of;
use crate::lookup::{self, Found};
use crate::settings::{Config, Dialect, GROUP};
use crate::values;
use idgard_sdk::{AttributeChange, ChangeOp, Error, Order, OrderKind, OrderResult};
use ldap3_proto::proto::{
    LdapModify, LdapModifyType, LdapPartialAttribute, LdapResult, LdapResultCode,
};
use std::collections::{HashMap, VecDeque};

/// OpenLDAP's ppolicy value for "locked until an administrator unlocks".
const LOCKED_FOR_GOOD: &str = "000001010000Z";
/// Active Directory's "account disabled" flag of `userAccountControl`.
const AD_DISABLED: u32 = 0x2;

/// Entries found for a batch: by entity type, then key.
type Directory = HashMap<String, HashMap<String, Found>>;

/// Carries out a batch of orders.
pub fn fulfil(config: &Config, orders: Vec<Order>) -> Result<Vec<OrderResult>, Error> {
    let mut session = Session::open(config)?;
    let mut found = find(&mut session, config, &orders)?;
    let mut results: Vec<Option<OrderResult>> = vec![None; orders.len()];
    let joint = joint_memberships(config, &orders);
    let mut i = 0;
    while i < orders.len() {
        if results[i].is_some() {
            i += 1;
            continue;
        }
        if matches!(orders[i].kind, OrderKind::Create(_)) {
            // Creates in a row go out together: the directory works on several at once.
            let end = orders[i..]
                .iter()
                .position(|o| !matches!(o.kind, OrderKind::Create(_)))
                .map_or(orders.len(), |n| i + n);
            let run = &orders[i..end];
            let out = create_run(&mut session, config, &found, run)
                .unwrap_or_else(|e| run.iter().map(|o| failure(o, &e)).collect());
            for (j, r) in out.into_iter().enumerate() {
                results[i + j] = Some(r);
            }
            i = end;
            continue;
        }
        if let Some(together) = joint.get(&i) {
            // Every membership of one group the batch adds (or removes): one modify.
            let out =
                memberships(&mut session, config, &found, &orders, together).unwrap_or_else(|e| {
                    together
                        .iter()
                        .map(|&j| (j, failure(&orders[j], &e)))
                        .collect()
                });
            for (j, r) in out {
                results[j] = Some(r);
            }
            i += 1;
            continue;
        }
        let order = &orders[i];
        let result =
            one(&mut session, config, &found, order).unwrap_or_else(|e| failure(order, &e));
        if result.outcome == idgard_sdk::OrderOutcome::Done
            && let Some(new_dn) = renamed_to(order)
            && let Some(entry) = found
                .get_mut(&order.entity_type)
                .and_then(|m| m.get_mut(&order.key))
        {
            // Later orders of the batch find the entry where it now is.
            entry.dn = new_dn.to_owned();
        }
        results[i] = Some(result);
        i += 1;
    }
    Ok(results
        .into_iter()
        .map(|r| r.expect("every order answered"))
        .collect())
}

/// The membership orders of a batch that go out together: orders that only add (or only
/// remove) members of one group, by the index of the first of them. A group with one such
/// order goes alone.
fn joint_memberships(config: &Config, orders: &[Order]) -> HashMap<usize, Vec<usize>> {
    let mut by_group: HashMap<(&str, bool), Vec<usize>> = HashMap::new();
    for (i, o) in orders.iter().enumerate() {
        let OrderKind::Update(changes) = &o.kind else {
            continue;
        };
        if let [c] = changes.as_slice()
            && o.entity_type == GROUP
            && c.name.eq_ignore_ascii_case(&config.member_attribute)
            && c.op != ChangeOp::Replace
            && !c.values.is_empty()
        {
            by_group
                .entry((o.key.as_str(), c.op == ChangeOp::Add))
                .or_default()
                .push(i);
        }
    }
    by_group
        .into_values()
        .filter(|v| v.len() > 1)
        .map(|v| (v[0], v))
        .collect()
}

/// Membership orders of one group, one modify for all; when the directory refuses it (a
/// member already there, or already gone, fails the whole modify), each order on its own.
fn memberships(
    session: &mut Session,
    config: &Config,
    found: &Directory,
    orders: &[Order],
    together: &[usize],
) -> Result<Vec<(usize, OrderResult)>, Error> {
    let first = &orders[together[0]];
    let OrderKind::Update(changes) = &first.kind else {
        unreachable!("memberships are updates")
    };
    let op = changes[0].op;
    let entry = found.get(GROUP).and_then(|m| m.get(&first.key));
    let mut values = Vec::new();
    let mut out = Vec::with_capacity(together.len());
    let mut joined = Vec::with_capacity(together.len());
    for &j in together {
        let OrderKind::Update(changes) = &orders[j].kind else {
            unreachable!("memberships are updates")
        };
        match encode(config, found, &changes[0].name, &changes[0].values) {
            Ok(v) if entry.is_some() => {
                values.extend(v);
                joined.push(j);
            }
            _ => {
                let r = one(session, config, found, &orders[j])
                    .unwrap_or_else(|e| failure(&orders[j], &e));
                out.push((j, r));
            }
        }
    }
    let Some(entry) = entry else {
        return Ok(out);
    };
    let operation = match op {
        ChangeOp::Add => LdapModifyType::Add,
        _ => LdapModifyType::Delete,
    };
    let modification = attribute(&config.member_attribute, values);
    let r = session.modify(
        &entry.dn,
        vec![LdapModify {
            operation,
            modification,
        }],
    )?;
    for j in joined {
        let id = orders[j].id.as_str();
        let result = if r.code == LdapResultCode::Success {
            OrderResult::done(id)
        } else {
            one(session, config, found, &orders[j]).unwrap_or_else(|e| failure(&orders[j], &e))
        };
        out.push((j, result));
    }
    Ok(out)
}

/// An order that could not be carried out because of `e`: a lost connection is retried later
/// (repeating an order is safe), anything else fails it.
fn failure(order: &Order, e: &Error) -> OrderResult {
    if e.kind == idgard_sdk::ErrorKind::Unavailable {
        OrderResult::retry_later(&order.id, e.message.clone())
    } else {
        OrderResult::failed(&order.id, e.message.clone())
    }
}

/// The DN an update order moves its entry to, if it does.
fn renamed_to(order: &Order) -> Option<&str> {
    let OrderKind::Update(changes) = &order.kind else {
        return None;
    };
    changes
        .iter()
        .rfind(|c| c.name.eq_ignore_ascii_case("dn") && c.op == ChangeOp::Replace)
        .and_then(|c| c.values.first())
        .map(String::as_str)
}

/// Looks up every key the batch names: the entries orders act on, and the accounts that
/// group orders add or remove as members.
fn find(session: &mut Session, config: &Config, orders: &[Order]) -> Result<Directory, Error> {
    let mut wanted: HashMap<&str, Vec<&str>> = HashMap::new();
    for o in orders {
        if !matches!(o.kind, OrderKind::Create(_)) {
            wanted
                .entry(o.entity_type.as_str())
                .or_default()
                .push(&o.key);
        }
        if o.entity_type == GROUP {
            let members = member_values(config, &o.kind);
            wanted
                .entry(crate::settings::ACCOUNT)
                .or_default()
                .extend(members.into_iter().filter(|v| !v.contains('=')));
        }
    }
    let mut out = Directory::new();
    for (entity_type, mut keys) in wanted {
        let Some(entity) = config.entity(entity_type) else {
            continue;
        };
        keys.sort_unstable();
        keys.dedup();
        out.insert(
            entity_type.to_owned(),
            lookup::by_key(session, config, entity, &keys)?,
        );
    }
    Ok(out)
}

/// The member values a group order carries.
fn member_values<'o>(config: &Config, kind: &'o OrderKind) -> Vec<&'o str> {
    let is_member = |name: &str| name.eq_ignore_ascii_case(&config.member_attribute);
    match kind {
        OrderKind::Create(attrs) => attrs
            .iter()
            .filter(|a| is_member(&a.name))
            .flat_map(|a| a.values.iter().map(String::as_str))
            .collect(),
        OrderKind::Update(changes) => changes
            .iter()
            .filter(|c| is_member(&c.name))
            .flat_map(|c| c.values.iter().map(String::as_str))
            .collect(),
        _ => vec![],
    }
}

fn one(
    session: &mut Session,
    config: &Config,
    found: &Directory,
    order: &Order,
) -> Result<OrderResult, Error> {
    let id = order.id.as_str();
    if config.entity(&order.entity_type).is_none() {
        return Ok(OrderResult::failed(
            id,
            format!("this connection manages no `{}` entries", order.entity_type),
        ));
    }
    let entry = found
        .get(&order.entity_type)
        .and_then(|m| m.get(&order.key));
    let Some(entry) = entry else {
        return Ok(match order.kind {
            // Already gone: deleting again is done.
            OrderKind::Delete => OrderResult::done(id),
            _ => OrderResult::failed(
                id,
                format!(
                    "no {} with {} `{}`",
                    order.entity_type, config.key_attribute, order.key
                ),
            ),
        });
    };
    match &order.kind {
        OrderKind::Create(_) => unreachable!("creates go through create_run"),
        OrderKind::Update(changes) => update(session, config, found, order, entry, changes),
        OrderKind::Delete => {
            let r = session.delete(&entry.dn)?;
            Ok(outcome(id, &r, &[LdapResultCode::NoSuchObject]))
        }
        OrderKind::Enable | OrderKind::Disable => {
            let disable = matches!(order.kind, OrderKind::Disable);
            enable(session, config, id, entry, disable)
        }
        OrderKind::SetPassword(password) => {
            if !session.is_tls() {
                return Ok(OrderResult::failed(
                    id,
                    "passwords are sent over TLS only: grant the endpoint with TLS",
                ));
            }
            let change = match config.dialect {
                Dialect::Openldap => replace("userPassword", vec![password.as_bytes().to_vec()]),
                Dialect::ActiveDirectory => {
                    replace("unicodePwd", vec![values::ad_password(password)])
                }
            };
            let r = session.modify(&entry.dn, vec![change])?;
            Ok(outcome(id, &r, &[]))
        }
    }
}

/// Adds in flight at once.
const WINDOW: usize = 64;

/// Carries out creates in a row, up to [`WINDOW`] adds in flight; one result per order.
fn create_run(
    session: &mut Session,
    config: &Config,
    found: &Directory,
    orders: &[Order],
) -> Result<Vec<OrderResult>, Error> {
    // OpenLDAP answers an add with the new entry's key (post-read); AD does not offer it.
    let read_back = (config.dialect == Dialect::Openldap).then_some(config.key_attribute.as_str());
    let mut results: Vec<Option<OrderResult>> = vec![None; orders.len()];
    let mut in_flight: VecDeque<(usize, i32, String)> = VecDeque::new();
    for (i, order) in orders.iter().enumerate() {
        let (dn, entry) = match prepare(config, found, order) {
            Ok(p) => p,
            Err(r) => {
                results[i] = Some(r);
                continue;
            }
        };
        if in_flight.len() >= WINDOW
            && let Some((j, id, dn)) = in_flight.pop_front()
        {
            results[j] = Some(finish(session, config, &orders[j], id, &dn)?);
        }
        let id = session.send_add(&dn, entry, read_back)?;
        in_flight.push_back((i, id, dn));
    }
    while let Some((j, id, dn)) = in_flight.pop_front() {
        results[j] = Some(finish(session, config, &orders[j], id, &dn)?);
    }
    Ok(results
        .into_iter()
        .map(|r| r.expect("every create answered"))
        .collect())
}

/// A create order's DN and attributes, or its failure.
fn prepare(
    config: &Config,
    found: &Directory,
    order: &Order,
) -> Result<(String, Vec<LdapPartialAttribute>), OrderResult> {
    let id = order.id.as_str();
    let OrderKind::Create(attrs) = &order.kind else {
        unreachable!("only creates are prepared")
    };
    let Some(entity) = config.entity(&order.entity_type) else {
        return Err(OrderResult::failed(
            id,
            format!("this connection manages no `{}` entries", order.entity_type),
        ));
    };
    let given_dn = attrs
        .iter()
        .find(|a| a.name.eq_ignore_ascii_case("dn"))
        .and_then(|a| a.values.first());
    let dn = match given_dn {
        Some(dn) => dn.clone(),
        None => {
            let value = attrs
                .iter()
                .find(|a| a.name.eq_ignore_ascii_case(&entity.rdn))
                .and_then(|a| a.values.first())
                .unwrap_or(&order.key);
            dn::child(&entity.rdn, value, &entity.base)
        }
    };
    let mut entry: Vec<LdapPartialAttribute> = Vec::new();
    if !attrs
        .iter()
        .any(|a| a.name.eq_ignore_ascii_case("objectClass"))
    {
        let classes = entity.object_classes.iter().map(|c| c.as_bytes().to_vec());
        entry.push(attribute("objectClass", classes.collect()));
    }
    for a in attrs {
        if a.name.eq_ignore_ascii_case("dn") || a.values.is_empty() {
            continue;
        }
        let vals =
            encode(config, found, &a.name, &a.values).map_err(|m| OrderResult::failed(id, m))?;
        entry.push(attribute(&a.name, vals));
    }
    Ok((dn, entry))
}

/// The result of a create from the directory's answer: `created` with the new entry's key.
fn finish(
    session: &mut Session,
    config: &Config,
    order: &Order,
    id: i32,
    dn: &str,
) -> Result<OrderResult, Error> {
    let (r, read) = session.added(id)?;
    if r.code != LdapResultCode::Success && r.code != LdapResultCode::EntryAlreadyExists {
        return Ok(outcome(&order.id, &r, &[]));
    }
    // A repeated create finds its entry there: it is done, with the same key.
    let key = match read.and_then(|e| key_of(config, &e)) {
        Some(k) => Some(k),
        None => lookup::key_at(session, config, dn)?,
    };
    Ok(match key {
        Some(key) => OrderResult::created(&order.id, key),
        // Nothing at the DN: another entry holds a value that must be unique (Active
        // Directory's sAMAccountName or userPrincipalName).
        None if r.code == LdapResultCode::EntryAlreadyExists => OrderResult::failed(
            &order.id,
            format!(
                "`{dn}`: {}; no entry is at that DN, so another entry holds a value that must be unique",
                describe(&r)
            ),
        ),
        None => OrderResult::failed(
            &order.id,
            format!(
                "created `{dn}` but cannot read its `{}`",
                config.key_attribute
            ),
        ),
    })
}

fn update(
    session: &mut Session,
    config: &Config,
    found: &Directory,
    order: &Order,
    entry: &Found,
    changes: &[AttributeChange],
) -> Result<OrderResult, Error> {
    let id = order.id.as_str();
    let mut dn = entry.dn.clone();
    let mut mods = Vec::new();
    for c in changes {
        if c.name.eq_ignore_ascii_case("dn") {
            let Some(new_dn) = c.values.first().filter(|_| c.op == ChangeOp::Replace) else {
                return Ok(OrderResult::failed(
                    id,
                    "`dn` can only be replaced (a rename or a move)",
                ));
            };
            if dn::normal(new_dn) != dn::normal(&dn) {
                let (rdn, parent) = dn::split_first(new_dn);
                let (_, old_parent) = dn::split_first(&dn);
                let superior =
                    (dn::normal(parent) != dn::normal(old_parent)).then(|| parent.to_owned());
                let r = session.modify_dn(&dn, rdn, superior)?;
                if r.code != LdapResultCode::Success {
                    return Ok(outcome(id, &r, &[]));
                }
                dn = new_dn.clone();
            }
            continue;
        }
        let vals = match encode(config, found, &c.name, &c.values) {
            Ok(v) => v,
            Err(m) => return Ok(OrderResult::failed(id, m)),
        };
        let operation = match c.op {
            ChangeOp::Add => LdapModifyType::Add,
            ChangeOp::Remove => LdapModifyType::Delete,
            ChangeOp::Replace => LdapModifyType::Replace,
        };
        mods.push(LdapModify {
            operation,
            modification: attribute(&c.name, vals),
        });
    }
    if mods.is_empty() {
        return Ok(OrderResult::done(id));
    }
    let members_only = mods.iter().all(|m| {
        m.modification
            .atype
            .eq_ignore_ascii_case(&config.member_attribute)
    });
    let r = session.modify(&dn, mods)?;
    // Adding a member already there, removing one already gone: the order's end state holds.
    // Active Directory says so of members with its own codes (68 and 53).
    let mut also_done = vec![
        LdapResultCode::AttributeOrValueExists,
        LdapResultCode::NoSuchAttribute,
    ];
    if members_only && config.dialect == Dialect::ActiveDirectory {
        also_done.extend([
            LdapResultCode::EntryAlreadyExists,
            LdapResultCode::UnwillingToPerform,
        ]);
    }
    Ok(outcome(id, &r, &also_done))
}

fn enable(
    session: &mut Session,
    config: &Config,
    id: &str,
    entry: &Found,
    disable: bool,
) -> Result<OrderResult, Error> {
    let change = match config.dialect {
        Dialect::Openldap if disable => {
            replace("pwdAccountLockedTime", vec![LOCKED_FOR_GOOD.into()])
        }
        Dialect::Openldap => LdapModify {
            operation: LdapModifyType::Delete,
            modification: attribute("pwdAccountLockedTime", vec![]),
        },
        Dialect::ActiveDirectory => {
            let Some(flags) = entry.account_control else {
                return Ok(OrderResult::failed(
                    id,
                    "the entry has no userAccountControl",
                ));
            };
            let flags = if disable {
                flags | AD_DISABLED
            } else {
                flags & !AD_DISABLED
            };
            replace("userAccountControl", vec![flags.to_string().into_bytes()])
        }
    };
    let r = session.modify(&entry.dn, vec![change])?;
    Ok(outcome(id, &r, &[LdapResultCode::NoSuchAttribute]))
}

/// An order's values as the directory's bytes: binary attributes from base64, a group's member
/// keys as the DNs of those accounts.
fn encode(
    config: &Config,
    found: &Directory,
    name: &str,
    vals: &[String],
) -> Result<Vec<Vec<u8>>, String> {
    if name.eq_ignore_ascii_case(&config.member_attribute) {
        let accounts = found.get(crate::settings::ACCOUNT);
        return vals
            .iter()
            .map(|v| {
                if v.contains('=') {
                    return Ok(v.as_bytes().to_vec());
                }
                accounts
                    .and_then(|m| m.get(v))
                    .map(|f| f.dn.as_bytes().to_vec())
                    .ok_or_else(|| {
                        format!(
                            "member `{v}`: no account with {} `{v}`",
                            config.key_attribute
                        )
                    })
            })
            .collect();
    }
    let binary = config.is_binary(name);
    if config.dialect == Dialect::ActiveDirectory
        && name.eq_ignore_ascii_case("unicodePwd")
        && !binary
    {
        // A password as text, as Active Directory takes it (quoted, in UTF-16LE).
        return Ok(vals.iter().map(|v| values::ad_password(v)).collect());
    }
    vals.iter()
        .map(|v| values::from_text(binary, name, v))
        .collect()
}

fn attribute(name: &str, vals: Vec<Vec<u8>>) -> LdapPartialAttribute {
    LdapPartialAttribute {
        atype: name.to_owned(),
        vals,
    }
}

fn replace(name: &str, vals: Vec<Vec<u8>>) -> LdapModify {
    LdapModify {
        operation: LdapModifyType::Replace,
        modification: attribute(name, vals),
    }
}

/// An operation's result as the order's: success (or a code that means the end state already
/// holds) is done, a transient code is retried later, anything else fails with the directory's
/// words.
fn outcome(id: &str, r: &LdapResult, also_done: &[LdapResultCode]) -> OrderResult {
    if r.code == LdapResultCode::Success || also_done.contains(&r.code) {
        OrderResult::done(id)
    } else if transient(&r.code) {
        OrderResult::retry_later(id, describe(r))
    } else {
        OrderResult::failed(id, describe(r))
    }
}
