//! `idgard-agent run`: the agent's service — polling, heartbeats, log shipping, cancellation
//! and shutdown. Running an operation, fulfilment, the spool and delivery have rooms of their
//! own (`execute`, `fulfil`, `spool`, `delivery`).
//!
//! The agent opens no listening socket. It polls the server for tasks, runs each through the
//! connector host, streams logs and progress, uploads exports, and completes tasks. What must
//! survive a restart (a finished task's outcome, its upload) is written to `work/spool/` first.

use crate::client::{CallError, Client, Credentials, backoff};
use crate::config::AgentConfig;
use crate::observer::LOG_QUEUE;
use crate::registry::{Registry, reload, watch};
use crate::stop::Signals;
use anyhow::{Context, Result};
use idgard_host::{Cancel, Runtime};
use idgard_protocol::{
    Assignment, ErrorCode, Heartbeat, HeartbeatAnswer, Hello, LogChunk, LogLine, PollAnswer,
    PollRequest, RunRequest, TaskOutcome, TaskView, Timings,
};
use reqwest::Method;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::Instrument;

pub(crate) struct Agent {
    pub(crate) client: Client,
    pub(crate) config: AgentConfig,
    pub(crate) runtime: Arc<Runtime>,
    pub(crate) registry: RwLock<Registry>,
    pub(crate) timings: Mutex<Timings>,
    pub(crate) running: Mutex<HashMap<i64, Cancel>>,
    pub(crate) finished: tokio::sync::Notify,
    /// Set once the agent stops: a task cancelled from now on was stopped by the shutdown.
    pub(crate) stopping: AtomicBool,
    /// Checks runs launched from the web UI; `None` without a pinned server key (all refused).
    pub(crate) launches: Option<crate::launch::Launches>,
    /// What the agent measured of its runs, sent with its polls.
    pub(crate) figures: crate::figures::Figures,
    /// Seals what the agent keeps on disk (exports, the spool, stored secrets).
    pub(crate) vault: Arc<idgard_vault::Keyring>,
    /// The publishers whose packages load (`publishers/`).
    pub(crate) trust: Arc<idgard_signing::Trust>,
    /// Packages the server delivered.
    pub(crate) packages: crate::packages::Delivered,
}

