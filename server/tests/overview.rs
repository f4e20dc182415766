//! What the UI's pages read and do, on both databases: the overview's counts and "needs
//! attention", identity search by key prefix, the connections, retrying failed orders; and the
//! stores of the UI itself: sessions (idle and absolute ends, revocation, hashed ids) and the
//! audit trail (filters, paging).

use idgard_protocol::{ListQuery, OrderState};
use idgard_server::identity::views::OrderFilter;
use idgard_server::page::Page;
use idgard_server::web::access::Role;
use idgard_server::web::audit::{Audit, Event, Filter, Outcome};
use idgard_server::web::sessions::Sessions;
use std::sync::atomic::Ordering;
mod support;
#[macro_use]
mod world;
use world::{World, done};

const RULES: &str = r#"
version = 1
[identities]
connection = "hr"
[[targets]]
connection = "accounts"
key = 'identity.key.lowerAscii()'
correlation = { account = "account.employee_id" }
[targets.attributes]
employee_id = "identity.key"
"#;

on_both!(the_overview_counts_and_names_what_needs_attention);
on_both!(failed_orders_are_sent_again_by_hand_and_nothing_else_moves);
on_both!(sessions_end_idle_at_their_end_or_when_revoked);
on_both!(the_audit_trail_filters_and_pages);
on_both!(a_match_waiting_for_review_is_confirmed_or_rejected_for_good);
on_both!(identities_are_found_by_name_whatever_the_case);

fn page(after: Option<&str>, limit: u32) -> Page {
    Page::new(ListQuery {
        after: after.map(String::from),
        limit: Some(limit),
    })
    .unwrap()
}

/// E1..E12 with accounts, and an orphan account `ghost`.
async fn populate(w: &World) {
    let people: Vec<String> = (1..=12).map(|i| format!("E{i}")).collect();
    let people: Vec<&str> = people.iter().map(String::as_str).collect();
    let up = w.export(&people, &[]).await;
    w.sync(up, false).await;
    w.provision().await;
    assert_eq!(w.fulfil(done).await.len(), 12);
    let up = w
        .export_accounts(&[("ghost", &[("employee_id", "X9")])])
        .await;
    w.sync_of("accounts", up, true).await;
    w.provision().await;
}

async fn the_overview_counts_and_names_what_needs_attention(w: World) {
    populate(&w).await;
    let o = w.q.overview().await.unwrap();
    assert_eq!(o.identities, 12);
    assert!(
        o.accounts
            .contains(&("accounts".into(), "linked".into(), 12)),
        "{:?}",
        o.accounts
    );
    assert!(
        o.accounts
            .contains(&("accounts".into(), "unmatched".into(), 1)),
        "{:?}",
        o.accounts
    );
    assert!(
        o.attention.iter().any(|a| a.kind == "accounts-to-review"
            && a.link == "/connections/accounts?situation=unmatched"),
        "{:?}",
        o.attention
    );
    assert_eq!((o.agents, o.agents_online), (1, 0));
    // Search by key prefix, paged by key.
    let keys =
        |v: Vec<idgard_protocol::EntryView>| v.into_iter().map(|e| e.key).collect::<Vec<_>>();
    assert_eq!(
        keys(w.q.search_identities("E1", &page(None, 100)).await.unwrap()),
        ["E1", "E10", "E11", "E12"]
    );
    assert_eq!(
        keys(w.q.search_identities("E1", &page(None, 2)).await.unwrap()),
        ["E1", "E10"]
    );
    assert_eq!(
        keys(
            w.q.search_identities("E1", &page(Some("E10"), 2))
                .await
                .unwrap()
        ),
        ["E11", "E12"]
    );
    assert_eq!(
        w.q.search_identities("", &page(None, 100))
            .await
            .unwrap()
            .len(),
        12
    );
    assert!(
        w.q.search_identities("Z", &page(None, 100))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        w.q.search_identities("%", &page(None, 100))
            .await
            .unwrap()
            .is_empty(),
        "no wildcard"
    );
    // Connections: the source and the target with their entries and last synchronisation.
    let c = w.q.connections().await.unwrap();
    let hr = c.iter().find(|c| c.name == "hr").unwrap();
    assert_eq!((hr.role.as_deref(), hr.entries), (Some("source"), 12));
    assert!(hr.last_sync_ms.is_some());
    let acc = c.iter().find(|c| c.name == "accounts").unwrap();
    assert_eq!(acc.role.as_deref(), Some("target"));
    assert_eq!(acc.last_sync_mode.as_deref(), Some("incremental"));
}

