//! The engine every run shares: its configuration (pooling allocator, epoch interruption) and the
//! thread that advances its epoch.

use crate::error::Error;
use crate::{RuntimeOptions, limits};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

pub(crate) fn config(options: &RuntimeOptions) -> Config {
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
    config
}

/// Advances the engine's epoch every [`limits::EPOCH_TICK`] until the returned flag is set.
pub(crate) fn start_ticker(engine: &Engine) -> Result<Arc<AtomicBool>, Error> {
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
    Ok(stop)
}
