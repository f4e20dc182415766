//! Fulfilling the orders the server holds for a task, batch by batch, resumable after a
//! restart.

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

/// A page of orders asked for in the background, and results on their way to the server.
type Pending<T> = Option<tokio::task::JoinHandle<Result<T>>>;

impl Agent {
    /// Fulfils the orders the server holds for this task, page by page, each page in batches.
    /// The next page is asked for while one is carried out, and a batch's results go to the
    /// server while the next batch is carried out; an empty page once every result is recorded
    /// ends the task. Each finished batch is written to the spool before anything else, so a restart
    /// resumes after the last finished order instead of carrying it out again (the server
    /// ignores results it already has).
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
        let run = Run {
            task,
            connection,
            loaded,
            orders_dir,
            cancel: &cancel,
            progress: &progress,
            log: &log,
        };
        let mut spool = Spool::open(&self.config.work, self.vault.clone(), task.id)?;
        let mut tally = Tally::default();
        let mut handed: std::collections::HashSet<String> = std::collections::HashSet::new();
        let mut next: Pending<TaskOrders<Order>> = None;
        let mut reporting: Pending<()> = None;
        let ended = loop {
            let asked = std::time::Instant::now();
            let TaskOrders::<Order> { orders, remaining } = match next.take() {
                Some(page) => page.await??,
                None => self.clone().page(task.clone(), reporting.is_some()).await?,
            };
            if orders.is_empty() {
                // Orders the results on their way release may be ready once they are recorded.
                match reporting.take() {
                    Some(r) => {
                        r.await??;
                        spool.reported()?;
                        continue;
                    }
                    None => break None,
                }
            }
            if let Some(left) = remaining {
                progress
                    .1
                    .store((orders.len() as u64) + left, Ordering::Relaxed);
            }
            // A page of orders already carried out in this run would come back for ever.
            if orders.iter().all(|o| !handed.insert(o.id.clone())) && spool.finished.is_empty() {
                bail!("the server gives orders this run already carried out and reported");
            }
            let fetched = asked.elapsed();
            next = Some(tokio::spawn(self.clone().page(task.clone(), true)));
            let page = orders.len();
            let known: std::collections::HashSet<String> =
                spool.finished.iter().map(|r| r.id.clone()).collect();
            let todo: Vec<Order> = orders
                .into_iter()
                .filter(|o| !known.contains(&o.id))
                .collect();
            if let Some(stop) = self
                .carry_out(&run, &todo, &mut spool, &mut tally, &mut reporting)
                .await?
            {
                break Some(stop);
            }
            // Results a restarted agent found in its spool, for orders it had all carried out.
            if !spool.finished.is_empty() {
                self.hand_over(&run, &mut spool, &mut tally, &mut reporting)
                    .await?;
            }
            tracing::info!(
                orders = page,
                "a page of orders: handed out in {fetched:.0?}, carried out in {:.0?}",
                asked.elapsed() - fetched
            );
        };
        if let Some(page) = next.take() {
            page.abort();
        }
        let Some(outcome) = ended else {
            spool.remove();
            return Ok(TaskOutcome::Succeeded {
                result: serde_json::json!({
                    "orders": tally.orders,
                    "done": tally.done,
                    "failed": tally.failed,
                    "retry_later": tally.retry_later,
                }),
            });
        };
        // What was carried out is reported however the task ends, while the server takes it (a
        // cancelled task's results may be refused: those orders are then carried out again).
        let mut recorded = match reporting.take() {
            Some(r) => r.await?,
            None => Ok(()),
        };
        if recorded.is_ok() && !spool.finished.is_empty() {
            recorded = self.send_results(task, &spool.finished).await;
        }
        match recorded {
            Ok(()) => spool.remove(),
            Err(e) => tracing::warn!("results not recorded: {e:#}"),
        }
        Ok(outcome)
    }

    /// Carries out a page's orders batch by batch, each batch's results kept in the spool, then
    /// sent while the next batch is carried out; how the task ends, when it ends before the page
    /// does.
    async fn carry_out(
        self: &Arc<Self>,
        run: &Run<'_>,
        todo: &[Order],
        spool: &mut Spool,
        tally: &mut Tally,
        reporting: &mut Pending<()>,
    ) -> Result<Option<TaskOutcome>> {
        let size = self.config.batch_size.clamp(1, MAX_ORDERS_PER_BATCH) as usize;
        for batch in todo.chunks(size) {
            if run.cancel.is_cancelled() {
                return Ok(Some(TaskOutcome::Cancelled));
            }
            match self.fulfil_batch(run, batch).await? {
                Ok(results) => spool.finish(results)?,
                Err(ended) => return Ok(Some(ended)),
            };
            self.hand_over(run, spool, tally, reporting).await?;
        }
        Ok(None)
    }

    /// Sends the results carried out since the last ones, once those are recorded (one set on
    /// its way at a time, in order).
    async fn hand_over(
        self: &Arc<Self>,
        run: &Run<'_>,
        spool: &mut Spool,
        tally: &mut Tally,
        reporting: &mut Pending<()>,
    ) -> Result<()> {
        if let Some(r) = reporting.take() {
            r.await??;
            spool.reported()?;
        }
        let results = spool.report()?;
        tally.add(&results);
        run.progress.0.store(tally.orders, Ordering::Relaxed);
        *reporting = Some(tokio::spawn(self.clone().report(run.task.clone(), results)));
        Ok(())
    }

    /// The task's next page of orders (see the server's `task_orders` for `fresh`).
    async fn page(self: Arc<Self>, task: Assignment, fresh: bool) -> Result<TaskOrders<Order>> {
        let fresh = if fresh { "&fresh=true" } else { "" };
        self.call_retrying(
            Method::GET,
            &format!(
                "/api/v1/agent/tasks/{}/orders?fence={}{fresh}",
                task.id, task.fence
            ),
            None::<&()>,
        )
        .await
    }

    /// Sends a batch's results, timed.
    async fn report(self: Arc<Self>, task: Assignment, results: Vec<OrderResult>) -> Result<()> {
        let started = std::time::Instant::now();
        self.send_results(&task, &results).await?;
        tracing::info!(
            orders = results.len(),
            "results recorded in {:.0?}",
            started.elapsed()
        );
        Ok(())
    }
}

