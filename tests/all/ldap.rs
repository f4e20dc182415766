//! The LDAP connector through the real host against a real slapd: paged export past the bind
//! account's size limit, every fulfil operation with values that need escaping, TLS checks, and
//! a directory that goes away.

use crate::support::*;
use idgard_host::model::{
    AttributeChange, ChangeOp, ErrorKind, Order, OrderKind, OrderOutcome, OrderResult,
};
use idgard_host::{Connection, Outcome, Request};
use idgard_tests::slapd::Slapd;
use std::collections::BTreeMap;
use std::sync::OnceLock;

pub fn ldap() -> &'static idgard_host::Loaded {
    static L: OnceLock<idgard_host::Loaded> = OnceLock::new();
    L.get_or_init(|| {
        runtime()
            .load(std::path::Path::new(idgard_tests::packages::CONNECTOR_LDAP))
            .unwrap()
    })
}

const PEOPLE: &str = "ou=people,dc=idgard,dc=test";
const GROUPS: &str = "ou=groups,dc=idgard,dc=test";

/// A connection to `slapd` as its writer, with `grant` as the endpoint's TLS lines.
fn connection(s: &Scratch, d: &Slapd, port: u16, grant: &str) -> Connection {
    s.write("ca.pem", &d.ca_pem);
    s.connection(&format!(
        "name = \"dir\"\nconnector = \"ldap\"\n\
         [settings]\nbind_dn = {:?}\naccounts_base = {PEOPLE:?}\ngroups_base = {GROUPS:?}\n\
         page_size = 200\n\
         [secrets]\nbind_password = {{ value = {:?} }}\n\
         [grants.endpoints.directory]\naddress = \"127.0.0.1:{port}\"\n{grant}\n",
        d.writer_dn, d.writer_password
    ))
}

fn start_tls(s: &Scratch, d: &Slapd) -> Connection {
    connection(
        s,
        d,
        d.port,
        "tls = \"start-tls\"\nca = \"ca.pem\"\nserver_name = \"ldap.idgard.test\"",
    )
}

fn people(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "dn: uid=p{i},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: p{i}\ncn: Person {i}\nsn: {i}\n\n"
            )
        })
        .collect()
}

pub(crate) fn fulfilled(out: Result<Outcome, idgard_host::Error>) -> Vec<OrderResult> {
    match out {
        Ok(Outcome::Fulfilled(r)) => r,
        other => panic!("not fulfilled: {other:?}"),
    }
}

pub(crate) fn order(id: &str, entity_type: &str, key: &str, kind: OrderKind) -> Order {
    Order {
        id: id.into(),
        entity_type: entity_type.into(),
        key: key.into(),
        kind,
    }
}

fn create(attrs: &[(&str, &[&str])]) -> OrderKind {
    let attributes: BTreeMap<String, Vec<String>> = attrs
        .iter()
        .map(|(n, v)| ((*n).to_owned(), v.iter().map(|s| (*s).to_owned()).collect()))
        .collect();
    OrderKind::Create { attributes }
}

pub(crate) fn change(name: &str, op: ChangeOp, values: &[&str]) -> AttributeChange {
    AttributeChange {
        name: name.into(),
        op,
        values: values.iter().map(|s| (*s).to_owned()).collect(),
    }
}

pub(crate) fn created_key(r: &OrderResult) -> String {
    match &r.outcome {
        OrderOutcome::Created(k) => k.clone(),
        other => panic!("order {} not created: {other:?}", r.id),
    }
}

