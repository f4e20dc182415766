//! The dashboard's and the connections page's figures, computed in the background. Counting a
//! repository of millions of accounts takes about a second (a grouped scan); a page must not
//! wait that long, so the figures are refreshed every [`REFRESH`] and pages show them with the
//! time they were taken. The first page before any refresh computes them itself.

use crate::error::Result;
use crate::identity::Engine;
use idgard_protocol::{ConnectionView, Overview};
use std::sync::Mutex;
use std::time::Duration;

/// How often the figures are taken again.
pub const REFRESH: Duration = Duration::from_secs(15);

/// The last figures taken, with when (ms since the epoch).
#[derive(Default)]
pub struct Figures {
    overview: Mutex<Option<(i64, Overview)>>,
    connections: Mutex<Option<(i64, Vec<ConnectionView>)>>,
}

impl Figures {
    /// Takes the figures now.
    pub async fn refresh(&self, engine: &Engine) -> Result<()> {
        let at = engine.queue.now();
        let o = engine.overview().await?;
        *self.overview.lock().expect("figures") = Some((at, o));
        let at = engine.queue.now();
        let c = engine.connections().await?;
        *self.connections.lock().expect("figures") = Some((at, c));
        Ok(())
    }

    /// The overview and when it was taken.
    pub async fn overview(&self, engine: &Engine) -> Result<(i64, Overview)> {
        if let Some(o) = self.overview.lock().expect("figures").clone() {
            return Ok(o);
        }
        let taken = (engine.queue.now(), engine.overview().await?);
        *self.overview.lock().expect("figures") = Some(taken.clone());
        Ok(taken)
    }

    /// The connections and when they were taken.
    pub async fn connections(&self, engine: &Engine) -> Result<(i64, Vec<ConnectionView>)> {
        if let Some(c) = self.connections.lock().expect("figures").clone() {
            return Ok(c);
        }
        let taken = (engine.queue.now(), engine.connections().await?);
        *self.connections.lock().expect("figures") = Some(taken.clone());
        Ok(taken)
    }
}
