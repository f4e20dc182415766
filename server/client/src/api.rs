//! Typed calls to the server's administration API. A refusal becomes an error carrying the
//! server's message and stable code; a transport failure says which server did not answer.

use crate::context::Context;
use anyhow::{Result, anyhow};
use idgard_protocol::{ApiError, ErrorBody};
use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// The API of one server, as one administrator.
pub struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

/// The server said no.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.message)]
pub struct Refused(pub ApiError);

impl Api {
    /// A client for the context's server.
    pub fn new(context: &Context) -> Result<Self> {
        Ok(Self {
            http: crate::pin::http_client(
                &context.server,
                context.fingerprint.as_deref(),
                "idgard",
            )?,
            base: context.server.trim_end_matches('/').to_owned(),
            token: context.token.clone(),
        })
    }

    /// `GET`.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call::<(), T>(Method::GET, path, None).await
    }

    /// `POST` with a JSON body.
    pub async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        self.call(Method::POST, path, Some(body)).await
    }

    /// `DELETE`, with an answer or none (`204`).
    pub async fn delete(&self, path: &str) -> Result<()> {
        self.send::<()>(Method::DELETE, path, None, None)
            .await
            .map(drop)
    }

    /// `POST` with raw bytes (a package bundle); its JSON answer.
    pub async fn post_bytes<T: DeserializeOwned>(&self, path: &str, bytes: Vec<u8>) -> Result<T> {
        let answer = self
            .send::<()>(Method::POST, path, None, Some(bytes))
            .await?;
        serde_json::from_slice(&answer)
            .map_err(|e| anyhow!("the server's answer to {path} does not fit ({e})"))
    }

    /// One call; its JSON answer.
    pub async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T> {
        let bytes = self.send(method, path, body, None).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| anyhow!("the server's answer to {path} does not fit ({e})"))
    }

    async fn send<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        raw: Option<Vec<u8>>,
    ) -> Result<bytes::Bytes> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(120));
        if let Some(b) = body {
            req = req.json(b);
        }
        if let Some(raw) = raw {
            req = req.header("content-type", "application/x-tar").body(raw);
        }
        let res = req.send().await.map_err(|e| {
            anyhow!(
                "{} did not answer: {}",
                self.base,
                idgard_protocol::error_chain(&e)
            )
        })?;
        let status = res.status();
        let bytes = res.bytes().await.map_err(|e| {
            anyhow!(
                "{} broke off its answer: {}",
                self.base,
                idgard_protocol::error_chain(&e)
            )
        })?;
        if status.is_success() {
            return Ok(bytes);
        }
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(b) => Err(Refused(b.error).into()),
            Err(_) => Err(anyhow!("{} answered {status}", self.base)),
        }
    }
}

/// An API path from segments, each percent-encoded (keys hold `/`, spaces, `é`, `,` and `=`),
/// and query pairs (absent values left out).
pub fn path(segments: &[&str], query: &[(&str, Option<String>)]) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.');
    let mut out = String::from(idgard_protocol::API);
    for s in segments {
        out.push('/');
        out.extend(utf8_percent_encode(s, SEGMENT));
    }
    let mut first = true;
    for (name, value) in query {
        if let Some(v) = value {
            out.push(if first { '?' } else { '&' });
            first = false;
            out.push_str(name);
            out.push('=');
            out.extend(utf8_percent_encode(v, SEGMENT));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_are_encoded_in_paths_and_queries() {
        assert_eq!(
            super::path(
                &[
                    "connections",
                    "dir",
                    "entries",
                    "cn=Zoé Martin,ou=a/b",
                    "history"
                ],
                &[
                    ("after", Some("x&y".into())),
                    ("limit", None),
                    ("s", Some("1".into()))
                ]
            ),
            "/api/v1/connections/dir/entries/cn%3DZo%C3%A9%20Martin%2Cou%3Da%2Fb/history?after=x%26y&s=1"
        );
    }
}
