//! The SCIM connector against a real SCIM 2.0 service (`scim2-server` from PyPI, started by
//! `idgard_tests::scim`), through the agent's HTTP client with the grant's bearer token: users
//! and groups created, exported, changed, exported again and incrementally; values that would
//! break a hand-built filter; a wrong token; a storm of 429 answers. The test service itself is
//! checked by `scim2-tester`.

use crate::support::*;
use idgard_host::model::{ErrorKind, Order, OrderKind, OrderOutcome, OrderResult};
use idgard_host::{Connection, Outcome, Request};
use idgard_sdk::wire::Entry;
use idgard_tests::python;
use idgard_tests::scim::ScimServer;
use std::sync::OnceLock;

fn scim() -> &'static idgard_host::Loaded {
    static L: OnceLock<idgard_host::Loaded> = OnceLock::new();
    L.get_or_init(|| {
        runtime()
            .load(std::path::Path::new(idgard_tests::packages::CONNECTOR_SCIM))
            .unwrap()
    })
}

const TOKEN: &str = "s3cret-scim-token";
const ROBERT: &str = "Robert'); DROP TABLE x;--\"";

fn connection(s: &Scratch, server: &ScimServer, token: &str, settings: &str) -> Connection {
    s.connection(&format!(
        "name = \"app\"\nconnector = \"scim\"\n[settings]\nurl = \"{}\"\n{settings}\n\
         [secrets]\nscim_token = {{ value = \"{token}\" }}\n\
         [grants.http.app]\nurl = \"{}/\"\nauth = {{ bearer = \"scim_token\" }}\n",
        server.base(),
        server.base()
    ))
}

fn create(id: &str, entity_type: &str, key: &str, attrs: &[(&str, &[&str])]) -> Order {
    let attributes = attrs
        .iter()
        .map(|(n, v)| ((*n).to_owned(), v.iter().map(|s| (*s).to_owned()).collect()))
        .collect();
    order(id, entity_type, key, OrderKind::Create { attributes })
}

fn change(id: &str, entity_type: &str, key: &str, name: &str, op: &str, values: &[&str]) -> Order {
    let op = match op {
        "add" => idgard_host::model::ChangeOp::Add,
        "remove" => idgard_host::model::ChangeOp::Remove,
        _ => idgard_host::model::ChangeOp::Replace,
    };
    order(
        id,
        entity_type,
        key,
        OrderKind::Update {
            changes: vec![idgard_host::model::AttributeChange {
                name: name.into(),
                op,
                values: values.iter().map(|s| (*s).to_owned()).collect(),
            }],
        },
    )
}

fn fulfil(s: &Scratch, conn: &Connection, orders: Vec<Order>) -> (Vec<OrderResult>, Captured) {
    let (out, cap) = s.run(scim(), conn, Request::Fulfill(orders));
    match out {
        Ok(Outcome::Fulfilled(r)) => (r, cap),
        other => panic!("{other:?} {:?}", cap.logs()),
    }
}

fn outcome(results: &[OrderResult], id: &str) -> OrderOutcome {
    results.iter().find(|r| r.id == id).unwrap().outcome.clone()
}

fn export(
    s: &Scratch,
    conn: &Connection,
    request: Request,
) -> (Vec<Entry>, Option<idgard_host::model::Cursor>, Captured) {
    let (out, cap) = s.run(scim(), conn, request);
    match out {
        Ok(Outcome::Exported(summary)) => (cap.entries(), summary.cursor, cap),
        other => panic!("{other:?} {:?}", cap.logs()),
    }
}

fn find<'a>(entries: &'a [Entry], key: &str) -> &'a Entry {
    entries
        .iter()
        .find(|e| e.key == key)
        .unwrap_or_else(|| panic!("no `{key}` in {entries:?}"))
}

fn members(e: &Entry) -> Vec<String> {
    let mut m: Vec<String> = e
        .attributes
        .iter()
        .filter(|(n, _)| n == "member")
        .flat_map(|(_, v)| v.clone())
        .collect();
    m.sort();
    m
}

