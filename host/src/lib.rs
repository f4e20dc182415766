//! Runs idgard connectors: loads a component with its manifest, checks its contract version,
//! grants it what it asked for and the connection allows, and runs each operation in a fresh,
//! limited sandbox.
//!
//! One [`Runtime`] per process holds the engine (pooling allocator, epoch ticker) and the
//! compiled-artifact cache; [`Runtime::load`] gives a [`Loaded`] connector, pre-instantiated;
//! [`Runtime::run`] runs one operation and reports entries, logs and progress to an [`Observer`].

mod bindings;
pub mod cache;
pub mod connection;
pub mod contract;
pub mod error;
pub mod grants;
pub mod limits;
pub mod manifest;
pub use idgard_protocol::model;
pub mod sandbox;

pub use cache::{ArtifactCache, CacheUse};
pub use connection::Connection;
pub use error::Error;
pub use limits::{LimitHit, Limits};
pub use manifest::Manifest;
pub use model::Level;
pub use sandbox::RunFolders;

use bindings::{IdgardConnectorPre, guest, imports, wit};
use idgard_sdk::wire;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Largest `.wasm` file the host reads.
const MAX_COMPONENT_BYTES: u64 = 256 << 20;
/// Longest message kept from one log call; longer ones are cut.
const MAX_LOG_MESSAGE: usize = 8 * 1024;
/// `describe` at load time gets this long and this much memory.
const DESCRIBE_LIMITS: Limits = Limits {
    memory_mib: 64,
    deadline_secs: 10,
    max_output_mib: 0,
    max_batch_mib: 0,
    max_log_kib: 16,
    max_call_mib: 1,
};

/// How the runtime is set up.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Where compiled components are cached; `None` compiles at every load.
    pub cache_dir: Option<PathBuf>,
    /// Runs that may be live at once (sizes the pooling allocator).
    pub max_concurrent_runs: u32,
    /// The largest memory limit any connection may set, in MiB.
    pub max_memory_mib: u32,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            cache_dir: None,
            max_concurrent_runs: 16,
            max_memory_mib: 4096,
        }
    }
}

/// The engine, linker and cache shared by every connector of a process.
pub struct Runtime {
    engine: Engine,
    linker: Linker<RunState>,
    cache: Option<ArtifactCache>,
    options: RuntimeOptions,
    ticker: Arc<AtomicBool>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker.store(true, Ordering::Relaxed);
    }
}

/// A connector ready to run: manifest checked, component compiled and pre-instantiated.
pub struct Loaded {
    /// Its manifest.
    pub manifest: Manifest,
    /// The package folder.
    pub dir: PathBuf,
    /// The component file.
    pub component_path: PathBuf,
    /// SHA-256 of the component, hex.
    pub digest: String,
    /// What the component's `describe` answered.
    pub info: model::ConnectorInfo,
    /// Whether the compiled form came from the cache.
    pub cache: CacheUse,
    pre: IdgardConnectorPre<RunState>,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("name", &self.manifest.name)
            .field("digest", &self.digest)
            .finish()
    }
}

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
    fn operation(&self) -> &'static str {
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

/// Receives what a run produces as it goes.
pub trait Observer: Send {
    /// A log line from the connector (already capped in volume).
    fn log(&mut self, level: Level, message: &str);
    /// A progress report.
    fn progress(&mut self, done: u64, total: Option<u64>, message: &str) {
        let _ = (done, total, message);
    }
    /// A batch of entries, already validated (decode it with `idgard_sdk::wire::decode`).
    /// An error stops the run.
    fn entries(&mut self, batch: &[u8], count: u32) -> anyhow::Result<()> {
        let _ = (batch, count);
        Ok(())
    }
}

/// An observer that forwards logs to `tracing` and drops entries.
#[derive(Debug, Default)]
pub struct TracingObserver;

impl Observer for TracingObserver {
    fn log(&mut self, level: Level, message: &str) {
        match level {
            Level::Trace => tracing::trace!(target: "connector", "{message}"),
            Level::Debug => tracing::debug!(target: "connector", "{message}"),
            Level::Info => tracing::info!(target: "connector", "{message}"),
            Level::Warn => tracing::warn!(target: "connector", "{message}"),
            Level::Error => tracing::error!(target: "connector", "{message}"),
        }
    }
}

