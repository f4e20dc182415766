//! Property tests of the CSV connector's reading of HR files, which come from outside: whatever
//! the bytes (a fixture damaged anywhere, or anything at all), an export gives entries (with
//! rejected rows counted) or a clear error, never a panic.

use idgard_connector_csv::Csv;
use idgard_sdk::testing::Harness;
use proptest::prelude::*;
use serde_json::json;

const FIXTURE: &[u8] = include_bytes!("fixtures/crlf.csv");

/// Exports `bytes` as the HR file: the entries, or none when the export failed. A panic fails
/// the case.
fn export(bytes: &[u8]) -> Option<usize> {
    let source = tempfile::tempdir().unwrap();
    let collect = tempfile::tempdir().unwrap();
    std::fs::write(source.path().join("hr.csv"), bytes).unwrap();
    let run = Harness::new()
        .settings(json!({
            "file": "hr.csv", "key": "employee_id", "delimiter": ",", "entity_type": "person",
            "strict": false, "accounts_file": "accounts.csv", "accounts_key": "login",
            "multi_value_separator": "|"
        }))
        .folder("source", source.path())
        .collect_dir(collect.path())
        .export_full::<Csv>();
    let export = run.result.ok()?;
    for e in &export.entries {
        assert!(!e.key.is_empty(), "an entry without a key: {e:?}");
    }
    Some(export.entries.len())
}

#[test]
fn the_fixture_itself_exports() {
    assert_eq!(
        export(FIXTURE),
        Some(3),
        "the cases below would test nothing"
    );
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_damaged_hr_file_exports_or_fails_clearly(
        at in any::<prop::sample::Index>(),
        len in 0usize..16,
        insert in prop::collection::vec(
            prop_oneof![Just(b','), Just(b'"'), Just(b'\n'), Just(b'\r'), Just(0u8), Just(0xffu8), any::<u8>()],
            0..16,
        ),
    ) {
        let i = at.index(FIXTURE.len());
        let end = (i + len).min(FIXTURE.len());
        let mut bytes = FIXTURE[..i].to_vec();
        bytes.extend_from_slice(&insert);
        bytes.extend_from_slice(&FIXTURE[end..]);
        export(&bytes);
    }

    #[test]
    fn any_bytes_export_or_fail_clearly(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let mut with_header = b"employee_id,name\n".to_vec();
        with_header.extend_from_slice(&bytes);
        export(&with_header);
        export(&bytes);
    }
}