async fn failed_orders_are_sent_again_by_hand_and_nothing_else_moves(w: World) {
    let up = w.export(&["E1", "E2"], &[]).await;
    w.sync(up, false).await;
    w.provision().await;
    let orders =
        w.q.orders(&OrderFilter::default(), &page(None, 100))
            .await
            .unwrap();
    assert_eq!(orders.len(), 2);
    let of_kind = |kind: &str| OrderFilter {
        kind: Some(kind.into()),
        ..Default::default()
    };
    assert_eq!(
        w.q.orders(&of_kind("create"), &page(None, 100))
            .await
            .unwrap()
            .len(),
        2
    );
    assert!(
        w.q.orders(&of_kind("delete"), &page(None, 100))
            .await
            .unwrap()
            .is_empty()
    );
    let bad =
        w.q.orders(&of_kind("drop"), &page(None, 100))
            .await
            .unwrap_err();
    assert!(
        bad.message.contains("set-password"),
        "the kinds are named: {}",
        bad.message
    );
    sqlx::query(
        "UPDATE orders SET state = 'failed', attempts = 3, message = 'refused' WHERE id = $1",
    )
    .bind(&orders[0].id)
    .execute(&w.q.queue.db.pool)
    .await
    .unwrap();
    w.clock.fetch_add(1000, Ordering::SeqCst);
    let ids = [
        orders[0].id.clone(),
        orders[1].id.clone(),
        "no-such".to_owned(),
    ];
    assert_eq!(
        w.q.retry_orders(&ids).await.unwrap(),
        1,
        "only the failed one"
    );
    let again = w.q.order(&orders[0].id).await.unwrap();
    assert_eq!((again.state, again.attempts), (OrderState::Retry, 0));
    assert_eq!(
        w.q.order(&orders[1].id).await.unwrap().state,
        orders[1].state
    );
    assert!(w.q.retry_orders(&[]).await.is_err());
    // The next fulfil carries it.
    assert_eq!(w.fulfil(done).await.len(), 2);
}

async fn sessions_end_idle_at_their_end_or_when_revoked(w: World) {
    let s = Sessions::new(w.q.queue.db.clone(), w.q.queue.clock.clone(), 60, 3600);
    let tick = |ms: i64| w.clock.fetch_add(ms, Ordering::SeqCst);
    let a = s
        .open(
            "ann",
            "ldap",
            &[Role::Operator, Role::Approver],
            Some("10.0.0.1".into()),
        )
        .await
        .unwrap();
    let found = s.find(&a.secret).await.unwrap().unwrap();
    assert_eq!(
        (found.user.as_str(), found.roles.clone()),
        ("ann", vec![Role::Operator, Role::Approver])
    );
    assert!(
        s.find(&a.session.id_hash).await.unwrap().is_none(),
        "the stored hash opens nothing"
    );
    // Used every 50 s, it lives on; idle 61 s, it is over.
    for _ in 0..3 {
        tick(50_000);
        assert!(s.find(&a.secret).await.unwrap().is_some());
    }
    tick(61_000);
    assert!(s.find(&a.secret).await.unwrap().is_none(), "idle too long");
    // However busy, it ends at its absolute end.
    let b = s.open("ann", "ldap", &[Role::Viewer], None).await.unwrap();
    for _ in 0..72 {
        tick(50_000);
        s.find(&b.secret).await.unwrap();
    }
    assert!(s.find(&b.secret).await.unwrap().is_none(), "past its end");
    // Revoked by its owner only.
    let c = s
        .open("ann", "password", &[Role::Viewer], None)
        .await
        .unwrap();
    let d = s
        .open("ann", "password", &[Role::Viewer], None)
        .await
        .unwrap();
    assert_eq!(s.of_user("ann").await.unwrap().len(), 2);
    assert!(s.revoke("bob", &c.session.id_hash).await.is_err());
    s.revoke("ann", &c.session.id_hash).await.unwrap();
    assert!(s.find(&c.secret).await.unwrap().is_none());
    assert!(s.find(&d.secret).await.unwrap().is_some());
    tick(2 * 86_400_000);
    assert!(s.prune().await.unwrap() >= 3);
}

