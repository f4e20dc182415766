//! Planning group memberships: for each identity looked at, the managed groups its account
//! should be in against those it is in, as orders on the groups that add or remove it. Pure:
//! the target's groups are loaded before ([`Held`]), nothing is stored here.
//!
//! Orders wait for one another where the target needs an order (see [`Dep`]): a new account
//! joins its groups once it is created (the key the target gave it becomes the member value),
//! an account leaves its groups before it is deleted, and a group that does not exist yet is
//! created with its first members in one order.

use super::ProvisionReport;
use super::plan::{Planned, order_id};
use crate::identity::rules::{Attrs, Evaluator, Groups};
use idgard_protocol::model::{AttributeChange, ChangeOp, Order, OrderKind};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// What an order waiting for another takes from it when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The created key of the order waited on becomes a value of `attribute` (a member).
    Member,
    /// The created key of the order waited on becomes this order's key (a new group's).
    Key,
    /// Nothing: the order only comes after it.
    After,
}

impl Role {
    /// Its name in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Key => "key",
            Role::After => "after",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "member" => Role::Member,
            "key" => Role::Key,
            "after" => Role::After,
            _ => return None,
        })
    }
}

/// An order that waits for another to end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dep {
    /// The waiting order.
    pub order: String,
    /// The order it waits for.
    pub on: String,
    /// What it takes from it.
    pub role: Role,
    /// The attribute a `Member` role fills.
    pub attribute: Option<String>,
}

/// The target's groups as the repository holds them, and creates still under way.
#[derive(Debug, Default)]
struct Held {
    /// Group key by name (names compare without regard to ASCII case, as directories do).
    by_name: HashMap<String, String>,
    /// The managed groups each account is a member of (names, folded).
    of_account: HashMap<String, BTreeSet<String>>,
    /// Creates of groups from earlier computations that have not ended: order id by name, and
    /// whether it still waits (for the creates of its first members).
    creating: HashMap<String, (String, bool)>,
}

/// A name as compared.
pub fn fold(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// Where an identity's account stands in this computation.
#[derive(Debug, Clone, Copy)]
pub enum AccountIs<'a> {
    /// It exists under this key (and `deleted_by`: a delete order planned now).
    Held {
        /// Its key.
        key: &'a str,
        /// The delete planned for it now, if any.
        deleted_by: Option<&'a str>,
    },
    /// A create planned now (its order id).
    Created(&'a str),
}

/// A group created in this computation: one create order, its members gathered over the run.
#[derive(Debug)]
struct NewGroup {
    order: Order,
    /// Members already known (keys).
    members: Vec<String>,
    /// Creates of new members it waits for.
    waits: Vec<String>,
}

/// Membership planning over one computation (all its slices).
pub struct GroupPlanner<'r> {
    rules: &'r Groups,
    held: Held,
    managed: HashMap<String, bool>,
    new: BTreeMap<String, NewGroup>,
    /// Names that cannot be created (their error was counted once).
    refused: BTreeSet<String>,
}

impl<'r> GroupPlanner<'r> {
    /// Starts with no group known.
    pub fn new(rules: &'r Groups) -> Self {
        GroupPlanner {
            rules,
            held: Held::default(),
            managed: HashMap::new(),
            new: BTreeMap::new(),
            refused: BTreeSet::new(),
        }
    }

    /// A group the repository holds: its key, name and member keys. Members are indexed only
    /// when the rules manage the group; a group whose `managed` expression fails is not.
    pub fn hold(&mut self, ev: &Evaluator<'_>, key: &str, name: &str, members: &[String]) {
        let folded = fold(name);
        if self.is_managed(ev, name).unwrap_or(false) {
            for m in members {
                self.held
                    .of_account
                    .entry(m.clone())
                    .or_default()
                    .insert(folded.clone());
            }
        }
        self.held.by_name.insert(folded, key.to_owned());
    }

