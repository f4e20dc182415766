//! Fulfilling the orders the server holds for a task, batch by batch, resumable after a
//! restart.

use crate::config::write_private;
use crate::daemon::Agent;
use crate::observer::TaskObserver;
use anyhow::{Result, bail};
use idgard_host::model::{ErrorKind, Order, OrderOutcome, OrderResult};
use idgard_host::{Cancel, Connection, Loaded, Outcome, Request};
use idgard_protocol::{
    Assignment, LogLine, OrderResults, OrderResultsAnswer, TaskOrders, TaskOutcome,
};
use reqwest::Method;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;

impl Agent {
    /// Fulfils the orders the server holds for this task, in batches. Each finished batch is
    /// written to the spool before anything else, so a restart resumes after the last finished
    /// order instead of carrying it out again; results go up as they come and once more at
    /// the end (the server ignores results it already has).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn fulfil_from_server(
        self: &Arc<Self>,
        task: &Assignment,
        connection: &Arc<Connection>,
        loaded: &Arc<Loaded>,
        orders_dir: &Path,
        cancel: Cancel,
        progress: Arc<(AtomicU64, AtomicU64)>,
        log: mpsc::Sender<LogLine>,
    ) -> Result<TaskOutcome> {
        let TaskOrders { orders } = self
            .call_retrying(
                Method::GET,
                &format!(
                    "/api/v1/agent/tasks/{}/orders?fence={}",
                    task.id, task.fence
                ),
                None::<&()>,
            )
            .await?;
        let progress_file = self
            .config
            .work
            .join("spool")
            .join(format!("orders-{}.json", task.id));
        let mut finished: Vec<OrderResult> = match std::fs::read(&progress_file) {
            Ok(b) => serde_json::from_slice(&b).unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        let known: std::collections::HashSet<String> =
            finished.iter().map(|r| r.id.clone()).collect();
        if !known.is_empty() {
            tracing::info!(
                finished = known.len(),
                "resuming a fulfilment: orders already carried out are not run again"
            );
        }
        let todo: Vec<Order> = orders
            .into_iter()
            .filter(|o| !known.contains(&o.id))
            .collect();
        let total = (todo.len() + known.len()) as u64;
        progress.1.store(total, Ordering::Relaxed);
        for batch in todo.chunks(self.config.batch_size.clamp(1, 500) as usize) {
            if cancel.is_cancelled() {
                return Ok(TaskOutcome::Cancelled);
            }
            let observer = TaskObserver::new(None, cancel.clone(), progress.clone(), log.clone());
            let outcome = self
                .run_connector(
                    (loaded.clone(), connection.clone()),
                    None,
                    orders_dir.to_owned(),
                    Request::Fulfill(batch.to_vec()),
                    observer,
                    &cancel,
                )
                .await?;
            let outcome = match outcome {
                Err(_) if cancel.is_cancelled() => return Ok(TaskOutcome::Cancelled),
                other => other?,
            };
            let results = match outcome {
                Outcome::Fulfilled(results) => results,
                Outcome::Failed { kind, message } => {
                    return Ok(TaskOutcome::Failed {
                        error: format!("connector error ({kind:?}): {message}"),
                        retryable: kind == ErrorKind::Unavailable,
                    });
                }
                _ => bail!("the connector answered a fulfil with something else"),
            };
            finished.extend(results.iter().cloned());
            write_private(&progress_file, &serde_json::to_vec(&finished)?)?;
            progress.0.store(finished.len() as u64, Ordering::Relaxed);
            for piece in pieces(&results, MAX_RESULTS_BYTES) {
                let sent = self
                    .client
                    .call::<_, OrderResultsAnswer>(
                        Method::POST,
                        &format!("/api/v1/agent/tasks/{}/order-results", task.id),
                        Some(&OrderResults {
                            fence: task.fence,
                            results: piece.to_vec(),
                        }),
                    )
                    .await;
                if let Err(e) = sent {
                    tracing::warn!("results not sent yet ({e}); they go again at the end");
                    break;
                }
            }
        }
        for piece in pieces(&finished, MAX_RESULTS_BYTES) {
            let _: OrderResultsAnswer = self
                .call_retrying(
                    Method::POST,
                    &format!("/api/v1/agent/tasks/{}/order-results", task.id),
                    Some(&OrderResults {
                        fence: task.fence,
                        results: piece.to_vec(),
                    }),
                )
                .await?;
        }
        let _ = std::fs::remove_file(&progress_file);
        let count =
            |f: fn(&OrderOutcome) -> bool| finished.iter().filter(|r| f(&r.outcome)).count();
        Ok(TaskOutcome::Succeeded {
            result: serde_json::json!({
                "orders": finished.len(),
                "done": count(|o| matches!(o, OrderOutcome::Done)),
                "failed": count(|o| matches!(o, OrderOutcome::Failed(_))),
                "retry_later": count(|o| matches!(o, OrderOutcome::RetryLater(_))),
            }),
        })
    }
}

/// Most JSON one request of order results carries: well under the server's body limit (1 MiB by
/// default), whatever the number of orders in the task.
const MAX_RESULTS_BYTES: usize = 256 << 10;

/// Consecutive pieces of `results`, each at most `max_bytes` of JSON (a single larger result
/// goes alone).
fn pieces(results: &[OrderResult], max_bytes: usize) -> Vec<&[OrderResult]> {
    let mut out = Vec::new();
    let (mut start, mut size) = (0, 0);
    for (i, r) in results.iter().enumerate() {
        let len = serde_json::to_vec(r).map_or(0, |v| v.len()) + 1;
        if i > start && size + len > max_bytes {
            out.push(&results[start..i]);
            (start, size) = (i, 0);
        }
        size += len;
    }
    if start < results.len() {
        out.push(&results[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_go_up_in_pieces_under_the_size_bound() {
        let results: Vec<OrderResult> = (0..3000)
            .map(|i| OrderResult {
                id: format!("order-{i}"),
                outcome: OrderOutcome::Failed("x".repeat(i % 500)),
            })
            .collect();
        let parts = pieces(&results, 64 << 10);
        assert!(parts.len() > 1);
        assert_eq!(parts.iter().map(|p| p.len()).sum::<usize>(), 3000);
        for p in &parts {
            assert!(serde_json::to_vec(p).unwrap().len() <= 64 << 10);
        }
        assert_eq!(parts.concat(), results, "in order, nothing lost");
        assert!(pieces(&[], 10).is_empty());
    }
}
