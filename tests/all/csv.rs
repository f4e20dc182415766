//! The CSV connector through the real host: each operation.

use crate::support::*;
use idgard_host::model::{
    AttributeChange, ChangeOp, Cursor, ErrorKind, Order, OrderKind, OrderOutcome,
};
use idgard_host::{Error, Outcome, Request};
use idgard_sdk::wire::EntryOp;
use std::collections::BTreeMap;

const HR: &str = "\u{feff}employee_id,first_name,last_name,title,notes\r\n\
E1,Zoë,Ångström,\"Director, Sales\",\r\n\
E2,Bob,\"O\"\"Brien\",Engineer,\"line one\nline two\"\r\n\
E3,only,three\r\n\
,Nobody,Nokey,Analyst,\r\n\
E4,Łukasz,Nowak,Analyst,\r\n";

fn hr_connection(s: &Scratch, extra: &str) -> idgard_host::Connection {
    s.connection(&format!(
        "name = \"hr\"\nconnector = \"csv\"\n[settings]\nfile = \"hr.csv\"\n{extra}\n\
         [grants.folders.source]\npath = \"source\"\naccess = \"read-only\"\n"
    ))
}

fn exported(out: Result<Outcome, Error>) -> idgard_host::model::ExportSummary {
    match out.unwrap() {
        Outcome::Exported(s) => s,
        other => panic!("not exported: {other:?}"),
    }
}

#[test]
fn full_export_reads_quoting_bom_and_reports_bad_rows_with_their_line() {
    let s = Scratch::new();
    s.write("source/hr.csv", HR);
    let (out, cap) = s.run(csv(), &hr_connection(&s, ""), full());
    let summary = exported(out);
    assert_eq!(summary.entries, 3);
    assert_eq!(summary.rejected, 2);
    let e = cap.entries();
    let keys: Vec<&str> = e.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["E1", "E2", "E4"]);
    assert_eq!(
        e[0].get("employee_id"),
        Some("E1"),
        "the BOM is not part of the first column's name"
    );
    assert_eq!(e[0].get("first_name"), Some("Zoë"));
    assert_eq!(e[0].get("title"), Some("Director, Sales"));
    assert_eq!(e[1].get("last_name"), Some("O\"Brien"));
    assert_eq!(e[1].get("notes"), Some("line one\nline two"));
    assert_eq!(e[0].get("notes"), None, "an empty cell has no value");
    assert!(
        cap.logged("line 5: 3 fields where the header has 5"),
        "{:?}",
        cap.logs()
    );
    assert!(
        cap.logged("line 6: the key column `employee_id` is empty"),
        "{:?}",
        cap.logs()
    );
    assert!(summary.cursor.is_some());
}

#[test]
fn delimiter_and_no_bom() {
    let s = Scratch::new();
    s.write("source/hr.csv", "id;name\n1;Ann\n2;\"Semi;colon\"\n");
    let (out, cap) = s.run(
        csv(),
        &hr_connection(&s, "key = \"id\"\ndelimiter = \";\""),
        full(),
    );
    assert_eq!(exported(out).entries, 2);
    assert_eq!(cap.entries()[1].get("name"), Some("Semi;colon"));
}