#[test]
fn a_full_export_pages_past_the_size_limit_and_names_members_by_key() {
    let d = Slapd::start();
    d.ldapadd(&people(650));
    d.ldapadd(&format!(
        "dn: cn=staff,{GROUPS}\nobjectClass: groupOfNames\ncn: staff\n\
         member: uid=p1,{PEOPLE}\nmember: uid=p2,{PEOPLE}\nmember: cn=elsewhere,dc=idgard,dc=test\n"
    ));
    let s = Scratch::new();
    let (out, cap) = s.run(ldap(), &start_tls(&s, &d), full());
    let Ok(Outcome::Exported(summary)) = out else {
        panic!("{out:?} {:?}", cap.logs())
    };
    let entries = cap.entries();
    let accounts: Vec<_> = entries
        .iter()
        .filter(|e| e.entity_type == "account")
        .collect();
    assert_eq!(
        accounts.len(),
        650,
        "the writer's unpaged limit is 500: paging reads all"
    );
    assert_eq!(summary.entries, 651);
    let p1 = accounts
        .iter()
        .find(|e| e.get("uid") == Some("p1"))
        .expect("p1 exported");
    assert_eq!(p1.key.len(), 36, "keyed by entryUUID: {}", p1.key);
    assert_eq!(p1.get("dn"), Some(format!("uid=p1,{PEOPLE}").as_str()));
    let staff = entries.iter().find(|e| e.entity_type == "group").unwrap();
    let members: Vec<&str> = staff
        .attributes
        .iter()
        .find(|(n, _)| n == "member")
        .map(|(_, v)| v.iter().map(String::as_str).collect())
        .unwrap_or_default();
    let p2 = accounts
        .iter()
        .find(|e| e.get("uid") == Some("p2"))
        .unwrap();
    assert_eq!(members, [p1.key.as_str(), p2.key.as_str()]);
    assert!(
        cap.logged("1 group members name no exported account"),
        "{:?}",
        cap.logs()
    );
}

