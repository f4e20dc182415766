//! Attribute names the rules read, checked against the data: `identity.stauts` compiles (any
//! name may be read) but never holds a value. Once the repository holds entries of a
//! connection, a name its entries never carry is worth a warning, with its line.

use super::Rules;
use std::collections::BTreeSet;

/// A name an expression reads that the data does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unknown {
    /// The line of the expression.
    pub line: usize,
    /// `identity` or `account`.
    pub variable: &'static str,
    /// The attribute name.
    pub name: String,
}

/// Names always present: the entry's key.
const ALWAYS: &[&str] = &["key"];

impl Rules {
    /// The attribute names read as `variable.name` in the rules, with their lines.
    pub fn names_read(&self, variable: &str) -> Vec<(String, usize)> {
        let mut out = Vec::new();
        for (text, line) in &self.written {
            for name in selected(text, variable) {
                if !out.iter().any(|(n, l)| *n == name && l == line) {
                    out.push((name, *line));
                }
            }
        }
        out
    }

    /// The names `variable` reads that `known` (the names the data holds) lacks. An empty
    /// `known` means nothing is known yet: no warning.
    pub fn unknown_names(&self, variable: &'static str, known: &BTreeSet<String>) -> Vec<Unknown> {
        if known.is_empty() {
            return Vec::new();
        }
        self.names_read(variable)
            .into_iter()
            .filter(|(n, _)| !known.contains(n) && !ALWAYS.contains(&n.as_str()))
            .map(|(name, line)| Unknown {
                line,
                variable,
                name,
            })
            .collect()
    }
}

/// `x` in every `variable.x` of an expression (not `other_variable.x`, not `a.variable.x`).
fn selected(text: &str, variable: &str) -> Vec<String> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = Vec::new();
    let pattern = format!("{variable}.");
    let mut from = 0;
    while let Some(at) = text[from..].find(&pattern) {
        let start = from + at;
        from = start + pattern.len();
        let before = text[..start].chars().next_back();
        if before.is_some_and(|c| ident(c) || c == '.') {
            continue;
        }
        let name: String = text[from..].chars().take_while(|&c| ident(c)).collect();
        if !name.is_empty() && !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selections_are_found_and_others_left_alone() {
        assert_eq!(
            selected(
                "identity.first_name.lowerAscii() + my_identity.x + a.identity.y + identity.key",
                "identity"
            ),
            ["first_name", "key"]
        );
        assert_eq!(
            selected("has(identity.status) && identity.status == 'x'", "identity"),
            ["status"]
        );
    }

    #[test]
    fn a_misspelt_name_is_reported_with_its_line_once_the_data_is_known() {
        let rules = Rules::parse(
            r#"version = 1
[identities]
connection = "hr"
[[targets]]
connection = "accounts"
filter = 'identity.stauts == "active"'
key = 'identity.key.lowerAscii()'
correlation = { account = "account.employee_id" }
[targets.attributes]
name = "identity.name"
"#,
            "rules.toml",
        )
        .unwrap();
        let known: BTreeSet<String> = ["name", "status"].map(String::from).into();
        assert_eq!(
            rules.unknown_names("identity", &known),
            [Unknown {
                line: 6,
                variable: "identity",
                name: "stauts".into()
            }]
        );
        assert!(rules.unknown_names("identity", &BTreeSet::new()).is_empty());
        let accounts: BTreeSet<String> = ["login"].map(String::from).into();
        assert_eq!(
            rules.unknown_names("account", &accounts)[0].name,
            "employee_id"
        );
    }
}