/// Runs the agent until SIGTERM or Ctrl-C.
pub async fn run(config: AgentConfig) -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    crate::housekeeping::raise_descriptor_limit(config.max_tasks);
    let vault = crate::sealed::keyring(&config)?;
    let mut creds = Credentials::load(&vault, &config.credentials_path())?;
    for dir in ["collect", "orders", "state", "spool", "cache"] {
        std::fs::create_dir_all(config.work.join(dir))?;
    }
    crate::housekeeping::forget_order_files(&config.work.join("orders"));
    let trust = crate::packages::trust(&config)?;
    let packages = crate::packages::Delivered::load(&config.work, &trust);
    let runtime = Arc::new(
        Runtime::new(idgard_host::RuntimeOptions {
            cache_dir: Some(config.work.join("cache")),
            max_concurrent_runs: config.max_tasks.max(2),
            secret_store: Some(Arc::new(crate::sealed::StoredSecrets {
                ring: vault.clone(),
                dir: config.secrets.clone(),
            })),
            trust: Some(trust.clone()),
            ..Default::default()
        })
        .context("cannot start the connector runtime")?,
    );
    let registry = {
        let runtime = runtime.clone();
        let config = config.clone();
        let delivered = packages.dirs();
        tokio::task::spawn_blocking(move || {
            reload(&runtime, &config, &Registry::default(), &delivered)
        })
        .await?
    };
    tracing::info!(
        agent = %creds.agent_name,
        connections = registry.connections.len(),
        "agent starting"
    );
    let client = Client::new(creds.clone(), config.tls_identity()?.as_ref())?;
    let launches =
        crate::launch::pinned_key(&client, &mut creds, &vault, &config.credentials_path())
            .await
            .and_then(|key| {
                crate::launch::Launches::new(&key, creds.agent_id, &config.launchable)
                    .inspect_err(|e| tracing::warn!("launches from the web UI are refused: {e:#}"))
                    .ok()
            });
    tracing::info!(
        launchable = ?config.launchable,
        "jobs people may launch from the web UI through this agent"
    );
    let agent = Arc::new(Agent {
        client,
        config,
        runtime,
        registry: RwLock::new(registry),
        timings: Mutex::new(Timings {
            chunk_bytes: 1 << 20,
            lease_ms: 60_000,
            heartbeat_ms: 15_000,
            poll_wait_ms: 25_000,
            ack_ms: 15_000,
        }),
        running: Mutex::new(HashMap::new()),
        finished: tokio::sync::Notify::new(),
        stopping: AtomicBool::new(false),
        launches,
        figures: Default::default(),
        vault,
        trust,
        packages,
    });

    agent.replay_spool().await;
    // Watch before the first hello: a file changed once the server lists the connections is
    // never missed.
    watch(agent.clone())?;
    agent.say_hello(true).await;

    let mut signals = Signals::new()?;
    let mut failures = 0u32;
    loop {
        let free = agent.config.max_tasks as usize - agent.running.lock().expect("running").len();
        if free == 0 {
            tokio::select! {
                _ = agent.finished.notified() => continue,
                _ = signals.recv() => break,
            }
        }
        let wait = agent.timings.lock().expect("timings").poll_wait_ms;
        let figures = agent.figures.unsent();
        let request = PollRequest {
            capacity: free as u32,
            wait_ms: Some(wait),
            figures: figures.as_ref().map(|(_, f)| f.clone()),
            packages: agent.packages.tag(),
        };
        let poll =
            agent
                .client
                .call::<_, PollAnswer>(Method::POST, "/api/v1/agent/poll", Some(&request));
        let answer = tokio::select! {
            a = poll => a,
            _ = signals.recv() => break,
        };
        match answer {
            Ok(answer) => {
                if let Some((version, _)) = figures {
                    agent.figures.sent(version);
                }
                if failures > 0 {
                    tracing::info!("server reachable again");
                    agent.say_hello(false).await;
                }
                failures = 0;
                for id in answer.cancel {
                    if let Some(flag) = agent.running.lock().expect("running").get(&id) {
                        tracing::info!(task = id, "cancelled by the server");
                        flag.cancel();
                    }
                }
                if let Some(offers) = answer.packages
                    && agent.packages.note(&offers.tag)
                {
                    tokio::spawn(agent.clone().take_offers(offers));
                }
                for offer in answer.launches {
                    let agent = agent.clone();
                    tokio::spawn(async move { agent.answer_launch(offer).await });
                }
                for task in answer.tasks {
                    let flag = Cancel::new();
                    agent
                        .running
                        .lock()
                        .expect("running")
                        .insert(task.id, flag.clone());
                    let agent = agent.clone();
                    tokio::spawn(async move {
                        let id = task.id;
                        let span = tracing::info_span!(
                            "task",
                            id = task.id,
                            op = task.operation.as_str(),
                            connection = %task.connection
                        );
                        agent.clone().run_task(task, flag).instrument(span).await;
                        agent.running.lock().expect("running").remove(&id);
                        agent.finished.notify_one();
                    });
                }
            }
            Err(e) => {
                failures += 1;
                let delay = match &e {
                    CallError::Later { retry_after, .. } => backoff(failures, *retry_after),
                    CallError::Refused { .. } | CallError::Local(_) => {
                        backoff(failures.max(6), None)
                    }
                };
                tracing::warn!("poll failed ({e}); trying again in {delay:.1?}");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = signals.recv() => break,
                }
            }
        }
    }
    agent.stop_tasks(&mut signals).await;
    tracing::info!("agent stopped");
    Ok(())
}

/// A line on the agent's log at each heartbeat while a task runs: what it counted so far, in
/// its unit, or, for a task the server runs, how long it has been running. Returns the count.
fn log_progress(
    task: &Assignment,
    progress: &(AtomicU64, AtomicU64),
    logged: u64,
    started: std::time::Instant,
) -> u64 {
    let op = task.operation.as_str();
    let elapsed = started.elapsed().as_secs();
    if task.operation.on_server() {
        tracing::info!(
            "{op} {}: running on the server for {elapsed} s",
            task.connection
        );
        return logged;
    }
    let done = progress.0.load(Ordering::Relaxed);
    let total = progress.1.load(Ordering::Relaxed);
    let unit = task.operation.unit();
    if done != logged {
        match total {
            u64::MAX | 0 => {
                tracing::info!("{op} {}: {done} {unit} after {elapsed} s", task.connection)
            }
            t => tracing::info!(
                "{op} {}: {done}/{t} {unit} ({} %) after {elapsed} s",
                task.connection,
                done * 100 / t
            ),
        }
    }
    done
}