#[test]
fn every_order_kind_lands_in_the_directory_with_values_escaped() {
    let d = Slapd::start();
    d.ldapadd(&format!(
        "dn: ou=moved,{PEOPLE}\nobjectClass: organizationalUnit\nou: moved\n"
    ));
    let s = Scratch::new();
    let conn = start_tls(&s, &d);
    let odd = ["O'Brien, Pat", "a,b=c", "#x", "*)(uid=*", "Zoë", " lead"];
    let mut orders: Vec<Order> = odd
        .iter()
        .enumerate()
        .map(|(i, uid)| {
            order(
                &format!("c{i}"),
                "account",
                uid,
                create(&[
                    ("uid", &[uid]),
                    ("cn", &[uid]),
                    ("sn", &["X"]),
                    ("mail", &["x@example.org"]),
                ]),
            )
        })
        .collect();
    // IA5 `mail` refuses non-ASCII: that order fails, not the batch.
    orders.push(order(
        "bad-mail",
        "account",
        "zed",
        create(&[
            ("uid", &["zed"]),
            ("cn", &["Zed"]),
            ("sn", &["Z"]),
            ("mail", &["zoë@example.org"]),
        ]),
    ));
    let results = fulfilled(s.run(ldap(), &conn, Request::Fulfill(orders.clone())).0);
    let keys: Vec<String> = results[..odd.len()].iter().map(created_key).collect();
    assert!(
        matches!(&results[odd.len()].outcome, OrderOutcome::Failed(m) if m.contains("mail")),
        "{:?}",
        results[odd.len()]
    );
    for uid in odd {
        let found = d.search(PEOPLE, &format!("(uid={})", filter_escape(uid)), &["uid"]);
        assert!(found.contains("uid:"), "{uid} not found:\n{found}");
    }
    // Repeating the creates finds the same entries, keyed the same.
    let again = fulfilled(
        s.run(
            ldap(),
            &conn,
            Request::Fulfill(orders[..odd.len()].to_vec()),
        )
        .0,
    );
    assert_eq!(again.iter().map(created_key).collect::<Vec<_>>(), keys);

    let pat = &keys[0];
    let group = fulfilled(
        s.run(
            ldap(),
            &conn,
            Request::Fulfill(vec![order(
                "g",
                "group",
                "admins",
                create(&[
                    ("cn", &["admins"]),
                    ("member", &[pat.as_str(), keys[4].as_str()]),
                ]),
            )]),
        )
        .0,
    );
    let admins = created_key(&group[0]);
    let batch = vec![
        order(
            "u1",
            "account",
            pat,
            OrderKind::Update {
                changes: vec![
                    change("description", ChangeOp::Add, &["first"]),
                    change("mail", ChangeOp::Replace, &["pat@example.org"]),
                ],
            },
        ),
        order(
            "u2",
            "account",
            pat,
            OrderKind::Update {
                changes: vec![change(
                    "dn",
                    ChangeOp::Replace,
                    &[&format!("uid=pat,ou=moved,{PEOPLE}")],
                )],
            },
        ),
        order(
            "pw",
            "account",
            pat,
            OrderKind::SetPassword {
                password: "n3w-Secret".into(),
            },
        ),
        order("off", "account", &keys[1], OrderKind::Disable),
        order(
            "m",
            "group",
            &admins,
            OrderKind::Update {
                changes: vec![
                    change("member", ChangeOp::Remove, &[keys[4].as_str()]),
                    change("member", ChangeOp::Add, &[keys[2].as_str()]),
                ],
            },
        ),
        order("del", "account", &keys[3], OrderKind::Delete),
        order(
            "gone",
            "account",
            "00000000-0000-0000-0000-000000000000",
            OrderKind::Delete,
        ),
        order(
            "nobody",
            "account",
            "00000000-0000-0000-0000-000000000000",
            OrderKind::Enable,
        ),
    ];
    let results = fulfilled(s.run(ldap(), &conn, Request::Fulfill(batch)).0);
    let outcomes: Vec<&OrderOutcome> = results.iter().map(|r| &r.outcome).collect();
    assert_eq!(outcomes[..7], [&OrderOutcome::Done; 7], "{results:?}");
    assert!(matches!(outcomes[7], OrderOutcome::Failed(m) if m.contains("no account")));

    let moved = d.search(
        PEOPLE,
        "(uid=pat)",
        &["entryUUID", "description", "mail", "memberOf"],
    );
    assert!(
        moved.contains(&format!("dn: uid=pat,ou=moved,{PEOPLE}")),
        "{moved}"
    );
    assert!(
        moved.contains(&format!("entryUUID: {pat}")),
        "a move keeps the key: {moved}"
    );
    assert!(moved.contains("description: first") && moved.contains("mail: pat@example.org"));
    assert!(
        moved.contains("memberOf: cn=admins"),
        "the membership follows the move: {moved}"
    );
    d.bind_as(&format!("uid=pat,ou=moved,{PEOPLE}"), "n3w-Secret");
    let locked = d.search(PEOPLE, "(uid=a\\2cb=c)", &["pwdAccountLockedTime"]);
    assert!(
        locked.contains("pwdAccountLockedTime: 000001010000Z"),
        "{locked}"
    );
    let members = d.search(GROUPS, "(cn=admins)", &["member"]);
    assert!(
        members.contains("uid=\\23x") || members.contains("uid=\\#x"),
        "{members}"
    );
    assert!(!members.contains("Zo"), "{members}");
    assert!(
        d.search(PEOPLE, "(uid=\\2a\\29\\28uid=\\2a)", &["uid"])
            .trim()
            .is_empty()
    );

    let enable = vec![order("on", "account", &keys[1], OrderKind::Enable)];
    let results = fulfilled(s.run(ldap(), &conn, Request::Fulfill(enable)).0);
    assert_eq!(results[0].outcome, OrderOutcome::Done);
    assert!(
        !d.search(PEOPLE, "(uid=a\\2cb=c)", &["pwdAccountLockedTime"])
            .contains("pwdAccount")
    );
}

/// RFC 4515 escaping, for the test's own ldapsearch filters.
fn filter_escape(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'*' | b'(' | b')' | b'\\' | 0 => format!("\\{b:02x}"),
            b if b.is_ascii() => (b as char).to_string(),
            b => format!("\\{b:02x}"),
        })
        .collect()
}