#[test]
fn users_and_groups_are_created_exported_changed_and_exported_again() {
    let server = ScimServer::start(TOKEN, 0);
    let s = Scratch::new();
    let conn = connection(&s, &server, TOKEN, "page_size = 2");
    let (results, cap) = fulfil(
        &s,
        &conn,
        vec![
            create(
                "c1",
                "account",
                "ada",
                &[
                    ("givenName", &["Ada"]),
                    ("familyName", &["O'Brien"]),
                    ("email", &["ada@example.test"]),
                    ("employeeNumber", &["E1"]),
                    ("active", &["true"]),
                ],
            ),
            create("c2", "account", "bob", &[("displayName", &["Bob"])]),
            create("c3", "account", ROBERT, &[("title", &["Tester"])]),
            create("g1", "group", "staff", &[("member", &["ada", "bob"])]),
            create("c5", "account", "eve", &[("shoeSize", &["38"])]),
            change("u0", "account", "nobody", "title", "replace", &["x"]),
        ],
    );
    for id in ["c1", "c2", "c3", "g1"] {
        assert_eq!(
            outcome(&results, id),
            OrderOutcome::Done,
            "{id}: {results:?}"
        );
    }
    let failed = |id: &str| match outcome(&results, id) {
        OrderOutcome::Failed(m) => m,
        other => panic!("{id}: {other:?}"),
    };
    assert!(failed("c5").contains("shoeSize"));
    assert!(failed("u0").contains("no account `nobody`"));
    assert!(cap.logs().iter().all(|(_, l)| !l.contains(TOKEN)));

    // The incremental cursor is the service's clock at the first page, to the second: let a
    // second pass so that what was created above is older than it.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (entries, cursor, _) = export(&s, &conn, full());
    assert_eq!(entries.len(), 4, "{entries:?}");
    let ada = find(&entries, "ada");
    assert_eq!(ada.get("familyName"), Some("O'Brien"));
    assert_eq!(ada.get("email"), Some("ada@example.test"));
    assert_eq!(ada.get("employeeNumber"), Some("E1"));
    assert_eq!(ada.get("active"), Some("true"));
    assert_eq!(find(&entries, ROBERT).get("title"), Some("Tester"));
    assert_eq!(members(find(&entries, "staff")), ["ada", "bob"]);

    let (results, _) = fulfil(
        &s,
        &conn,
        vec![
            change("u1", "account", "ada", "title", "replace", &["CTO"]),
            change("u2", "account", "ada", "phone", "remove", &[]),
            order("d1", "account", "bob", OrderKind::Disable),
            change("m1", "group", "staff", "member", "remove", &["bob"]),
            change("m2", "group", "staff", "member", "add", &[ROBERT]),
            order("r1", "account", "bob", OrderKind::Delete),
            order("r2", "account", "bob", OrderKind::Delete),
            order(
                "p1",
                "account",
                "ada",
                OrderKind::SetPassword {
                    password: "pa'ss\"word".into(),
                },
            ),
            // userName is unique without regard to case in this service.
            create("c4", "account", "ADA", &[]),
        ],
    );
    for r in &results[..8] {
        assert_eq!(r.outcome, OrderOutcome::Done, "{results:?}");
    }
    assert!(
        matches!(&results[8].outcome, OrderOutcome::Failed(m) if m.contains("already exists")),
        "{results:?}"
    );
    let (entries, _, _) = export(&s, &conn, full());
    assert_eq!(entries.len(), 3, "{entries:?}");
    assert_eq!(find(&entries, "ada").get("title"), Some("CTO"));
    assert_eq!(members(find(&entries, "staff")), [ROBERT, "ada"]);

    // Incremental: what changed since the first export (ada, the group), not what did not.
    let (changed, next, _) = export(&s, &conn, since(cursor));
    let keys: Vec<&str> = changed.iter().map(|e| e.key.as_str()).collect();
    assert!(keys.contains(&"ada") && keys.contains(&"staff"), "{keys:?}");
    assert!(!keys.contains(&ROBERT), "{keys:?}");
    assert!(next.is_some());
}

#[test]
fn a_wrong_token_is_denied_and_a_service_down_is_unavailable() {
    let server = ScimServer::start(TOKEN, 0);
    let s = Scratch::new();
    let conn = connection(&s, &server, "not-the-token", "");
    let (out, cap) = s.run(scim(), &conn, full());
    match out {
        Ok(Outcome::Failed { kind, message }) => {
            assert_eq!(kind, ErrorKind::Denied, "{message}");
            assert!(message.contains("401"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(cap.logs().iter().all(|(_, l)| !l.contains("not-the-token")));
    let base = server.base();
    drop(server);
    let conn = s.connection(&format!(
        "name = \"app\"\nconnector = \"scim\"\n[settings]\nurl = \"{base}\"\n\
         [grants.http.app]\nurl = \"{base}/\"\n"
    ));
    let (out, _) = s.run(scim(), &conn, full());
    match out {
        Ok(Outcome::Failed { kind, message }) => {
            assert_eq!(kind, ErrorKind::Unavailable, "{message}");
            assert!(message.contains("refused the connection"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_storm_of_429_answers_is_waited_out_or_retried_later() {
    // Every second request is answered 429 with Retry-After: 1.
    let server = ScimServer::start(TOKEN, 2);
    let s = Scratch::new();
    let conn = connection(&s, &server, TOKEN, "concurrency = 4");
    let orders = (0..6)
        .map(|i| create(&format!("c{i}"), "account", &format!("user-{i}"), &[]))
        .collect();
    let (results, _) = fulfil(&s, &conn, orders);
    assert!(
        results.iter().all(|r| r.outcome == OrderOutcome::Done),
        "{results:?}"
    );
    let (entries, _, _) = export(&s, &conn, full());
    assert_eq!(entries.len(), 6);
    // Without retries, an export cut off by a refused page fails; it never passes for a
    // shorter list (which would make the missing users look deleted).
    let conn = connection(&s, &server, TOKEN, "retries = 0\npage_size = 1");
    match s.run(scim(), &conn, full()).0 {
        Ok(Outcome::Failed { kind, message }) => {
            assert_eq!(kind, ErrorKind::Unavailable, "{message}");
            assert!(message.contains("429"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // Without retries, a throttled create is handed back to be retried later.
    let conn = connection(&s, &server, TOKEN, "retries = 0");
    let orders = (6..10)
        .map(|i| create(&format!("c{i}"), "account", &format!("user-{i}"), &[]))
        .collect();
    let (out, _) = s.run(scim(), &conn, Request::Fulfill(orders));
    let later = match out {
        // The ServiceProviderConfig read itself may be the throttled request.
        Ok(Outcome::Failed { kind, message }) => {
            assert_eq!(kind, ErrorKind::Unavailable, "{message}");
            assert!(message.contains("429"), "{message}");
            return;
        }
        Ok(Outcome::Fulfilled(r)) => r,
        other => panic!("{other:?}"),
    };
    assert!(
        later
            .iter()
            .any(|r| matches!(&r.outcome, OrderOutcome::RetryLater(m) if m.contains("429"))),
        "{later:?}"
    );
}

#[test]
fn the_test_service_passes_scim2_tester() {
    let server = ScimServer::start(TOKEN, 0);
    let out = std::process::Command::new(python())
        .arg(idgard_tests::root().join("tests/scim/check.py"))
        .args([&server.base(), "--token", TOKEN])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
