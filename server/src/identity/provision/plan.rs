//! Planning: what a slice of identities should have in a target against what it has, as
//! orders. Pure: everything it needs is loaded before (`Loaded`), nothing is stored here, and
//! the rules are evaluated on every core.

use super::ProvisionReport;
use super::groups::{AccountIs, Dep, GroupPlanner};
use crate::identity::repo::parse_attrs;
use crate::identity::rules::{Attrs, Evaluator, Rules, Target};
use idgard_protocol::model::{AttributeChange, ChangeOp, Order, OrderKind};
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap, HashSet};

const DAY_MS: i64 = 86_400_000;

/// What the repository holds about one slice of identities.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The current attributes (stored JSON) of each identity that exists, by key.
    pub people: HashMap<String, String>,
    /// When each identity that no longer exists left (ms).
    pub left: HashMap<String, i64>,
    /// Each identity's accounts in the target: account key and current attributes.
    pub accounts: HashMap<String, Vec<(String, Attrs)>>,
    /// Identities with orders in flight (sent, or waiting for a retry): held back.
    pub busy: HashSet<String>,
    /// Identities with an account matched to them that waits for review: held back until
    /// someone confirms or rejects it (no second account is created meanwhile).
    pub reviewing: HashSet<String>,
}

/// An order and the identity it is for.
#[derive(Debug)]
pub struct Planned {
    /// The identity.
    pub identity: Option<String>,
    /// The order.
    pub order: Order,
}

/// A slice's plan.
#[derive(Debug, Default)]
pub struct Plan {
    /// The orders.
    pub orders: Vec<Planned>,
    /// Orders that wait for others.
    pub deps: Vec<Dep>,
    /// Identities that no longer exist: their links end.
    pub gone: Vec<String>,
}

/// What one run of planning carries from slice to slice.
pub struct Run<'r> {
    /// Account keys planned so far (two identities cannot share one).
    pub claimed: HashSet<String>,
    /// Memberships, when the rules manage groups.
    pub groups: Option<GroupPlanner<'r>>,
}

/// What an identity should have in a target.
#[derive(Debug)]
pub struct Wanted {
    /// The account's key.
    pub key: String,
    /// Its attributes.
    pub attrs: Attrs,
    /// The names of the groups it should be in.
    pub groups: Vec<String>,
}

/// A new order id: `o-`, the time in milliseconds (12 hex digits) and 8 random bytes in hex.
/// Ids made later sort after earlier ones, so the orders' primary key index grows at one end:
/// a million creates touch its last pages only, where random ids rewrote (and, encrypted,
/// re-encrypted) pages all over it.
pub fn order_id() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("the system's random source");
    format!("o-{:012x}{}", ms & 0xffff_ffff_ffff, hex::encode(b))
}

/// Whether an account's attributes say it is enabled (no attribute: enabled).
pub fn is_enabled(attrs: &Attrs, enabled: &Option<String>) -> bool {
    match enabled {
        Some(a) => attrs
            .get(a)
            .and_then(|v| v.first())
            .is_none_or(|v| !v.eq_ignore_ascii_case("false")),
        None => true,
    }
}

/// The account an identity should have, or `None` if it should have none.
pub fn desired(
    ev: &Evaluator<'_>,
    t: &Target,
    key: &str,
    attrs: &Attrs,
) -> anyhow::Result<Option<Wanted>> {
    let b = ev.identity(key, attrs);
    if let Some(f) = &t.filter
        && !b.test(f)?
    {
        return Ok(None);
    }
    let account_key = b.text(&t.key)?;
    let mut out = BTreeMap::new();
    for (name, e) in &t.attributes {
        out.insert(name.clone(), b.values(e)?);
    }
    let groups = match &t.groups {
        Some(g) => b.values(&g.member_of)?,
        None => Vec::new(),
    };
    Ok(Some(Wanted {
        key: account_key,
        attrs: out,
        groups,
    }))
}

