//! What a run is asked ([`Request`]) and what it answers ([`Outcome`]): a request becomes a call
//! of the guest, and the guest's answer an outcome, checked and bounded on the way.

use crate::bindings::wit;
use crate::call::{Answer, Call, Counts};
use crate::limits::{LimitHit, Limits};
use crate::state::MAX_LOG_MESSAGE;
use crate::{Error, model, orders, text};
use std::collections::HashSet;

/// What one run is asked to do.
#[derive(Debug, Clone)]
pub enum Request {
    /// Check that the managed system can be reached.
    TestConnection,
    /// Read the managed system's schema.
    Schema,
    /// Export everything (no cursor) or the changes since a cursor.
    Export {
        /// `None` for a full export.
        cursor: Option<model::Cursor>,
        /// Entries per batch.
        batch_size: u32,
    },
    /// Carry out orders.
    Fulfill(Vec<model::Order>),
}

impl Request {
    pub(crate) fn operation(&self) -> &'static str {
        match self {
            Request::TestConnection => "test-connection",
            Request::Schema => "schema",
            Request::Export { cursor: None, .. } => "export-full",
            Request::Export {
                cursor: Some(_), ..
            } => "export-incremental",
            Request::Fulfill(_) => "fulfill",
        }
    }
}

/// What a run produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The connection works.
    Tested,
    /// The schema.
    Schema(Vec<model::EntitySchema>),
    /// The export's summary (entries went to the observer).
    Exported(model::ExportSummary),
    /// One result per order, in the orders' order.
    Fulfilled(Vec<model::OrderResult>),
    /// The connector reported an error of its own (not a trap).
    Failed {
        /// Its kind.
        kind: model::ErrorKind,
        /// Its message.
        message: String,
    },
}

impl Request {
    /// The guest call for this request, with the order ids a fulfilment must answer.
    pub(crate) fn into_call(self, settings: String) -> Result<(Call, Vec<String>), String> {
        Ok(match self {
            Request::TestConnection => (Call::Test(settings), vec![]),
            Request::Schema => (Call::Schema(settings), vec![]),
            Request::Export { cursor, batch_size } => {
                let mode = match cursor {
                    None => wit::ExportMode::Full,
                    Some(c) => wit::ExportMode::Incremental(c.into()),
                };
                let request = wit::ExportRequest { mode, batch_size };
                (Call::Export(settings, request), vec![])
            }
            Request::Fulfill(orders) => {
                let ids: Vec<String> = orders.iter().map(|o| o.id.clone()).collect();
                let mut seen = HashSet::new();
                if let Some(dup) = ids.iter().find(|id| !seen.insert(id.as_str())) {
                    return Err(format!("order id `{dup}` appears twice in one batch"));
                }
                let orders = orders.into_iter().map(Into::into).collect();
                (Call::Fulfill(settings, orders), ids)
            }
        })
    }
}

/// The outcome of a guest's answer to a request.
pub(crate) fn outcome(
    connector: &str,
    limits: &Limits,
    answer: Answer,
    ids: &[String],
    counts: &mut Counts,
) -> Result<Outcome, Error> {
    Ok(match answer {
        Answer::Info(_) => unreachable!("describe is not a request"),
        Answer::Tested(Ok(())) => Outcome::Tested,
        Answer::Schema(Ok(s)) => Outcome::Schema(s.into_iter().map(Into::into).collect()),
        Answer::Exported(Ok(summary)) => exported(connector, limits, summary, counts)?,
        Answer::Fulfilled(Ok(results)) => {
            Outcome::Fulfilled(orders::match_results(ids, results, &mut *counts.observer))
        }
        Answer::Tested(Err(e))
        | Answer::Schema(Err(e))
        | Answer::Exported(Err(e))
        | Answer::Fulfilled(Err(e)) => failed(e),
    })
}

/// The export's summary, with the host's counts; refused when its cursor is over the limit.
fn exported(
    connector: &str,
    limits: &Limits,
    summary: wit::ExportSummary,
    counts: &Counts,
) -> Result<Outcome, Error> {
    if let Some(c) = &summary.cursor {
        let size = c.data.len() + c.format.len();
        if size > (limits.max_cursor_kib as usize) << 10 {
            return Err(Error::Limit {
                connector: connector.to_owned(),
                limit: LimitHit::Cursor,
                detail: format!(
                    "returned a cursor of {size} bytes, limit {} KiB",
                    limits.max_cursor_kib
                ),
            });
        }
    }
    if summary.entries != counts.entries {
        tracing::warn!(
            %connector,
            "connector counted {} entries, the host received {}; keeping the host's count",
            summary.entries, counts.entries
        );
    }
    Ok(Outcome::Exported(model::ExportSummary {
        cursor: summary.cursor.map(Into::into),
        entries: counts.entries,
        rejected: summary.rejected,
        bytes: counts.bytes,
        batches: counts.batches,
        peak_memory: counts.peak_memory,
    }))
}

fn failed(e: wit::Error) -> Outcome {
    Outcome::Failed {
        kind: e.kind.into(),
        message: text::shown(&e.message, MAX_LOG_MESSAGE),
    }
}
