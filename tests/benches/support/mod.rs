//! What the benchmarks share: an observer that counts entries, sizes from the environment, and
//! (in `queue`) a server process with simulated agents.

#![allow(dead_code)] // each benchmark uses part of it

pub mod queue;

use idgard_host::Observer;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counts the entries a run emits and drops them (and its logs).
#[derive(Clone, Default)]
pub struct Count(pub Arc<AtomicU64>);

impl Count {
    /// Entries counted so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Observer for Count {
    fn log(&mut self, _level: idgard_host::Level, _message: &str) {}
    fn entries(&mut self, _batch: &[u8], count: u32) -> anyhow::Result<()> {
        self.0.fetch_add(u64::from(count), Ordering::Relaxed);
        Ok(())
    }
}

/// A size from the environment, or its default.
pub fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
