//! A hostile connector (the `hostile` test guest) cannot hurt the agent or other connections:
//! every run ends by its deadline or on cancellation whatever the guest is doing, and logs,
//! results, disk, files, handles, links, entries and cursors are all bounded, each stop naming
//! the limit it hit.

use crate::support::*;
use idgard_host::model::{Order, OrderKind, OrderOutcome};
use idgard_host::{Cancel, Connection, Error, LimitHit, Outcome, Request};
use std::path::Path;
use std::time::{Duration, Instant};

/// How far past its deadline a stopped run may end: scheduling, dropping the store.
const MARGIN: Duration = Duration::from_secs(5);

fn connection(s: &Scratch, settings: &str, extra: &str) -> Connection {
    s.mkdir("data");
    s.mkdir("ro");
    s.connection(&format!(
        "name = \"hostile\"\n[settings]\n{settings}\n{extra}\n\
         [grants.folders.data]\npath = \"data\"\naccess = \"read-write\"\n\
         [grants.folders.ro]\npath = \"ro\"\naccess = \"read-only\"\n"
    ))
}

fn limit_of(out: Result<Outcome, Error>) -> (LimitHit, String) {
    match out {
        Err(e @ Error::Limit { limit, .. }) => (limit, e.to_string()),
        other => panic!("expected a limit, got {other:?}"),
    }
}

/// Runs a mode that must hit `limit`; returns the error's text and how long the run took.
fn stopped_by(s: &Scratch, settings: &str, limits: &str, limit: LimitHit) -> (String, Duration) {
    let conn = connection(s, settings, &format!("[limits]\n{limits}"));
    let started = Instant::now();
    let (hit, msg) = limit_of(s.run(hostile(), &conn, full()).0);
    assert_eq!(hit, limit, "{msg}");
    (msg, started.elapsed())
}

/// Another connection's run works normally afterwards.
fn others_still_work() {
    let s = Scratch::new();
    let conn = connection(&s, "mode = \"ok\"\ncount = 1000", "");
    let (out, cap) = s.run(hostile(), &conn, full());
    assert!(matches!(out.unwrap(), Outcome::Exported(x) if x.entries == 1000));
    assert_eq!(cap.entries().len(), 1000);
}

#[test]
fn a_sleeping_connector_ends_at_its_deadline() {
    let s = Scratch::new();
    for mode in ["sleep", "poll-timer"] {
        let (msg, took) = stopped_by(
            &s,
            &format!("mode = \"{mode}\""),
            "deadline_secs = 1",
            LimitHit::Deadline,
        );
        assert!(msg.contains("deadline exceeded"), "{msg}");
        assert!(
            took < Duration::from_secs(1) + MARGIN,
            "{mode} ran {took:?}"
        );
    }
    others_still_work();
}

#[test]
fn a_read_from_a_silent_endpoint_ends_at_the_deadline() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    // Accepts and never answers.
    let held = std::thread::spawn(move || listener.accept().map(|(c, _)| c));
    let s = Scratch::new();
    let (msg, took) = stopped_by(
        &s,
        &format!("mode = \"read-endpoint\"\ntarget = {addr:?}"),
        &format!(
            "deadline_secs = 1\n[grants.endpoints.target]\naddress = {addr:?}\ntls = \"none\""
        ),
        LimitHit::Deadline,
    );
    assert!(
        took < Duration::from_secs(1) + MARGIN,
        "{msg} after {took:?}"
    );
    drop(held.join());
}

#[test]
fn cancelling_stops_a_sleeping_connector_at_once() {
    let s = Scratch::new();
    let conn = connection(&s, "mode = \"sleep\"", "");
    let cancel = Cancel::new();
    let trigger = cancel.clone();
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        trigger.cancel();
    });
    let started = Instant::now();
    let (out, _) = s.run_cancellable(hostile(), &conn, full(), &cancel);
    canceller.join().unwrap();
    assert!(
        matches!(out, Err(Error::Cancelled { .. })),
        "expected a cancellation, got {out:?}"
    );
    assert!(started.elapsed() < MARGIN, "took {:?}", started.elapsed());
}

#[test]
fn a_describe_that_never_returns_fails_the_load_within_its_limit() {
    let started = Instant::now();
    let err = runtime()
        .load(Path::new(idgard_tests::packages::GUEST_STALL))
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Limit {
                limit: LimitHit::Deadline,
                ..
            }
        ),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(10) + MARGIN);
}

