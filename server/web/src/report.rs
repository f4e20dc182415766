//! A task's result or a run's blocked reason, for people: the connector's or the server's
//! report (a JSON object) as labelled figures, with its samples apart.

use serde_json::Value;

/// A report, ready to show.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Label and value of each figure, by name.
    pub facts: Vec<(String, String)>,
    /// Examples the report gives (errors, refused entries...).
    pub samples: Vec<String>,
}

impl Report {
    /// Whether there is nothing to show.
    pub fn is_empty(&self) -> bool {
        self.facts.is_empty() && self.samples.is_empty()
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
            items.iter().map(text).collect::<Vec<_>>().join(", ")
        }
        other => other.to_string(),
    }
}

/// Reads `value`: an object's fields become figures (`inserted_rows` → `inserted rows`), its
/// `samples` list becomes the samples, a `report` object within is read the same way in line;
/// anything else is one figure.
pub fn report(value: &Value) -> Report {
    let Value::Object(fields) = value else {
        return Report {
            facts: vec![("result".into(), text(value))],
            samples: Vec::new(),
        };
    };
    let mut out = Report::default();
    for (name, v) in fields {
        match (name.as_str(), v) {
            (_, Value::Null) => {}
            ("samples", Value::Array(items)) => out.samples.extend(items.iter().map(text)),
            // A report within (a blocked run's: the step's own report) is shown in line.
            ("report", Value::Object(_)) => {
                let inner = report(v);
                out.facts.extend(inner.facts);
                out.samples.extend(inner.samples);
            }
            _ => out.facts.push((name.replace('_', " "), text(v))),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn figures_are_labelled_and_samples_set_apart() {
        let r = report(&json!({
            "creates": 4, "dry_run": false, "mode": "complete", "upload_id": null,
            "samples": ["identity `E2`: account `paul.durand` waits for review"],
            "cursor": {"format": "csv-snapshot/1"}, "kinds": ["create", "update"]
        }));
        assert_eq!(
            r.facts,
            [
                ("creates".to_owned(), "4".to_owned()),
                (
                    "cursor".to_owned(),
                    r#"{"format":"csv-snapshot/1"}"#.to_owned()
                ),
                ("dry run".to_owned(), "false".to_owned()),
                ("kinds".to_owned(), "create, update".to_owned()),
                ("mode".to_owned(), "complete".to_owned()),
            ]
        );
        assert_eq!(r.samples.len(), 1);
        assert!(!r.is_empty());
    }

    #[test]
    fn a_report_within_is_shown_in_line() {
        let r = report(&json!({
            "reason": "2 deletes", "report": {"deleted": 2, "samples": ["E4 left"]}
        }));
        assert_eq!(
            r.facts,
            [
                ("reason".to_owned(), "2 deletes".to_owned()),
                ("deleted".to_owned(), "2".to_owned())
            ]
        );
        assert_eq!(r.samples, ["E4 left"]);
    }

    #[test]
    fn anything_else_is_one_figure() {
        assert_eq!(
            report(&json!("done")).facts,
            [("result".to_owned(), "done".to_owned())]
        );
        assert!(report(&json!({})).is_empty());
    }
}
