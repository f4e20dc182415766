//! The leave policy over time, and order retries, on the server's own code with a clock the test
//! moves: an identity leaves, its account is disabled at once and deleted 30 days later; a
//! `retry-later` result does not use up attempts, a `failed` one does; the target's export of
//! what a fulfilment wrote confirms it and is not a change.

use idgard_protocol::model::{OrderOutcome, OrderResult};
use idgard_protocol::{Operation, OrderResults, OrderState, PAGE_MAX};
use idgard_server::identity::views::OrderFilter;
use idgard_server::page::Page;
mod support;
mod world;
use world::{World, done, page};

const RULES: &str = r#"
version = 1
[identities]
connection = "hr"
[[targets]]
connection = "accounts"
key = 'identity.key.lowerAscii()'
enabled_attribute = "enabled"
max_attempts = 2
retry_after_s = 1
correlation = { account = "account.employee_id" }
leave = { disable = true, delete_after_days = 30 }
[targets.attributes]
employee_id = "identity.key"
"#;

#[tokio::test]
async fn a_leaver_is_disabled_then_deleted_thirty_days_later() {
    let w = World::with_rules(RULES).await;
    let up = w.export(&["E1", "E2"], &[]).await;
    w.sync(up, false).await;
    w.provision().await;
    let mut sent = w.fulfil(done).await;
    sent.sort();
    assert_eq!(
        sent,
        [
            ("create".into(), "e1".into()),
            ("create".into(), "e2".into())
        ]
    );

    // E2 leaves: disabled at once.
    w.pass_days(1);
    let up = w.export(&[], &["E2"]).await;
    w.sync(up, true).await;
    w.provision().await;
    assert_eq!(w.fulfil(done).await, [("disable".into(), "e2".into())]);

    // 29 days later nothing is due; 30 days after the leave, the delete is.
    w.pass_days(29);
    w.provision().await;
    assert!(w.fulfil(done).await.is_empty());
    w.pass_days(1);
    w.provision().await;
    assert_eq!(w.fulfil(done).await, [("delete".into(), "e2".into())]);
    let entries =
        w.q.entries("accounts", None, &Page::first(10))
            .await
            .unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].key, "e1");
    assert!(
        w.q.links("accounts", None, &Page::first(PAGE_MAX))
            .await
            .unwrap()
            .len()
            == 1
    );
    // And then nothing more.
    w.pass_days(1);
    w.provision().await;
    assert!(w.fulfil(done).await.is_empty());
}

#[tokio::test]
async fn retry_later_keeps_attempts_failed_uses_them_up() {
    let w = World::with_rules(RULES).await;
    let up = w.export(&["E1"], &[]).await;
    w.sync(up, false).await;
    w.provision().await;
    let busy = |_: &idgard_protocol::model::Order| OrderOutcome::RetryLater("busy".into());
    let broken = |_: &idgard_protocol::model::Order| OrderOutcome::Failed("broken".into());
    // Three "retry later": the order stays ready for later (after its delay).
    for _ in 0..3 {
        assert_eq!(w.fulfil(busy).await.len(), 1);
        assert!(w.fulfil(busy).await.is_empty(), "not before its delay");
        w.pass_days(1);
    }
    let order =
        &w.q.orders(&OrderFilter::default(), &Page::first(10))
            .await
            .unwrap()[0];
    assert_eq!(order.state, OrderState::Retry);
    assert_eq!(order.message.as_deref(), Some("busy"));
    assert_eq!(order.attempts, 0, "retry-later uses up no attempt");
    // Two failures (max_attempts = 2): retried once, then failed for good.
    assert_eq!(w.fulfil(broken).await.len(), 1);
    let order =
        &w.q.orders(&OrderFilter::default(), &Page::first(10))
            .await
            .unwrap()[0];
    assert_eq!((order.state, order.attempts), (OrderState::Retry, 1));
    w.pass_days(1);
    assert_eq!(w.fulfil(broken).await.len(), 1);
    let order =
        &w.q.orders(&OrderFilter::default(), &Page::first(10))
            .await
            .unwrap()[0];
    assert_eq!(order.state, OrderState::Failed, "{order:?}");
    assert_eq!(order.message.as_deref(), Some("broken"));
    w.pass_days(1);
    assert!(
        w.fulfil(done).await.is_empty(),
        "a failed order is not sent again"
    );
}

#[tokio::test]
async fn with_a_key_attribute_the_echo_of_a_create_is_unchanged_and_writes_nothing() {
    let rules = RULES.replace(
        "enabled_attribute = \"enabled\"",
        "enabled_attribute = \"enabled\"\nkey_attribute = \"login\"",
    );
    let w = World::with_rules(&rules).await;
    let report = w.fulfil_two_then_echo().await;
    assert_eq!(
        (report.unchanged, report.confirmed, report.updated),
        (1, 0, 1),
        "{report:?}"
    );
    assert_eq!(w.provision().await.identities, 1);
    assert_eq!(w.fulfil(done).await, [("update".into(), "e2".into())]);
}

