//! Runs idgard connectors: loads a component with its manifest, checks its contract version,
//! grants it what it asked for and the connection allows, and runs each operation in a fresh,
//! limited sandbox.
//!
//! One [`Runtime`] per process holds the engine (pooling allocator, epoch ticker), the tokio
//! runtime guests run on, and the compiled-artifact cache; [`Runtime::load`] gives a [`Loaded`]
//! connector, pre-instantiated; [`Runtime::run`] runs one operation and reports entries, logs and
//! progress to an [`Observer`].

mod bindings;
pub mod cache;
mod call;
mod cancel;
pub mod connection;
pub mod contract;
mod engine;
pub mod error;
mod filesystem;
pub mod grants;
mod http;
pub mod limits;
pub mod manifest;
mod network;
mod orders;
pub mod package;
mod request;
mod sql;
pub use idgard_model::contract as model;
pub mod sandbox;
mod state;
pub mod text;

pub use cache::{ArtifactCache, CacheUse};
pub use cancel::Cancel;
pub use connection::Connection;
pub use error::Error;
pub use limits::{LimitHit, Limits};
pub use manifest::Manifest;
pub use model::Level;
pub use request::{Outcome, Request};
pub use sandbox::RunFolders;

use bindings::{IdgardConnectorPre, Pre};
use call::{Answer, Call, Setup};
use state::RunState;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker};

/// `describe` at load time gets this long and this much memory.
const DESCRIBE_LIMITS: Limits = Limits {
    memory_mib: 64,
    deadline_secs: 10,
    max_output_mib: 0,
    max_batch_mib: 0,
    max_log_kib: 16,
    max_call_mib: 1,
    max_disk_mib: 0,
    max_files: 0,
    max_handles: 64,
    max_cursor_kib: 0,
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
    /// Where `stored` secrets of connections are read (the agent's sealed secrets); `None`:
    /// a connection naming one fails with a clear error.
    pub secret_store: Option<Arc<dyn SecretStore>>,
    /// The publishers whose packages load. `None` or an empty set: any package loads, signed
    /// or not, and signatures are not looked at.
    pub trust: Option<Arc<idgard_signing::Trust>>,
}

/// Reads secrets kept by the embedding program (`[secrets] name = { stored = "..." }`).
pub trait SecretStore: Send + Sync {
    /// The value of the stored secret `name`, or why it cannot be read.
    fn read(&self, name: &str) -> Result<String, String>;
}

impl std::fmt::Debug for dyn SecretStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretStore")
    }
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            cache_dir: None,
            max_concurrent_runs: 16,
            max_memory_mib: 4096,
            secret_store: None,
            trust: None,
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
    /// Database connections kept across runs (`sql`).
    sql_pools: sql::Pools,
    http_services: http::Services,
    /// Guests and their WASI I/O run here; `None` only while dropping.
    tokio: Option<tokio::runtime::Runtime>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker.store(true, Ordering::Relaxed);
        // The runtime may be dropped from async code (the agent's): never block there.
        if let Some(rt) = self.tokio.take() {
            rt.shutdown_background();
        }
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
    /// The package digest (manifest and component, [`idgard_signing::digest_of`]), hex: what
    /// publishers sign and the server names packages by.
    pub package_digest: String,
    /// Who signed the package, when its signature was checked against trusted publishers.
    pub publisher: Option<String>,
    /// What the component's `describe` answered.
    pub info: model::ConnectorInfo,
    /// Whether the compiled form came from the cache.
    pub cache: CacheUse,
    pre: Pre<RunState>,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("name", &self.manifest.name)
            .field("digest", &self.digest)
            .finish()
    }
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

impl Runtime {
    /// Creates the engine (pooling allocator, epoch interruption), its ticker thread and the
    /// tokio runtime guests run on.
    pub fn new(options: RuntimeOptions) -> Result<Self, Error> {
        let engine_err = |e: wasmtime::Error| Error::Engine(format!("{e:#}"));
        let engine = Engine::new(&engine::config(&options)).map_err(engine_err)?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(engine_err)?;
        // The guest's files go through the quota guard: the same interface, defined again.
        linker.allow_shadowing(true);
        wasmtime_wasi::p2::bindings::filesystem::types::add_to_linker::<
            RunState,
            filesystem::Guarded,
        >(&mut linker, |s| {
            let quota = s.quota.clone();
            filesystem::GuardedFs {
                inner: wasmtime_wasi::filesystem::WasiFilesystemView::filesystem(s),
                quota,
            }
        })
        .map_err(engine_err)?;
        linker.allow_shadowing(false);
        bindings::IdgardConnector::add_to_linker::<RunState, HasSelf<RunState>>(&mut linker, |s| s)
            .map_err(engine_err)?;
        bindings::v1::IdgardConnector::add_to_linker::<RunState, HasSelf<RunState>>(
            &mut linker,
            |s| s,
        )
        .map_err(engine_err)?;
        bindings::v2::add_to_linker(&mut linker).map_err(engine_err)?;
        // Outgoing HTTP, every request through the run's grants (`http::Hooks`).
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(engine_err)?;

        let cache = options
            .cache_dir
            .as_deref()
            .map(ArtifactCache::open)
            .transpose()?;
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("idgard-host")
            .enable_all()
            .build()
            .map_err(|e| Error::Engine(format!("cannot start the host's I/O runtime: {e}")))?;
        let ticker = engine::start_ticker(&engine)?;
        Ok(Self {
            engine,
            linker,
            cache,
            options,
            ticker,
            sql_pools: sql::Pools::default(),
            http_services: http::Services::default(),
            tokio: Some(tokio),
        })
    }

