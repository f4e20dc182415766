//! Notifications by mail: runs blocked for approval, failed runs, orders failed for good,
//! agents offline. A loop per server looks at the database every `check_s`; for each kind of
//! event whose period has passed since its last mail, it gathers what happened since it last
//! looked into one mail, queued in the outbox in the same transaction as the cursor moves. A
//! second step hands queued mails to the SMTP server, and keeps those that do not go for a
//! later try. Nothing here runs on an event's path: a slow or absent SMTP server never holds a
//! run back, and a mail that cannot go yet waits in the database, across restarts.

pub mod compose;
pub mod events;
pub mod outbox;
pub mod settings;
pub mod smtp;

use crate::db::Db;
use crate::error::Result;
use settings::{Kind, MailConfig};
use std::time::Duration;

/// Events committed less than this long ago are left for the next look: a transaction that
/// took its time before this moment may not have committed yet.
const SETTLE_MS: i64 = 2_000;

/// Mails handed over per look at the outbox.
const BATCH: i64 = 20;

/// The longest wait between two tries of one mail.
const RETRY_MAX_MS: i64 = 3_600_000;

/// What sends the notifications of one server.
pub struct Notifier {
    cfg: MailConfig,
    mailer: smtp::Mailer,
    db: Db,
    clock: crate::queue::Clock,
    public_url: Option<String>,
}

impl Notifier {
    /// The notifier `cfg` describes, or none when mail is not set up.
    pub fn new(
        cfg: &MailConfig,
        db: Db,
        clock: crate::queue::Clock,
        public_url: Option<String>,
    ) -> anyhow::Result<Option<Self>> {
        if !cfg.enabled() {
            return Ok(None);
        }
        Ok(Some(Notifier {
            mailer: smtp::Mailer::new(cfg)?,
            cfg: cfg.clone(),
            db,
            clock,
            public_url,
        }))
    }

    /// Runs until aborted.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tracing::info!(
            server = %self.mailer.server,
            recipients = self.cfg.to.len(),
            events = ?self.cfg.events.iter().map(|k| k.name()).collect::<Vec<_>>(),
            "mail notifications on"
        );
        tokio::spawn(async move {
            loop {
                if let Err(e) = self.look().await {
                    tracing::warn!("looking for events to mail failed: {}", e.message);
                }
                if let Err(e) = self.deliver().await {
                    tracing::warn!("sending queued mails failed: {}", e.message);
                }
                tokio::time::sleep(Duration::from_secs(self.cfg.check_s)).await;
            }
        })
    }

    /// Queues a mail for each kind that has new events and whose period has passed.
    pub async fn look(&self) -> Result<()> {
        for kind in Kind::ALL {
            if self.cfg.events.contains(&kind) {
                self.look_at(kind).await?;
            }
        }
        Ok(())
    }

    async fn look_at(&self, kind: Kind) -> Result<()> {
        let now = (self.clock)();
        let db = &self.db.pool;
        let cursor = outbox::cursor(db, kind, now).await?;
        let period_ms = (self.cfg.period_s as i64).saturating_mul(1000);
        if now - cursor.sent_ms < period_ms {
            return Ok(());
        }
        let to = now - SETTLE_MS;
        if to <= cursor.cursor_ms {
            return Ok(());
        }
        let offline_ms = (self.cfg.agent_offline_s as i64).saturating_mul(1000);
        let found = events::find(db, kind, cursor.cursor_ms, to, offline_ms).await?;
        let mail = (found.total > 0).then(|| {
            compose::compose(
                kind,
                &found.events,
                found.total,
                self.public_url.as_deref(),
                self.cfg.period_s,
            )
        });
        if outbox::advance(db, kind, cursor, to, mail.as_ref(), now).await?
            && let Some(m) = &mail
        {
            tracing::info!(kind = kind.name(), events = found.total, subject = %m.subject, "mail queued");
        }
        Ok(())
    }

    /// Hands the due mails over; those that do not go are kept for later.
    pub async fn deliver(&self) -> Result<()> {
        let db = &self.db.pool;
        let now = (self.clock)();
        let lease = (self.cfg.timeout_s as i64 * 4).saturating_mul(1000);
        for q in outbox::due(db, now, BATCH).await? {
            if !outbox::claim(db, &q, now + lease).await? {
                continue;
            }
            match self.mailer.send(&q.kind, &q.mail).await {
                Ok(()) => {
                    outbox::sent(db, q.id).await?;
                    tracing::info!(kind = %q.kind, subject = %q.mail.subject, server = %self.mailer.server, "mail sent");
                }
                Err(why) => {
                    let wait = retry_after(self.cfg.retry_s, q.attempts + 1);
                    outbox::failed(db, q.id, &why, (self.clock)() + wait).await?;
                    tracing::warn!(
                        kind = %q.kind,
                        subject = %q.mail.subject,
                        server = %self.mailer.server,
                        attempt = q.attempts + 1,
                        "the mail could not be handed over ({why}); kept, trying again in {}",
                        humantime::format_duration(Duration::from_millis(wait as u64))
                    );
                }
            }
        }
        Ok(())
    }
}

/// The wait after `attempts` failed tries: `retry_s`, doubled each time, an hour at most.
pub fn retry_after(retry_s: u64, attempts: i64) -> i64 {
    let shift = attempts.saturating_sub(1).clamp(0, 20) as u32;
    (retry_s as i64)
        .saturating_mul(1000)
        .saturating_mul(1 << shift)
        .min(RETRY_MAX_MS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn retries_back_off_to_an_hour() {
        assert_eq!(super::retry_after(30, 1), 30_000);
        assert_eq!(super::retry_after(30, 2), 60_000);
        assert_eq!(super::retry_after(30, 3), 120_000);
        assert_eq!(super::retry_after(30, 50), 3_600_000);
    }
}