#[test]
fn tls_is_checked_against_the_grant() {
    let d = Slapd::start();
    let s = Scratch::new();
    let test = |conn: &Connection| match s.run(ldap(), conn, Request::TestConnection).0 {
        Ok(Outcome::Tested) => Ok(()),
        Ok(Outcome::Failed { kind, message }) => Err((kind, message)),
        other => panic!("{other:?}"),
    };
    assert_eq!(test(&start_tls(&s, &d)), Ok(()));
    let ldaps = connection(&s, &d, d.ldaps_port, "tls = \"direct\"\nca = \"ca.pem\"");
    assert_eq!(test(&ldaps), Ok(()), "127.0.0.1 is in the certificate");

    let wrong_name = connection(
        &s,
        &d,
        d.ldaps_port,
        "tls = \"direct\"\nca = \"ca.pem\"\nserver_name = \"other.example\"",
    );
    let (kind, message) = test(&wrong_name).unwrap_err();
    assert_eq!(kind, ErrorKind::Denied, "{message}");
    s.write("other-ca.pem", Slapd::unrelated_ca_pem());
    let wrong_ca = connection(
        &s,
        &d,
        d.ldaps_port,
        "tls = \"direct\"\nca = \"other-ca.pem\"",
    );
    let (kind, message) = test(&wrong_ca).unwrap_err();
    assert_eq!(kind, ErrorKind::Denied, "{message}");

    let pin = d.server_key_pin();
    let pinned = connection(
        &s,
        &d,
        d.ldaps_port,
        &format!("tls = \"direct\"\npins = [{pin:?}]"),
    );
    assert_eq!(test(&pinned), Ok(()));
    let wrong_pin = connection(
        &s,
        &d,
        d.ldaps_port,
        &format!("tls = \"direct\"\npins = [{:?}]", "0".repeat(64)),
    );
    let (kind, message) = test(&wrong_pin).unwrap_err();
    assert_eq!(kind, ErrorKind::Denied, "{message}");
    assert!(message.contains("pinned"), "{message}");

    // Plain LDAP when the grant says so; passwords are then refused.
    let plain = connection(&s, &d, d.port, "tls = \"none\"");
    assert_eq!(test(&plain), Ok(()));
    let made = fulfilled(
        s.run(
            ldap(),
            &plain,
            Request::Fulfill(vec![order(
                "c",
                "account",
                "plain",
                create(&[("uid", &["plain"]), ("cn", &["Plain"]), ("sn", &["P"])]),
            )]),
        )
        .0,
    );
    let key = created_key(&made[0]);
    let pw = vec![order(
        "pw",
        "account",
        &key,
        OrderKind::SetPassword {
            password: "p".into(),
        },
    )];
    let results = fulfilled(s.run(ldap(), &plain, Request::Fulfill(pw)).0);
    assert!(
        matches!(&results[0].outcome, OrderOutcome::Failed(m) if m.contains("over TLS only")),
        "{results:?}"
    );
    let stored = d.search(PEOPLE, "(uid=plain)", &["userPassword"]);
    assert!(!stored.contains("userPassword"), "{stored}");
}