#[test]
fn empty_log_lines_use_up_the_log_budget() {
    let s = Scratch::new();
    let conn = connection(
        &s,
        "mode = \"log-empty\"\ncount = 5000000",
        "[limits]\nmax_log_kib = 1",
    );
    let (out, cap) = s.run(hostile(), &conn, full());
    assert!(matches!(out.unwrap(), Outcome::Exported(x) if x.entries == 1));
    let logs = cap.logs();
    assert!(
        logs.len() <= 17,
        "{} lines kept of a 1 KiB budget",
        logs.len()
    );
    assert!(
        cap.logged("4999984 log messages dropped"),
        "{:?}",
        logs.last()
    );
}

fn orders(n: usize) -> Vec<Order> {
    (0..n)
        .map(|i| Order {
            id: format!("o{i}"),
            entity_type: "result".into(),
            key: format!("k{i}"),
            kind: OrderKind::Delete,
        })
        .collect()
}

#[test]
fn a_flood_of_unknown_results_costs_one_line() {
    let s = Scratch::new();
    let conn = connection(
        &s,
        "mode = \"results-flood\"\ncount = 800000",
        "[limits]\nmax_call_mib = 256\nmemory_mib = 512",
    );
    let (out, cap) = s.run(hostile(), &conn, Request::Fulfill(orders(1000)));
    let Outcome::Fulfilled(results) = out.unwrap() else {
        panic!("not fulfilled")
    };
    assert_eq!(results.len(), 1000);
    assert!(results.iter().all(|r| r.outcome == OrderOutcome::Done));
    let logs = cap.logs();
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert!(
        logs[0]
            .1
            .contains("800000 for orders that were not sent (such as stranger-0"),
        "{}",
        logs[0].1
    );
    assert!(logs[0].1.contains("1000 repeated"), "{}", logs[0].1);
}

