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

/// Orders handed to a connector in one call at most (`batch_size` sets it lower).
const MAX_ORDERS_PER_BATCH: u32 = 10_000;

impl Agent {
    /// Fulfils the orders the server holds for this task, page by page (the server hands out
    /// the next page once a page's results are recorded), each page in batches. Each finished
    /// batch is written to the spool before anything else, so a restart resumes after the last
    /// finished order instead of carrying it out again (the server ignores results it already
    /// has).
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
        let progress_file = self
            .config
            .work
            .join("spool")
            .join(format!("orders-{}.json", task.id));
        // Results carried out and not yet recorded by the server (a restart resumes with them).
        let mut finished: Vec<OrderResult> = match std::fs::read(&progress_file) {
            Ok(b) => serde_json::from_slice(&b).unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        if !finished.is_empty() {
            tracing::info!(
                finished = finished.len(),
                "resuming a fulfilment: orders already carried out are not run again"
            );
        }
        let mut tally = Tally::default();
        let mut handed: std::collections::HashSet<String> = std::collections::HashSet::new();
        loop {
            let asked = std::time::Instant::now();
            let TaskOrders::<Order> { orders, remaining } = self
                .call_retrying(
                    Method::GET,
                    &format!(
                        "/api/v1/agent/tasks/{}/orders?fence={}",
                        task.id, task.fence
                    ),
                    None::<&()>,
                )
                .await?;
            if orders.is_empty() {
                break;
            }
            if let Some(left) = remaining {
                progress
                    .1
                    .store((orders.len() as u64) + left, Ordering::Relaxed);
            }
            // A page of orders already carried out in this run would come back for ever.
            if orders.iter().all(|o| !handed.insert(o.id.clone())) && finished.is_empty() {
                bail!("the server gives orders this run already carried out and reported");
            }
            let fetched = asked.elapsed();
            let page = orders.len();
            let known: std::collections::HashSet<String> =
                finished.iter().map(|r| r.id.clone()).collect();
            let todo: Vec<Order> = orders
                .into_iter()
                .filter(|o| !known.contains(&o.id))
                .collect();
            for batch in todo.chunks(self.config.batch_size.clamp(1, MAX_ORDERS_PER_BATCH) as usize)
            {
                if cancel.is_cancelled() {
                    return Ok(TaskOutcome::Cancelled);
                }
                let results = match self
                    .fulfil_batch(
                        connection, loaded, orders_dir, batch, &cancel, &progress, &log,
                    )
                    .await?
                {
                    Ok(results) => results,
                    Err(ended) => return Ok(ended),
                };
                finished.extend(results);
                write_private(&progress_file, &serde_json::to_vec(&finished)?)?;
                progress
                    .0
                    .store(tally.orders + finished.len() as u64, Ordering::Relaxed);
            }
            let carried = asked.elapsed() - fetched;
            // The page's results reach the server before the next page is asked for.
            self.send_results(task, &finished).await?;
            tracing::info!(
                orders = page,
                "a page of orders: handed out in {fetched:.0?}, carried out in {carried:.0?}, \
                 results recorded in {:.0?}",
                asked.elapsed() - fetched - carried
            );
            tally.add(&finished);
            finished.clear();
            write_private(&progress_file, b"[]")?;
        }
        let _ = std::fs::remove_file(&progress_file);
        Ok(TaskOutcome::Succeeded {
            result: serde_json::json!({
                "orders": tally.orders,
                "done": tally.done,
                "failed": tally.failed,
                "retry_later": tally.retry_later,
            }),
        })
    }
}

impl Agent {
    /// Sends results in pieces under the size bound, each until the server takes it.
    async fn send_results(
        self: &Arc<Self>,
        task: &Assignment,
        results: &[OrderResult],
    ) -> Result<()> {
        for piece in pieces(results, MAX_RESULTS_BYTES) {
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
        Ok(())
    }

    /// One batch through the connector: its results, or how the task ends (cancelled, or the
    /// connector failed as a whole).
    #[allow(clippy::too_many_arguments)]
    async fn fulfil_batch(
        self: &Arc<Self>,
        connection: &Arc<Connection>,
        loaded: &Arc<Loaded>,
        orders_dir: &Path,
        batch: &[Order],
        cancel: &Cancel,
        progress: &Arc<(AtomicU64, AtomicU64)>,
        log: &mpsc::Sender<LogLine>,
    ) -> Result<Result<Vec<OrderResult>, TaskOutcome>> {
        let observer = TaskObserver::new(None, cancel.clone(), progress.clone(), log.clone());
        let outcome = self
            .run_connector(
                (loaded.clone(), connection.clone()),
                None,
                orders_dir.to_owned(),
                Request::Fulfill(batch.to_vec()),
                observer,
                cancel,
            )
            .await?;
        let outcome = match outcome {
            Err(_) if cancel.is_cancelled() => return Ok(Err(TaskOutcome::Cancelled)),
            other => other?,
        };
        match outcome {
            Outcome::Fulfilled(results) => Ok(Ok(results)),
            Outcome::Failed { kind, message } => Ok(Err(TaskOutcome::Failed {
                error: format!("connector error ({kind:?}): {message}"),
                retryable: kind == ErrorKind::Unavailable,
            })),
            _ => bail!("the connector answered a fulfil with something else"),
        }
    }
}

/// Counts of the results of a fulfilment.
#[derive(Default)]
struct Tally {
    orders: u64,
    done: u64,
    failed: u64,
    retry_later: u64,
}

impl Tally {
    fn add(&mut self, results: &[OrderResult]) {
        for r in results {
            self.orders += 1;
            match r.outcome {
                OrderOutcome::Done | OrderOutcome::Created(_) => self.done += 1,
                OrderOutcome::Failed(_) => self.failed += 1,
                OrderOutcome::RetryLater(_) => self.retry_later += 1,
            }
        }
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
