//! `idgard-agent enrol` and `idgard-agent run`: the agent's service.
//!
//! The agent opens no listening socket. It polls the server for tasks, runs each through the
//! connector host, streams logs and progress, uploads exports, and completes tasks. What must
//! survive a restart (a finished task's outcome, its upload) is written to `work/spool/` first.

use crate::client::{CallError, Client, Credentials, backoff};
use crate::observer::{LOG_QUEUE, TaskObserver};
use crate::overlap;
use anyhow::{Context, Result, bail};
use idgard_host::model::{Cursor, ErrorKind, Order, OrderOutcome, OrderResult};
use idgard_host::{Cancel, Connection, Loaded, Outcome, Request, RunFolders, Runtime};
use idgard_protocol::{
    Assignment, Completion, ConnectionReport, EnrolAnswer, EnrolRequest, Heartbeat,
    HeartbeatAnswer, Hello, LogChunk, LogLine, NewUpload, Operation, OrderResults,
    OrderResultsAnswer, PollAnswer, PollRequest, RunRequest, TaskOrders, TaskOutcome, TaskView,
    Timings, UploadView,
};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;
use tracing::Instrument;

/// The agent's configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// The work folder: credentials, collect/, orders/, state/, spool/, cache/.
    #[serde(default = "default_work")]
    pub work: PathBuf,
    /// Connector packages, one folder per connector (named after it).
    #[serde(default = "default_runtime")]
    pub runtime: PathBuf,
    /// Connection files (`*.toml`), one per managed system.
    #[serde(default = "default_connections")]
    pub connections: PathBuf,
    /// Tasks run at once.
    #[serde(default = "default_max_tasks")]
    pub max_tasks: u32,
    /// Entries per batch asked of connectors.
    #[serde(default = "default_batch")]
    pub batch_size: u32,
    /// On SIGTERM, how long running tasks may go on before they are stopped. A stopped task is
    /// not reported: the server hands it out again once its lease lapses.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace_secs: u64,
}

fn default_work() -> PathBuf {
    "work".into()
}
fn default_runtime() -> PathBuf {
    "runtime".into()
}
fn default_connections() -> PathBuf {
    "connections".into()
}
fn default_max_tasks() -> u32 {
    2
}
fn default_batch() -> u32 {
    1024
}
fn default_shutdown_grace() -> u64 {
    10
}

impl AgentConfig {
    /// Reads the file; relative folders are taken from the file's folder.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut c: AgentConfig =
            toml::from_str(&text).with_context(|| format!("{}: invalid", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [&mut c.work, &mut c.runtime, &mut c.connections] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if c.max_tasks == 0 || c.max_tasks > 64 {
            bail!("{}: max_tasks must be 1 to 64", path.display());
        }
        Ok(c)
    }

    fn credentials_path(&self) -> PathBuf {
        self.work.join("credentials.json")
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Enrols: trades the one-time token for credentials and stores them with the pinned
/// certificate fingerprint.
pub async fn enrol(
    config: &AgentConfig,
    server: &str,
    token: &str,
    fingerprint: Option<&str>,
) -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = crate::client::http_client(server, fingerprint)?;
    let url = format!("{}/api/v1/enrol", server.trim_end_matches('/'));
    let response = http
        .post(&url)
        .json(&EnrolRequest {
            token: token.to_owned(),
        })
        .send()
        .await
        .with_context(|| format!("cannot reach {server}"))?;
    if !response.status().is_success() {
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<idgard_protocol::ErrorBody>(&text)
            .map(|b| b.error.message)
            .unwrap_or(text);
        bail!("enrolment refused ({status}): {message}");
    }
    let answer: EnrolAnswer = response.json().await?;
    let creds = Credentials {
        server: server.trim_end_matches('/').to_owned(),
        fingerprint: fingerprint.map(|f| f.replace(':', "").to_ascii_lowercase()),
        agent_id: answer.agent_id,
        agent_name: answer.agent_name.clone(),
        client_secret: answer.client_secret,
    };
    let path = config.credentials_path();
    write_private(&path, &serde_json::to_vec_pretty(&creds)?)?;
    println!(
        "enrolled as agent `{}`; credentials in {} (readable by this user only)",
        answer.agent_name,
        path.display()
    );
    Ok(())
}

/// The connections this agent serves now, each with its loaded connector.
#[derive(Default)]
struct Registry {
    connections: BTreeMap<String, (Arc<Connection>, Arc<Loaded>)>,
    /// Package folder → (its newest modification time, the loaded connector).
    packages: HashMap<PathBuf, (SystemTime, Arc<Loaded>)>,
}

impl Registry {
    fn reports(&self) -> Vec<ConnectionReport> {
        self.connections
            .iter()
            .map(|(name, (_, l))| ConnectionReport {
                name: name.clone(),
                connector: l.manifest.name.clone(),
                version: l.info.version.clone(),
                operations: l.manifest.operations.clone(),
            })
            .collect()
    }
}

fn newest_mtime(dir: &Path) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if let Ok(m) = e.metadata().and_then(|m| m.modified()) {
                newest = newest.max(m);
            }
        }
    }
    newest
}