#[test]
fn a_huge_error_message_is_cut() {
    let s = Scratch::new();
    let conn = connection(
        &s,
        "mode = \"error-huge\"\nsize = 60",
        "[limits]\nmax_call_mib = 128\nmemory_mib = 512",
    );
    match s
        .run(hostile(), &conn, Request::Fulfill(orders(1)))
        .0
        .unwrap()
    {
        Outcome::Failed { message, .. } => {
            assert!(message.len() < 9 * 1024, "{} bytes kept", message.len());
            assert!(message.ends_with(&format!("[cut: {} more bytes]", (60 << 20) - 8192)));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_disk_quota_stops_big_files_sparse_files_and_file_floods() {
    for path in ["/collect/big", "/grants/data/big"] {
        let s = Scratch::new();
        let (msg, _) = stopped_by(
            &s,
            &format!("mode = \"disk-big\"\npath = {path:?}\nsize = 3072"),
            "max_disk_mib = 1",
            LimitHit::Disk,
        );
        assert!(
            msg.contains("disk quota exceeded (wrote more than 1 MiB"),
            "{msg}"
        );
        let kept = std::fs::metadata(s.path("data/big")).map_or(0, |m| m.len());
        assert!(kept <= 2 << 20, "{path}: {kept} bytes written");
        // A stopped export leaves its collection folder empty.
        assert_eq!(std::fs::read_dir(s.path("collect")).unwrap().count(), 0);
    }
    let s = Scratch::new();
    let (msg, _) = stopped_by(
        &s,
        "mode = \"disk-sparse\"\npath = \"/grants/data/sparse\"",
        "max_disk_mib = 1",
        LimitHit::Disk,
    );
    assert!(msg.contains("1 MiB"), "{msg}");
    assert_eq!(std::fs::metadata(s.path("data/sparse")).unwrap().len(), 0);

    let s = Scratch::new();
    let (msg, _) = stopped_by(
        &s,
        "mode = \"disk-files\"\npath = \"/grants/data\"\ncount = 200000",
        "max_files = 100",
        LimitHit::Files,
    );
    assert!(msg.contains("created more than 100 files"), "{msg}");
    assert_eq!(std::fs::read_dir(s.path("data")).unwrap().count(), 100);
    others_still_work();
}

#[test]
fn open_handles_are_capped_per_run() {
    let s = Scratch::new();
    let (msg, _) = stopped_by(
        &s,
        "mode = \"hold-files\"\npath = \"/grants/data\"\ncount = 100000",
        "max_handles = 64",
        LimitHit::Handles,
    );
    assert!(msg.contains("more than 64 open handles"), "{msg}");
    others_still_work();
}

#[test]
fn a_connector_cannot_plant_a_link_unless_its_grant_allows_it() {
    let s = Scratch::new();
    s.mkdir("data/nested/secretdir");
    s.write("elsewhere/secretdir/secret.txt", "SECRET");
    let conn = connection(&s, "mode = \"plant-link\"", "");
    let (out, cap) = s.run(hostile(), &conn, full());
    assert!(matches!(out, Ok(Outcome::Exported(_))), "{out:?}");
    let r = cap.result();
    assert!(matches!(&r, Err(e) if e.starts_with("symlink:")), "{r:?}");

    // Allowed, the link is made; a later run granted the folder under it refuses to follow it.
    std::fs::remove_dir_all(s.path("data/moved")).unwrap();
    s.mkdir("data/nested/secretdir");
    let allowing = s.connection(
        "name = \"hostile\"\n[settings]\nmode = \"plant-link\"\n\
         [grants.folders.data]\npath = \"data\"\naccess = \"read-write\"\nsymlinks = true\n",
    );
    let (_, cap) = s.run(hostile(), &allowing, full());
    assert_eq!(cap.result(), Ok("planted".into()));
    let victim = s.connection(
        "name = \"victim\"\n[settings]\nmode = \"ok\"\n\
         [grants.folders.data]\npath = \"data/nested/secretdir\"\naccess = \"read-write\"\n",
    );
    match s.run(hostile(), &victim, full()).0 {
        Err(Error::Folder { message, .. }) => {
            assert!(message.contains("is a symbolic link"), "{message}")
        }
        other => panic!("followed a planted link: {other:?}"),
    }
}

#[test]
fn what_a_connector_says_reaches_people_escaped() {
    let s = Scratch::new();
    let conn = connection(&s, "mode = \"log-escape\"", "");
    let (out, cap) = s.run(hostile(), &conn, full());
    let Outcome::Failed { message, .. } = out.unwrap() else {
        panic!("expected the connector's error")
    };
    let shown: Vec<String> = cap
        .logs()
        .into_iter()
        .map(|(_, m)| m)
        .chain(cap.progress.lock().unwrap().clone())
        .chain([message.clone()])
        .collect();
    assert!(shown.len() >= 3, "{shown:?}");
    for text in &shown {
        assert!(
            !text.chars().any(|c| c.is_control()),
            "a control character reached the observer: {text:?}"
        );
    }
    assert!(cap.logged("\\u{1b}[2J\\u{1b}]0;pwned\\u{7}forged\\nexported 5000 entries"));
    assert!(message.contains("\\rfake"), "{message}");
    // Values keep their characters: they are data, escaped by whoever shows them.
    let e = cap
        .entries()
        .into_iter()
        .find(|e| e.key == "escape")
        .unwrap();
    assert_eq!(e.get("v"), Some("\x1b[2Jcell"));
}

#[test]
fn entries_no_managed_system_means_are_refused() {
    let cases = [
        ("dup-attr", "the same attribute name twice in one entry"),
        ("nul-key", "control character in a key"),
        ("nul-value", "NUL character in a value"),
        ("control-key", "control character in a key"),
        ("huge-key", "key longer than 4096 bytes"),
        (
            "undeclared-type",
            "entity type `group` is not one the connector declares",
        ),
        (
            "traversal-type",
            "entity type `../../etc` is not one the connector declares",
        ),
    ];
    for (mode, expected) in cases {
        let s = Scratch::new();
        let conn = connection(&s, &format!("mode = \"{mode}\""), "");
        let (out, cap) = s.run(hostile(), &conn, full());
        match out {
            Err(Error::Trap { message, .. }) => {
                assert!(message.contains(expected), "{mode}: {message}")
            }
            other => panic!("{mode}: {other:?}"),
        }
        assert!(cap.entries().is_empty(), "{mode}: entries were kept");
    }
}

#[test]
fn a_huge_cursor_is_refused() {
    let s = Scratch::new();
    let (msg, _) = stopped_by(
        &s,
        "mode = \"huge-cursor\"\nsize = 120000000",
        "max_call_mib = 256\nmemory_mib = 512",
        LimitHit::Cursor,
    );
    assert!(
        msg.contains("cursor of 120000007 bytes, limit 1024 KiB"),
        "{msg}"
    );
}
