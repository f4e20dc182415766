//! Unit-test a connector natively: fixture files, captured logs and secrets, no idgard needed.
//!
//! ```ignore
//! use idgard_sdk::testing::Harness;
//!
//! #[test]
//! fn exports_people() {
//!     let run = Harness::new()
//!         .settings(serde_json::json!({ "file": "people.csv" }))
//!         .folder("source", "tests/fixtures")
//!         .export_full::<MyConnector>();
//!     let export = run.result.unwrap();
//!     assert_eq!(export.entries.len(), 3);
//! }
//! ```
//!
//! The harness calls your connector through the same glue as the component exports, so settings
//! parsing, batching and progress behave as in the real host. What it cannot show is the sandbox
//! itself (folders outside the grants are reachable natively): run the component through
//! `idgard-agent connector run`, or the host's tests, for that.

use crate::wire::{Entry, decode};
use crate::{
    Connector, Cursor, EntitySchema, Error, ExportMode, ExportRequest, ExportSummary, Level, Order,
    OrderResult, adapter,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Configures a fake host and runs a connector's operations against it.
#[derive(Debug, Clone)]
pub struct Harness {
    settings: serde_json::Value,
    secrets: HashMap<String, String>,
    folders: HashMap<String, PathBuf>,
    collect: Option<PathBuf>,
    orders: Option<PathBuf>,
    #[cfg(feature = "net")]
    endpoints: HashMap<String, crate::net::Endpoint>,
    batch_size: u32,
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

/// What one run produced besides its result.
#[derive(Debug)]
pub struct Run<T> {
    /// The operation's result.
    pub result: Result<T, Error>,
    /// Every log line the connector wrote, in order.
    pub logs: Vec<(Level, String)>,
    /// Every progress report (done, total, message).
    pub progress: Vec<(u64, Option<u64>, String)>,
}

impl<T> Run<T> {
    /// Whether some log line at `level` contains `text`.
    pub fn logged(&self, level: Level, text: &str) -> bool {
        self.logs
            .iter()
            .any(|(l, m)| *l == level && m.contains(text))
    }
}

/// An export's output: the entries in the order written, and the summary.
#[derive(Debug)]
pub struct Export {
    /// Entries, decoded from the batches the connector emitted.
    pub entries: Vec<Entry>,
    /// The summary the connector returned (cursor, counts).
    pub summary: ExportSummary,
    /// How many batches crossed to the host.
    pub batches: usize,
}

impl Harness {
    /// A harness with empty settings, no secrets and no folders.
    pub fn new() -> Self {
        Self {
            settings: serde_json::Value::Object(Default::default()),
            secrets: HashMap::new(),
            folders: HashMap::new(),
            collect: None,
            orders: None,
            #[cfg(feature = "net")]
            endpoints: HashMap::new(),
            batch_size: 1024,
        }
    }

    /// The connection's settings (a JSON object).
    pub fn settings(mut self, settings: serde_json::Value) -> Self {
        self.settings = settings;
        self
    }

    /// A secret the connector can read with [`crate::secret`].
    pub fn secret(mut self, name: &str, value: &str) -> Self {
        self.secrets.insert(name.to_owned(), value.to_owned());
        self
    }

    /// A granted folder, seen by the connector as [`crate::fs::granted`]`(name)`.
    pub fn folder(mut self, name: &str, path: impl AsRef<Path>) -> Self {
        self.folders
            .insert(name.to_owned(), path.as_ref().to_owned());
        self
    }

    /// The collection folder of export runs.
    pub fn collect_dir(mut self, path: impl AsRef<Path>) -> Self {
        self.collect = Some(path.as_ref().to_owned());
        self
    }

    /// The orders folder of fulfil runs.
    pub fn orders_dir(mut self, path: impl AsRef<Path>) -> Self {
        self.orders = Some(path.as_ref().to_owned());
        self
    }

    #[cfg(feature = "net")]
    /// A granted endpoint, seen by the connector through [`crate::net`]. The connector connects
    /// to `endpoint.addresses` as given: write them as `ip:port`, the way the host resolves them.
    pub fn endpoint(mut self, endpoint: crate::net::Endpoint) -> Self {
        self.endpoints.insert(endpoint.name.clone(), endpoint);
        self
    }

    /// Entries per batch the host asks for.
    pub fn batch_size(mut self, n: u32) -> Self {
        self.batch_size = n;
        self
    }

    fn fake_host(&self, sink: Option<fake::Sink>) -> fake::FakeHost {
        fake::FakeHost {
            secrets: self.secrets.clone(),
            folders: self.folders.clone(),
            collect: self.collect.clone(),
            orders: self.orders.clone(),
            #[cfg(feature = "net")]
            endpoints: self.endpoints.clone(),
            sink,
            ..Default::default()
        }
    }

    fn run<T>(&self, f: impl FnOnce(&str) -> Result<T, Error>) -> (Run<T>, Vec<Vec<u8>>) {
        let settings = self.settings.to_string();
        fake::install(self.fake_host(None));
        let result = f(&settings);
        let host = fake::take();
        (
            Run {
                result,
                logs: host.logs,
                progress: host.progress,
            },
            host.batches,
        )
    }

    /// Runs `test-connection`.
    pub fn test_connection<C: Connector>(&self) -> Run<()> {
        self.run(adapter::test_connection::<C>).0
    }

    /// Runs `schema`.
    pub fn schema<C: Connector>(&self) -> Run<Vec<EntitySchema>> {
        self.run(adapter::schema::<C>).0
    }

    /// Runs a full export.
    pub fn export_full<C: Connector>(&self) -> Run<Export> {
        self.export::<C>(ExportMode::Full)
    }

    /// Runs an incremental export from a cursor.
    pub fn export_incremental<C: Connector>(&self, cursor: Cursor) -> Run<Export> {
        self.export::<C>(ExportMode::Incremental(cursor))
    }

    fn export<C: Connector>(&self, mode: ExportMode) -> Run<Export> {
        let request = ExportRequest {
            mode,
            batch_size: self.batch_size,
        };
        let (run, batches) = self.run(|s| adapter::export::<C>(s, &request));
        let result = run.result.and_then(|summary| {
            let mut entries = Vec::new();
            for batch in &batches {
                for e in decode(batch) {
                    entries.push(e.map_err(|e| Error::internal(e.to_string()))?.to_owned());
                }
            }
            Ok(Export {
                entries,
                summary,
                batches: batches.len(),
            })
        });
        Run {
            result,
            logs: run.logs,
            progress: run.progress,
        }
    }

    /// Runs a full export and hands each batch to `sink` as it comes, instead of keeping the
    /// entries: for exports too large to hold, and for measuring the connector natively.
    pub fn export_full_into<C: Connector>(
        &self,
        sink: impl FnMut(&[u8]) + 'static,
    ) -> Run<ExportSummary> {
        let request = ExportRequest {
            mode: ExportMode::Full,
            batch_size: self.batch_size,
        };
        let settings = self.settings.to_string();
        fake::install(self.fake_host(Some(Box::new(sink))));
        let result = adapter::export::<C>(&settings, &request);
        let host = fake::take();
        Run {
            result,
            logs: host.logs,
            progress: host.progress,
        }
    }

    /// Runs `fulfill` on a batch of orders.
    pub fn fulfill<C: Connector>(&self, orders: Vec<Order>) -> Run<Vec<OrderResult>> {
        self.run(|s| adapter::fulfill::<C>(s, orders)).0
    }
}

/// The fake host behind the SDK's host functions in native builds.
pub(crate) mod fake {
    use super::*;
    use std::cell::RefCell;

    #[derive(Default)]
    pub(crate) struct FakeHost {
        pub secrets: HashMap<String, String>,
        pub folders: HashMap<String, PathBuf>,
        pub collect: Option<PathBuf>,
        pub orders: Option<PathBuf>,
        #[cfg(feature = "net")]
        pub endpoints: HashMap<String, crate::net::Endpoint>,
        pub logs: Vec<(Level, String)>,
        pub progress: Vec<(u64, Option<u64>, String)>,
        pub batches: Vec<Vec<u8>>,
        pub sink: Option<Sink>,
    }

    pub(crate) type Sink = Box<dyn FnMut(&[u8])>;

    thread_local! {
        static HOST: RefCell<Option<FakeHost>> = const { RefCell::new(None) };
    }

    pub(crate) fn install(host: FakeHost) {
        HOST.with(|h| *h.borrow_mut() = Some(host));
    }

    pub(crate) fn take() -> FakeHost {
        HOST.with(|h| h.borrow_mut().take()).unwrap_or_default()
    }

    fn with<R>(f: impl FnOnce(&mut FakeHost) -> R) -> Option<R> {
        HOST.with(|h| h.borrow_mut().as_mut().map(f))
    }

    pub fn log(level: Level, message: &str) {
        if with(|h| h.logs.push((level, message.to_owned()))).is_none() {
            eprintln!("[{level:?}] {message}");
        }
    }

    pub fn progress(done: u64, total: Option<u64>, message: &str) {
        with(|h| h.progress.push((done, total, message.to_owned())));
    }

    pub fn secret(name: &str) -> Option<String> {
        with(|h| h.secrets.get(name).cloned()).flatten()
    }

    pub fn emit(batch: &[u8]) {
        with(|h| match h.sink.as_mut() {
            Some(sink) => sink(batch),
            None => h.batches.push(batch.to_vec()),
        })
        .expect("export outside a host: run the connector through idgard_sdk::testing::Harness");
    }

    pub fn collect_dir() -> PathBuf {
        with(|h| h.collect.clone())
            .flatten()
            .unwrap_or_else(|| PathBuf::from("/collect"))
    }

    pub fn orders_dir() -> PathBuf {
        with(|h| h.orders.clone())
            .flatten()
            .unwrap_or_else(|| PathBuf::from("/orders"))
    }

    pub fn granted(name: &str) -> Option<PathBuf> {
        with(|h| h.folders.get(name).cloned()).flatten()
    }

    #[cfg(feature = "net")]
    pub fn endpoints() -> Vec<String> {
        with(|h| h.endpoints.keys().cloned().collect()).unwrap_or_default()
    }

    #[cfg(feature = "net")]
    pub fn endpoint(name: &str) -> Result<crate::net::Endpoint, Error> {
        with(|h| h.endpoints.get(name).cloned())
            .flatten()
            .ok_or_else(|| Error::denied(format!("the connection grants no endpoint `{name}`")))
    }
}
