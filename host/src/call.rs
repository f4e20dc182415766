//! One call into a connector, in a fresh store, ended by its deadline or a cancellation whatever
//! the guest is doing.
//!
//! Guests run as futures on the host's own tokio runtime (wasmtime's async support: each call on
//! a fiber). Three things end a run early, and together they leave no way to outlive a deadline:
//! - while the guest computes, the engine's epoch ticks; every [`CHECK_TICKS`] ticks a callback
//!   checks the deadline and the cancel handle and traps the guest;
//! - while the guest waits in a host call (a sleep, a `poll`, a socket read, a file read), the
//!   call is an awaited future: the deadline timer or the cancellation wins the `select!` and the
//!   whole call future is dropped, taking the guest's stack and pending I/O with it;
//! - either way the store is dropped at the end, with every handle the guest held.

use crate::bindings::{IdgardConnectorPre, Pre, v1, v2, wit};
use crate::cancel::Cancel;
use crate::error::Error;
use crate::filesystem::Quota;
use crate::grants::Effective;
use crate::limits::{LimitHit, Limits};
use crate::network;
use crate::sandbox::{self, RunFolders};
use crate::state::{RunState, Stop};
use crate::{Level, Loaded, Observer, Runtime, text};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::{ResourceTable, ResourceTableError};
use wasmtime::{Store, Trap, UpdateDeadline};

/// Epoch ticks between two checks of the deadline and the cancel handle while wasm code runs.
const CHECK_TICKS: u64 = 5;

/// What one run is given: its limits, folders, grants and secrets.
pub(crate) struct Setup<'a> {
    pub(crate) limits: Limits,
    pub(crate) folders: RunFolders<'a>,
    pub(crate) grants: Effective,
    pub(crate) secrets: BTreeMap<String, String>,
    /// Database passwords and HTTP credentials, by secret name: withheld from `secrets`, used
    /// by the host only.
    pub(crate) withheld: BTreeMap<String, String>,
    pub(crate) entity_types: Vec<String>,
}

/// The export to call, with its arguments.
pub(crate) enum Call {
    Describe,
    Test(String),
    Schema(String),
    Export(String, wit::ExportRequest),
    Fulfill(String, Vec<wit::Order>),
}

/// What the export answered.
pub(crate) enum Answer {
    Info(wit::ConnectorInfo),
    Tested(Result<(), wit::Error>),
    Schema(Result<Vec<wit::EntitySchema>, wit::Error>),
    Exported(Result<wit::ExportSummary, wit::Error>),
    Fulfilled(Result<Vec<wit::OrderResult>, wit::Error>),
}

/// What the host counted during a run, and the observer back (for what the host reports after
/// the guest is gone).
pub(crate) struct Counts {
    pub(crate) observer: Box<dyn Observer>,
    pub(crate) entries: u64,
    pub(crate) bytes: u64,
    pub(crate) batches: u64,
    pub(crate) peak_memory: u64,
}

async fn invoke(
    store: &mut Store<RunState>,
    pre: &Pre<RunState>,
    call: Call,
) -> wasmtime::Result<Answer> {
    match pre {
        Pre::V3(pre) => invoke_now(store, pre, call).await,
        Pre::V2(pre) => v2::invoke(store, pre, call).await,
        Pre::V1(pre) => v1::invoke(store, pre, call).await,
    }
}

async fn invoke_now(
    store: &mut Store<RunState>,
    pre: &IdgardConnectorPre<RunState>,
    call: Call,
) -> wasmtime::Result<Answer> {
    let instance = pre.instantiate_async(&mut *store).await?;
    let g = instance.idgard_connector_connector();
    Ok(match call {
        Call::Describe => Answer::Info(g.call_describe(&mut *store).await?),
        Call::Test(s) => Answer::Tested(g.call_test_connection(&mut *store, &s).await?),
        Call::Schema(s) => Answer::Schema(g.call_schema(&mut *store, &s).await?),
        Call::Export(s, request) => {
            store.data_mut().exporting = true;
            Answer::Exported(g.call_export(&mut *store, &s, &request).await?)
        }
        Call::Fulfill(s, orders) => {
            Answer::Fulfilled(g.call_fulfill(&mut *store, &s, &orders).await?)
        }
    })
}

