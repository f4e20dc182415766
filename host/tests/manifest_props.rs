//! Property tests of the manifest reader (a connector package comes from its author, not from
//! us): the CSV connector's manifest damaged anywhere, or any text, gives a manifest or an error
//! naming the file, never a panic.

use idgard_host::Manifest;
use proptest::prelude::*;

const CSV: &str = include_str!("../../connectors/csv/connector.toml");

/// Loads `text` as a manifest; checks an error names the file.
fn load(text: &str) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("connector.toml");
    std::fs::write(&path, text).unwrap();
    if let Err(e) = Manifest::load(&path) {
        let message = e.to_string();
        prop_assert!(message.contains("connector.toml"), "{message}");
    }
    Ok(())
}

#[test]
fn the_csv_manifest_itself_loads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("connector.toml");
    std::fs::write(&path, CSV).unwrap();
    Manifest::load(&path).expect("the cases below would test nothing");
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_damaged_manifest_loads_or_fails_clearly(
        at in any::<prop::sample::Index>(),
        len in 0usize..24,
        insert in "[\\[\\]=\"'a-z0-9 .\n{},_-]{0,16}",
    ) {
        let chars: Vec<char> = CSV.chars().collect();
        let i = at.index(chars.len());
        let end = (i + len).min(chars.len());
        let mut text: String = chars[..i].iter().collect();
        text.push_str(&insert);
        text.extend(&chars[end..]);
        load(&text)?;
    }

    #[test]
    fn any_text_loads_or_fails_clearly(text in any::<String>()) {
        load(&text)?;
    }
}
