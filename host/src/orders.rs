//! Matching a connector's order results to the orders it was given, in time linear in both, with
//! one summary line for whatever did not match (a connector may answer with a million ids nobody
//! sent: that must cost neither a million log lines nor orders × results comparisons).

use crate::bindings::wit;
use crate::{Level, Observer, model, text};
use std::collections::HashMap;

/// Longest message kept from one order's result.
const MAX_RESULT_MESSAGE: usize = 2 * 1024;
/// Ids quoted in the summary of results that matched no order.
const SAMPLES: usize = 3;

/// One result per order, in the orders' order: results for unknown ids or repeated ids are
/// dropped (and counted in one warning), orders the connector gave no result for are failed.
pub(crate) fn match_results(
    ids: &[String],
    results: Vec<wit::OrderResult>,
    observer: &mut dyn Observer,
) -> Vec<model::OrderResult> {
    let index: HashMap<&str, usize> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let mut outcomes: Vec<Option<model::OrderOutcome>> = vec![None; ids.len()];
    let (mut unknown, mut repeated) = (0u64, 0u64);
    let mut samples: Vec<String> = Vec::new();
    for r in results {
        match index.get(r.id.as_str()) {
            None => {
                unknown += 1;
                if samples.len() < SAMPLES {
                    samples.push(text::shown(&r.id, 64));
                }
            }
            Some(&i) if outcomes[i].is_some() => repeated += 1,
            Some(&i) => outcomes[i] = Some(bounded(r.outcome)),
        }
    }
    if unknown + repeated > 0 {
        observer.log(
            Level::Warn,
            &format!(
                "the connector's results did not all match: {unknown} for orders that were not \
                 sent{}, {repeated} repeated (the first result of an order is kept); ignored",
                if samples.is_empty() {
                    String::new()
                } else {
                    format!(" (such as {})", samples.join(", "))
                }
            ),
        );
    }
    ids.iter()
        .zip(outcomes)
        .map(|(id, outcome)| model::OrderResult {
            id: id.clone(),
            outcome: outcome.unwrap_or_else(|| {
                model::OrderOutcome::Failed(
                    "the connector returned no result for this order".into(),
                )
            }),
        })
        .collect()
}

/// The outcome with its message cut and escaped: it is shown to operators and stored.
fn bounded(outcome: wit::OrderOutcome) -> model::OrderOutcome {
    match outcome {
        wit::OrderOutcome::Done => model::OrderOutcome::Done,
        wit::OrderOutcome::Created(key) => model::OrderOutcome::Created(key),
        wit::OrderOutcome::Failed(m) => {
            model::OrderOutcome::Failed(text::shown(&m, MAX_RESULT_MESSAGE))
        }
        wit::OrderOutcome::RetryLater(m) => {
            model::OrderOutcome::RetryLater(text::shown(&m, MAX_RESULT_MESSAGE))
        }
    }
}
