//! The agent's side of the server's API: HTTPS with the server's certificate pinned, access
//! tokens fetched and renewed, errors sorted into "try again later" and "no".

use anyhow::{Context, Result};
use idgard_protocol::{ErrorBody, ErrorCode, TokenAnswer, TokenRequest};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// What an enrolled agent keeps (sealed, 0600, in its work folder).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// The server's base URL.
    pub server: String,
    /// SHA-256 of the server's certificate, hex; `None` for a development HTTP server.
    pub fingerprint: Option<String>,
    /// The agent's id.
    pub agent_id: i64,
    /// The agent's name.
    pub agent_name: String,
    /// The client secret.
    pub client_secret: String,
    /// The server's token-signing public key (PEM), pinned: launch tokens are checked with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<String>,
}

impl Credentials {
    /// Reads them; credentials written in clear by an earlier version, or sealed under a key
    /// older than the current one, are sealed again on the way.
    pub fn load(ring: &idgard_vault::Keyring, path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| {
            format!(
                "cannot read {} (enrol this agent first: idgard-agent enrol --server URL --token T)",
                path.display()
            )
        })?;
        if !idgard_vault::is_sealed(&bytes) {
            let creds: Self = serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is damaged", path.display()))?;
            creds.save(ring, path)?;
            tracing::info!(
                "sealed the credentials {} written by an earlier version",
                path.display()
            );
            return Ok(creds);
        }
        let plain = idgard_vault::read_file(ring, path)?;
        let creds: Self = serde_json::from_slice(&plain)
            .with_context(|| format!("{} is damaged", path.display()))?;
        if idgard_vault::key_of(&bytes) != Some(ring.current()) {
            creds.save(ring, path)?;
            tracing::info!("sealed the credentials again under key {}", ring.current());
        }
        Ok(creds)
    }

    /// Writes them, sealed.
    pub fn save(&self, ring: &idgard_vault::Keyring, path: &Path) -> Result<()> {
        Ok(idgard_vault::write_file(
            ring,
            path,
            &serde_json::to_vec(self)?,
        )?)
    }
}

/// An HTTP client for `server`, pinned to `fingerprint` when given (the certificate's SHA-256
/// recorded at enrolment).
pub fn http_client(
    server: &str,
    fingerprint: Option<&str>,
    identity: Option<&idgard_client::pin::ClientIdentity>,
) -> Result<reqwest::Client> {
    idgard_client::pin::http_client_as(server, fingerprint, "idgard-agent", identity)
}

/// Why a call failed.
#[derive(Debug)]
pub enum CallError {
    /// The server answered no, for a reason that trying again will not change. Callers
    /// decide on the code, never on the status.
    Refused {
        /// The status (for messages).
        status: StatusCode,
        /// Its stable code.
        code: ErrorCode,
        /// Its message.
        message: String,
    },
    /// Something on this side failed (a spooled file could not be read).
    Local(String),
    /// Worth trying again: network errors, 5xx, 429, 408.
    Later {
        /// What happened.
        message: String,
        /// The server's Retry-After, if any.
        retry_after: Option<Duration>,
    },
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Refused {
                status,
                code,
                message,
            } => write!(f, "{status} {code}: {message}"),
            CallError::Later { message, .. } | CallError::Local(message) => write!(f, "{message}"),
        }
    }
}

impl std::error::Error for CallError {}

impl CallError {
    /// The refusal's code, if the server refused.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            CallError::Refused { code, .. } => Some(*code),
            CallError::Later { .. } | CallError::Local(_) => None,
        }
    }
}

/// The API client of an enrolled agent.
pub struct Client {
    http: reqwest::Client,
    creds: Credentials,
    token: Mutex<Option<(String, Instant)>>,
}

impl Client {
    /// A client for these credentials, presenting `identity` when the server asks for a client
    /// certificate.
    pub fn new(
        creds: Credentials,
        identity: Option<&idgard_client::pin::ClientIdentity>,
    ) -> Result<Self> {
        Ok(Self {
            http: http_client(&creds.server, creds.fingerprint.as_deref(), identity)?,
            creds,
            token: Mutex::new(None),
        })
    }

    async fn token(&self, renew: bool) -> Result<String, CallError> {
        let mut held = self.token.lock().await;
        if let Some((t, until)) = &*held
            && !renew
            && Instant::now() < *until
        {
            return Ok(t.clone());
        }
        let answer: TokenAnswer = self
            .send(
                Method::POST,
                "/api/v1/agent/token",
                Some(&TokenRequest {
                    agent_id: self.creds.agent_id,
                    client_secret: self.creds.client_secret.clone(),
                }),
                None,
                None,
            )
            .await?;
        // Renew well before it expires.
        let until = Instant::now() + Duration::from_secs(answer.expires_in * 3 / 4);
        *held = Some((answer.access_token.clone(), until));
        Ok(answer.access_token)
    }

