//! What the agent measures of its connectors' runs (counts, time, limits hit), sent to the
//! server with its next poll when something changed: the agent opens no listening socket, so
//! the server shows them at `/metrics`.

use idgard_protocol::{AgentFigures, ConnectorFigures, FIGURES_MAX, Operation};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// The figures since the agent started, and which of their versions the server has.
#[derive(Debug, Default)]
pub(crate) struct Figures {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Bumped at each change.
    version: u64,
    /// The version the server last received.
    sent: u64,
    lines: BTreeMap<(String, &'static str), ConnectorFigures>,
}

/// How a run ended, for the figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ended {
    /// It did what it was asked.
    Done,
    /// It failed.
    Failed,
    /// A limit stopped it (its name).
    Limit(String),
}

impl Figures {
    /// Counts a run of `operation` on `connection` that took `took`.
    pub(crate) fn record(
        &self,
        connection: &str,
        operation: Operation,
        took: Duration,
        end: Ended,
    ) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let key = (connection.to_owned(), operation.as_str());
        if !inner.lines.contains_key(&key) && inner.lines.len() >= FIGURES_MAX {
            return;
        }
        let line = inner.lines.entry(key).or_insert_with(|| ConnectorFigures {
            connection: connection.to_owned(),
            operation,
            runs: 0,
            failures: 0,
            seconds: 0.0,
            limit_hits: BTreeMap::new(),
        });
        line.runs += 1;
        line.seconds += took.as_secs_f64();
        match end {
            Ended::Done => {}
            Ended::Failed => line.failures += 1,
            Ended::Limit(limit) => {
                line.failures += 1;
                *line.limit_hits.entry(limit).or_default() += 1;
            }
        }
        inner.version += 1;
    }

    /// The figures and their version, when the server does not have this version yet.
    pub(crate) fn unsent(&self) -> Option<(u64, AgentFigures)> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        (inner.version > inner.sent).then(|| {
            (
                inner.version,
                AgentFigures {
                    connectors: inner.lines.values().cloned().collect(),
                },
            )
        })
    }

    /// The server received `version`.
    pub(crate) fn sent(&self, version: u64) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.sent = inner.sent.max(version);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_counted_and_sent_once() {
        let f = Figures::default();
        assert!(f.unsent().is_none(), "nothing to send before a run");
        f.record(
            "hr",
            Operation::Export,
            Duration::from_millis(1500),
            Ended::Done,
        );
        f.record(
            "hr",
            Operation::Export,
            Duration::from_millis(500),
            Ended::Limit("memory".into()),
        );
        f.record(
            "ad",
            Operation::Fulfill,
            Duration::from_secs(1),
            Ended::Failed,
        );
        let (version, figures) = f.unsent().unwrap();
        assert_eq!(figures.connectors.len(), 2);
        let hr = figures
            .connectors
            .iter()
            .find(|c| c.connection == "hr")
            .unwrap();
        assert_eq!((hr.runs, hr.failures), (2, 1));
        assert!((hr.seconds - 2.0).abs() < 1e-9);
        assert_eq!(hr.limit_hits["memory"], 1);
        f.sent(version);
        assert!(f.unsent().is_none(), "the server has them");
        f.record(
            "ad",
            Operation::Fulfill,
            Duration::from_secs(1),
            Ended::Done,
        );
        assert_eq!(f.unsent().unwrap().1.connectors[0].runs, 2);
    }
}
