//! What administrators read: every list pages by key, every filter is applied (an entry's
//! situation, an order's identity), an unknown connection or job is "not found" rather than an
//! empty answer, and one identity shows its accounts and the orders under way for it.

use idgard_protocol::{ListQuery, OrderState, Situation};
use idgard_server::error::ErrorCode;
use idgard_server::identity::views::OrderFilter;
use idgard_server::page::Page;
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

fn page(after: Option<&str>, limit: u32) -> Page {
    Page::new(ListQuery {
        after: after.map(String::from),
        limit: Some(limit),
    })
    .unwrap()
}

on_both!(links_and_entries_page_by_key_and_keep_to_their_situation);
on_both!(an_unknown_connection_or_job_is_not_found);
on_both!(orders_page_newest_first_without_repeating_one);
on_both!(an_identity_shows_its_accounts_and_what_is_under_way);

/// E1..E5 with accounts, and an orphan account `ghost` in the target.
async fn populate(w: &World) {
    let up = w.export(&["E1", "E2", "E3", "E4", "E5"], &[]).await;
    w.sync(up, false).await;
    w.provision().await;
    assert_eq!(w.fulfil(done).await.len(), 5);
    let mut accounts: Vec<(String, String)> = (1..=5)
        .map(|i| (format!("e{i}"), format!("E{i}")))
        .collect();
    accounts.push(("ghost".into(), "X9".into()));
    let rows: Vec<(&str, [(&str, &str); 1])> = accounts
        .iter()
        .map(|(k, id)| (k.as_str(), [("employee_id", id.as_str())]))
        .collect();
    let rows: Vec<(&str, &[(&str, &str)])> = rows.iter().map(|(k, a)| (*k, &a[..])).collect();
    let up = w.export_accounts(&rows).await;
    w.sync_of("accounts", up, false).await;
    w.provision().await;
}

async fn links_and_entries_page_by_key_and_keep_to_their_situation(w: World) {
    populate(&w).await;
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let links =
            w.q.links("accounts", None, &page(after.as_deref(), 2))
                .await
                .unwrap();
        seen.extend(links.iter().map(|l| l.key.clone()));
        if links.len() < 2 {
            break;
        }
        after = links.last().map(|l| l.key.clone());
    }
    assert_eq!(seen, ["e1", "e2", "e3", "e4", "e5", "ghost"]);

    let orphans =
        w.q.links("accounts", Some(Situation::Unmatched), &page(None, 100))
            .await
            .unwrap();
    assert_eq!(orphans.len(), 1);
    assert_eq!(orphans[0].key, "ghost");
    let entries =
        w.q.entries("accounts", Some(Situation::Unmatched), &page(None, 100))
            .await
            .unwrap();
    let keys: Vec<_> = entries.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["ghost"], "only the unmatched entry");
    assert_eq!(entries[0].situation, Some(Situation::Unmatched));
    let linked =
        w.q.entries("accounts", Some(Situation::Linked), &page(Some("e3"), 100))
            .await
            .unwrap();
    let keys: Vec<_> = linked.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["e4", "e5"]);
}

async fn an_unknown_connection_or_job_is_not_found(w: World) {
    populate(&w).await;
    for e in [
        w.q.links("nope", None, &page(None, 10)).await.unwrap_err(),
        w.q.entries("nope", None, &page(None, 10))
            .await
            .unwrap_err(),
        w.q.history("nope", "e1").await.unwrap_err(),
        w.q.history("accounts", "nobody").await.unwrap_err(),
        w.q.identity("E404").await.unwrap_err(),
        w.q.orders(
            &OrderFilter {
                connection: Some("nope".into()),
                ..Default::default()
            },
            &page(None, 10),
        )
        .await
        .unwrap_err(),
        w.q.orders(
            &OrderFilter {
                job: Some(999_999),
                ..Default::default()
            },
            &page(None, 10),
        )
        .await
        .unwrap_err(),
    ] {
        assert_eq!(e.code, ErrorCode::NotFound, "{e}");
    }
    let e =
        w.q.orders(&OrderFilter::default(), &page(Some("zzz"), 10))
            .await
            .unwrap_err();
    assert_eq!(e.code, ErrorCode::Invalid);
    assert!(e.message.contains("zzz"), "{e}");
}

async fn orders_page_newest_first_without_repeating_one(w: World) {
    let people: Vec<String> = (0..25).map(|i| format!("P{i:02}")).collect();
    let people: Vec<&str> = people.iter().map(String::as_str).collect();
    let up = w.export(&people, &[]).await;
    w.sync(up, false).await;
    w.provision().await;
    let all =
        w.q.orders(&OrderFilter::default(), &page(None, 100))
            .await
            .unwrap();
    assert_eq!(all.len(), 25);
    let mut paged = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let p =
            w.q.orders(&OrderFilter::default(), &page(after.as_deref(), 7))
                .await
                .unwrap();
        paged.extend(p.iter().map(|o| o.id.clone()));
        if p.len() < 7 {
            break;
        }
        after = p.last().map(|o| o.id.clone());
    }
    let ids: Vec<_> = all.iter().map(|o| o.id.clone()).collect();
    assert_eq!(paged, ids);
    let one =
        w.q.orders(
            &OrderFilter {
                identity: Some("P07".into()),
                state: Some(OrderState::Pending),
                ..Default::default()
            },
            &page(None, 100),
        )
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].key, "p07");
}

async fn an_identity_shows_its_accounts_and_what_is_under_way(w: World) {
    populate(&w).await;
    let e2 = w.q.identity("E2").await.unwrap();
    assert_eq!(e2.connection, "hr");
    assert_eq!(e2.attributes.as_ref().unwrap()["name"], ["E2"]);
    assert_eq!(e2.accounts.len(), 1);
    assert_eq!(e2.accounts[0].connection, "accounts");
    assert_eq!(e2.accounts[0].link.key, "e2");
    assert_eq!(e2.accounts[0].link.situation, Situation::Linked);
    assert_eq!(
        e2.accounts[0].attributes.as_ref().unwrap()["employee_id"],
        ["E2"]
    );
    assert!(e2.orders.is_empty(), "{:?}", e2.orders);
    assert_eq!(e2.history.len(), 1);

    // A newcomer: no account yet, its create under way.
    let up = w.export(&["E6"], &[]).await;
    w.sync(up, true).await;
    w.provision().await;
    let e6 = w.q.identity("E6").await.unwrap();
    assert!(e6.accounts.is_empty());
    assert_eq!(e6.orders.len(), 1);
    assert_eq!(e6.orders[0].kind, "create");
    assert_eq!(e6.orders[0].state, OrderState::Pending);
}