#[tokio::test]
async fn the_targets_echo_of_a_fulfilment_is_not_a_change() {
    let w = World::with_rules(RULES).await;
    let report = w.fulfil_two_then_echo().await;
    assert_eq!((report.confirmed, report.updated), (1, 1), "{report:?}");
    let p = w.provision().await;
    assert_eq!(
        p.identities, 1,
        "only the identity whose account changed: {p:?}"
    );
    assert_eq!(w.fulfil(done).await, [("update".into(), "e2".into())]);

    // The same export again changes nothing, and a real change to a confirmed account counts.
    let up = w
        .export_accounts(&[(
            "e1",
            &[("employee_id", "E1"), ("enabled", "true"), ("login", "e1")],
        )])
        .await;
    assert_eq!(w.sync_of("accounts", up, true).await.unchanged, 1);
    let up = w
        .export_accounts(&[(
            "e1",
            &[("employee_id", "E1"), ("enabled", "false"), ("login", "e1")],
        )])
        .await;
    let report = w.sync_of("accounts", up, true).await;
    assert_eq!((report.confirmed, report.updated), (0, 1), "{report:?}");
    assert_eq!(w.provision().await.identities, 1);
    assert_eq!(w.fulfil(done).await, [("enable".into(), "e1".into())]);
}

#[tokio::test]
async fn a_fulfil_task_takes_its_orders_page_by_page() {
    let w = World::with_rules(RULES).await;
    let people: Vec<String> = (0..5_050).map(|i| format!("E{i}")).collect();
    let refs: Vec<&str> = people.iter().map(String::as_str).collect();
    let up = w.export(&refs, &[]).await;
    w.sync(up, false).await;
    assert_eq!(w.provision().await.creates, 5_050);
    let q = &w.q.queue;
    let id = q
        .enqueue(
            "a",
            &[World::spec(
                Operation::Fulfill,
                serde_json::json!({ "server_orders": true }),
            )],
        )
        .await
        .unwrap()[0];
    let fence = q.claim(w.agent, 1).await.unwrap()[0].fence;
    q.heartbeat(w.agent, id, fence, None).await.unwrap();
    let first = page(&w.q, w.agent, id, fence).await;
    assert_eq!((first.orders.len(), first.remaining), (5_000, Some(50)));
    // Asked again before its results: the same page (a restarted agent).
    let again = page(&w.q, w.agent, id, fence).await;
    assert_eq!(again.orders.len(), 5_000);
    assert_eq!(again.orders[0].id, first.orders[0].id);
    let answer = |orders: &[idgard_protocol::model::Order]| OrderResults {
        fence,
        results: orders
            .iter()
            .map(|o| OrderResult {
                id: o.id.clone(),
                outcome: OrderOutcome::Done,
            })
            .collect(),
    };
    w.q.order_results(w.agent, id, &answer(&first.orders))
        .await
        .unwrap();
    let second = page(&w.q, w.agent, id, fence).await;
    assert_eq!((second.orders.len(), second.remaining), (50, None));
    let recorded =
        w.q.order_results(w.agent, id, &answer(&second.orders))
            .await
            .unwrap();
    assert_eq!((recorded.recorded, recorded.ignored), (50, 0));
    // A replay of results is ignored; then the task has nothing left.
    let replay =
        w.q.order_results(w.agent, id, &answer(&second.orders))
            .await
            .unwrap();
    assert_eq!((replay.recorded, replay.ignored), (0, 50));
    assert!(page(&w.q, w.agent, id, fence).await.orders.is_empty());
    assert_eq!(
        w.q.links("accounts", None, &Page::first(PAGE_MAX))
            .await
            .unwrap()
            .len(),
        5_050
    );
    assert_eq!(
        w.q.entries("accounts", None, &Page::first(10_000))
            .await
            .unwrap()
            .len(),
        5_050
    );
}

#[tokio::test]
async fn a_create_the_target_keyed_itself_is_held_under_that_key() {
    let w = World::with_rules(RULES).await;
    let up = w.export(&["E1"], &[]).await;
    w.sync(up, false).await;
    w.provision().await;
    // A directory names the new entry itself (its entryUUID): the result carries that key.
    let created =
        |o: &idgard_protocol::model::Order| OrderOutcome::Created(format!("uuid-{}", o.key));
    assert_eq!(w.fulfil(created).await, [("create".into(), "e1".into())]);
    // The target's export under that key is the account fulfilment made: nothing to do.
    let up = w
        .export_accounts(&[("uuid-e1", &[("employee_id", "E1"), ("enabled", "true")])])
        .await;
    let report = w.sync_of("accounts", up, true).await;
    assert_eq!(
        (
            report.unchanged + report.confirmed,
            report.inserted,
            report.updated
        ),
        (1, 0, 0),
        "{report:?}"
    );
    assert_eq!(w.provision().await.identities, 0);
    assert!(w.fulfil(done).await.is_empty());
    // Later orders for that account address it by the target's key.
    let up = w
        .export_accounts(&[("uuid-e1", &[("employee_id", "E1"), ("enabled", "false")])])
        .await;
    w.sync_of("accounts", up, true).await;
    w.provision().await;
    assert_eq!(w.fulfil(done).await, [("enable".into(), "uuid-e1".into())]);
}