    /// Drives a future on the host's runtime from this (non-async) thread.
    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.tokio.as_ref().expect("runtime alive").block_on(f)
    }

    /// Loads a connector package: a folder with `connector.toml` (or the manifest's path).
    /// Checks the manifest, the contract version in the manifest and in the component, compiles
    /// (or takes from the cache), pre-instantiates, and asks the component to describe itself
    /// (within 10 seconds).
    pub fn load(&self, package: &Path) -> Result<Loaded, Error> {
        let (dir, manifest_path) = if package.is_dir() {
            (package.to_owned(), package.join("connector.toml"))
        } else {
            (
                package.parent().unwrap_or(Path::new(".")).to_owned(),
                package.to_owned(),
            )
        };
        let manifest_text =
            std::fs::read_to_string(&manifest_path).map_err(|e| Error::io(&manifest_path, e))?;
        let manifest = Manifest::parse(&manifest_path, &manifest_text)?;
        if !contract::supported(&manifest.contract) {
            return Err(Error::Contract {
                path: manifest_path,
                found: manifest.contract.clone(),
                supported: contract::SUPPORTED.into(),
            });
        }
        let component_path = package::component_path(&dir, &manifest.component)?;
        let wasm = package::read_component(&component_path)?;
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
        let package_digest = idgard_signing::digest_of(manifest_text.as_bytes(), &wasm);
        let publisher = self.check_signature(&dir, &package_digest)?;
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
        let not_exported = |e: wasmtime::Error| {
            Error::component(
                &component_path,
                format!("does not export idgard:connector/connector@{embedded}: {e:#}"),
            )
        };
        let pre = match contract::minor(&embedded) {
            Some(1) => Pre::V1(bindings::v1::IdgardConnectorPre::new(pre).map_err(not_exported)?),
            Some(2) => Pre::V2(bindings::v2::exported(pre).map_err(not_exported)?),
            _ => Pre::V3(IdgardConnectorPre::new(pre).map_err(not_exported)?),
        };

        let mut loaded = Loaded {
            manifest,
            dir,
            component_path,
            digest,
            package_digest: hex::encode(package_digest),
            publisher,
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
            withheld: BTreeMap::new(),
            entity_types: vec![],
        };
        let (answer, _) = self.call(
            &loaded,
            describe,
            Box::new(TracingObserver),
            &Cancel::new(),
            Call::Describe,
        )?;
        let Answer::Info(info) = answer else {
            unreachable!("describe answers with info")
        };
        loaded.info = check_info(&loaded, info.into())?;
        Ok(loaded)
    }

    /// When publishers are trusted, the package's signature must be theirs, over `digest`:
    /// who signed it. Without trusted publishers, nothing is required.
    fn check_signature(&self, dir: &Path, digest: &[u8; 32]) -> Result<Option<String>, Error> {
        let Some(trust) = self.options.trust.as_deref().filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        let sig_path = dir.join(idgard_signing::SIGNATURE_FILE);
        let signature = match std::fs::metadata(&sig_path) {
            Ok(m) if m.len() > 64 << 10 => {
                return Err(Error::component(&sig_path, "is larger than 64 KiB"));
            }
            Ok(_) => Some(std::fs::read(&sig_path).map_err(|e| Error::io(&sig_path, e))?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io(&sig_path, e)),
        };
        let verified = trust
            .verify_digest(digest, signature.as_deref())
            .map_err(|source| Error::Signature {
                path: dir.to_owned(),
                source,
            })?;
        Ok(Some(verified.publisher))
    }

    /// Runs one operation of a connector for a connection, in a fresh sandbox, until it ends or
    /// its deadline passes. Blocks the calling thread while the guest runs on the host's own
    /// runtime: from async code, call it inside `tokio::task::spawn_blocking`.
    pub fn run(
        &self,
        loaded: &Loaded,
        connection: &Connection,
        folders: &RunFolders<'_>,
        request: Request,
        observer: Box<dyn Observer>,
    ) -> Result<Outcome, Error> {
        self.run_cancellable(
            loaded,
            connection,
            folders,
            request,
            observer,
            &Cancel::new(),
        )
    }

    /// [`Runtime::run`], also ended (with [`Error::Cancelled`]) as soon as `cancel` is
    /// cancelled, whatever the connector is doing. An export stopped by the host (a limit, a
    /// trap, a cancellation) leaves its collection folder empty: what a stopped run wrote there
    /// cannot be trusted.
    pub fn run_cancellable(
        &self,
        loaded: &Loaded,
        connection: &Connection,
        folders: &RunFolders<'_>,
        request: Request,
        observer: Box<dyn Observer>,
        cancel: &Cancel,
    ) -> Result<Outcome, Error> {
        let exporting = matches!(request, Request::Export { .. });
        let out = self.run_checked(loaded, connection, folders, request, observer, cancel);
        if exporting
            && out.is_err()
            && let Some(collect) = folders.collect
            && let Err(e) = sandbox::empty_folder(collect)
        {
            tracing::warn!(folder = %collect.display(), "cannot empty the collection folder of a stopped export: {e}");
        }
        out
    }

    fn run_checked(
        &self,
        loaded: &Loaded,
        connection: &Connection,
        folders: &RunFolders<'_>,
        request: Request,
        observer: Box<dyn Observer>,
        cancel: &Cancel,
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
        self.check_limits(&connection.limits).map_err(bad)?;
        let settings = m
            .resolve_settings(&connection.settings)
            .map_err(bad)?
            .to_string();
        let mut secrets = connection.resolve_secrets(self.options.secret_store.as_deref())?;
        let withheld = connection.grants.withhold(&mut secrets);
        let effective = grants::effective(m, &connection.grants);
        let mut observer = observer;
        for unused in &effective.unused {
            observer.log(Level::Warn, &format!("the connection grants {unused}, which the connector does not ask for: not given"));
        }
        let folders = RunFolders {
            collect: folders
                .collect
                .filter(|_| matches!(request, Request::Export { .. })),
            orders: folders
                .orders
                .filter(|_| matches!(request, Request::Fulfill(_))),
        };
        let setup = Setup {
            limits: connection.limits,
            folders,
            grants: effective,
            secrets,
            withheld,
            entity_types: loaded.info.entity_types.clone(),
        };
        let (call, ids) = request.into_call(settings).map_err(bad)?;
        let (answer, mut counts) = self.call(loaded, setup, observer, cancel, call)?;
        request::outcome(&m.name, &connection.limits, answer, &ids, &mut counts)
    }

    /// A connection's limits must fit what this runtime was set up for.
    fn check_limits(&self, limits: &Limits) -> Result<(), String> {
        if limits.memory_mib > self.options.max_memory_mib {
            return Err(format!(
                "memory limit {} MiB is above this agent's maximum of {} MiB",
                limits.memory_mib, self.options.max_memory_mib
            ));
        }
        if limits.max_handles > limits::MAX_HANDLES {
            return Err(format!(
                "max_handles {} is above the maximum of {}",
                limits.max_handles,
                limits::MAX_HANDLES
            ));
        }
        Ok(())
    }

    /// The engine (for tools that need it, like the benchmark).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

/// What `describe` answered, checked against the manifest.
fn check_info(loaded: &Loaded, info: model::ConnectorInfo) -> Result<model::ConnectorInfo, Error> {
    let m = &loaded.manifest;
    let bad = |message: String| Error::component(&loaded.component_path, message);
    if info.name != m.name {
        return Err(bad(format!(
            "describes itself as `{}` but its manifest names `{}`",
            text::shown(&info.name, 64),
            m.name
        )));
    }
    for op in &m.operations {
        if !info.operations.contains(op) {
            return Err(bad(format!(
                "its manifest lists `{op}` but the component does not support it (it supports: {})",
                info.operations.join(", ")
            )));
        }
    }
    if let Some(t) = info
        .entity_types
        .iter()
        .find(|t| !manifest::valid_entity_type(t))
    {
        return Err(bad(format!(
            "declares entity type `{}`: use letters, digits, `-`, `_` and `.` (at most 64)",
            text::shown(t, 64)
        )));
    }
    if info.version.len() > 64 || text::escape(&info.version) != info.version {
        return Err(bad(
            "describes a version that is not a short, plain text".into()
        ));
    }
    Ok(info)
}