#[test]
fn a_directory_that_is_down_is_unavailable_and_bad_credentials_are_denied() {
    let mut d = Slapd::start();
    let s = Scratch::new();
    let conn = start_tls(&s, &d);
    let bad = s.connection(
        &std::fs::read_to_string(s.path("connection.toml"))
            .unwrap()
            .replace(&format!("{:?}", d.writer_password), "\"wrong\""),
    );
    match s.run(ldap(), &bad, Request::TestConnection).0 {
        Ok(Outcome::Failed { kind, message }) => {
            assert_eq!(kind, ErrorKind::Denied, "{message}");
            assert!(message.contains("invalid credentials"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    d.stop();
    match s.run(ldap(), &conn, full()).0 {
        Ok(Outcome::Failed { kind, message }) => {
            assert_eq!(kind, ErrorKind::Unavailable, "{message}");
        }
        other => panic!("{other:?}"),
    }
    d.restart();
    assert!(matches!(
        s.run(ldap(), &conn, Request::TestConnection).0,
        Ok(Outcome::Tested)
    ));
}

#[test]
fn the_schema_comes_from_the_directory() {
    let d = Slapd::start();
    let s = Scratch::new();
    let Ok(Outcome::Schema(schema)) = s.run(ldap(), &start_tls(&s, &d), Request::Schema).0 else {
        panic!("no schema")
    };
    let account = schema.iter().find(|e| e.name == "account").unwrap();
    let attr = |n: &str| account.attributes.iter().find(|a| a.name == n).unwrap();
    assert!(attr("entryUUID").key);
    assert!(attr("sn").required && attr("cn").required);
    assert_eq!(attr("jpegPhoto").kind, "binary");
    assert!(!attr("mail").required);
    let group = schema.iter().find(|e| e.name == "group").unwrap();
    let member = group
        .attributes
        .iter()
        .find(|a| a.name == "member")
        .unwrap();
    assert_eq!(member.kind, "reference");
    assert_eq!(member.references.as_deref(), Some("account"));
}

#[test]
fn an_incremental_export_brings_changes_and_deletions_and_a_stale_cookie_asks_for_a_full_one() {
    use idgard_sdk::wire::EntryOp;
    let mut d = Slapd::start();
    d.ldapadd(&people(30));
    d.ldapadd(&format!(
        "dn: cn=staff,{GROUPS}\nobjectClass: groupOfNames\ncn: staff\nmember: uid=p1,{PEOPLE}\n"
    ));
    let s = Scratch::new();
    let conn = start_tls(&s, &d);
    let (out, cap) = s.run(ldap(), &conn, full());
    let Ok(Outcome::Exported(summary)) = out else {
        panic!("{out:?}")
    };
    let cursor = summary.cursor.expect("a full export gives a cursor");
    let all = cap.entries();
    let key = |uid: &str| {
        all.iter()
            .find(|e| e.get("uid") == Some(uid))
            .map(|e| e.key.clone())
            .unwrap()
    };
    d.ldapmodify(&format!(
        "dn: uid=p3,{PEOPLE}\nchangetype: modify\nreplace: cn\ncn: Changed\n\n\
         dn: uid=p4,{PEOPLE}\nchangetype: delete\n\n\
         dn: cn=staff,{GROUPS}\nchangetype: modify\nadd: member\nmember: uid=p5,{PEOPLE}\n"
    ));
    d.ldapadd(&format!(
        "dn: uid=new,{PEOPLE}\nobjectClass: inetOrgPerson\nuid: new\ncn: New\nsn: N\n"
    ));
    let (out, cap) = s.run(ldap(), &conn, since(Some(cursor)));
    let Ok(Outcome::Exported(summary)) = out else {
        panic!("{out:?} {:?}", cap.logs())
    };
    let changes = cap.entries();
    let p3 = changes
        .iter()
        .find(|e| e.key == key("p3"))
        .expect("p3 changed");
    assert_eq!(p3.get("cn"), Some("Changed"));
    let p4 = changes
        .iter()
        .find(|e| e.key == key("p4"))
        .expect("p4 deleted");
    assert_eq!(p4.op, EntryOp::Delete);
    let mut keys: Vec<(&str, &str)> = changes
        .iter()
        .map(|e| (e.entity_type.as_str(), e.key.as_str()))
        .collect();
    let n = keys.len();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), n, "each change is exported once");
    assert!(changes.iter().any(|e| e.get("uid") == Some("new")));
    let staff = changes
        .iter()
        .find(|e| e.entity_type == "group" && e.op == EntryOp::Upsert)
        .expect("the group changed");
    // A deletion names only an entryUUID: each entity type hears of it (the server ignores the
    // deletion of a key it does not hold).
    assert!(
        changes
            .iter()
            .any(|e| e.entity_type == "group" && e.key == key("p4"))
    );
    let members: Vec<&String> = staff
        .attributes
        .iter()
        .find(|(n, _)| n == "member")
        .map(|(_, v)| v.iter().collect())
        .unwrap_or_else(|| panic!("no members: {staff:?}"));
    assert_eq!(members, [&key("p1"), &key("p5")]);
    assert!(
        !changes.iter().any(|e| e.key == key("p10")),
        "an unchanged entry is not exported again"
    );

    let cursor = summary.cursor.expect("the next cursor");
    let (out, cap) = s.run(ldap(), &conn, since(Some(cursor.clone())));
    assert!(
        matches!(out, Ok(Outcome::Exported(ref x)) if x.entries == 0),
        "{out:?}"
    );
    assert!(cap.entries().is_empty());

    // After a restart the directory's session log is gone: it cannot list deletions any more.
    d.ldapmodify(&format!("dn: uid=p6,{PEOPLE}\nchangetype: delete\n"));
    d.restart();
    match s.run(ldap(), &conn, since(Some(cursor))).0 {
        Ok(Outcome::Failed { kind, message }) => {
            assert_eq!(kind, ErrorKind::InvalidCursor, "{message}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_group_of_twenty_thousand_members_is_exported_whole() {
    let d = Slapd::start();
    d.ldapadd(&people(20_000));
    let members: String = (0..20_000)
        .map(|i| format!("member: uid=p{i},{PEOPLE}\n"))
        .collect();
    d.ldapadd(&format!(
        "dn: cn=everyone,{GROUPS}\nobjectClass: groupOfNames\ncn: everyone\n{members}"
    ));
    let s = Scratch::new();
    let conn = connection(&s, &d, d.port, "tls = \"start-tls\"\nca = \"ca.pem\"");
    let (out, cap) = s.run(ldap(), &conn, full());
    assert!(matches!(out, Ok(Outcome::Exported(_))), "{out:?}");
    let entries = cap.entries();
    let everyone = entries.iter().find(|e| e.entity_type == "group").unwrap();
    let n = everyone
        .attributes
        .iter()
        .find(|(n, _)| n == "member")
        .map_or(0, |(_, v)| v.len());
    assert_eq!(n, 20_000);
}

#[test]
fn memberships_of_one_group_in_a_batch_go_out_together_and_each_keeps_its_result() {
    let d = Slapd::start();
    d.ldapadd(&people(4));
    d.ldapadd(&format!(
        "dn: cn=team,{GROUPS}\nobjectClass: groupOfNames\ncn: team\nmember: uid=p0,{PEOPLE}\n"
    ));
    let s = Scratch::new();
    let conn = start_tls(&s, &d);
    let key = |dn: &str| {
        let out = d.search(dn, "(objectClass=*)", &["entryUUID"]);
        out.lines()
            .find_map(|l| l.strip_prefix("entryUUID: "))
            .unwrap()
            .to_owned()
    };
    let team = key(&format!("cn=team,{GROUPS}"));
    let p: Vec<String> = (0..4).map(|i| key(&format!("uid=p{i},{PEOPLE}"))).collect();
    let join = |id: &str, member: &str| {
        let changes = vec![change("member", ChangeOp::Add, &[member])];
        order(id, "group", &team, OrderKind::Update { changes })
    };
    // p1 and p2 join in one modify; an unknown account fails on its own.
    let orders = vec![
        join("j1", &p[1]),
        join("j2", &p[2]),
        join("j-unknown", "no-such-key"),
    ];
    let results = fulfilled(s.run(ldap(), &conn, Request::Fulfill(orders)).0);
    let outcome = |id: &str| results.iter().find(|r| r.id == id).unwrap().outcome.clone();
    assert_eq!(outcome("j1"), OrderOutcome::Done);
    assert_eq!(outcome("j2"), OrderOutcome::Done);
    assert!(
        matches!(outcome("j-unknown"), OrderOutcome::Failed(m) if m.contains("no-such-key")),
        "{results:?}"
    );
    let members = d.search(&format!("cn=team,{GROUPS}"), "(objectClass=*)", &["member"]);
    assert_eq!(members.matches("member: ").count(), 3, "{members}");
    // p0 is a member already: the joint modify is refused, each order then goes alone and
    // both are done; removals go together too.
    let orders = vec![join("j0", &p[0]), join("j3", &p[3])];
    let results = fulfilled(s.run(ldap(), &conn, Request::Fulfill(orders)).0);
    assert!(
        results.iter().all(|r| r.outcome == OrderOutcome::Done),
        "{results:?}"
    );
    let leave = |id: &str, member: &str| {
        let changes = vec![change("member", ChangeOp::Remove, &[member])];
        order(id, "group", &team, OrderKind::Update { changes })
    };
    let orders = vec![leave("l1", &p[1]), leave("l2", &p[2])];
    let results = fulfilled(s.run(ldap(), &conn, Request::Fulfill(orders)).0);
    assert!(
        results.iter().all(|r| r.outcome == OrderOutcome::Done),
        "{results:?}"
    );
    let members = d.search(&format!("cn=team,{GROUPS}"), "(objectClass=*)", &["member"]);
    let mut left: Vec<&str> = members
        .lines()
        .filter_map(|l| l.strip_prefix("member: "))
        .collect();
    left.sort();
    assert_eq!(
        left,
        [format!("uid=p0,{PEOPLE}"), format!("uid=p3,{PEOPLE}")],
        "{members}"
    );
}