/// Sends a task's log lines up in numbered chunks.
pub(crate) struct LogShipper {
    pub(crate) rx: mpsc::Receiver<LogLine>,
    pub(crate) seq: u32,
}

impl Agent {
    pub(crate) async fn say_hello(&self, restarted: bool) {
        let hello = {
            let registry = self.registry.read().expect("registry");
            Hello {
                version: env!("CARGO_PKG_VERSION").into(),
                connections: registry.reports(),
                restarted,
                refused: registry.refused.clone(),
                wants: registry.wants.iter().cloned().collect(),
                refused_packages: self.packages.refused(),
            }
        };
        let mut failures = 0;
        loop {
            match self
                .client
                .call::<_, Timings>(Method::POST, "/api/v1/agent/hello", Some(&hello))
                .await
            {
                Ok(t) => {
                    *self.timings.lock().expect("timings") = t;
                    return;
                }
                // Refused for good (a connection another agent serves, ...): asking again
                // changes nothing until someone fixes the files.
                Err(e)
                    if e.code().is_some_and(|c| {
                        !c.is_transient() && c != ErrorCode::Unauthorized && c != ErrorCode::Unknown
                    }) =>
                {
                    tracing::error!("the server refuses this agent's report: {e}");
                    return;
                }
                Err(e) => {
                    failures += 1;
                    let delay = backoff(failures, None);
                    tracing::warn!("cannot report to the server ({e}); again in {delay:.1?}");
                    if !restarted && failures > 3 {
                        return;
                    }
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    pub(crate) async fn run_task(self: Arc<Self>, task: Assignment, cancel: Cancel) {
        tracing::info!(attempt = task.attempt, "task received");
        let lost = Arc::new(AtomicBool::new(false));
        let progress = Arc::new((AtomicU64::new(0), AtomicU64::new(u64::MAX)));
        // The first heartbeat acknowledges the claim.
        match self.heartbeat(&task, &progress).await {
            Ok(h) => {
                if h.cancel {
                    cancel.cancel();
                }
            }
            Err(e) if lease_gone(&e) => {
                tracing::warn!("the server no longer gives us this task ({e})");
                return;
            }
            Err(e) => tracing::warn!("acknowledgement not sent ({e}); going on"),
        }
        let beats = {
            let agent = self.clone();
            let task = task.clone();
            let cancel = cancel.clone();
            let lost = lost.clone();
            let progress = progress.clone();
            tokio::spawn(async move {
                let started = std::time::Instant::now();
                let mut logged = 0;
                loop {
                    let every = agent.timings.lock().expect("timings").heartbeat_ms;
                    tokio::time::sleep(Duration::from_millis(every)).await;
                    logged = log_progress(&task, &progress, logged, started);
                    match agent.heartbeat(&task, &progress).await {
                        Ok(h) if h.cancel => cancel.cancel(),
                        Ok(_) => {}
                        Err(e) if lease_gone(&e) => {
                            tracing::warn!(task = task.id, "lease lost ({e}): stopping");
                            lost.store(true, Ordering::SeqCst);
                            cancel.cancel();
                            return;
                        }
                        Err(e) => tracing::warn!(task = task.id, "heartbeat not sent ({e})"),
                    }
                }
            })
        };
        if task.operation.on_server() {
            self.run_on_server(&task, &lost, &cancel).await;
            beats.abort();
            return;
        }
        let (log_tx, log_rx) = mpsc::channel(LOG_QUEUE);
        let mut shipper = LogShipper { rx: log_rx, seq: 0 };
        // The shipper sends the log every half second while the task runs, and stops as soon
        // as the task ends (the last lines go up below, before the completion).
        let (ended_tx, mut ended) = tokio::sync::oneshot::channel::<()>();
        let shipping = {
            let agent = self.clone();
            let task = task.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                        _ = &mut ended => return shipper,
                    }
                    if !agent.ship_logs(&task, &mut shipper, false).await {
                        return shipper;
                    }
                }
            })
        };
        let mut spooled = self
            .execute(&task, cancel.clone(), progress.clone(), log_tx)
            .await;
        let _ = ended_tx.send(());
        beats.abort();
        if lost.load(Ordering::SeqCst) {
            self.forget(&spooled);
            return;
        }
        if cancel.is_cancelled() && self.stopping.load(Ordering::SeqCst) {
            tracing::info!(
                "stopped by the agent's shutdown; not reported, the server will hand it out again"
            );
            self.forget(&spooled);
            return;
        }
        if cancel.is_cancelled() {
            spooled.outcome = Some(TaskOutcome::Cancelled);
        }
        // Logs go up before the completion, so the final status never overtakes them.
        if let Ok(mut shipper) = shipping.await {
            self.ship_logs(&task, &mut shipper, true).await;
        }
        if let Err(e) = self.save(&spooled) {
            tracing::error!("cannot write the spool: {e:#}");
        }
        self.deliver(spooled).await;
    }