/// Loads every connection file; a broken one is logged and its previous version kept.
fn reload(runtime: &Runtime, config: &AgentConfig, old: &Registry) -> Registry {
    let mut next = Registry::default();
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&config.connections) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect(),
        Err(e) => {
            tracing::error!(
                "cannot read the connections folder {}: {e}",
                config.connections.display()
            );
            return Registry {
                connections: old.connections.clone(),
                packages: old.packages.clone(),
            };
        }
    };
    files.sort();
    // A package that failed to load fails once per reload, not once per connection using it.
    let mut broken: HashMap<PathBuf, String> = HashMap::new();
    let agent_folders = [
        ("work", config.work.as_path()),
        ("runtime", config.runtime.as_path()),
        ("connections", config.connections.as_path()),
    ];
    for file in files {
        let stem = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let loaded = (|| -> Result<(Arc<Connection>, Arc<Loaded>)> {
            let connection = Connection::load(&file)?;
            let connector = connection.connector.clone().with_context(|| {
                "say which connector serves it: `connector = \"<name>\"` (a folder of the runtime)"
            })?;
            overlap::check(
                &connection,
                next.connections.values().map(|(c, _)| c.as_ref()),
                &agent_folders,
            )
            .map_err(|e| anyhow::anyhow!("grants: {e}"))?;
            let dir = config.runtime.join(&connector);
            let mtime = newest_mtime(&dir);
            let loaded = match old.packages.get(&dir).or(next.packages.get(&dir)) {
                Some((t, l)) if *t == mtime => l.clone(),
                _ => {
                    if let Some(e) = broken.get(&dir) {
                        bail!("{e}");
                    }
                    let l = runtime.load(&dir).map_err(|e| {
                        let e = format!("connector package {}: {e}", dir.display());
                        broken.insert(dir.clone(), e.clone());
                        anyhow::anyhow!(e)
                    })?;
                    tracing::info!(connector = %l.manifest.name, version = %l.info.version, "connector loaded");
                    Arc::new(l)
                }
            };
            next.packages.insert(dir, (mtime, loaded.clone()));
            // Settings that do not fit the connector are refused now, not at the first task.
            loaded
                .manifest
                .resolve_settings(&connection.settings)
                .map_err(|e| anyhow::anyhow!("settings: {e}"))?;
            Ok((Arc::new(connection), loaded))
        })();
        match loaded {
            Ok((c, l)) => {
                next.connections.insert(c.name.clone(), (c, l));
            }
            Err(e) => {
                tracing::error!(file = %file.display(), "connection refused: {e:#}");
                if let Some((name, prev)) =
                    old.connections.iter().find(|(_, (c, _))| c.name == stem)
                {
                    tracing::warn!(connection = %name, "keeping its previous version");
                    next.connections.insert(name.clone(), prev.clone());
                }
            }
        }
    }
    next
}