#[test]
fn strict_mode_stops_at_the_first_bad_row() {
    let s = Scratch::new();
    s.write("source/hr.csv", HR);
    let (out, _) = s.run(csv(), &hr_connection(&s, "strict = true"), full());
    match out.unwrap() {
        Outcome::Failed { kind, message } => {
            assert_eq!(kind, ErrorKind::InvalidData);
            assert!(message.contains("line 5"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn incremental_export_sends_only_inserts_changes_and_deletes() {
    let s = Scratch::new();
    s.write(
        "source/hr.csv",
        "employee_id,name,dept\nE1,Ann,IT\nE2,Bob,HR\nE3,Cy,IT\n",
    );
    let conn = hr_connection(&s, "");
    let first = exported(s.run(csv(), &conn, full()).0);
    assert_eq!(first.entries, 3);

    // E2 moves, E3 leaves, E4 is hired; E1 is untouched.
    s.write(
        "source/hr.csv",
        "employee_id,name,dept\nE1,Ann,IT\nE2,Bob,Finance\nE4,Di,Legal\n",
    );
    let (out, cap) = s.run(csv(), &conn, since(first.cursor.clone()));
    let second = exported(out);
    let mut got: Vec<(EntryOp, String, Option<String>)> = cap
        .entries()
        .iter()
        .map(|e| (e.op, e.key.clone(), e.get("dept").map(str::to_owned)))
        .collect();
    got.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(
        got,
        vec![
            (EntryOp::Upsert, "E2".into(), Some("Finance".into())),
            (EntryOp::Delete, "E3".into(), None),
            (EntryOp::Upsert, "E4".into(), Some("Legal".into())),
        ]
    );

    // Nothing changed: nothing comes out.
    let (out, cap) = s.run(csv(), &conn, since(second.cursor.clone()));
    assert_eq!(exported(out).entries, 0);
    assert!(cap.entries().is_empty());

    // An older cursor still works (the server starts from the last export it synchronized,
    // whatever was exported since): the first one brings the same three changes again.
    let (out, cap) = s.run(csv(), &conn, since(first.cursor.clone()));
    assert_eq!(exported(out).entries, 3, "{:?}", cap.logs());
    // Until the connector has dropped its snapshot, eight exports later.
    for _ in 0..8 {
        let (out, _) = s.run(csv(), &conn, full());
        exported(out);
    }
    let (out, _) = s.run(csv(), &conn, since(first.cursor));
    assert!(matches!(
        out.unwrap(),
        Outcome::Failed {
            kind: ErrorKind::InvalidCursor,
            ..
        }
    ));
}

#[test]
fn an_unreadable_row_is_not_taken_for_a_leaver() {
    let s = Scratch::new();
    s.write("source/hr.csv", "employee_id,name\nE1,Ann\nE2,Bob\n");
    let conn = hr_connection(&s, "");
    let first = exported(s.run(csv(), &conn, full()).0);
    // E2's row is damaged (its key still readable), E1's row has lost its key.
    s.write("source/hr.csv", "employee_id,name\n,Ann\nE2,Bob,extra\n");
    let (out, cap) = s.run(csv(), &conn, since(first.cursor));
    let summary = exported(out);
    assert_eq!(summary.rejected, 2);
    assert!(
        cap.entries().iter().all(|e| e.op != EntryOp::Delete),
        "{:?}",
        cap.entries()
    );
    assert!(cap.logged("deletions held back"), "{:?}", cap.logs());
}

#[test]
fn a_foreign_cursor_is_refused_as_invalid() {
    let s = Scratch::new();
    s.write("source/hr.csv", HR);
    let cursor = Cursor {
        format: "ldap-usn/1".into(),
        data: vec![1, 2, 3],
    };
    let (out, _) = s.run(
        csv(),
        &hr_connection(&s, ""),
        Request::Export {
            cursor: Some(cursor),
            batch_size: 10,
        },
    );
    assert!(matches!(
        out.unwrap(),
        Outcome::Failed {
            kind: ErrorKind::InvalidCursor,
            ..
        }
    ));
}

#[test]
fn schema_and_test_connection_name_the_problem() {
    let s = Scratch::new();
    s.write("source/hr.csv", HR);
    let (out, _) = s.run(csv(), &hr_connection(&s, ""), Request::Schema);
    let Outcome::Schema(schema) = out.unwrap() else {
        panic!()
    };
    assert_eq!(schema[0].name, "person");
    assert_eq!(schema[0].attributes.len(), 5);
    assert!(schema[0].attributes[0].key);

    let (out, _) = s.run(
        csv(),
        &hr_connection(&s, "key = \"matricule\""),
        Request::TestConnection,
    );
    match out.unwrap() {
        Outcome::Failed {
            kind: ErrorKind::Configuration,
            message,
        } => assert!(message.contains("no key column `matricule`"), "{message}"),
        other => panic!("{other:?}"),
    }
    let (out, _) = s.run(
        csv(),
        &hr_connection(&s, "").clone(),
        Request::TestConnection,
    );
    assert_eq!(out.unwrap(), Outcome::Tested);
}

#[test]
fn unknown_or_mistyped_settings_are_refused_before_the_connector_runs() {
    let s = Scratch::new();
    s.write("source/hr.csv", HR);
    let (out, _) = s.run(csv(), &hr_connection(&s, "delimitor = \";\""), full());
    let msg = out.unwrap_err().to_string();
    assert!(msg.contains("unknown setting `delimitor`"), "{msg}");
    let (out, _) = s.run(csv(), &hr_connection(&s, "strict = \"yes\""), full());
    let msg = out.unwrap_err().to_string();
    assert!(msg.contains("setting `strict` must be a boolean"), "{msg}");
}

#[test]
fn the_demo_hr_file_exports_whole() {
    let s = Scratch::new();
    let demo = idgard_tests::root().join("connectors/csv/demo");
    let conn = s.connection(&format!(
        "name = \"demo\"\n[settings]\nfile = \"hr.csv\"\n[grants.folders.source]\npath = {:?}\naccess = \"read-only\"\n",
        demo.display().to_string()
    ));
    let (out, cap) = s.run(
        csv(),
        &conn,
        Request::Export {
            cursor: None,
            batch_size: 512,
        },
    );
    let summary = exported(out);
    assert_eq!(summary.entries, 5000);
    assert_eq!(summary.rejected, 0);
    assert!(summary.batches >= 10);
    assert!(
        cap.entries()
            .iter()
            .any(|e| e.get("notes").is_some_and(|n| n.contains('\n')))
    );
}

fn order(id: &str, key: &str, kind: OrderKind) -> Order {
    Order {
        id: id.into(),
        entity_type: "account".into(),
        key: key.into(),
        kind,
    }
}

fn attrs(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
        .collect()
}

#[test]
fn fulfill_maintains_the_accounts_file_and_repeats_safely() {
    let s = Scratch::new();
    s.mkdir("accounts");
    let conn = s.connection(
        "name = \"target\"\n[settings]\n[grants.folders.accounts]\npath = \"accounts\"\naccess = \"read-write\"\n",
    );
    let orders = vec![
        order(
            "1",
            "ann",
            OrderKind::Create {
                attributes: attrs(&[("name", &["Ann Lee"]), ("groups", &["staff"])]),
            },
        ),
        order(
            "2",
            "bob",
            OrderKind::Create {
                attributes: attrs(&[("name", &["Bob, Jr."])]),
            },
        ),
        order(
            "3",
            "ann",
            OrderKind::Update {
                changes: vec![
                    AttributeChange {
                        name: "groups".into(),
                        op: ChangeOp::Add,
                        values: vec!["it".into(), "staff".into()],
                    },
                    AttributeChange {
                        name: "name".into(),
                        op: ChangeOp::Replace,
                        values: vec!["Ann Lee-Smith".into()],
                    },
                ],
            },
        ),
        order("4", "bob", OrderKind::Disable),
        order(
            "5",
            "cy",
            OrderKind::Create {
                attributes: attrs(&[("name", &["Cy"])]),
            },
        ),
        order("6", "cy", OrderKind::Delete),
        order("7", "zed", OrderKind::Update { changes: vec![] }),
        order(
            "8",
            "ann",
            OrderKind::SetPassword {
                password: "s3cret".into(),
            },
        ),
        order(
            "9",
            "ann",
            OrderKind::Update {
                changes: vec![AttributeChange {
                    name: "groups".into(),
                    op: ChangeOp::Remove,
                    values: vec!["staff".into()],
                }],
            },
        ),
    ];
    let (out, cap) = s.run(csv(), &conn, Request::Fulfill(orders.clone()));
    let Outcome::Fulfilled(results) = out.unwrap() else {
        panic!()
    };
    let outcomes: Vec<&OrderOutcome> = results.iter().map(|r| &r.outcome).collect();
    assert_eq!(outcomes[..6], [&OrderOutcome::Done; 6]);
    assert_eq!(
        outcomes[6],
        &OrderOutcome::Failed("no account `zed`".into())
    );
    assert!(matches!(outcomes[7], OrderOutcome::Failed(m) if m.contains("no passwords")));
    assert_eq!(outcomes[8], &OrderOutcome::Done);
    assert!(!cap.logged("s3cret"), "a password reached the log");
    let file = std::fs::read_to_string(s.path("accounts/accounts.csv")).unwrap();
    assert_eq!(
        file,
        "login,enabled,groups,name\nann,true,it,Ann Lee-Smith\nbob,false,,\"Bob, Jr.\"\n"
    );

    // Replaying the same batch converges on the same file.
    let (out, _) = s.run(csv(), &conn, Request::Fulfill(orders));
    assert!(matches!(out.unwrap(), Outcome::Fulfilled(_)));
    assert_eq!(
        std::fs::read_to_string(s.path("accounts/accounts.csv")).unwrap(),
        file
    );
}

/// A file kept by someone else may lack the `enabled` column: a create adds it to the header
/// and to every row (it used to stop the connector with an out-of-bounds panic).
#[test]
fn a_create_into_a_file_without_an_enabled_column_adds_the_column() {
    let s = Scratch::new();
    s.mkdir("accounts");
    s.write("accounts/accounts.csv", "login,employee_id\nghost,X9\n");
    let conn = s.connection(
        "name = \"target\"\n[settings]\n[grants.folders.accounts]\npath = \"accounts\"\naccess = \"read-write\"\n",
    );
    let create = order(
        "1",
        "ann",
        OrderKind::Create {
            attributes: attrs(&[("employee_id", &["E1"])]),
        },
    );
    let (out, cap) = s.run(csv(), &conn, Request::Fulfill(vec![create]));
    let Outcome::Fulfilled(results) = out.unwrap() else {
        panic!("{:?}", cap.logs())
    };
    assert_eq!(results[0].outcome, OrderOutcome::Done);
    assert_eq!(
        std::fs::read_to_string(s.path("accounts/accounts.csv")).unwrap(),
        "login,employee_id,enabled\nghost,X9,\nann,E1,true\n"
    );
}

#[test]
fn creates_of_new_accounts_are_appended_and_anything_else_rewrites() {
    let s = Scratch::new();
    s.mkdir("accounts");
    let conn = s.connection(
        "name = \"target\"\n[settings]\n[grants.folders.accounts]\npath = \"accounts\"\naccess = \"read-write\"\n",
    );
    let create = |id: &str, key: &str, name: &str| {
        order(
            id,
            key,
            OrderKind::Create {
                attributes: attrs(&[("name", &[name]), ("enabled", &["true"])]),
            },
        )
    };
    let file = || std::fs::read_to_string(s.path("accounts/accounts.csv")).unwrap();
    let fulfil = |orders: Vec<Order>| {
        let (out, cap) = s.run(csv(), &conn, Request::Fulfill(orders));
        let Outcome::Fulfilled(results) = out.as_ref().unwrap() else {
            panic!("{out:?} {:?}", cap.logs())
        };
        assert!(results.iter().all(|r| r.outcome == OrderOutcome::Done));
        (cap.logged("appended to"), cap.logged("applied to"))
    };
    // The first batch writes the file (and its key index); the next ones append.
    assert_eq!(fulfil(vec![create("1", "ann", "Ann")]), (false, true));
    assert_eq!(
        fulfil(vec![
            create("2", "bob", "Bob, Jr."),
            create("3", "cy", "Cy")
        ]),
        (true, false)
    );
    assert_eq!(
        file(),
        "login,enabled,name\nann,true,Ann\nbob,true,\"Bob, Jr.\"\ncy,true,Cy\n"
    );
    // A create of an account that exists is not appended twice.
    assert_eq!(fulfil(vec![create("4", "ann", "Ann B")]), (false, true));
    assert_eq!(file().matches("\nann,").count(), 1);
    // Someone else edits the file: the index no longer describes it, so the file is read.
    let mut edited = file();
    edited.push_str("eve,true,Eve\n");
    std::fs::write(s.path("accounts/accounts.csv"), &edited).unwrap();
    assert_eq!(fulfil(vec![create("5", "eve", "Eve")]), (false, true));
    assert_eq!(file().matches("\neve,").count(), 1);
    // An update, or a create with a new column, rewrites; appends resume afterwards.
    assert_eq!(
        fulfil(vec![order("6", "cy", OrderKind::Disable)]),
        (false, true)
    );
    assert_eq!(fulfil(vec![create("7", "dee", "Dee")]), (true, false));
    assert_eq!(
        file(),
        "login,enabled,name\nann,true,Ann B\nbob,true,\"Bob, Jr.\"\ncy,false,Cy\neve,true,Eve\ndee,true,Dee\n"
    );
}