/// The state of one store: one run.
struct RunState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: Limits,
    memory_denied: bool,
    peak_memory: usize,
    limit_hit: Option<(LimitHit, String)>,
    protocol_error: Option<String>,
    observer: Box<dyn Observer>,
    secrets: BTreeMap<String, String>,
    exporting: bool,
    log_bytes: usize,
    logs_dropped: u64,
    entries: u64,
    bytes: u64,
    batches: u64,
}

impl WasiView for RunState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wasmtime::ResourceLimiter for RunState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limits.memory_bytes() {
            self.memory_denied = true;
            return Ok(false);
        }
        self.peak_memory = self.peak_memory.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold function references; a million is far beyond any real connector.
        Ok(desired <= 1_000_000)
    }
}

impl wit::Host for RunState {}

impl imports::Host for RunState {
    fn log(&mut self, level: imports::Level, message: String) -> wasmtime::Result<()> {
        let budget = (self.limits.max_log_kib as usize) << 10;
        if self.log_bytes >= budget {
            self.logs_dropped += 1;
            return Ok(());
        }
        let mut message = message;
        if message.len() > MAX_LOG_MESSAGE {
            let mut cut = MAX_LOG_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str(" [cut]");
        }
        self.log_bytes += message.len();
        self.observer.log(level.into(), &message);
        Ok(())
    }

    fn progress(&mut self, done: u64, total: Option<u64>, message: String) -> wasmtime::Result<()> {
        let message = if message.len() > 200 {
            "…"
        } else {
            message.as_str()
        };
        self.observer.progress(done, total, message);
        Ok(())
    }

    fn secret(&mut self, name: String) -> wasmtime::Result<Option<String>> {
        Ok(self.secrets.get(&name).cloned())
    }

    fn emit(&mut self, batch: Vec<u8>) -> wasmtime::Result<()> {
        if !self.exporting {
            self.protocol_error = Some("emitted entries outside of an export".into());
            return Err(wasmtime::format_err!("emit outside of an export"));
        }
        let max_batch = (self.limits.max_batch_mib as usize) << 20;
        if batch.len() > max_batch {
            self.limit_hit = Some((
                LimitHit::Batch,
                format!(
                    "a batch of {} bytes, limit {} MiB",
                    batch.len(),
                    self.limits.max_batch_mib
                ),
            ));
            return Err(wasmtime::format_err!("batch too large"));
        }
        let max_output = self.limits.max_output_mib << 20;
        if self.bytes + batch.len() as u64 > max_output {
            self.limit_hit = Some((
                LimitHit::Output,
                format!("more than {} MiB of entries", self.limits.max_output_mib),
            ));
            return Err(wasmtime::format_err!("output limit"));
        }
        let mut count = 0u32;
        for entry in wire::decode(&batch) {
            if let Err(e) = entry {
                self.protocol_error = Some(format!("batch {}: {e}", self.batches + 1));
                return Err(wasmtime::format_err!("malformed batch"));
            }
            count += 1;
        }
        if let Err(e) = self.observer.entries(&batch, count) {
            self.protocol_error = Some(format!("the host could not take the entries: {e:#}"));
            return Err(wasmtime::format_err!("sink failed"));
        }
        self.entries += u64::from(count);
        self.bytes += batch.len() as u64;
        self.batches += 1;
        Ok(())
    }
}

impl Runtime {
    /// Creates the engine (pooling allocator, epoch interruption) and its ticker thread.
    pub fn new(options: RuntimeOptions) -> Result<Self, Error> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        // Connectors use no component-model async: turning it off makes calls cheaper.
        config.concurrency_support(false);
        if std::env::var_os("IDGARD_PERF_MAP").is_some() {
            // Only with the `profiling` feature; otherwise the engine refuses to start.
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let mut pool = PoolingAllocationConfig::default();
        let n = options.max_concurrent_runs.max(1);
        pool.total_component_instances(n);
        pool.total_core_instances(n * 4);
        pool.total_memories(n * 2);
        pool.total_tables(n * 4);
        pool.total_stacks(n);
        pool.max_memories_per_component(2);
        pool.max_memory_size((options.max_memory_mib as usize) << 20);
        // A run's first pages (stack, settings, one batch) are reused by the next run: resetting
        // them with memset is cheaper than returning them to the kernel and faulting them back.
        pool.linear_memory_keep_resident(1 << 20);
        pool.table_keep_resident(64 << 10);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(|e| Error::Engine(format!("{e:#}")))?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| Error::Engine(format!("{e:#}")))?;
        bindings::IdgardConnector::add_to_linker::<RunState, HasSelf<RunState>>(&mut linker, |s| s)
            .map_err(|e| Error::Engine(format!("{e:#}")))?;