    /// A server-side task: the server does the work and records its end; this agent holds the
    /// lease (heartbeats) and asks again if the answer is lost. Cancelled (the job was, or the
    /// agent stops), it stops waiting: the server ends or hands out the task itself.
    pub(crate) async fn run_on_server(
        &self,
        task: &Assignment,
        lost: &AtomicBool,
        cancel: &Cancel,
    ) {
        let mut failures = 0;
        let path = format!("/api/v1/agent/tasks/{}/run", task.id);
        let request = RunRequest { fence: task.fence };
        loop {
            let call = self
                .client
                .call::<_, TaskView>(Method::POST, &path, Some(&request));
            let answer = tokio::select! {
                a = call => a,
                _ = cancel.cancelled() => {
                    tracing::info!(
                        "no longer waiting for {} on the server (cancelled or stopping)",
                        task.operation.as_str()
                    );
                    return;
                }
            };
            match answer {
                Ok(view) => {
                    match &view.error {
                        Some(error) => tracing::warn!(
                            state = view.state.as_str(),
                            %error,
                            "{} ended on the server",
                            task.operation.as_str()
                        ),
                        None => tracing::info!(
                            state = view.state.as_str(),
                            "{} ended on the server",
                            task.operation.as_str()
                        ),
                    }
                    return;
                }
                Err(e @ CallError::Refused { .. }) => {
                    tracing::warn!("the server refused to run the task: {e}");
                    return;
                }
                Err(e) => {
                    if lost.load(Ordering::SeqCst) {
                        return;
                    }
                    failures += 1;
                    let delay = match &e {
                        CallError::Later { retry_after, .. } => backoff(failures, *retry_after),
                        CallError::Refused { .. } | CallError::Local(_) => backoff(failures, None),
                    };
                    tracing::warn!(
                        "no answer to the run request ({e}); asking again in {delay:.1?}"
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = cancel.cancelled() => return,
                    }
                }
            }
        }
    }

    pub(crate) async fn heartbeat(
        &self,
        task: &Assignment,
        progress: &(AtomicU64, AtomicU64),
    ) -> Result<HeartbeatAnswer, CallError> {
        let done = progress.0.load(Ordering::Relaxed);
        let total = progress.1.load(Ordering::Relaxed);
        self.client
            .call(
                Method::POST,
                &format!("/api/v1/agent/tasks/{}/heartbeat", task.id),
                Some(&Heartbeat {
                    fence: task.fence,
                    done: (done > 0).then_some(done),
                    total: (total != u64::MAX).then_some(total),
                }),
            )
            .await
    }

    /// Sends buffered log lines; `last` drains the channel. False once the channel is closed.
    pub(crate) async fn ship_logs(
        &self,
        task: &Assignment,
        s: &mut LogShipper,
        last: bool,
    ) -> bool {
        let mut open = true;
        loop {
            let mut lines = Vec::new();
            while lines.len() < 1000 {
                match s.rx.try_recv() {
                    Ok(l) => lines.push(l),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
            if lines.is_empty() {
                return open;
            }
            let chunk = LogChunk {
                fence: task.fence,
                seq: s.seq,
                lines,
            };
            for attempt in 0..5 {
                match self
                    .client
                    .call::<_, ()>(
                        Method::POST,
                        &format!("/api/v1/agent/tasks/{}/logs", task.id),
                        Some(&chunk),
                    )
                    .await
                {
                    Ok(()) => break,
                    Err(e @ CallError::Refused { .. }) => {
                        tracing::warn!("log chunk refused: {e}");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!("log chunk not sent ({e})");
                        tokio::time::sleep(backoff(attempt, None)).await;
                    }
                }
            }
            s.seq += 1;
            if !last && open {
                return true;
            }
        }
    }
}

/// Whether the server says this agent no longer holds a task (any other refusal of a
/// heartbeat is the agent's own fault and is logged, not a reason to stop).
fn lease_gone(e: &CallError) -> bool {
    matches!(
        e.code(),
        Some(ErrorCode::StaleLease | ErrorCode::NotFound | ErrorCode::Conflict)
    )
}
