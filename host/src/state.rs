//! The state of one run (one store): what the connector may do through the host's imports, and
//! what it did. Every import checks its input here, before anything reaches the observer.

use crate::bindings::{imports, wit};
use crate::filesystem::Quota;
use crate::limits::{LOG_LINE_COST, LimitHit, Limits};
use crate::{Level, Observer, text};
use idgard_model::wire;
use std::collections::BTreeMap;
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Longest message kept from one log call; longer ones are cut.
pub(crate) const MAX_LOG_MESSAGE: usize = 8 * 1024;
/// Longest progress message shown.
const MAX_PROGRESS_MESSAGE: usize = 200;

/// Why the host stopped a run from outside the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The run's deadline passed.
    Deadline,
    /// Someone cancelled the run.
    Cancelled,
}

pub(crate) struct RunState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) quota: Arc<Quota>,
    pub(crate) limits: Limits,
    pub(crate) memory_denied: bool,
    pub(crate) peak_memory: usize,
    pub(crate) limit_hit: Option<(LimitHit, String)>,
    pub(crate) protocol_error: Option<String>,
    pub(crate) stopped: Option<Stop>,
    pub(crate) observer: Box<dyn Observer>,
    pub(crate) secrets: BTreeMap<String, String>,
    /// The granted endpoints, resolved at the start of the run.
    pub(crate) endpoints: crate::network::Endpoints,
    /// The granted HTTP services, and the requests refused.
    pub(crate) http: crate::http::Http,
    /// The granted databases, opened at first use.
    pub(crate) databases: crate::sql::Databases,
    /// The entity types the connector declared; an entry of another type is refused.
    pub(crate) entity_types: Vec<String>,
    pub(crate) exporting: bool,
    pub(crate) log_bytes: usize,
    pub(crate) logs_dropped: u64,
    pub(crate) entries: u64,
    pub(crate) bytes: u64,
    pub(crate) batches: u64,
}

impl RunState {
    /// The notice of dropped log lines, sent once at the end of the run.
    pub(crate) fn report_dropped_logs(&mut self) {
        if self.logs_dropped > 0 {
            let n = self.logs_dropped;
            let kib = self.limits.max_log_kib;
            self.observer.log(
                Level::Warn,
                &format!(
                    "{n} log messages dropped: the run wrote more than {kib} KiB of logs \
                     (each line counts at least {LOG_LINE_COST} bytes)"
                ),
            );
        }
    }

    /// Checks one batch entry by entry; returns how many entries it holds.
    fn check_batch(&self, batch: &[u8]) -> Result<u32, String> {
        let mut count = 0u32;
        for entry in wire::decode(batch) {
            let entry = entry.map_err(|e| format!("batch {}: {e}", self.batches + 1))?;
            if !self.entity_types.iter().any(|t| t == entry.entity_type) {
                return Err(format!(
                    "batch {}, entry {}: entity type `{}` is not one the connector declares ({})",
                    self.batches + 1,
                    count + 1,
                    text::shown(entry.entity_type, 64),
                    self.entity_types.join(", ")
                ));
            }
            count += 1;
        }
        Ok(count)
    }
}

impl WasiView for RunState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wasmtime_wasi_http::WasiHttpView for RunState {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView {
            ctx: &mut self.http.ctx,
            table: &mut self.table,
            hooks: &mut self.http.hooks,
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
        let cost = message.len().clamp(LOG_LINE_COST, MAX_LOG_MESSAGE);
        if self.log_bytes + cost > budget {
            self.log_bytes = budget;
            self.logs_dropped += 1;
            return Ok(());
        }
        self.log_bytes += cost;
        self.observer
            .log(level.into(), &text::shown(&message, MAX_LOG_MESSAGE));
        Ok(())
    }

    fn progress(&mut self, done: u64, total: Option<u64>, message: String) -> wasmtime::Result<()> {
        self.observer
            .progress(done, total, &text::shown(&message, MAX_PROGRESS_MESSAGE));
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
        let count = match self.check_batch(&batch) {
            Ok(n) => n,
            Err(e) => {
                self.protocol_error = Some(e);
                return Err(wasmtime::format_err!("malformed batch"));
            }
        };
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
