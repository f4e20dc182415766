//! The CSV connector's logic, natively, with the SDK's harness: fixture files and a fake host.

use idgard_connector_csv::Csv;
use idgard_sdk::testing::Harness;
use idgard_sdk::{ErrorKind, Level};
use serde_json::json;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn settings(extra: serde_json::Value) -> serde_json::Value {
    let mut s = json!({
        "file": "crlf.csv", "key": "employee_id", "delimiter": ",", "entity_type": "person",
        "strict": false, "accounts_file": "accounts.csv", "accounts_key": "login", "multi_value_separator": "|"
    });
    for (k, v) in extra.as_object().unwrap() {
        s[k] = v.clone();
    }
    s
}

#[test]
fn crlf_file_rows_are_reported_on_the_line_they_start() {
    let collect = tempfile::tempdir().unwrap();
    let run = Harness::new()
        .settings(settings(json!({})))
        .folder("source", FIXTURES)
        .collect_dir(collect.path())
        .export_full::<Csv>();
    assert!(
        run.logged(Level::Warn, "line 5: 1 fields where the header has 3"),
        "{:?}",
        run.logs
    );
    let export = run.result.unwrap();
    assert_eq!(export.entries.len(), 3);
    assert_eq!(export.entries[1].get("name"), Some("Bob\r\nJr"));
    assert_eq!(export.summary.rejected, 1);
}

#[test]
fn tab_delimiter_is_accepted_as_an_escape() {
    let collect = tempfile::tempdir().unwrap();
    let run = Harness::new()
        .settings(settings(json!({ "file": "tabs.csv", "delimiter": "\\t" })))
        .folder("source", FIXTURES)
        .collect_dir(collect.path())
        .export_full::<Csv>();
    assert_eq!(run.result.unwrap().entries[0].get("name"), Some("Ann"));
}

#[test]
fn settings_errors_are_configuration_errors() {
    for (extra, text) in [
        (json!({ "delimiter": ";;" }), "delimiter `;;`"),
        (
            json!({ "file": "../../etc/passwd" }),
            "relative path inside its folder",
        ),
        (json!({ "file": "missing.csv" }), "missing.csv"),
    ] {
        let run = Harness::new()
            .settings(settings(extra))
            .folder("source", FIXTURES)
            .test_connection::<Csv>();
        let e = run.result.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Configuration);
        assert!(e.message.contains(text), "{}", e.message);
    }
}

#[test]
fn without_the_source_grant_the_error_says_what_to_grant() {
    let run = Harness::new()
        .settings(settings(json!({})))
        .test_connection::<Csv>();
    let e = run.result.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Denied);
    assert!(
        e.message.contains("folder `source` is not granted"),
        "{}",
        e.message
    );
}

#[test]
fn batches_respect_the_batch_size() {
    let collect = tempfile::tempdir().unwrap();
    let run = Harness::new()
        .settings(settings(json!({})))
        .folder("source", FIXTURES)
        .collect_dir(collect.path())
        .batch_size(2)
        .export_full::<Csv>();
    let export = run.result.unwrap();
    assert_eq!(export.batches, 2);
    assert_eq!(export.summary.entries, 3);
}

#[test]
fn a_row_that_is_not_utf8_is_reported_and_skipped() {
    let collect = tempfile::tempdir().unwrap();
    let run = Harness::new()
        .settings(settings(json!({ "file": "latin1.csv" })))
        .folder("source", FIXTURES)
        .collect_dir(collect.path())
        .export_full::<Csv>();
    assert!(
        run.logged(Level::Warn, "line 3: not valid UTF-8"),
        "{:?}",
        run.logs
    );
    let keys: Vec<String> = run
        .result
        .unwrap()
        .entries
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(keys, ["E1", "E3"]);
}
