//! Group memberships through provisioning, on the server's own code: a new account joins its
//! groups once the target has created it (under the key the target gave it), a missing group is
//! created with its first members, a move changes groups, a leaver leaves its groups before its
//! account is deleted, and what waited for an order that failed or was replaced does not hang.

use idgard_model::wire::{BatchBuffer, EntryOp};
use idgard_protocol::OrderState;
use idgard_protocol::model::{ChangeOp, Order, OrderKind, OrderOutcome};
use idgard_server::identity::views::OrderFilter;
use idgard_server::page::Page;
mod support;
#[macro_use]
mod world;
use world::World;

const RULES: &str = r#"
version = 1
[identities]
connection = "hr"
[[targets]]
connection = "accounts"
key = 'identity.key.lowerAscii()'
max_attempts = 1
correlation = { account = "account.employee_id" }
leave = { delete_after_days = 0 }
[targets.attributes]
employee_id = "identity.key"
[targets.groups]
member_of = '"staff-" + identity.dept.lowerAscii()'
name_attribute = "cn"
[targets.groups.create.attributes]
dn = '"cn=" + group.name + ",ou=groups"'
"#;

/// Stores and synchronizes an HR export: (key, department) upserts, then deletes.
async fn hr(w: &World, people: &[(&str, &str)], gone: &[&str], incremental: bool) {
    let mut b = BatchBuffer::with_capacity(4096);
    for (key, dept) in people {
        let at = b.begin_entry(EntryOp::Upsert, "person", key);
        b.attribute1("dept", dept);
        b.end_entry(at, 1);
    }
    for key in gone {
        let at = b.begin_entry(EntryOp::Delete, "person", key);
        b.end_entry(at, 0);
    }
    let up = w.store(&b).await;
    w.sync_of("hr", up, incremental).await;
}

/// The target as a directory answers: creates keyed by the directory (`uuid-<key>`), the rest
/// done.
fn directory(o: &Order) -> OrderOutcome {
    match o.kind {
        OrderKind::Create { .. } => OrderOutcome::Created(format!("uuid-{}", o.key)),
        _ => OrderOutcome::Done,
    }
}

/// A group's current members in the repository.
async fn members(w: &World, key: &str) -> Vec<String> {
    let entries =
        w.q.entries("accounts", None, &Page::first(100))
            .await
            .unwrap();
    let g = entries
        .iter()
        .find(|e| e.key == key)
        .unwrap_or_else(|| panic!("no entry {key} in {entries:?}"));
    let mut m = g.attributes.get("member").cloned().unwrap_or_default();
    m.sort();
    m
}

fn membership(o: &Order) -> (ChangeOp, Vec<String>) {
    let OrderKind::Update { changes } = &o.kind else {
        panic!("not a membership: {o:?}")
    };
    (changes[0].op, changes[0].values.clone())
}

on_both!(groups_follow_accounts);
on_both!(waits_end);
on_both!(fresh_pages);

/// An agent asks for the next page while it still holds one (`fresh`): it gets the next ready
/// orders, never those it holds; what waits for the held ones comes once their results are
/// recorded; a plain ask (a restarted agent) gives the held ones again.
async fn fresh_pages(w: World) {
    hr(&w, &[("E1", "IT"), ("E2", "Sales")], &[], false).await;
    let report = w.provision().await;
    assert_eq!(
        (report.creates, report.groups_created),
        (4, 2),
        "{report:?}"
    );
    let (task, fence) = w.fulfil_task().await;
    let held = world::page(&w.q, w.agent, task, fence).await.orders;
    let kinds: Vec<&str> = held.iter().map(|o| o.entity_type.as_str()).collect();
    assert_eq!(
        kinds,
        ["account", "account"],
        "the groups wait for their members"
    );
    let fresh = w.q.task_orders(w.agent, task, fence, true).await.unwrap();
    assert!(fresh.orders.is_empty(), "nothing else is ready yet");
    let again = world::page(&w.q, w.agent, task, fence).await.orders;
    let ids = |orders: &[Order]| orders.iter().map(|o| o.id.clone()).collect::<Vec<_>>();
    assert_eq!(
        ids(&again),
        ids(&held),
        "held orders come again to a plain ask"
    );

    let results = held
        .iter()
        .map(|o| idgard_protocol::model::OrderResult {
            id: o.id.clone(),
            outcome: directory(o),
        })
        .collect();
    w.q.order_results(
        w.agent,
        task,
        &idgard_protocol::OrderResults { fence, results },
    )
    .await
    .unwrap();
    let fresh = w.q.task_orders(w.agent, task, fence, true).await.unwrap();
    let groups: Vec<Order> = fresh
        .orders
        .iter()
        .map(|o| serde_json::from_str(o.get()).unwrap())
        .collect();
    assert_eq!(groups.len(), 2, "{groups:?}");
    assert!(
        groups
            .iter()
            .all(|o| o.entity_type == "group" && o.kind.name() == "create")
    );
    let fresh = w.q.task_orders(w.agent, task, fence, true).await.unwrap();
    assert!(fresh.orders.is_empty(), "each order is handed out once");
}