/// Results carried out and not yet recorded by the server, kept on disk (a restart resumes with
/// them): those carried out since the last ones sent, and those on their way to the server.
struct Spool {
    file: std::path::PathBuf,
    /// Seals the file: results name accounts and carry connectors' messages.
    vault: Arc<idgard_vault::Keyring>,
    /// Carried out, not yet sent.
    finished: Vec<OrderResult>,
    /// Sent, not yet acknowledged.
    sending: Vec<OrderResult>,
}

impl Spool {
    fn open(work: &Path, vault: Arc<idgard_vault::Keyring>, task: i64) -> Result<Spool> {
        let file = work.join("spool").join(format!("orders-{task}.json"));
        let finished: Vec<OrderResult> = match idgard_vault::read_file(&vault, &file) {
            Ok(b) => serde_json::from_slice(&b).unwrap_or_default(),
            Err(idgard_vault::Error::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Vec::new()
            }
            Err(e) => {
                tracing::warn!(
                    "results of an interrupted fulfilment are lost ({e}): its orders run again"
                );
                Vec::new()
            }
        };
        if !finished.is_empty() {
            tracing::info!(
                finished = finished.len(),
                "resuming a fulfilment: orders already carried out are not run again"
            );
        }
        Ok(Spool {
            file,
            vault,
            finished,
            sending: Vec::new(),
        })
    }

    fn write(&self) -> Result<()> {
        let all: Vec<&OrderResult> = self.sending.iter().chain(&self.finished).collect();
        Ok(idgard_vault::write_file(
            &self.vault,
            &self.file,
            &serde_json::to_vec(&all)?,
        )?)
    }

    /// A batch carried out.
    fn finish(&mut self, results: Vec<OrderResult>) -> Result<()> {
        self.finished.extend(results);
        self.write()
    }

    /// The results carried out since the last ones sent, now on their way.
    fn report(&mut self) -> Result<Vec<OrderResult>> {
        self.sending = std::mem::take(&mut self.finished);
        Ok(self.sending.clone())
    }

    /// The server has the results on their way.
    fn reported(&mut self) -> Result<()> {
        self.sending.clear();
        self.write()
    }

    fn remove(&self) {
        let _ = std::fs::remove_file(&self.file);
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
    async fn fulfil_batch(
        self: &Arc<Self>,
        run: &Run<'_>,
        batch: &[Order],
    ) -> Result<Result<Vec<OrderResult>, TaskOutcome>> {
        let observer = TaskObserver::new(
            None,
            run.cancel.clone(),
            run.progress.clone(),
            run.log.clone(),
        );
        let outcome = self
            .run_connector(
                (run.loaded.clone(), run.connection.clone()),
                None,
                run.orders_dir.to_owned(),
                Request::Fulfill(batch.to_vec()),
                observer,
                run.cancel,
            )
            .await?;
        let outcome = match outcome {
            Err(_) if run.cancel.is_cancelled() => return Ok(Err(TaskOutcome::Cancelled)),
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

/// What one fulfil task runs its batches with.
struct Run<'a> {
    task: &'a Assignment,
    connection: &'a Arc<Connection>,
    loaded: &'a Arc<Loaded>,
    orders_dir: &'a Path,
    cancel: &'a Cancel,
    progress: &'a Arc<(AtomicU64, AtomicU64)>,
    log: &'a mpsc::Sender<LogLine>,
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
