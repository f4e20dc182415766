//! Membership planning, without a database.
use super::*;
use crate::identity::rules::Rules;

const RULES: &str = r#"
version = 1
[identities]
connection = "hr"
[lookups.roles]
Boss = "role-managers"
[[targets]]
connection = "dir"
key = 'identity.key'
correlation = { account = "account.employee_id" }
[targets.groups]
member_of = '["staff-" + identity.dept.lowerAscii()] + (identity.title in lookups.roles ? [lookups.roles[identity.title]] : [])'
name_attribute = "cn"
managed = 'group.name.startsWith("staff-") || group.name.startsWith("role-")'
[targets.groups.create.attributes]
dn = '"cn=" + group.name + ",ou=groups,dc=example,dc=org"'
description = '"Managed by idgard"'
"#;

fn rules(text: &str) -> Rules {
    Rules::parse(text, "test").unwrap()
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The groups of the directory: staff-it (a1, a9), staff-sales (a2), vpn (a1, unmanaged).
fn planner<'r>(r: &'r Rules, ev: &Evaluator<'_>) -> GroupPlanner<'r> {
    let g = r.targets[0].groups.as_ref().unwrap();
    let mut p = GroupPlanner::new(g);
    p.hold(ev, "g-it", "staff-IT", &names(&["a1", "a9"]));
    p.hold(ev, "g-sales", "staff-sales", &names(&["a2"]));
    p.hold(ev, "g-vpn", "vpn", &names(&["a1"]));
    p
}

/// Each order as (group key, op, member values).
fn changes(orders: &[Planned]) -> Vec<(String, ChangeOp, Vec<String>)> {
    orders
        .iter()
        .map(|p| match &p.order.kind {
            OrderKind::Update { changes } => (
                p.order.key.clone(),
                changes[0].op,
                changes[0].values.clone(),
            ),
            other => panic!("not a membership: {other:?}"),
        })
        .collect()
}

#[test]
fn a_move_leaves_the_old_group_joins_the_new_and_unmanaged_groups_stay() {
    let r = rules(RULES);
    let ev = r.evaluator();
    let mut p = planner(&r, &ev);
    let mut report = ProvisionReport::default();
    let held = AccountIs::Held {
        key: "a1",
        deleted_by: None,
    };
    let (orders, deps) = p.plan(&ev, "E1", &names(&["staff-sales"]), held, &mut report);
    assert_eq!(
        changes(&orders),
        [
            ("g-sales".into(), ChangeOp::Add, names(&["a1"])),
            ("g-it".into(), ChangeOp::Remove, names(&["a1"])),
        ]
    );
    assert!(deps.is_empty());
    assert!(orders.iter().all(|o| o.identity.as_deref() == Some("E1")));
    assert_eq!((report.members_added, report.members_removed), (1, 1));
    // Names compare without regard to case: staff-it holds a9 already.
    let held = AccountIs::Held {
        key: "a9",
        deleted_by: None,
    };
    let (orders, _) = p.plan(&ev, "E9", &names(&["STAFF-it"]), held, &mut report);
    assert!(orders.is_empty(), "{orders:?}");
}

#[test]
fn a_new_account_joins_once_created_and_a_new_group_is_created_with_its_members() {
    let r = rules(RULES);
    let ev = r.evaluator();
    let mut p = planner(&r, &ev);
    let mut report = ProvisionReport::default();
    let (orders, deps) = p.plan(
        &ev,
        "E3",
        &names(&["staff-it", "role-managers"]),
        AccountIs::Created("o-create-3"),
        &mut report,
    );
    // Into the existing group: an add with no value yet, filled from the create.
    assert_eq!(changes(&orders), [("g-it".into(), ChangeOp::Add, vec![])]);
    assert_eq!(
        deps,
        [Dep {
            order: orders[0].order.id.clone(),
            on: "o-create-3".into(),
            role: Role::Member,
            attribute: Some("member".into()),
        }]
    );
    // role-managers does not exist: one create, gathering members over the run.
    let held = AccountIs::Held {
        key: "a2",
        deleted_by: None,
    };
    let (orders, _) = p.plan(
        &ev,
        "E2",
        &names(&["staff-sales", "Role-Managers"]),
        held,
        &mut report,
    );
    assert!(orders.is_empty(), "the create gathers a2: {orders:?}");
    let (creates, deps) = p.finish();
    assert_eq!(creates.len(), 1);
    let c = &creates[0];
    assert_eq!(c.identity, None);
    assert_eq!(c.order.key, "role-managers");
    let OrderKind::Create { attributes } = &c.order.kind else {
        panic!("{c:?}")
    };
    assert_eq!(attributes["cn"], ["role-managers"]);
    assert_eq!(
        attributes["dn"],
        ["cn=role-managers,ou=groups,dc=example,dc=org"]
    );
    assert_eq!(attributes["description"], ["Managed by idgard"]);
    assert_eq!(attributes["member"], ["a2"]);
    assert_eq!(deps.len(), 1);
    assert_eq!(
        (deps[0].on.as_str(), deps[0].role),
        ("o-create-3", Role::Member)
    );
    assert_eq!(report.groups_created, 1);
    assert_eq!(report.members_added, 3);
}

#[test]
fn a_deleted_account_leaves_its_groups_first() {
    let r = rules(RULES);
    let ev = r.evaluator();
    let mut p = planner(&r, &ev);
    let mut report = ProvisionReport::default();
    let held = AccountIs::Held {
        key: "a1",
        deleted_by: Some("o-delete-1"),
    };
    let (orders, deps) = p.plan(&ev, "E1", &[], held, &mut report);
    assert_eq!(
        changes(&orders),
        [("g-it".into(), ChangeOp::Remove, names(&["a1"]))],
        "vpn is not managed"
    );
    assert_eq!(
        deps,
        [Dep {
            order: "o-delete-1".into(),
            on: orders[0].order.id.clone(),
            role: Role::After,
            attribute: None,
        }]
    );
}

#[test]
fn a_group_whose_create_is_under_way_is_joined_by_its_key_when_created() {
    let r = rules(RULES);
    let ev = r.evaluator();
    let mut p = planner(&r, &ev);
    p.creating("staff-legal", "o-group".into(), false);
    let mut report = ProvisionReport::default();
    let held = AccountIs::Held {
        key: "a5",
        deleted_by: None,
    };
    let (orders, deps) = p.plan(&ev, "E5", &names(&["staff-legal"]), held, &mut report);
    assert_eq!(
        changes(&orders),
        [(String::new(), ChangeOp::Add, names(&["a5"]))]
    );
    assert_eq!(deps.len(), 1);
    assert_eq!((deps[0].on.as_str(), deps[0].role), ("o-group", Role::Key));
    // A new account joins a create that still waits, as one of its first members.
    p.creating("staff-legal", "o-group".into(), true);
    let (orders, deps) = p.plan(
        &ev,
        "E6",
        &names(&["staff-legal"]),
        AccountIs::Created("o-create-6"),
        &mut report,
    );
    assert!(orders.is_empty());
    assert_eq!(
        deps,
        [Dep {
            order: "o-group".into(),
            on: "o-create-6".into(),
            role: Role::Member,
            attribute: Some("member".into()),
        }]
    );
    assert!(p.finish().0.is_empty(), "no second create");
}

#[test]
fn a_missing_group_the_rules_do_not_create_is_an_error_counted_per_identity() {
    let text = RULES
        .replace("[targets.groups.create.attributes]", "")
        .replace(
            "dn = '\"cn=\" + group.name + \",ou=groups,dc=example,dc=org\"'",
            "",
        )
        .replace("description = '\"Managed by idgard\"'", "");
    let r = rules(&text);
    let ev = r.evaluator();
    let mut p = planner(&r, &ev);
    let mut report = ProvisionReport::default();
    for (identity, key) in [("E6", "a6"), ("E7", "a7")] {
        let held = AccountIs::Held {
            key,
            deleted_by: None,
        };
        let (orders, _) = p.plan(&ev, identity, &names(&["staff-legal"]), held, &mut report);
        assert!(orders.is_empty());
    }
    assert_eq!(report.errors, 2);
    assert!(
        report.samples[0].contains("group `staff-legal` does not exist in the target"),
        "{:?}",
        report.samples
    );
}

#[test]
fn groups_rules_are_checked_with_line_numbers() {
    let bad = RULES.replace(
        "managed = 'group.name.startsWith(\"staff-\") || group.name.startsWith(\"role-\")'",
        "managed = 'identity.dept == \"x\"'",
    );
    let e = Rules::parse(&bad, "r.toml").err().unwrap().to_string();
    assert!(
        e.contains("r.toml:14") && e.contains("reads `identity`"),
        "{e}"
    );
    let bad = RULES.replace(
        "description = '\"Managed by idgard\"'",
        "member = 'group.name'",
    );
    let e = Rules::parse(&bad, "r.toml").err().unwrap().to_string();
    assert!(e.contains("`member` is set by idgard"), "{e}");
}