    /// Calls the API with a JSON body (or none) and reads a JSON answer.
    pub async fn call<B: Serialize, R: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<R, CallError> {
        let token = self.token(false).await?;
        match self
            .send(method.clone(), path, body, None, Some(&token))
            .await
        {
            Err(e) if is_unauthorized(&e) => {
                let token = self.token(true).await?;
                self.send(method, path, body, None, Some(&token)).await
            }
            other => other,
        }
    }

    /// Sends raw bytes (an upload chunk).
    pub async fn put_bytes<R: DeserializeOwned>(
        &self,
        path: &str,
        bytes: Vec<u8>,
    ) -> Result<R, CallError> {
        let token = self.token(false).await?;
        self.send::<(), R>(Method::PUT, path, None, Some(bytes), Some(&token))
            .await
    }

    /// Downloads raw bytes (a package bundle), at most `max` of them.
    pub async fn get_bytes(&self, path: &str, max: usize) -> Result<Vec<u8>, CallError> {
        let token = self.token(false).await?;
        let mut response = match self
            .send_raw::<()>(Method::GET, path, None, None, Some(&token))
            .await
        {
            Err(e) if is_unauthorized(&e) => {
                let token = self.token(true).await?;
                self.send_raw::<()>(Method::GET, path, None, None, Some(&token))
                    .await?
            }
            other => other?,
        };
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| CallError::Later {
            message: format!("download of {path} cut: {e}"),
            retry_after: None,
        })? {
            if bytes.len() + chunk.len() > max {
                return Err(CallError::Local(format!(
                    "{path} is larger than {max} bytes"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }

    async fn send<B: Serialize, R: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        bytes: Option<Vec<u8>>,
        token: Option<&str>,
    ) -> Result<R, CallError> {
        let response = self.send_raw(method, path, body, bytes, token).await?;
        if response.status() == StatusCode::NO_CONTENT {
            return serde_json::from_str("null").map_err(|e| CallError::Later {
                message: format!("unexpected empty answer: {e}"),
                retry_after: None,
            });
        }
        response.json::<R>().await.map_err(|e| CallError::Later {
            message: format!("unreadable answer from {path}: {e}"),
            retry_after: None,
        })
    }

    /// Sends a request; a success answers with the response, anything else with its error.
    async fn send_raw<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        bytes: Option<Vec<u8>>,
        token: Option<&str>,
    ) -> Result<reqwest::Response, CallError> {
        let url = format!("{}{path}", self.creds.server.trim_end_matches('/'));
        let mut req = self
            .http
            .request(method, &url)
            // A server-side task (a synchronize of a large export) answers when it is done.
            .timeout(Duration::from_secs(if path.ends_with("/run") {
                3600
            } else {
                90
            }));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        if let Some(b) = bytes {
            req = req
                .header("content-type", "application/octet-stream")
                .body(b);
        }
        let response = req.send().await.map_err(|e| CallError::Later {
            message: format!(
                "cannot reach the server: {}",
                idgard_protocol::error_chain(&e)
            ),
            retry_after: None,
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = response.text().await.unwrap_or_default();
        let (code, message) = match serde_json::from_str::<ErrorBody>(&text) {
            Ok(b) => (b.error.code, b.error.message),
            // Not the API speaking (a proxy, a load balancer): only the status says anything.
            Err(_) => (code_of_status(status), text.chars().take(200).collect()),
        };
        if code.is_transient()
            || status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT
        {
            Err(CallError::Later {
                message: format!("{status} {code}: {message}"),
                retry_after,
            })
        } else {
            Err(CallError::Refused {
                status,
                code,
                message,
            })
        }
    }
}

/// The server no longer takes the access token (renew it and try once more).
fn is_unauthorized(e: &CallError) -> bool {
    matches!(
        e,
        CallError::Refused {
            code: ErrorCode::Unauthorized,
            ..
        }
    )
}

/// The code of an answer that did not come from the API itself.
fn code_of_status(status: StatusCode) -> ErrorCode {
    match status {
        StatusCode::UNAUTHORIZED => ErrorCode::Unauthorized,
        StatusCode::FORBIDDEN => ErrorCode::Forbidden,
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::TooLarge,
        s if s.is_server_error() => ErrorCode::Unavailable,
        _ => ErrorCode::Unknown,
    }
}

/// A delay before trying again: doubling from 200 ms to 30 s, with ±50 % jitter so that agents
/// cut off together do not come back together.
pub fn backoff(failures: u32, retry_after: Option<Duration>) -> Duration {
    let base = 200u64.saturating_mul(1 << failures.min(8)).min(30_000);
    let mut r = [0u8; 2];
    let _ = getrandom::fill(&mut r);
    let jitter = u64::from(u16::from_le_bytes(r)) * base / 65_535;
    let d = Duration::from_millis(base / 2 + jitter);
    retry_after.map_or(d, |ra| ra.max(d))
}