    /// A create of this group, ordered by an earlier computation, that has not ended
    /// (`waiting`: it still waits for the creates of members).
    pub fn creating(&mut self, name: &str, order: String, waiting: bool) {
        self.held.creating.insert(fold(name), (order, waiting));
    }

    /// Whether the rules manage the group of this name.
    pub fn is_managed(&mut self, ev: &Evaluator<'_>, name: &str) -> anyhow::Result<bool> {
        let Some(e) = &self.rules.managed else {
            return Ok(true);
        };
        let folded = fold(name);
        if let Some(m) = self.managed.get(&folded) {
            return Ok(*m);
        }
        let m = ev.group(name).test(e)?;
        self.managed.insert(folded, m);
        Ok(m)
    }

    /// The orders that bring one identity's account into the managed groups of `wanted` (none
    /// when the identity should have no account) and out of the others. Returns them with the
    /// dependencies between orders; a delete of the account comes after its removals.
    pub fn plan(
        &mut self,
        ev: &Evaluator<'_>,
        identity: &str,
        wanted: &[String],
        account: AccountIs<'_>,
        report: &mut ProvisionReport,
    ) -> (Vec<Planned>, Vec<Dep>) {
        let mut orders = Vec::new();
        let mut deps = Vec::new();
        let mut want: BTreeMap<String, &str> = BTreeMap::new();
        for name in wanted {
            match self.is_managed(ev, name) {
                Ok(true) => {
                    want.insert(fold(name), name);
                }
                Ok(false) => {}
                Err(e) => report.error(format!("identity `{identity}`: group `{name}`: {e:#}")),
            }
        }
        let (member, created_by, deleted_by) = match account {
            AccountIs::Held { key, deleted_by } => (Some(key), None, deleted_by),
            AccountIs::Created(id) => (None, Some(id), None),
        };
        let none = BTreeSet::new();
        let has = member
            .and_then(|k| self.held.of_account.get(k))
            .unwrap_or(&none);
        let adds: Vec<(String, &str)> = want
            .iter()
            .filter(|(n, _)| !has.contains(*n) && deleted_by.is_none())
            .map(|(n, name)| (n.clone(), *name))
            .collect();
        let removes: Vec<String> = has
            .iter()
            .filter(|n| !want.contains_key(*n) || deleted_by.is_some())
            .cloned()
            .collect();
        for (folded, name) in adds {
            if let Some((o, d)) = self.add(ev, identity, &folded, name, member, created_by, report)
            {
                orders.extend(o);
                deps.extend(d);
            }
        }
        for folded in removes {
            let (Some(key), Some(group)) = (member, self.held.by_name.get(&folded)) else {
                continue;
            };
            let o = self.membership(identity, group, ChangeOp::Remove, vec![key.to_owned()]);
            report.members_removed += 1;
            report.count(&o.order.kind);
            if let Some(d) = deleted_by {
                deps.push(dep(d, &o.order.id, Role::After, None));
            }
            orders.push(o);
        }
        (orders, deps)
    }