impl Runtime {
    /// Instantiates the connector in a fresh store with these limits and grants, makes the call,
    /// and turns any trap or stop into an error naming the limit hit. The store is dropped
    /// either way.
    pub(crate) fn call(
        &self,
        loaded: &Loaded,
        setup: Setup<'_>,
        observer: Box<dyn Observer>,
        cancel: &Cancel,
        call: Call,
    ) -> Result<(Answer, Counts), Error> {
        let limits = setup.limits;
        let endpoints = network::resolve(&setup.grants.endpoints);
        let (wasi, stderr) = sandbox::build(&setup.folders, &setup.grants, &endpoints.allowed)?;
        let mut table = ResourceTable::new();
        table.set_max_capacity(limits.max_handles as usize);
        let symlinks = setup.grants.folders.iter().any(|f| f.symlinks);
        let state = RunState {
            wasi,
            table,
            quota: Arc::new(Quota::new(
                limits.max_disk_mib << 20,
                limits.max_files,
                symlinks,
            )),
            limits,
            memory_denied: false,
            peak_memory: 0,
            limit_hit: None,
            protocol_error: None,
            stopped: None,
            observer,
            secrets: setup.secrets,
            databases: crate::sql::Databases::new(
                &setup.grants.databases,
                &setup.withheld,
                (limits.max_batch_mib as usize) << 20,
                self.sql_pools.clone(),
            ),
            http: crate::http::Http::new(&setup.grants.http, &setup.withheld, &self.http_services),
            endpoints,
            entity_types: setup.entity_types,
            exporting: false,
            log_bytes: 0,
            logs_dropped: 0,
            entries: 0,
            bytes: 0,
            batches: 0,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| s);
        store.set_hostcall_fuel((limits.max_call_mib as usize) << 20);
        let deadline = Instant::now() + limits.deadline();
        store.set_epoch_deadline(CHECK_TICKS);
        let watched = cancel.clone();
        store.epoch_deadline_callback(move |mut ctx| {
            let stop = if watched.is_cancelled() {
                Stop::Cancelled
            } else if Instant::now() >= deadline {
                Stop::Deadline
            } else {
                return Ok(UpdateDeadline::Continue(CHECK_TICKS));
            };
            ctx.data_mut().stopped = Some(stop);
            Err(Trap::Interrupt.into())
        });
        let ended = self.block_on(async {
            tokio::select! {
                r = invoke(&mut store, &loaded.pre, call) => Ok(r),
                _ = tokio::time::sleep_until(deadline.into()) => Err(Stop::Deadline),
                _ = cancel.cancelled() => Err(Stop::Cancelled),
            }
        });
        let mut state = store.into_data();
        // Database connections go back or close on the runtime they were opened on.
        let databases = std::mem::take(&mut state.databases);
        self.block_on(async move { drop(databases) });
        state.report_dropped_logs();
        for refusal in state.http.refusals() {
            state.observer.log(Level::Warn, &refusal);
        }
        let name = &loaded.manifest.name;
        let e = match ended {
            Ok(Ok(answer)) => {
                let counts = Counts {
                    entries: state.entries,
                    bytes: state.bytes,
                    batches: state.batches,
                    peak_memory: state.peak_memory as u64,
                    observer: state.observer,
                };
                return Ok((answer, counts));
            }
            Ok(Err(e)) => Some(e),
            Err(stop) => {
                state.stopped.get_or_insert(stop);
                None
            }
        };
        Err(classify(name, &state, e.as_ref(), &stderr.text()))
    }
}

/// Says which limit stopped a run, or what else went wrong, with the connector's stderr.
fn classify(connector: &str, state: &RunState, e: Option<&wasmtime::Error>, stderr: &str) -> Error {
    let connector = connector.to_owned();
    let limits = &state.limits;
    let limit = |limit: LimitHit, detail: String| Error::Limit {
        connector: connector.clone(),
        limit,
        detail,
    };
    if let Some((hit, detail)) = state.limit_hit.clone().or_else(|| state.quota.hit()) {
        return limit(hit, detail);
    }
    match state.stopped {
        Some(Stop::Cancelled) => return Error::Cancelled { connector },
        Some(Stop::Deadline) => {
            return limit(
                LimitHit::Deadline,
                format!(
                    "ran longer than {:?}",
                    Duration::from_secs(limits.deadline_secs)
                ),
            );
        }
        None => {}
    }
    let table_full = e.is_some_and(|e| {
        e.chain()
            .any(|c| matches!(c.downcast_ref(), Some(ResourceTableError::Full)))
    });
    if table_full {
        return limit(
            LimitHit::Handles,
            format!("held more than {} open handles", limits.max_handles),
        );
    }
    if state.memory_denied {
        return limit(
            LimitHit::Memory,
            format!("tried to grow its memory past {} MiB", limits.memory_mib),
        );
    }
    if let Some(p) = &state.protocol_error {
        return Error::Trap {
            connector,
            message: p.clone(),
        };
    }
    let mut message = match e.and_then(|e| e.downcast_ref::<Trap>()) {
        Some(t) => format!("trapped: {t}"),
        None => e.map(|e| format!("{e:#}")).unwrap_or_default(),
    };
    if !stderr.is_empty() {
        message.push_str("\nconnector stderr:");
        for line in stderr.lines() {
            message.push_str("\n  | ");
            message.push_str(&text::escape(line));
        }
    }
    Error::Trap { connector, message }
}