/// What a finished task leaves in the spool until the server has it.
#[derive(Debug, Serialize, Deserialize)]
struct Spooled {
    task: i64,
    fence: i64,
    connection: String,
    /// The export's entries file and its checksum.
    upload: Option<SpooledUpload>,
    outcome: Option<TaskOutcome>,
    /// The cursor to save once the server accepted the export.
    cursor: Option<Cursor>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SpooledUpload {
    path: PathBuf,
    size: u64,
    sha256: String,
}

struct Agent {
    client: Client,
    config: AgentConfig,
    runtime: Arc<Runtime>,
    registry: RwLock<Registry>,
    timings: Mutex<Timings>,
    running: Mutex<HashMap<i64, Cancel>>,
    finished: tokio::sync::Notify,
    /// Set once the agent stops: a task cancelled from now on was stopped by the shutdown.
    stopping: AtomicBool,
}

/// Raises the open-descriptor limit to its hard maximum, and says when concurrent runs could
/// take all of it: each run may hold its connection's `max_handles`, and the agent needs room
/// of its own for connections to the server, spool files and the compiled cache.
fn raise_descriptor_limit(max_tasks: u32) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.maximum.is_some_and(|max| limit.current < Some(max)) {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::warn!("cannot raise the open-file limit: {e}");
        }
    }
    let current = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    let needed = u64::from(max_tasks) * u64::from(idgard_host::Limits::default().max_handles) + 512;
    if current < needed {
        tracing::warn!(
            "the open-file limit is {current}: {max_tasks} concurrent runs with the default \
             max_handles and the agent's own files need about {needed}; raise it (LimitNOFILE) \
             or lower max_tasks"
        );
    }
}

/// Removes order files earlier versions of the agent left in `work/orders/<connection>/`: orders
/// now reach a connector only as the call's argument, and those files could hold passwords.
fn forget_order_files(orders: &Path) {
    let Ok(connections) = std::fs::read_dir(orders) else {
        return;
    };
    for file in connections
        .flatten()
        .filter_map(|c| std::fs::read_dir(c.path()).ok())
        .flatten()
        .flatten()
    {
        let name = file.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("task-")
            && name.ends_with(".json")
            && let Err(e) = std::fs::remove_file(file.path())
        {
            tracing::warn!(file = %file.path().display(), "cannot remove an old order file: {e}");
        }
    }
}

/// Runs the agent until SIGTERM or Ctrl-C.
pub async fn run(config: AgentConfig) -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    raise_descriptor_limit(config.max_tasks);
    let creds = Credentials::load(&config.credentials_path())?;
    for dir in ["collect", "orders", "state", "spool", "cache"] {
        std::fs::create_dir_all(config.work.join(dir))?;
    }
    forget_order_files(&config.work.join("orders"));
    let runtime = Arc::new(
        Runtime::new(idgard_host::RuntimeOptions {
            cache_dir: Some(config.work.join("cache")),
            max_concurrent_runs: config.max_tasks.max(2),
            ..Default::default()
        })
        .context("cannot start the connector runtime")?,
    );
    let registry = {
        let runtime = runtime.clone();
        let config = config.clone();
        tokio::task::spawn_blocking(move || reload(&runtime, &config, &Registry::default())).await?
    };
    tracing::info!(
        agent = %creds.agent_name,
        connections = registry.connections.len(),
        "agent starting"
    );
    let agent = Arc::new(Agent {
        client: Client::new(creds)?,
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
    });

    agent.replay_spool().await;
    agent.say_hello(true).await;
    watch(agent.clone())?;

    let stop = shutdown_signal();
    tokio::pin!(stop);
    let mut failures = 0u32;
    loop {
        let free = agent.config.max_tasks as usize - agent.running.lock().expect("running").len();
        if free == 0 {
            tokio::select! {
                _ = agent.finished.notified() => continue,
                _ = &mut stop => break,
            }
        }
        let wait = agent.timings.lock().expect("timings").poll_wait_ms;
        let request = PollRequest {
            capacity: free as u32,
            wait_ms: Some(wait),
        };
        let poll =
            agent
                .client
                .call::<_, PollAnswer>(Method::POST, "/api/v1/agent/poll", Some(&request));
        let answer = tokio::select! {
            a = poll => a,
            _ = &mut stop => break,
        };
        match answer {
            Ok(answer) => {
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
                    CallError::Refused { .. } => backoff(failures.max(6), None),
                };
                tracing::warn!("poll failed ({e}); trying again in {delay:.1?}");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = &mut stop => break,
                }
            }
        }
    }
    agent.stop_tasks().await;
    tracing::info!("agent stopped");
    Ok(())
}