/// What each identity of `keys` should have (`None`: no account; `Err`: the rules failed on
/// it, or its stored attributes are not readable). Evaluated in parallel.
fn evaluate(
    rules: &Rules,
    t: &Target,
    keys: &[String],
    loaded: &Loaded,
) -> Vec<anyhow::Result<Option<Wanted>>> {
    keys.par_iter()
        .map_init(
            || rules.evaluator(),
            |ev, key| {
                if loaded.busy.contains(key) {
                    return Ok(None);
                }
                match loaded.people.get(key) {
                    Some(json) => {
                        let attrs = parse_attrs(json).map_err(|e| anyhow::anyhow!(e.message))?;
                        desired(ev, t, key, &attrs)
                    }
                    None => Ok(None),
                }
            },
        )
        .collect()
}

/// Plans one slice. `run` holds what the run planned so far (account keys, groups); `report`
/// counts what is planned and samples errors.
pub fn plan(
    rules: &Rules,
    t: &Target,
    now: i64,
    keys: &[String],
    loaded: &Loaded,
    run: &mut Run<'_>,
    report: &mut ProvisionReport,
) -> Plan {
    let wanted = evaluate(rules, t, keys, loaded);
    let ev = rules.evaluator();
    let mut out = Plan::default();
    let none = Vec::new();
    for (key, desired) in keys.iter().zip(wanted) {
        if loaded.busy.contains(key) {
            report.in_flight += 1;
            continue;
        }
        if loaded.reviewing.contains(key) {
            report.error(format!(
                "identity `{key}`: an account matched to it waits for review; confirm or reject \
                 the match on the connection's page: nothing is done for it meanwhile"
            ));
            continue;
        }
        let mine = loaded.accounts.get(key).unwrap_or(&none);
        let desired = match desired {
            Ok(d) => d,
            Err(e) => {
                report.error(format!("identity `{key}`: {e:#}"));
                continue;
            }
        };
        let first = out.orders.len();
        let groups = match desired {
            Some(w) => {
                account_wanted(t, key, w.key, w.attrs, mine, run, report, &mut out.orders);
                w.groups
            }
            None => {
                if !loaded.people.contains_key(key) {
                    out.gone.push(key.clone());
                }
                let since = loaded.left.get(key).copied();
                account_unwanted(t, key, since, now, mine, report, &mut out.orders);
                Vec::new()
            }
        };
        if let Some(g) = run.groups.as_mut() {
            let mine_now = &out.orders[first..];
            let created = mine_now
                .iter()
                .find(|p| matches!(p.order.kind, OrderKind::Create { .. }));
            let account = match (created, mine.first()) {
                (Some(c), _) => Some(AccountIs::Created(&c.order.id)),
                (None, Some((k, _))) => Some(AccountIs::Held {
                    key: k,
                    deleted_by: mine_now
                        .iter()
                        .find(|p| p.order.kind == OrderKind::Delete && p.order.key == *k)
                        .map(|p| p.order.id.as_str()),
                }),
                (None, None) => None,
            };
            if let Some(account) = account {
                let (orders, deps) = g.plan(&ev, key, &groups, account, report);
                out.orders.extend(orders);
                out.deps.extend(deps);
            }
        }
    }
    out
}

/// Drops what waited, as a member, for orders that were dropped (`dropped`): a membership of
/// an account that will not be created goes; a new group's create only loses that member.
pub fn forget(planned: &mut Vec<Planned>, deps: &mut Vec<Dep>, dropped: &HashSet<String>) {
    if dropped.is_empty() {
        return;
    }
    let orphans: HashSet<String> = deps
        .iter()
        .filter(|d| dropped.contains(&d.on))
        .map(|d| d.order.clone())
        .collect();
    planned.retain(|p| p.identity.is_none() || !orphans.contains(&p.order.id));
    let kept: HashSet<&str> = planned.iter().map(|p| p.order.id.as_str()).collect();
    deps.retain(|d| !dropped.contains(&d.on) && kept.contains(d.order.as_str()));
}

/// A new order for an identity.
fn push(
    out: &mut Vec<Planned>,
    t: &Target,
    identity: &str,
    key: &str,
    kind: OrderKind,
    r: &mut ProvisionReport,
) {
    r.count(&kind);
    out.push(Planned {
        identity: Some(identity.to_owned()),
        order: Order {
            id: order_id(),
            entity_type: t.entity_type.clone(),
            key: key.to_owned(),
            kind,
        },
    });
}

