//! What changed between two versions of an entry, attribute by attribute: what the history
//! timelines and order details show.

use idgard_protocol::model::{ChangeOp, OrderKind};
use idgard_protocol::{Attributes, VersionView};

/// One attribute's change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The attribute.
    pub name: String,
    /// Its values before (empty: it was absent).
    pub old: String,
    /// Its values after (empty: it is gone).
    pub new: String,
}

/// A version and how it differs from the one before.
#[derive(Debug, Clone)]
pub struct Step {
    /// Since when, ms since the epoch.
    pub from_ms: i64,
    /// Until when (absent: current).
    pub to_ms: Option<i64>,
    /// What changed (for the first version: everything it holds).
    pub changes: Vec<Change>,
}

/// The changes from `old` (absent: nothing) to `new`, by attribute name.
pub fn changes(old: Option<&Attributes>, new: &Attributes) -> Vec<Change> {
    let empty = Attributes::new();
    let old = old.unwrap_or(&empty);
    let names: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    names
        .into_iter()
        .filter(|n| old.get(*n) != new.get(*n))
        .map(|n| Change {
            name: n.clone(),
            old: old.get(n).map(|v| v.join(", ")).unwrap_or_default(),
            new: new.get(n).map(|v| v.join(", ")).unwrap_or_default(),
        })
        .collect()
}

/// A history (oldest first) as steps, newest first.
pub fn timeline(history: &[VersionView]) -> Vec<Step> {
    let mut out: Vec<Step> = history
        .iter()
        .enumerate()
        .map(|(i, v)| Step {
            from_ms: v.valid_from_ms,
            to_ms: v.valid_to_ms,
            changes: changes(
                i.checked_sub(1).map(|p| &history[p].attributes),
                &v.attributes,
            ),
        })
        .collect();
    out.reverse();
    out
}

/// What an order would change on an account holding `current` (absent: no such account yet):
/// per attribute, the values now and the values after.
pub fn order_changes(current: Option<&Attributes>, kind: &OrderKind) -> Vec<Change> {
    let now = |name: &str| -> Vec<String> {
        current
            .and_then(|c| c.get(name))
            .cloned()
            .unwrap_or_default()
    };
    let row = |name: &str, old: String, new: String| Change {
        name: name.to_owned(),
        old,
        new,
    };
    match kind {
        OrderKind::Create { attributes } => changes(current, attributes),
        OrderKind::Update { changes } => changes
            .iter()
            .map(|c| {
                let old = now(&c.name);
                let new: Vec<String> = match c.op {
                    ChangeOp::Replace => c.values.clone(),
                    ChangeOp::Add => {
                        let mut v = old.clone();
                        v.extend(c.values.iter().filter(|x| !old.contains(x)).cloned());
                        v
                    }
                    ChangeOp::Remove => old
                        .iter()
                        .filter(|x| !c.values.contains(x))
                        .cloned()
                        .collect(),
                };
                row(&c.name, old.join(", "), new.join(", "))
            })
            .collect(),
        OrderKind::Delete => vec![row("(the entry)", "exists".into(), "deleted".into())],
        OrderKind::Enable => vec![row("(the account)", String::new(), "enabled".into())],
        OrderKind::Disable => vec![row("(the account)", String::new(), "disabled".into())],
        OrderKind::SetPassword { .. } => {
            vec![row("(password)", String::new(), "set (never shown)".into())]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &[&str])]) -> Attributes {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn only_what_changed_is_shown_with_its_old_and_new_values() {
        let a = attrs(&[("dept", &["Sales"]), ("name", &["Ann"]), ("tel", &["1"])]);
        let b = attrs(&[
            ("dept", &["Legal"]),
            ("name", &["Ann"]),
            ("mail", &["a@x", "b@x"]),
        ]);
        let c = changes(Some(&a), &b);
        let got: Vec<(&str, &str, &str)> = c
            .iter()
            .map(|c| (c.name.as_str(), c.old.as_str(), c.new.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("dept", "Sales", "Legal"),
                ("mail", "", "a@x, b@x"),
                ("tel", "1", "")
            ]
        );
        assert_eq!(changes(None, &a).len(), 3);
        let history = vec![
            VersionView {
                entity_type: "person".into(),
                attributes: a,
                valid_from_ms: 1,
                valid_to_ms: Some(2),
                sync_id: 1,
            },
            VersionView {
                entity_type: "person".into(),
                attributes: b,
                valid_from_ms: 2,
                valid_to_ms: None,
                sync_id: 2,
            },
        ];
        let t = timeline(&history);
        assert_eq!((t[0].from_ms, t[0].changes.len()), (2, 3));
        assert_eq!((t[1].from_ms, t[1].changes.len()), (1, 3));
    }

    #[test]
    fn an_update_shows_the_values_before_and_after_each_change() {
        use idgard_protocol::model::AttributeChange;
        let now = attrs(&[("groups", &["a", "b"]), ("title", &["Clerk"])]);
        let kind = OrderKind::Update {
            changes: vec![
                AttributeChange {
                    name: "groups".into(),
                    op: ChangeOp::Add,
                    values: vec!["c".into(), "a".into()],
                },
                AttributeChange {
                    name: "title".into(),
                    op: ChangeOp::Replace,
                    values: vec!["Head".into()],
                },
                AttributeChange {
                    name: "groups".into(),
                    op: ChangeOp::Remove,
                    values: vec!["b".into()],
                },
            ],
        };
        let got: Vec<(String, String, String)> = order_changes(Some(&now), &kind)
            .into_iter()
            .map(|c| (c.name, c.old, c.new))
            .collect();
        assert_eq!(got[0], ("groups".into(), "a, b".into(), "a, b, c".into()));
        assert_eq!(got[1], ("title".into(), "Clerk".into(), "Head".into()));
        assert_eq!(got[2], ("groups".into(), "a, b".into(), "a".into()));
        let pw = order_changes(
            None,
            &OrderKind::SetPassword {
                password: "s3cret".into(),
            },
        );
        assert!(
            pw.iter().all(|c| !c.new.contains("s3cret")),
            "a password is never shown"
        );
    }
}