/// Accounts join their groups once created, move, and leave them before a delete.
async fn groups_follow_accounts(w: World) {
    let up = w
        .export_target(&[("group", "g-it", &[("cn", &["Staff-IT"])])])
        .await;
    w.sync_of("accounts", up, false).await;
    hr(&w, &[("E1", "IT"), ("E2", "Sales")], &[], false).await;
    let report = w.provision().await;
    assert_eq!(
        (report.creates, report.groups_created, report.members_added),
        (3, 1, 2),
        "{report:?}"
    );
    let waiting =
        w.q.orders(
            &OrderFilter {
                state: Some(OrderState::Waiting),
                ..Default::default()
            },
            &Page::first(10),
        )
        .await
        .unwrap()
        .len();
    assert_eq!(
        waiting, 2,
        "the membership and the new group wait for the creates"
    );

    let sent = w.fulfil_orders(directory).await;
    let kinds: Vec<(&str, &str)> = sent
        .iter()
        .map(|o| (o.kind.name(), o.entity_type.as_str()))
        .collect();
    assert_eq!(
        kinds[..2],
        [("create", "account"), ("create", "account")],
        "accounts first: {kinds:?}"
    );
    assert_eq!(sent.len(), 4, "{kinds:?}");
    let join = sent
        .iter()
        .find(|o| o.key == "g-it")
        .expect("a join of g-it");
    assert_eq!(membership(join), (ChangeOp::Add, vec!["uuid-e1".into()]));
    let new_group = sent
        .iter()
        .find(|o| o.entity_type == "group" && o.kind.name() == "create")
        .unwrap();
    let OrderKind::Create { attributes } = &new_group.kind else {
        unreachable!()
    };
    assert_eq!(attributes["member"], ["uuid-e2"]);
    assert_eq!(attributes["cn"], ["staff-sales"]);
    assert_eq!(attributes["dn"], ["cn=staff-sales,ou=groups"]);
    assert_eq!(members(&w, "g-it").await, ["uuid-e1"]);
    assert_eq!(members(&w, "uuid-staff-sales").await, ["uuid-e2"]);

    // E1 moves to Sales: out of Staff-IT, into staff-sales (by the key the target gave it).
    hr(&w, &[("E1", "Sales")], &[], true).await;
    w.provision().await;
    let mut sent: Vec<(String, ChangeOp, Vec<String>)> = w
        .fulfil_orders(directory)
        .await
        .iter()
        .map(|o| {
            let (op, v) = membership(o);
            (o.key.clone(), op, v)
        })
        .collect();
    sent.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        sent,
        [
            ("g-it".into(), ChangeOp::Remove, vec!["uuid-e1".into()]),
            (
                "uuid-staff-sales".into(),
                ChangeOp::Add,
                vec!["uuid-e1".into()]
            ),
        ]
    );
    assert!(members(&w, "g-it").await.is_empty());
    assert_eq!(
        members(&w, "uuid-staff-sales").await,
        ["uuid-e1", "uuid-e2"]
    );

    // E2 leaves: out of its group first, then deleted.
    hr(&w, &[], &["E2"], true).await;
    w.provision().await;
    let sent: Vec<(String, String)> = w.fulfil(directory).await.into_iter().collect();
    assert_eq!(
        sent,
        [
            ("update".into(), "uuid-staff-sales".into()),
            ("delete".into(), "uuid-e2".into()),
        ]
    );
    assert_eq!(members(&w, "uuid-staff-sales").await, ["uuid-e1"]);
    // Nothing is left waiting, and a new computation has nothing to do.
    assert!(
        w.q.orders(
            &OrderFilter {
                state: Some(OrderState::Waiting),
                ..Default::default()
            },
            &Page::first(10)
        )
        .await
        .unwrap()
        .is_empty()
    );
    let report = w.provision().await;
    assert_eq!(report.orders(), 0, "{report:?}");
}

/// What waited for a failed or replaced order does not hang.
async fn waits_end(w: World) {
    let up = w
        .export_target(&[("group", "g-it", &[("cn", &["staff-it"])])])
        .await;
    w.sync_of("accounts", up, false).await;
    hr(
        &w,
        &[("E1", "IT"), ("E2", "Legal"), ("E3", "Legal")],
        &[],
        false,
    )
    .await;
    w.provision().await;
    // Computed again before any fulfilment: the first orders are replaced, waiting ones too.
    let report = w.provision().await;
    assert_eq!(
        report.creates, 0,
        "incremental: nothing changed: {report:?}"
    );
    w.provision_complete().await;
    let live =
        w.q.orders(&OrderFilter::default(), &Page::first(100))
            .await
            .unwrap();
    let count = |s: OrderState| live.iter().filter(|o| o.state == s).count();
    assert_eq!(count(OrderState::Pending), 3, "{live:#?}");
    assert_eq!(count(OrderState::Waiting), 2, "{live:#?}");
    assert_eq!(
        count(OrderState::Superseded),
        4,
        "the first computation's creates and E1's join; the group's create stays"
    );

    // E1's and E3's creates fail for good (one attempt): E1's join fails, the new group goes
    // on with E2 alone.
    let sent = w
        .fulfil_orders(|o| match (&o.kind, o.key.as_str()) {
            (OrderKind::Create { .. }, "e1" | "e3") => OrderOutcome::Failed("refused".into()),
            _ => directory(o),
        })
        .await;
    let legal = sent
        .iter()
        .find(|o| o.entity_type == "group")
        .expect("the new group was sent");
    let OrderKind::Create { attributes } = &legal.kind else {
        panic!("{legal:?}")
    };
    assert_eq!(attributes["member"], ["uuid-e2"]);
    let orders =
        w.q.orders(&OrderFilter::default(), &Page::first(100))
            .await
            .unwrap();
    let join = orders
        .iter()
        .find(|o| o.key == "g-it" && o.state != OrderState::Superseded)
        .unwrap();
    assert_eq!(join.state, OrderState::Failed);
    assert_eq!(
        join.message.as_deref(),
        Some("the account it adds was not created")
    );
    assert!(orders.iter().all(|o| o.state != OrderState::Waiting));
}
