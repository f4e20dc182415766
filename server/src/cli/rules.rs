//! `check-rules` against the data: attribute names the repository's entries never hold.

use anyhow::Result;
use idgard_server::identity::Engine;
use idgard_server::identity::rules::Rules;
use idgard_server::identity::views::NAMES_SAMPLE;
use std::collections::BTreeSet;

/// Warns (on stderr) of every `identity.x` the source's entries lack, and every `account.x`
/// that no target's entries hold, once the repository holds entries of them.
pub async fn warn_unknown_names(engine: &Engine, rules: &Rules) -> Result<()> {
    let source = &rules.identities.connection;
    let people = engine.attribute_names(source).await?;
    let mut accounts = BTreeSet::new();
    for t in &rules.targets {
        accounts.extend(engine.attribute_names(&t.connection).await?);
    }
    let targets: Vec<&str> = rules
        .targets
        .iter()
        .map(|t| t.connection.as_str())
        .collect();
    for (variable, known, of) in [
        ("identity", &people, format!("`{source}`")),
        ("account", &accounts, format!("`{}`", targets.join("`, `"))),
    ] {
        for u in rules.unknown_names(variable, known) {
            eprintln!(
                "warning: {}:{}: `{variable}.{}`: no entry of {of} holds `{}` (of the {NAMES_SAMPLE} \
                 latest; they hold: {})",
                rules.origin,
                u.line,
                u.name,
                u.name,
                known.iter().cloned().collect::<Vec<_>>().join(", ")
            );
        }
    }
    Ok(())
}