/// An identity that should have an account: create it, or bring the one it has in line.
#[allow(clippy::too_many_arguments)]
fn account_wanted(
    t: &Target,
    identity: &str,
    account_key: String,
    mut attrs: Attrs,
    mine: &[(String, Attrs)],
    run: &mut Run<'_>,
    report: &mut ProvisionReport,
    out: &mut Vec<Planned>,
) {
    match mine.first() {
        None if !run.claimed.insert(account_key.clone()) => {
            report.conflicts += 1;
            report.error(format!(
                "identity `{identity}`: account key `{account_key}` is computed for another identity too; no account is created for this one"
            ));
        }
        None => {
            if let Some(e) = &t.enabled_attribute {
                attrs.insert(e.clone(), vec!["true".into()]);
            }
            let kind = OrderKind::Create { attributes: attrs };
            push(out, t, identity, &account_key, kind, report);
        }
        Some((k, have)) => {
            let changes: Vec<AttributeChange> = attrs
                .iter()
                .filter(|(n, v)| have.get(*n).map(Vec::as_slice).unwrap_or(&[]) != v.as_slice())
                .map(|(n, v)| AttributeChange {
                    name: n.clone(),
                    op: ChangeOp::Replace,
                    values: v.clone(),
                })
                .collect();
            if !changes.is_empty() {
                push(out, t, identity, k, OrderKind::Update { changes }, report);
            }
            if !is_enabled(have, &t.enabled_attribute) {
                push(out, t, identity, k, OrderKind::Enable, report);
            }
        }
    }
}