        let cache = options
            .cache_dir
            .as_deref()
            .map(ArtifactCache::open)
            .transpose()?;

        let stop = Arc::new(AtomicBool::new(false));
        let ticker_engine = engine.weak();
        let ticker_stop = stop.clone();
        std::thread::Builder::new()
            .name("idgard-epoch".into())
            .spawn(move || {
                while !ticker_stop.load(Ordering::Relaxed) {
                    std::thread::sleep(limits::EPOCH_TICK);
                    match ticker_engine.upgrade() {
                        Some(e) => e.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(|e| Error::Engine(format!("cannot start the epoch ticker: {e}")))?;

        Ok(Self {
            engine,
            linker,
            cache,
            options,
            ticker: stop,
        })
    }

    /// Loads a connector package: a folder with `connector.toml` (or the manifest's path).
    /// Checks the manifest, the contract version in the manifest and in the component, compiles
    /// (or takes from the cache), pre-instantiates, and asks the component to describe itself.
    pub fn load(&self, package: &Path) -> Result<Loaded, Error> {
        let (dir, manifest_path) = if package.is_dir() {
            (package.to_owned(), package.join("connector.toml"))
        } else {
            (
                package.parent().unwrap_or(Path::new(".")).to_owned(),
                package.to_owned(),
            )
        };
        let manifest = Manifest::load(&manifest_path)?;
        if !contract::supported(&manifest.contract) {
            return Err(Error::Contract {
                path: manifest_path,
                found: manifest.contract.clone(),
                supported: contract::SUPPORTED.into(),
            });
        }
        let component_path = dir.join(&manifest.component);
        let size = std::fs::metadata(&component_path)
            .map_err(|e| Error::io(&component_path, e))?
            .len();
        if size > MAX_COMPONENT_BYTES {
            return Err(Error::component(
                &component_path,
                format!("is {size} bytes; the limit is {MAX_COMPONENT_BYTES}"),
            ));
        }
        let wasm = std::fs::read(&component_path).map_err(|e| Error::io(&component_path, e))?;
        let embedded = contract::embedded_version(&component_path, &wasm)?;
        if !contract::supported(&embedded) {
            return Err(Error::Contract {
                path: component_path,
                found: embedded,
                supported: contract::SUPPORTED.into(),
            });
        }
        if embedded != manifest.contract {
            return Err(Error::component(
                &component_path,
                format!(
                    "implements contract {embedded} but its manifest says {}",
                    manifest.contract
                ),
            ));
        }
        let digest = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(&wasm))
        };
        let (component, cache) = match &self.cache {
            Some(c) => c.load(&self.engine, &component_path, &wasm)?,
            None => (
                cache::compile(&self.engine, &component_path, &wasm)?,
                CacheUse::Disabled,
            ),
        };
        let pre = self.linker.instantiate_pre(&component).map_err(|e| {
            Error::component(
                &component_path,
                format!("needs an import this host does not grant: {e:#}"),
            )
        })?;
        let pre = IdgardConnectorPre::new(pre).map_err(|e| {
            Error::component(
                &component_path,
                format!("does not export idgard:connector/connector@0.1.0: {e:#}"),
            )
        })?;

        let mut loaded = Loaded {
            manifest,
            dir,
            component_path,
            digest,
            info: model::ConnectorInfo {
                name: String::new(),
                version: String::new(),
                operations: vec![],
                entity_types: vec![],
            },
            cache,
            pre,
        };
        let describe = Setup {
            limits: DESCRIBE_LIMITS,
            folders: RunFolders::default(),
            grants: grants::Effective::default(),
            secrets: BTreeMap::new(),
        };
        let (info, _) = self.call(&loaded, describe, Box::new(TracingObserver), |c, s| {
            c.call_describe(s)
        })?;
        let info: model::ConnectorInfo = info.into();
        let m = &loaded.manifest;
        if info.name != m.name {
            return Err(Error::component(
                &loaded.component_path,
                format!(
                    "describes itself as `{}` but its manifest names `{}`",
                    info.name, m.name
                ),
            ));
        }
        for op in &m.operations {
            if !info.operations.contains(op) {
                return Err(Error::component(
                    &loaded.component_path,
                    format!(
                        "its manifest lists `{op}` but the component does not support it (it supports: {})",
                        info.operations.join(", ")
                    ),
                ));
            }
        }
        loaded.info = info;
        Ok(loaded)
    }

    /// Runs one operation of a connector for a connection, in a fresh sandbox.
    pub fn run(
        &self,
        loaded: &Loaded,
        connection: &Connection,
        folders: &RunFolders<'_>,
        request: Request,
        observer: Box<dyn Observer>,
    ) -> Result<Outcome, Error> {
        let op = request.operation();
        let m = &loaded.manifest;
        let bad = |message: String| Error::Connection {
            path: PathBuf::from(&connection.name),
            message,
        };
        if let Some(c) = &connection.connector
            && c != &m.name
        {
            return Err(bad(format!(
                "expects connector `{c}` but the package is `{}`",
                m.name
            )));
        }
        if !m.supports(op) {
            return Err(Error::Unsupported {
                connector: m.name.clone(),
                operation: op.into(),
            });
        }
        if connection.limits.memory_mib > self.options.max_memory_mib {
            return Err(bad(format!(
                "memory limit {} MiB is above this agent's maximum of {} MiB",
                connection.limits.memory_mib, self.options.max_memory_mib
            )));
        }
        let settings = m
            .resolve_settings(&connection.settings)
            .map_err(bad)?
            .to_string();
        let secrets = connection.resolve_secrets()?;
        let effective = grants::effective(m, &connection.grants);
        let mut observer = observer;
        for unused in &effective.unused {
            observer.log(Level::Warn, &format!("the connection grants {unused}, which the connector does not ask for: not given"));
        }
        let folders = RunFolders {
            collect: if matches!(request, Request::Export { .. }) {
                folders.collect
            } else {
                None
            },
            orders: if matches!(request, Request::Fulfill(_)) {
                folders.orders
            } else {
                None
            },
        };
        let setup = Setup {
            limits: connection.limits,
            folders,
            grants: effective,
            secrets,
        };
        match request {
            Request::TestConnection => {
                let (r, _) = self.call(loaded, setup, observer, |c, s| {
                    c.call_test_connection(s, &settings)
                })?;
                Ok(match r {
                    Ok(()) => Outcome::Tested,
                    Err(e) => failed(e),
                })
            }
            Request::Schema => {
                let (r, _) =
                    self.call(loaded, setup, observer, |c, s| c.call_schema(s, &settings))?;
                Ok(match r {
                    Ok(s) => Outcome::Schema(s.into_iter().map(Into::into).collect()),
                    Err(e) => failed(e),
                })
            }
            Request::Export { cursor, batch_size } => {
                let request = wit::ExportRequest {
                    mode: match cursor {
                        None => wit::ExportMode::Full,
                        Some(c) => wit::ExportMode::Incremental(c.into()),
                    },
                    batch_size,
                };
                let (r, state) = self.call(loaded, setup, observer, |c, s| {
                    s.data_mut().exporting = true;
                    c.call_export(s, &settings, &request)
                })?;
                Ok(match r {
                    Ok(summary) => {
                        if summary.entries != state.entries {
                            tracing::warn!(
                                connector = %m.name,
                                "connector counted {} entries, the host received {}; keeping the host's count",
                                summary.entries, state.entries
                            );
                        }
                        Outcome::Exported(model::ExportSummary {
                            cursor: summary.cursor.map(Into::into),
                            entries: state.entries,
                            rejected: summary.rejected,
                            bytes: state.bytes,
                            batches: state.batches,
                            peak_memory: state.peak_memory,
                        })
                    }
                    Err(e) => failed(e),
                })
            }
            Request::Fulfill(orders) => {
                let ids: Vec<String> = orders.iter().map(|o| o.id.clone()).collect();
                let mut seen = HashSet::new();
                if let Some(dup) = ids.iter().find(|id| !seen.insert(id.as_str())) {
                    return Err(bad(format!("order id `{dup}` appears twice in one batch")));
                }
                let orders: Vec<wit::Order> = orders.into_iter().map(Into::into).collect();
                let (r, _) = self.call(loaded, setup, observer, |c, s| {
                    c.call_fulfill(s, &settings, &orders)
                })?;
                Ok(match r {
                    Ok(results) => Outcome::Fulfilled(match_results(&m.name, &ids, results)),
                    Err(e) => failed(e),
                })
            }
        }
    }

    /// Instantiates the connector in a fresh store with these limits and grants, calls `f`, and
    /// turns any trap into an error naming the limit hit. The store is dropped either way.
    fn call<R>(
        &self,
        loaded: &Loaded,
        setup: Setup<'_>,
        observer: Box<dyn Observer>,
        f: impl FnOnce(&guest::Guest, &mut Store<RunState>) -> wasmtime::Result<R>,
    ) -> Result<(R, Counts), Error> {
        let limits = setup.limits;
        let (wasi, stderr) = sandbox::build(&setup.folders, &setup.grants)?;
        let state = RunState {
            wasi,
            table: ResourceTable::new(),
            limits,
            memory_denied: false,
            peak_memory: 0,
            limit_hit: None,
            protocol_error: None,
            observer,
            secrets: setup.secrets,
            exporting: false,
            log_bytes: 0,
            logs_dropped: 0,
            entries: 0,
            bytes: 0,
            batches: 0,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| s);
        store.set_epoch_deadline(limits.deadline_ticks());
        store.epoch_deadline_trap();
        store.set_hostcall_fuel((limits.max_call_mib as usize) << 20);
        let result = loaded
            .pre
            .instantiate(&mut store)
            .and_then(|instance| f(instance.idgard_connector_connector(), &mut store));
        let state = store.data_mut();
        if state.logs_dropped > 0 {
            let n = state.logs_dropped;
            state.observer.log(
                Level::Warn,
                &format!(
                    "{n} log messages dropped: the run wrote more than {} KiB of logs",
                    limits.max_log_kib
                ),
            );
        }
        let counts = Counts {
            entries: state.entries,
            bytes: state.bytes,
            batches: state.batches,
            peak_memory: state.peak_memory as u64,
        };
        match result {
            Ok(r) => Ok((r, counts)),
            Err(e) => Err(classify(
                &loaded.manifest.name,
                &limits,
                state,
                &e,
                &stderr.text(),
            )),
        }
    }

    /// The engine (for tools that need it, like the benchmark).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

/// What one run is given: its limits, folders, grants and secrets.
struct Setup<'a> {
    limits: Limits,
    folders: RunFolders<'a>,
    grants: grants::Effective,
    secrets: BTreeMap<String, String>,
}

struct Counts {
    entries: u64,
    bytes: u64,
    batches: u64,
    peak_memory: u64,
}

fn failed(e: wit::Error) -> Outcome {
    Outcome::Failed {
        kind: e.kind.into(),
        message: e.message,
    }
}

/// Says which limit a trap came from, or what else went wrong, with the connector's stderr.
fn classify(
    connector: &str,
    limits: &Limits,
    state: &RunState,
    e: &wasmtime::Error,
    stderr: &str,
) -> Error {
    let connector = connector.to_owned();
    if let Some((limit, detail)) = &state.limit_hit {
        return Error::Limit {
            connector,
            limit: *limit,
            detail: detail.clone(),
        };
    }
    if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        return Error::Limit {
            connector,
            limit: LimitHit::Deadline,
            detail: format!(
                "ran longer than {:?}",
                Duration::from_secs(limits.deadline_secs)
            ),
        };
    }
    if state.memory_denied {
        return Error::Limit {
            connector,
            limit: LimitHit::Memory,
            detail: format!("tried to grow its memory past {} MiB", limits.memory_mib),
        };
    }
    if let Some(p) = &state.protocol_error {
        return Error::Trap {
            connector,
            message: p.clone(),
        };
    }
    let mut message = match e.downcast_ref::<Trap>() {
        Some(t) => format!("trapped: {t}"),
        None => format!("{e:#}"),
    };
    if !stderr.is_empty() {
        message.push_str("\nconnector stderr:\n");
        message.push_str(stderr);
    }
    Error::Trap { connector, message }
}

/// One result per order, in the orders' order: results for unknown ids or repeated ids are
/// dropped, orders the connector gave no result for are reported failed.
fn match_results(
    connector: &str,
    ids: &[String],
    results: Vec<wit::OrderResult>,
) -> Vec<model::OrderResult> {
    let mut by_id: BTreeMap<String, model::OrderOutcome> = BTreeMap::new();
    for r in results {
        if !ids.contains(&r.id) {
            tracing::warn!(%connector, id = %r.id, "result for an order that was not sent; ignored");
            continue;
        }
        match by_id.entry(r.id) {
            std::collections::btree_map::Entry::Occupied(e) => {
                tracing::warn!(%connector, id = %e.key(), "second result for one order; the first is kept");
            }
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(r.outcome.into());
            }
        }
    }
    ids.iter()
        .map(|id| model::OrderResult {
            id: id.clone(),
            outcome: by_id.remove(id).unwrap_or_else(|| {
                model::OrderOutcome::Failed(
                    "the connector returned no result for this order".into(),
                )
            }),
        })
        .collect()
}
