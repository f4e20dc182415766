//! Property tests of the rules parser, which reads a file operators write by hand: whatever the
//! text (the demo's rules cut, changed or spliced, or any text at all), it gives rules or an
//! error that names the file, never a panic.

use idgard_server::identity::rules::Rules;
use proptest::prelude::*;

const DEMO: &str = include_str!("../../connectors/csv/demo/rules.toml");

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// The text `parse` answers for, checked: either rules, or an error naming the origin.
fn check(text: &str) -> Result<(), TestCaseError> {
    match Rules::parse(text, "props.toml") {
        Ok(_) => Ok(()),
        Err(e) => {
            let message = format!("{e:#}");
            prop_assert!(message.contains("props.toml"), "{message}");
            Ok(())
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_demo_rules_parse_and_so_does_any_damage(
        from in any::<prop::sample::Index>(),
        len in 0usize..40,
        insert in "[\\[\\]=\"'a-z0-9 .\n{}(),<>!|&+-]{0,12}",
    ) {
        Rules::parse(DEMO, "demo").map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
        let chars: Vec<char> = DEMO.chars().collect();
        let at = from.index(chars.len());
        let end = (at + len).min(chars.len());
        let mut damaged: String = chars[..at].iter().collect();
        damaged.push_str(&insert);
        damaged.extend(&chars[end..]);
        check(&damaged)?;
    }

    #[test]
    fn any_text_gives_rules_or_an_error(text in any::<String>()) {
        check(&text)?;
    }
}
