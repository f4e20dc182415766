//! Sign-ins that fail (a wrong client secret, enrolment token, administrator token or access
//! token) are counted per source address and per agent, and logged in aggregate (at most once
//! per period). Past 20 failures in a minute (`limits.failed_signins`), a failure is answered `rate_limited` (429) instead
//! of `unauthorized`, and an address over the limit may not try a client secret or an
//! enrolment token again before the minute ends. Valid tokens are never refused for someone
//! else's failures: an attacker cannot lock an agent or an administrator out by failing on
//! purpose (the limit per agent only counts and answers 429; it never refuses a right secret).

use super::conn::Pace;
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Failed sign-ins allowed per key and window, unless configured (`limits.failed_signins`).
pub const FAILURES_PER_WINDOW: u32 = 20;
/// The window.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Keys remembered at most (then forgotten all at once).
const KEYS_MAX: usize = 100_000;

/// What failures are counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key {
    /// A source address.
    Peer(IpAddr),
    /// An agent whose client secret was tried.
    Agent(i64),
    /// A login tried at the UI's sign-in (a hash of it, lower-cased).
    Login(u64),
}

impl Key {
    /// The key of a login typed at the UI's sign-in.
    pub fn login(login: &str) -> Key {
        Key::Login(xxhash_rust::xxh3::xxh3_64(login.to_lowercase().as_bytes()))
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Peer(ip) => write!(f, "address {ip}"),
            Key::Agent(id) => write!(f, "agent {id}"),
            Key::Login(_) => write!(f, "this login"),
        }
    }
}

/// Failed sign-ins, by key.
pub struct Throttle {
    windows: Mutex<HashMap<Key, (Instant, u32)>>,
    failed: Mutex<u64>,
    pace: Pace,
    /// Failures allowed per key and window.
    limit: u32,
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new(FAILURES_PER_WINDOW)
    }
}

impl Throttle {
    /// A throttle allowing `limit` failures per key and window.
    pub fn new(limit: u32) -> Self {
        Throttle {
            windows: Mutex::default(),
            failed: Mutex::default(),
            pace: Pace::default(),
            limit,
        }
    }

    /// Refuses when one of `keys` used up its failures in the current window.
    pub fn check(&self, keys: &[Key]) -> Result<()> {
        self.over(keys, self.limit)
    }

    /// Refuses when one of `keys` has `limit` failures or more in the current window.
    fn over(&self, keys: &[Key], limit: u32) -> Result<()> {
        let now = Instant::now();
        let windows = self.windows.lock().expect("throttle");
        for key in keys {
            if let Some(&(start, count)) = windows.get(key)
                && now < start + WINDOW
                && count >= limit
            {
                let wait = (start + WINDOW - now).as_secs() + 1;
                return Err(Error::rate_limited(format!(
                    "too many failed sign-ins for {key}: try again in {wait} s"
                )));
            }
        }
        Ok(())
    }

    /// Counts a failed sign-in against `keys`.
    pub fn failed(&self, keys: &[Key], why: &str) {
        let now = Instant::now();
        {
            let mut windows = self.windows.lock().expect("throttle");
            if windows.len() >= KEYS_MAX {
                windows.clear();
            }
            for key in keys {
                let w = windows.entry(*key).or_insert((now, 0));
                if now >= w.0 + WINDOW {
                    *w = (now, 0);
                }
                w.1 += 1;
            }
        }
        let mut failed = self.failed.lock().expect("failed");
        *failed += 1;
        if self.pace.ready("failed sign-ins") {
            let keys: Vec<String> = keys.iter().map(Key::to_string).collect();
            tracing::warn!(
                failed = *failed,
                "failed sign-ins: {} since the last report; the latest from {} ({why})",
                *failed,
                keys.join(", ")
            );
            *failed = 0;
        }
    }

    /// Runs a sign-in: refused at once when one of `first` is over the limit; a failure
    /// (`unauthorized`) is counted against `counted`, and answered `rate_limited` once one of
    /// them is over the limit.
    pub async fn guard<T>(
        &self,
        first: &[Key],
        counted: &[Key],
        sign_in: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        self.check(first)?;
        match sign_in.await {
            Err(e) if e.code == crate::error::ErrorCode::Unauthorized => {
                self.failed(counted, &e.message);
                self.over(counted, self.limit.saturating_add(1))?;
                Err(e)
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn failures_past_the_limit_are_refused_until_the_window_ends() {
        let t = Throttle::default();
        let ip = Key::Peer("10.0.0.1".parse().unwrap());
        let other = Key::Peer("10.0.0.2".parse().unwrap());
        for _ in 0..FAILURES_PER_WINDOW {
            t.check(&[ip]).unwrap();
            t.failed(&[ip, Key::Agent(1)], "wrong secret");
        }
        assert_eq!(
            t.check(&[ip]).unwrap_err().code,
            crate::error::ErrorCode::RateLimited
        );
        // The agent's key is used up too, from any address; another address for another
        // agent is not.
        assert!(t.check(&[other, Key::Agent(1)]).is_err());
        t.check(&[other, Key::Agent(2)]).unwrap();
        tokio::time::advance(WINDOW).await;
        t.check(&[ip, Key::Agent(1)]).unwrap();
    }
}