/// An identity that left (`since`), or no longer passes the filter: the leave policy.
fn account_unwanted(
    t: &Target,
    identity: &str,
    since: Option<i64>,
    now: i64,
    mine: &[(String, Attrs)],
    report: &mut ProvisionReport,
    out: &mut Vec<Planned>,
) {
    for (k, have) in mine {
        let due = matches!((t.leave.delete_after_days, since), (Some(d), Some(s)) if s + i64::from(d) * DAY_MS <= now);
        if due {
            push(out, t, identity, k, OrderKind::Delete, report);
        } else if t.leave.disable && is_enabled(have, &t.enabled_attribute) {
            push(out, t, identity, k, OrderKind::Disable, report);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: &str = r#"
version = 1
[identities]
connection = "hr"
[[targets]]
connection = "accounts"
filter = 'identity.status == "active"'
key = 'identity.first.lowerAscii() + "." + identity.last.lowerAscii()'
enabled_attribute = "enabled"
leave = { disable = true, delete_after_days = 30 }
correlation = { account = "account.employee_id" }
[targets.attributes]
name = 'identity.first + " " + identity.last'
dept = "identity.dept"
"#;

    #[test]
    fn order_ids_are_distinct_and_sort_in_the_order_they_were_made() {
        let first = order_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let ids: Vec<String> = (0..1000).map(|_| order_id()).collect();
        assert!(ids.iter().all(|id| id.len() == 30 && id.starts_with("o-")));
        assert!(ids.iter().all(|id| *id > first), "{first} {ids:?}");
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
    }

    fn person(first: &str, last: &str, dept: &str, status: &str) -> String {
        serde_json::json!({
            "first": [first], "last": [last], "dept": [dept], "status": [status]
        })
        .to_string()
    }

    fn account(pairs: &[(&str, &str)]) -> Attrs {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), vec![v.to_string()]))
            .collect()
    }

    fn run(loaded: &Loaded, keys: &[&str], now: i64) -> (Plan, ProvisionReport) {
        let rules = Rules::parse(RULES, "test").unwrap();
        let t = rules.target("accounts").unwrap();
        let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        let mut report = ProvisionReport::default();
        let mut state = Run {
            claimed: HashSet::new(),
            groups: None,
        };
        let plan = plan(&rules, t, now, &keys, loaded, &mut state, &mut report);
        (plan, report)
    }

    fn kinds(plan: &Plan) -> Vec<(String, String, &'static str)> {
        plan.orders
            .iter()
            .map(|p| {
                let kind = p.order.kind.name();
                (p.identity.clone().unwrap(), p.order.key.clone(), kind)
            })
            .collect()
    }

    #[test]
    fn new_changed_and_unchanged_identities() {
        let mut loaded = Loaded::default();
        loaded
            .people
            .insert("1".into(), person("Ada", "King", "IT", "active"));
        loaded
            .people
            .insert("2".into(), person("Alan", "Turing", "R&D", "active"));
        loaded
            .people
            .insert("3".into(), person("Grace", "Hopper", "Navy", "active"));
        loaded.accounts.insert(
            "2".into(),
            vec![(
                "alan.turing".into(),
                account(&[
                    ("name", "Alan Turing"),
                    ("dept", "Maths"),
                    ("enabled", "true"),
                ]),
            )],
        );
        loaded.accounts.insert(
            "3".into(),
            vec![(
                "grace.hopper".into(),
                account(&[
                    ("name", "Grace Hopper"),
                    ("dept", "Navy"),
                    ("enabled", "false"),
                ]),
            )],
        );
        let (plan, report) = run(&loaded, &["1", "2", "3"], 0);
        assert_eq!(
            kinds(&plan),
            [
                ("1".into(), "ada.king".into(), "create"),
                ("2".into(), "alan.turing".into(), "update"),
                ("3".into(), "grace.hopper".into(), "enable"),
            ]
        );
        let OrderKind::Create { attributes } = &plan.orders[0].order.kind else {
            unreachable!()
        };
        assert_eq!(attributes["enabled"], ["true"]);
        assert_eq!(attributes["name"], ["Ada King"]);
        let OrderKind::Update { changes } = &plan.orders[1].order.kind else {
            unreachable!()
        };
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].name, "dept");
        assert_eq!(changes[0].values, ["R&D"]);
        assert_eq!((report.creates, report.updates, report.enables), (1, 1, 1));
        assert!(plan.gone.is_empty());
    }

    #[test]
    fn leavers_are_disabled_then_deleted_when_due() {
        let day = DAY_MS;
        let mut loaded = Loaded::default();
        // 4 no longer passes the filter; 5 left 10 days ago; 6 left 40 days ago.
        loaded
            .people
            .insert("4".into(), person("A", "B", "IT", "suspended"));
        loaded.left.insert("5".into(), 0);
        loaded.left.insert("6".into(), -30 * day);
        for (id, key) in [("4", "a.b"), ("5", "c.d"), ("6", "e.f")] {
            loaded.accounts.insert(
                id.into(),
                vec![(key.into(), account(&[("enabled", "true")]))],
            );
        }
        let (plan, report) = run(&loaded, &["4", "5", "6"], 10 * day);
        assert_eq!(
            kinds(&plan),
            [
                ("4".into(), "a.b".into(), "disable"),
                ("5".into(), "c.d".into(), "disable"),
                ("6".into(), "e.f".into(), "delete"),
            ]
        );
        assert_eq!(
            plan.gone,
            ["5", "6"],
            "only identities that no longer exist"
        );
        assert_eq!((report.disables, report.deletes), (2, 1));
    }

    #[test]
    fn busy_identities_wait_and_shared_keys_and_bad_rules_are_errors() {
        let mut loaded = Loaded::default();
        loaded
            .people
            .insert("1".into(), person("Ada", "King", "IT", "active"));
        loaded
            .people
            .insert("2".into(), person("ada", "king", "HR", "active"));
        loaded
            .people
            .insert("3".into(), person("Alan", "Turing", "IT", "active"));
        loaded
            .people
            .insert("4".into(), r#"{"first":["X"]}"#.into());
        loaded.busy.insert("3".into());
        let (plan, report) = run(&loaded, &["1", "2", "3", "4"], 0);
        assert_eq!(kinds(&plan), [("1".into(), "ada.king".into(), "create")]);
        assert_eq!(report.in_flight, 1);
        assert_eq!(report.conflicts, 1);
        assert_eq!(report.errors, 2, "{:?}", report.samples);
        assert!(
            report.samples[0].contains("identity `2`"),
            "{:?}",
            report.samples
        );
        assert!(
            report.samples[1].contains("identity `4`"),
            "{:?}",
            report.samples
        );
    }
}
