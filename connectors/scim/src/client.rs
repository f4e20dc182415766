//! The SCIM service as the connector speaks to it: what its ServiceProviderConfig says it
//! supports, requests with SCIM's media type, and answers of 429 (or 503) waited out as the
//! service asks, a bounded number of times.

use crate::config::Config;
use idgard_sdk::Error;
use idgard_sdk::http::{self, Request, Response};
use serde_json::Value;
use std::time::Duration;

/// SCIM's media type (RFC 7644, 3.1).
pub const MEDIA: &str = "application/scim+json";
/// Longest wait a Retry-After may impose on one request.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// A SCIM service.
pub struct Scim {
    base: String,
    retries: u32,
    /// `filter` is supported (incremental exports filter on `meta.lastModified`).
    pub filter: bool,
    /// Largest page the service returns.
    pub max_results: u32,
    /// ETags are supported: updates and deletes carry `If-Match`.
    pub etag: bool,
}

impl Scim {
    /// Reads the service's ServiceProviderConfig.
    pub fn connect(config: &Config) -> Result<Self, Error> {
        let mut scim = Scim {
            base: config.url.clone(),
            retries: config.retries,
            filter: false,
            max_results: config.page_size,
            etag: false,
        };
        let spc: Value = scim
            .send(scim.get("/ServiceProviderConfig"))?
            .success()
            .map_err(|e| Error::new(e.kind, format!("ServiceProviderConfig: {}", e.message)))?
            .json()?;
        let supported = |name: &str| spc[name]["supported"].as_bool().unwrap_or(false);
        scim.filter = supported("filter");
        scim.etag = supported("etag");
        if let Some(max) = spc["filter"]["maxResults"].as_u64().filter(|m| *m > 0) {
            scim.max_results = config.page_size.min(u32::try_from(max).unwrap_or(u32::MAX));
        }
        if !supported("patch") {
            idgard_sdk::log::warn("the service says it does not support PATCH: updates will fail");
        }
        Ok(scim)
    }

    /// The URL of a path under the base (`/Users`).
    pub fn url(&self, path: &str) -> String {
        http::join(&self.base, path)
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Request {
        Request::get(self.url(path)).header("accept", MEDIA)
    }

    /// A request with a SCIM JSON body.
    pub fn with_body(&self, method: &str, path: &str, body: &Value) -> Result<Request, Error> {
        Request::new(method, self.url(path))
            .header("accept", MEDIA)
            .header("content-type", MEDIA)
            .json(body)
    }

    /// Sends a request, waiting out 429 and 503 answers as the service asks (`Retry-After`, one
    /// second when it does not say) up to the configured number of times. The last answer is
    /// returned whatever its status.
    pub fn send(&self, request: Request) -> Result<Response, Error> {
        let mut tries = 0;
        loop {
            let answer = request.send()?;
            if !busy(&answer) || tries >= self.retries {
                return Ok(answer);
            }
            tries += 1;
            wait(&answer);
        }
    }

    /// Sends many requests, `width` side by side; the busy answers are tried again as
    /// [`Scim::send`] does. One result per request, in order.
    pub fn send_many(&self, requests: Vec<Request>, width: usize) -> Vec<Result<Response, Error>> {
        let mut out = Vec::with_capacity(requests.len());
        for group in requests.chunks(width.max(1)) {
            for (answer, request) in http::send_all(group).into_iter().zip(group) {
                out.push(match answer {
                    Ok(a) if busy(&a) && self.retries > 0 => {
                        wait(&a);
                        self.send(request.clone())
                    }
                    other => other,
                });
            }
        }
        out
    }
}

/// A 429 or a 503: the service asks to come back later.
pub fn busy(answer: &Response) -> bool {
    matches!(answer.status(), 429 | 503)
}

fn wait(answer: &Response) {
    let d = answer.retry_after().unwrap_or(Duration::from_secs(1));
    std::thread::sleep(d.min(MAX_WAIT));
}

/// What a SCIM error answer says (`detail`, `scimType`), or the start of its body.
pub fn explain(answer: &Response) -> String {
    let parsed: Option<Value> = answer.json().ok();
    match parsed {
        Some(v) if v["detail"].is_string() => {
            let kind = v["scimType"]
                .as_str()
                .map(|t| format!(" ({t})"))
                .unwrap_or_default();
            format!(
                "{}{kind}: {}",
                answer.status(),
                v["detail"].as_str().unwrap_or("")
            )
        }
        _ => {
            let body = String::from_utf8_lossy(&answer.bytes()[..answer.bytes().len().min(200)])
                .into_owned();
            format!("{}: {}", answer.status(), body.trim())
        }
    }
}