async fn the_audit_trail_filters_and_pages(w: World) {
    let a = Audit::new(w.q.queue.db.clone(), w.q.queue.clock.clone());
    for (user, action, outcome) in [
        (Some("ann"), "signin.ldap", Outcome::Done),
        (None, "signin.ldap", Outcome::Refused),
        (Some("ann"), "job.run", Outcome::Done),
        (Some("bob"), "order.retry", Outcome::Failed),
        (Some("ann"), "run.approve", Outcome::Done),
    ] {
        a.record(
            Event {
                user,
                action,
                target: Some("x"),
                address: None,
                detail: Some("d"),
            },
            outcome,
        )
        .await;
    }
    let all = a.list(&Filter::default(), &Page::first(100)).await.unwrap();
    assert_eq!(all.len(), 5);
    assert_eq!(all[0].action, "run.approve", "newest first");
    let f = |user: Option<&str>, action: Option<&str>, outcome: Option<&str>| Filter {
        user: user.map(String::from),
        action: action.map(String::from),
        outcome: outcome.map(String::from),
    };
    assert_eq!(
        a.list(&f(Some("ann"), None, None), &Page::first(100))
            .await
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        a.list(&f(None, Some("signin"), None), &Page::first(100))
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        a.list(&f(None, Some("sign%"), None), &Page::first(100))
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        a.list(&f(None, None, Some("refused")), &Page::first(100))
            .await
            .unwrap()
            .len(),
        1
    );
    let first = a.list(&Filter::default(), &page(None, 2)).await.unwrap();
    let after = first[1].id.to_string();
    let next = a
        .list(&Filter::default(), &page(Some(&after), 10))
        .await
        .unwrap();
    assert_eq!(next.len(), 3);
    assert!(next.iter().all(|e| e.id < first[1].id));
}

const REVIEWED: &str = r#"
version = 1
[identities]
connection = "hr"
[[targets]]
connection = "accounts"
key = 'identity.key.lowerAscii()'
correlation = { account = "account.employee_id", link = "review" }
[targets.attributes]
employee_id = "identity.key"
marker = '"m"'
"#;