    /// One membership to add: into a group the target holds, one being created now (the
    /// member joins its create), one whose create is under way, or a new group.
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        ev: &Evaluator<'_>,
        identity: &str,
        folded: &str,
        name: &str,
        member: Option<&str>,
        created_by: Option<&str>,
        report: &mut ProvisionReport,
    ) -> Option<(Option<Planned>, Vec<Dep>)> {
        let attr = self.rules.member_attribute.clone();
        let values: Vec<String> = member.map(str::to_owned).into_iter().collect();
        let member_dep =
            |order: &str| created_by.map(|c| dep(order, c, Role::Member, Some(attr.clone())));
        if let Some(group) = self.held.by_name.get(folded).cloned() {
            let o = self.membership(identity, &group, ChangeOp::Add, values);
            report.members_added += 1;
            report.count(&o.order.kind);
            let d = member_dep(&o.order.id).into_iter().collect();
            return Some((Some(o), d));
        }
        if let Some((creating, waiting)) = self.held.creating.get(folded).cloned() {
            if let (true, Some(c)) = (waiting, created_by) {
                // A new account joins the waiting create of its group, as a first member.
                report.members_added += 1;
                return Some((None, vec![dep(&creating, c, Role::Member, Some(attr))]));
            }
            // The group's key comes from its create, which has not ended yet.
            let o = self.membership(identity, "", ChangeOp::Add, values);
            report.members_added += 1;
            report.count(&o.order.kind);
            let mut d: Vec<Dep> = member_dep(&o.order.id).into_iter().collect();
            d.push(dep(&o.order.id, &creating, Role::Key, None));
            return Some((Some(o), d));
        }
        if self.refused.contains(folded) {
            report.error(format!(
                "identity `{identity}`: group `{name}` does not exist in the target and cannot be created"
            ));
            return None;
        }
        if !self.new.contains_key(folded) {
            let why = match self.create(ev, name) {
                Ok(Some(order)) => {
                    report.groups_created += 1;
                    report.count(&order.kind);
                    let g = NewGroup {
                        order,
                        members: Vec::new(),
                        waits: Vec::new(),
                    };
                    self.new.insert(folded.to_owned(), g);
                    None
                }
                Ok(None) => Some("the rules do not create groups".to_owned()),
                Err(e) => Some(format!("its create fails: {e:#}")),
            };
            if let Some(why) = why {
                self.refused.insert(folded.to_owned());
                report.error(format!(
                    "identity `{identity}`: group `{name}` does not exist in the target and {why}"
                ));
                return None;
            }
        }
        let g = self.new.get_mut(folded).expect("inserted above");
        report.members_added += 1;
        g.members.extend(member.map(str::to_owned));
        g.waits.extend(created_by.map(str::to_owned));
        Some((None, Vec::new()))
    }

    /// A membership order on one group for one identity's account.
    fn membership(
        &self,
        identity: &str,
        group: &str,
        op: ChangeOp,
        values: Vec<String>,
    ) -> Planned {
        Planned {
            identity: Some(identity.to_owned()),
            order: Order {
                id: order_id(),
                entity_type: self.rules.entity_type.clone(),
                key: group.to_owned(),
                kind: OrderKind::Update {
                    changes: vec![AttributeChange {
                        name: self.rules.member_attribute.clone(),
                        op,
                        values,
                    }],
                },
            },
        }
    }

    /// The create of a group the target lacks (`None`: the rules do not create groups).
    fn create(&self, ev: &Evaluator<'_>, name: &str) -> anyhow::Result<Option<Order>> {
        let Some(c) = &self.rules.create else {
            return Ok(None);
        };
        let b = ev.group(name);
        let key = match &c.key {
            Some(k) => b.text(k)?,
            None => name.to_owned(),
        };
        let mut attributes = Attrs::new();
        for (n, e) in &c.attributes {
            attributes.insert(n.clone(), b.values(e)?);
        }
        attributes.insert(self.rules.name_attribute.clone(), vec![name.to_owned()]);
        Ok(Some(Order {
            id: order_id(),
            entity_type: self.rules.entity_type.clone(),
            key,
            kind: OrderKind::Create { attributes },
        }))
    }

    /// The creates of new groups, each with the members gathered, and what they wait for.
    pub fn finish(self) -> (Vec<Planned>, Vec<Dep>) {
        let mut orders = Vec::new();
        let mut deps = Vec::new();
        let attr = self.rules.member_attribute.clone();
        for (_, mut g) in self.new {
            if let OrderKind::Create { attributes } = &mut g.order.kind {
                attributes.insert(attr.clone(), g.members);
            }
            for w in g.waits {
                deps.push(dep(&g.order.id, &w, Role::Member, Some(attr.clone())));
            }
            orders.push(Planned {
                identity: None,
                order: g.order,
            });
        }
        (orders, deps)
    }
}

fn dep(order: &str, on: &str, role: Role, attribute: Option<String>) -> Dep {
    Dep {
        order: order.to_owned(),
        on: on.to_owned(),
        role,
        attribute,
    }
}

#[cfg(test)]
mod tests;