impl Agent {
    /// Lets running tasks finish within the shutdown grace, then cancels what still runs; the
    /// host ends a cancelled run at once, whatever its connector is doing.
    async fn stop_tasks(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let held = self.running.lock().expect("running").len();
        if held == 0 {
            return;
        }
        let grace = Duration::from_secs(self.config.shutdown_grace_secs);
        tracing::info!("stopping: waiting up to {grace:?} for {held} running task(s) to finish");
        let all_done = async {
            while !self.running.lock().expect("running").is_empty() {
                self.finished.notified().await;
            }
        };
        if tokio::time::timeout(grace, all_done).await.is_ok() {
            return;
        }
        let left: Vec<Cancel> = self
            .running
            .lock()
            .expect("running")
            .values()
            .cloned()
            .collect();
        tracing::warn!(
            "stopping: {} task(s) still running after {grace:?}; stopping them (the server will hand them out again)",
            left.len()
        );
        for c in left {
            c.cancel();
        }
        while !self.running.lock().expect("running").is_empty() {
            self.finished.notified().await;
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Reloads connections and connectors when their files change, then tells the server.
fn watch(agent: Arc<Agent>) -> Result<()> {
    use notify::{RecursiveMode, Watcher};
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            let _ = tx.send(());
        }
    })?;
    for dir in [&agent.config.connections, &agent.config.runtime] {
        std::fs::create_dir_all(dir)?;
        watcher
            .watch(dir, RecursiveMode::Recursive)
            .with_context(|| format!("cannot watch {}", dir.display()))?;
    }
    tokio::spawn(async move {
        let _watcher = watcher;
        while rx.recv().await.is_some() {
            // Let a copy finish: wait for a quiet half second.
            loop {
                match tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            let before = agent.registry.read().expect("registry").reports();
            let next = {
                let agent = agent.clone();
                tokio::task::spawn_blocking(move || {
                    let old = agent.registry.read().expect("registry");
                    reload(&agent.runtime, &agent.config, &old)
                })
                .await
            };
            let Ok(next) = next else { continue };
            let after = next.reports();
            *agent.registry.write().expect("registry") = next;
            if before != after {
                tracing::info!(connections = after.len(), "connections reloaded");
                agent.say_hello(false).await;
            }
        }
    });
    Ok(())
}

/// Sends a task's log lines up in numbered chunks.
struct LogShipper {
    rx: mpsc::Receiver<LogLine>,
    seq: u32,
}

impl Agent {
    async fn say_hello(&self, restarted: bool) {
        let hello = Hello {
            version: env!("CARGO_PKG_VERSION").into(),
            connections: self.registry.read().expect("registry").reports(),
            restarted,
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

    fn spool_path(&self, task: i64, fence: i64) -> PathBuf {
        self.config
            .work
            .join("spool")
            .join(format!("task-{task}-{fence}.json"))
    }

    /// Sends what finished before a restart; drops what the server no longer wants.
    async fn replay_spool(&self) {
        let dir = self.config.work.join("spool");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        let mut kept = std::collections::HashSet::new();
        let mut outputs = Vec::new();
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().is_some_and(|x| x == "entries") {
                outputs.push(path);
                continue;
            }
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let spooled: Option<Spooled> = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            match spooled {
                Some(s) if s.outcome.is_some() => {
                    tracing::info!(task = s.task, "sending a result saved before the restart");
                    if let Some(u) = &s.upload {
                        kept.insert(u.path.clone());
                    }
                    self.deliver(s).await;
                }
                Some(s) => {
                    tracing::info!(
                        task = s.task,
                        "task was interrupted by the restart; the server sends it again"
                    );
                    self.forget(&s);
                }
                None => {
                    tracing::warn!(file = %path.display(), "unreadable spool file removed");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        // Output of runs the restart interrupted: their tasks run again.
        for path in outputs {
            if !kept.contains(&path) {
                let _ = std::fs::remove_file(&path);
            }
        }
    }

    fn forget(&self, s: &Spooled) {
        if let Some(u) = &s.upload {
            let _ = std::fs::remove_file(&u.path);
        }
        let _ = std::fs::remove_file(self.spool_path(s.task, s.fence));
    }

    fn save(&self, s: &Spooled) -> Result<()> {
        write_private(&self.spool_path(s.task, s.fence), &serde_json::to_vec(s)?)
    }

    async fn run_task(self: Arc<Self>, task: Assignment, cancel: Cancel) {
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
            Err(e) if e.status().is_some() => {
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
                loop {
                    let every = agent.timings.lock().expect("timings").heartbeat_ms;
                    tokio::time::sleep(Duration::from_millis(every)).await;
                    match agent.heartbeat(&task, &progress).await {
                        Ok(h) if h.cancel => cancel.cancel(),
                        Ok(_) => {}
                        Err(e) if e.status().is_some() => {
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
            self.run_on_server(&task, &lost).await;
            beats.abort();
            return;
        }
        let (log_tx, log_rx) = mpsc::channel(LOG_QUEUE);
        let mut shipper = LogShipper { rx: log_rx, seq: 0 };
        let shipping = {
            let agent = self.clone();
            let task = task.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    if !agent.ship_logs(&task, &mut shipper, false).await {
                        return shipper;
                    }
                }
            })
        };
        let mut spooled = self
            .execute(&task, cancel.clone(), progress.clone(), log_tx)
            .await;
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
            spooled.cursor = None;
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
    /// lease (heartbeats) and asks again if the answer is lost.
    async fn run_on_server(&self, task: &Assignment, lost: &AtomicBool) {
        let mut failures = 0;
        loop {
            let answer: Result<TaskView, CallError> = self
                .client
                .call(
                    Method::POST,
                    &format!("/api/v1/agent/tasks/{}/run", task.id),
                    Some(&RunRequest { fence: task.fence }),
                )
                .await;
            match answer {
                Ok(view) => {
                    tracing::info!(
                        state = view.state.as_str(),
                        error = view.error.as_deref().unwrap_or(""),
                        "{} ended on the server",
                        task.operation.as_str()
                    );
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
                        CallError::Refused { .. } => backoff(failures, None),
                    };
                    tracing::warn!(
                        "no answer to the run request ({e}); asking again in {delay:.1?}"
                    );
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    async fn heartbeat(
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
    async fn ship_logs(&self, task: &Assignment, s: &mut LogShipper, last: bool) -> bool {
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

    /// Runs the task's operation; the outcome is always set.
    async fn execute(
        self: &Arc<Self>,
        task: &Assignment,
        cancel: Cancel,
        progress: Arc<(AtomicU64, AtomicU64)>,
        log: mpsc::Sender<LogLine>,
    ) -> Spooled {
        let mut spooled = Spooled {
            task: task.id,
            fence: task.fence,
            connection: task.connection.clone(),
            upload: None,
            outcome: None,
            cursor: None,
        };
        let outcome = match self
            .clone()
            .execute_inner(task, &mut spooled, cancel, progress, log)
            .await
        {
            Ok(o) => o,
            Err(e) => TaskOutcome::Failed {
                error: format!("{e:#}"),
                retryable: false,
            },
        };
        spooled.outcome = Some(outcome);
        spooled
    }

    async fn execute_inner(
        self: Arc<Self>,
        task: &Assignment,
        spooled: &mut Spooled,
        cancel: Cancel,
        progress: Arc<(AtomicU64, AtomicU64)>,
        log: mpsc::Sender<LogLine>,
    ) -> Result<TaskOutcome> {
        if task.operation == Operation::Noop {
            return Ok(TaskOutcome::Succeeded {
                result: serde_json::Value::Null,
            });
        }
        let (connection, loaded) = self
            .registry
            .read()
            .expect("registry")
            .connections
            .get(&task.connection)
            .cloned()
            .with_context(|| {
                format!(
                    "this agent has no connection `{}` (see its connections folder)",
                    task.connection
                )
            })?;
        let work = &self.config.work;
        let collect = work.join("collect").join(&connection.name);
        let orders_dir = work.join("orders").join(&connection.name);
        let state = work.join("state").join(&connection.name);
        for d in [&collect, &orders_dir, &state] {
            std::fs::create_dir_all(d)?;
        }
        let cursor_file = state.join("cursor.json");
        let entries_path = self
            .config
            .work
            .join("spool")
            .join(format!("task-{}-{}.entries", task.id, task.fence));
        let request = match task.operation {
            Operation::Export => {
                let incremental = task
                    .args
                    .get("incremental")
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false);
                let cursor = if incremental {
                    let text = std::fs::read_to_string(&cursor_file).with_context(|| {
                        format!(
                            "no saved cursor for `{}`: run a full export first",
                            connection.name
                        )
                    })?;
                    Some(serde_json::from_str::<Cursor>(&text)?)
                } else {
                    None
                };
                Request::Export {
                    cursor,
                    batch_size: self.config.batch_size,
                }
            }
            Operation::Fulfill
                if task.args.get("server_orders").and_then(|v| v.as_bool()) == Some(true) =>
            {
                return self
                    .fulfil_from_server(
                        task,
                        &connection,
                        &loaded,
                        &orders_dir,
                        cancel,
                        progress,
                        log,
                    )
                    .await;
            }
            Operation::Fulfill => {
                let orders: Vec<Order> = serde_json::from_value(
                    task.args
                        .get("orders")
                        .cloned()
                        .context("a fulfil task carries `orders`")?,
                )
                .context("the task's orders are not valid")?;
                Request::Fulfill(orders)
            }
            Operation::TestConnection => Request::TestConnection,
            Operation::Schema => Request::Schema,
            Operation::Noop => unreachable!("answered above"),
            Operation::Synchronize | Operation::Provision => unreachable!("run on the server"),
        };
        let writer = if task.operation == Operation::Export {
            Some(
                std::fs::File::create(&entries_path)
                    .with_context(|| format!("cannot create {}", entries_path.display()))?,
            )
        } else {
            None
        };
        let observer = TaskObserver::new(writer, cancel.clone(), progress, log);
        let done = observer.done();
        let started = Instant::now();
        let outcome = self
            .run_connector(
                (loaded, connection),
                Some(collect),
                orders_dir,
                request,
                observer,
                &cancel,
            )
            .await?;
        let elapsed = started.elapsed();
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                let _ = std::fs::remove_file(&entries_path);
                if cancel.is_cancelled() {
                    return Ok(TaskOutcome::Cancelled);
                }
                return Ok(TaskOutcome::Failed {
                    error: e.to_string(),
                    retryable: false,
                });
            }
        };
        Ok(match outcome {
            Outcome::Tested => TaskOutcome::Succeeded {
                result: serde_json::json!({ "ok": true }),
            },
            Outcome::Schema(schema) => TaskOutcome::Succeeded {
                result: serde_json::json!({ "schema": schema }),
            },
            Outcome::Fulfilled(results) => TaskOutcome::Succeeded {
                result: serde_json::json!({ "results": results }),
            },
            Outcome::Failed { kind, message } => {
                let _ = std::fs::remove_file(&entries_path);
                TaskOutcome::Failed {
                    error: format!("connector error ({kind:?}): {message}"),
                    retryable: kind == ErrorKind::Unavailable,
                }
            }
            Outcome::Exported(summary) => {
                let (size, sha256) = done
                    .lock()
                    .expect("done")
                    .take()
                    .context("the export's output was not closed")?;
                tracing::info!(
                    entries = summary.entries,
                    bytes = size,
                    "exported in {elapsed:.2?}"
                );
                spooled.upload = Some(SpooledUpload {
                    path: entries_path,
                    size,
                    sha256,
                });
                spooled.cursor = summary.cursor.clone();
                // The upload id is filled in once the upload is done.
                TaskOutcome::Succeeded {
                    result: serde_json::json!({
                        "entries": summary.entries,
                        "rejected": summary.rejected,
                        "batches": summary.batches,
                        "bytes": summary.bytes,
                        "peak_memory": summary.peak_memory,
                        "incremental": task.args.get("incremental").and_then(|v| v.as_bool()).unwrap_or(false),
                    }),
                }
            }
        })
    }

    /// Runs one operation of a connection on a blocking thread (the host drives the guest
    /// from there), ended early when `cancel` is.
    async fn run_connector(
        &self,
        (loaded, connection): (Arc<Loaded>, Arc<Connection>),
        collect: Option<PathBuf>,
        orders: PathBuf,
        request: Request,
        observer: TaskObserver,
        cancel: &Cancel,
    ) -> Result<Result<Outcome, idgard_host::Error>> {
        let runtime = self.runtime.clone();
        let cancel = cancel.clone();
        Ok(tokio::task::spawn_blocking(move || {
            let folders = RunFolders {
                collect: collect.as_deref(),
                orders: Some(&orders),
            };
            runtime.run_cancellable(
                &loaded,
                &connection,
                &folders,
                request,
                Box::new(observer),
                &cancel,
            )
        })
        .await?)
    }

    /// Fulfils the orders the server holds for this task, in batches. Each finished batch is
    /// written to the spool before anything else, so a restart resumes after the last finished
    /// order instead of carrying it out again; results go up as they come and once more at
    /// the end (the server ignores results it already has).
    #[allow(clippy::too_many_arguments)]
    async fn fulfil_from_server(
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
            if let Err(e) = self
                .client
                .call::<_, OrderResultsAnswer>(
                    Method::POST,
                    &format!("/api/v1/agent/tasks/{}/order-results", task.id),
                    Some(&OrderResults {
                        fence: task.fence,
                        results,
                    }),
                )
                .await
            {
                tracing::warn!("results not sent yet ({e}); they go again at the end");
            }
        }
        let _: OrderResultsAnswer = self
            .call_retrying(
                Method::POST,
                &format!("/api/v1/agent/tasks/{}/order-results", task.id),
                Some(&OrderResults {
                    fence: task.fence,
                    results: finished.clone(),
                }),
            )
            .await?;
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

    /// A call retried with backoff while the server cannot answer (a refusal is final).
    async fn call_retrying<B: Serialize, R: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<R> {
        let mut failures = 0;
        loop {
            match self.client.call(method.clone(), path, body).await {
                Ok(r) => return Ok(r),
                Err(e @ CallError::Refused { .. }) => bail!("{path}: {e}"),
                Err(e) => {
                    failures += 1;
                    if failures > 8 {
                        bail!("{path}: {e}");
                    }
                    let delay = match &e {
                        CallError::Later { retry_after, .. } => backoff(failures, *retry_after),
                        CallError::Refused { .. } => backoff(failures, None),
                    };
                    tracing::warn!("{path}: {e}; again in {delay:.1?}");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Uploads (if any) and completes, retrying what can be retried; the spool entry goes
    /// once the server has the outcome or refuses it for good.
    async fn deliver(&self, mut s: Spooled) {
        let mut failures = 0;
        loop {
            match self.try_deliver(&mut s).await {
                Ok(view) => {
                    tracing::info!(task = s.task, state = view.state.as_str(), "task completed");
                    if let (Some(cursor), TaskOutcome::Succeeded { .. }) =
                        (&s.cursor, s.outcome.as_ref().expect("outcome"))
                    {
                        let file = self
                            .config
                            .work
                            .join("state")
                            .join(&s.connection)
                            .join("cursor.json");
                        if let Err(e) = serde_json::to_vec(cursor)
                            .map_err(anyhow::Error::from)
                            .and_then(|b| write_private(&file, &b))
                        {
                            tracing::error!("cannot save the cursor: {e:#}");
                        }
                    }
                    self.forget(&s);
                    return;
                }
                Err(CallError::Refused {
                    status, message, ..
                }) if status == StatusCode::CONFLICT || status == StatusCode::NOT_FOUND => {
                    tracing::warn!(
                        task = s.task,
                        "the server does not take this result ({message}); dropped"
                    );
                    self.forget(&s);
                    return;
                }
                Err(e) => {
                    failures += 1;
                    let delay = match &e {
                        CallError::Later { retry_after, .. } => backoff(failures, *retry_after),
                        CallError::Refused { .. } => {
                            if failures > 5 {
                                tracing::error!(
                                    task = s.task,
                                    "result refused for good ({e}); kept in the spool"
                                );
                                return;
                            }
                            backoff(failures, None)
                        }
                    };
                    tracing::warn!(
                        task = s.task,
                        "cannot deliver the result ({e}); again in {delay:.1?}"
                    );
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    async fn try_deliver(&self, s: &mut Spooled) -> Result<TaskView, CallError> {
        if let (Some(up), Some(TaskOutcome::Succeeded { result })) = (&s.upload, &mut s.outcome)
            && result.get("upload_id").is_none()
        {
            let id = self.upload(s.task, s.fence, up).await?;
            result["upload_id"] = serde_json::json!(id);
            let _ = self.save(s);
        }
        self.client
            .call(
                Method::POST,
                &format!("/api/v1/agent/tasks/{}/complete", s.task),
                Some(&Completion {
                    fence: s.fence,
                    outcome: s.outcome.clone().expect("outcome"),
                }),
            )
            .await
    }

    /// Sends a file into a slot, from wherever the slot got to.
    async fn upload(&self, task: i64, fence: i64, up: &SpooledUpload) -> Result<i64, CallError> {
        let chunk = self
            .timings
            .lock()
            .expect("timings")
            .chunk_bytes
            .clamp(64 << 10, 16 << 20);
        let mut slot: UploadView = self
            .client
            .call(
                Method::POST,
                &format!("/api/v1/agent/tasks/{task}/uploads"),
                Some(&NewUpload {
                    fence,
                    name: "entries".into(),
                    size: up.size,
                    sha256: up.sha256.clone(),
                }),
            )
            .await?;
        let file = std::fs::File::open(&up.path).map_err(|e| CallError::Refused {
            status: StatusCode::GONE,
            code: "spool".into(),
            message: format!("{}: {e}", up.path.display()),
        })?;
        while !slot.complete {
            let len = chunk.min(slot.size - slot.received) as usize;
            let mut buf = vec![0u8; len];
            use std::os::unix::fs::FileExt;
            file.read_exact_at(&mut buf, slot.received)
                .map_err(|e| CallError::Refused {
                    status: StatusCode::GONE,
                    code: "spool".into(),
                    message: format!("{}: {e}", up.path.display()),
                })?;
            match self
                .client
                .put_bytes::<UploadView>(
                    &format!("/api/v1/agent/uploads/{}?offset={}", slot.id, slot.received),
                    buf,
                )
                .await
            {
                Ok(next) => slot = next,
                Err(CallError::Refused { status, .. }) if status == StatusCode::CONFLICT => {
                    // Somewhere else than we thought: ask where, and go on from there.
                    slot = self
                        .client
                        .call::<(), UploadView>(
                            Method::GET,
                            &format!("/api/v1/agent/uploads/{}", slot.id),
                            None,
                        )
                        .await?;
                }
                Err(e) => return Err(e),
            }
        }
        tracing::info!(upload = slot.id, entries = ?slot.entries, bytes = slot.size, "upload complete");
        Ok(slot.id)
    }
}