async fn a_match_waiting_for_review_is_confirmed_or_rejected_for_good(w: World) {
    use idgard_protocol::Situation;
    use idgard_server::identity::operate::Review;
    let mut w = w;
    let rules = std::sync::Arc::new(
        idgard_server::identity::rules::Rules::parse(REVIEWED, "reviewed").unwrap(),
    );
    w.q.rules = Some(rules.clone());
    w.rules = rules;
    let up = w.export(&["E1", "E2", "E3"], &[]).await;
    w.sync(up, false).await;
    let up = w
        .export_accounts(&[
            ("a1", &[("employee_id", "E1")]),
            ("a2", &[("employee_id", "E2")]),
            ("e3", &[("employee_id", "E3")]),
        ])
        .await;
    w.sync_of("accounts", up, false).await;
    w.provision_complete().await;
    let link = |key: &'static str| {
        let q = w.q.clone();
        async move {
            q.links("accounts", None, &page(None, 100))
                .await
                .unwrap()
                .into_iter()
                .find(|l| l.key == key)
                .unwrap()
        }
    };
    assert_eq!(link("a1").await.situation, Situation::Unlinked);
    // E3's account key is that of an account waiting for review: no create takes it over.
    assert_eq!(link("e3").await.situation, Situation::Unlinked);
    let e3 = OrderFilter {
        identity: Some("E3".into()),
        ..Default::default()
    };
    let orders = w.q.orders(&e3, &page(None, 100)).await.unwrap();
    assert!(orders.iter().all(|o| o.key != "e3"), "{orders:#?}");
    // Nor does an identity whose match waits for review get a second account meanwhile.
    let of = |identity: &'static str| {
        let q = w.q.clone();
        async move {
            let only = OrderFilter {
                identity: Some(identity.into()),
                ..Default::default()
            };
            q.orders(&only, &page(None, 100)).await.unwrap()
        }
    };
    assert!(of("E1").await.is_empty(), "{:#?}", of("E1").await);
    let confirmed =
        w.q.review_link("accounts", "a1", Review::Confirm)
            .await
            .unwrap();
    assert_eq!(
        (confirmed.situation, confirmed.identity.as_deref()),
        (Situation::Linked, Some("E1"))
    );
    let rejected =
        w.q.review_link("accounts", "a2", Review::Reject)
            .await
            .unwrap();
    assert_eq!(
        (rejected.situation, rejected.identity),
        (Situation::Unmatched, None)
    );
    // The next provisioning, incremental too, brings the confirmed account in line; the
    // identity whose match was rejected gets an account of its own.
    w.provision().await;
    let e1 = of("E1").await;
    assert!(
        e1.iter().any(|o| o.key == "a1" && o.kind == "update"),
        "{e1:#?}"
    );
    // Provisioning again does not offer the rejected match again, nor undo the confirmed one.
    w.provision_complete().await;
    let e2 = of("E2").await;
    assert!(
        e2.iter().any(|o| o.key == "e2" && o.kind == "create"),
        "{e2:#?}"
    );
    assert_eq!(link("a1").await.situation, Situation::Linked);
    assert_eq!(link("a2").await.situation, Situation::Unmatched);
    let again =
        w.q.review_link("accounts", "a2", Review::Confirm)
            .await
            .unwrap_err();
    assert_eq!(
        again.code,
        idgard_server::error::ErrorCode::Conflict,
        "{}",
        again.message
    );
    let none =
        w.q.review_link("accounts", "zz", Review::Confirm)
            .await
            .unwrap_err();
    assert_eq!(none.code, idgard_server::error::ErrorCode::NotFound);
}

async fn identities_are_found_by_name_whatever_the_case(w: World) {
    let mut w = w;
    let searched = RULES.replace(
        "[identities]\nconnection = \"hr\"",
        "[identities]\nconnection = \"hr\"\nsearch = \"name\"",
    );
    let rules = std::sync::Arc::new(
        idgard_server::identity::rules::Rules::parse(&searched, "searched").unwrap(),
    );
    assert_eq!(rules.identities.search.as_deref(), Some("name"));
    w.q.rules = Some(rules);
    w.q.prepare_search().await.unwrap();
    w.q.prepare_search().await.unwrap(); // once is enough; again changes nothing
    let up = w
        .export(&["Durand", "Dupont", "Martin", "durable"], &[])
        .await;
    w.sync(up, false).await;
    let keys = |found: Vec<idgard_protocol::EntryView>| {
        found.into_iter().map(|e| e.key).collect::<Vec<_>>()
    };
    assert_eq!(
        keys(w.q.search_names("du").await.unwrap()),
        ["Dupont", "durable", "Durand"]
    );
    assert_eq!(
        keys(w.q.search_names("DUR").await.unwrap()),
        ["durable", "Durand"]
    );
    assert!(w.q.search_names("x").await.unwrap().is_empty());
    // A leaver is no longer found.
    let up = w
        .export(&["Durand", "Dupont", "Martin"], &["durable"])
        .await;
    w.sync(up, false).await;
    assert_eq!(keys(w.q.search_names("dur").await.unwrap()), ["Durand"]);
    // An attribute name that could reach the SQL is refused with the rules.
    let bad = RULES.replace(
        "[identities]\nconnection = \"hr\"",
        "[identities]\nconnection = \"hr\"\nsearch = \"x') --\"",
    );
    let e = idgard_server::identity::rules::Rules::parse(&bad, "bad")
        .err()
        .unwrap();
    assert!(format!("{e:#}").contains("identities.search"), "{e:#}");
}
