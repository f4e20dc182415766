//! Delivering a finished task: its upload (resumable, checksummed), then its completion,
//! retried until the server has them or refuses them for good.

use crate::client::{CallError, backoff};
use crate::daemon::Agent;
use crate::spool::{Spooled, SpooledUpload};
use anyhow::{Result, bail};
use idgard_protocol::{
    Completion, ErrorCode, ExportResult, NewUpload, TaskOutcome, TaskView, UploadView,
};
use reqwest::Method;
use serde::Serialize;

impl Agent {
    /// A call retried with backoff while the server cannot answer (a refusal is final).
    pub(crate) async fn call_retrying<B: Serialize, R: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<R> {
        let mut failures = 0;
        loop {
            match self.client.call(method.clone(), path, body).await {
                Ok(r) => return Ok(r),
                Err(e @ CallError::Refused { .. }) => bail!("{path}: {e}"),
                Err(e) => {
                    failures += 1;
                    if failures > 8 {
                        bail!("{path}: {e}");
                    }
                    let delay = match &e {
                        CallError::Later { retry_after, .. } => backoff(failures, *retry_after),
                        CallError::Refused { .. } | CallError::Local(_) => backoff(failures, None),
                    };
                    tracing::warn!("{path}: {e}; again in {delay:.1?}");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Uploads (if any) and completes, retrying what can be retried; the spool entry goes
    /// once the server has the outcome or refuses it for good.
    pub(crate) async fn deliver(&self, mut s: Spooled) {
        let mut failures = 0;
        loop {
            match self.try_deliver(&mut s).await {
                Ok(view) => {
                    tracing::info!(task = s.task, state = view.state.as_str(), "task completed");
                    self.forget(&s);
                    return;
                }
                Err(CallError::Refused {
                    code: ErrorCode::StaleLease | ErrorCode::NotFound | ErrorCode::Conflict,
                    message,
                    ..
                }) => {
                    tracing::warn!(
                        task = s.task,
                        "the server does not take this result ({message}); dropped"
                    );
                    self.forget(&s);
                    return;
                }
                Err(e) => {
                    failures += 1;
                    let delay = match &e {
                        CallError::Later { retry_after, .. } => backoff(failures, *retry_after),
                        CallError::Refused { .. } | CallError::Local(_) => {
                            if failures > 5 {
                                tracing::error!(
                                    task = s.task,
                                    "result refused for good ({e}); kept in the spool"
                                );
                                return;
                            }
                            backoff(failures, None)
                        }
                    };
                    tracing::warn!(
                        task = s.task,
                        "cannot deliver the result ({e}); again in {delay:.1?}"
                    );
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    pub(crate) async fn try_deliver(&self, s: &mut Spooled) -> Result<TaskView, CallError> {
        if let (Some(up), Some(TaskOutcome::Succeeded { result })) = (&s.upload, &mut s.outcome)
            && let Some(mut export) = ExportResult::parse(result)
            && export.upload_id.is_none()
        {
            export.upload_id = Some(self.upload(s.task, s.fence, up).await?);
            *result = export.to_json();
            let _ = self.save(s);
        }
        self.client
            .call(
                Method::POST,
                &format!("/api/v1/agent/tasks/{}/complete", s.task),
                Some(&Completion {
                    fence: s.fence,
                    outcome: s.outcome.clone().expect("outcome"),
                }),
            )
            .await
    }

    /// Sends a file into a slot, from wherever the slot got to.
    pub(crate) async fn upload(
        &self,
        task: i64,
        fence: i64,
        up: &SpooledUpload,
    ) -> Result<i64, CallError> {
        let chunk = self
            .timings
            .lock()
            .expect("timings")
            .chunk_bytes
            .clamp(64 << 10, 16 << 20);
        let mut slot: UploadView = self
            .client
            .call(
                Method::POST,
                &format!("/api/v1/agent/tasks/{task}/uploads"),
                Some(&NewUpload {
                    fence,
                    name: "entries".into(),
                    size: up.size,
                    sha256: up.sha256.clone(),
                }),
            )
            .await?;
        let mut file = idgard_vault::SealedFile::open(&self.vault, &up.path)
            .map_err(|e| CallError::Local(e.to_string()))?;
        while !slot.complete {
            let len = chunk.min(slot.size - slot.received) as usize;
            let mut buf = vec![0u8; len];
            file.read_exact_at(&mut buf, slot.received)
                .map_err(|e| CallError::Local(e.to_string()))?;
            match self
                .client
                .put_bytes::<UploadView>(
                    &format!("/api/v1/agent/uploads/{}?offset={}", slot.id, slot.received),
                    buf,
                )
                .await
            {
                Ok(next) => slot = next,
                Err(CallError::Refused {
                    code: ErrorCode::Conflict,
                    ..
                }) => {
                    // Somewhere else than we thought: ask where, and go on from there.
                    slot = self
                        .client
                        .call::<(), UploadView>(
                            Method::GET,
                            &format!("/api/v1/agent/uploads/{}", slot.id),
                            None,
                        )
                        .await?;
                }
                Err(e) => return Err(e),
            }
        }
        tracing::info!(
            upload = slot.id,
            entries = slot.entries.unwrap_or(0),
            bytes = slot.size,
            "upload complete"
        );
        Ok(slot.id)
    }
}
