//! What handlers take from a request: JSON bodies whose every failure is a clear 4xx, the
//! caller's credentials (an agent's access token, an administrator's token), ids in paths.

use super::App;
use super::throttle::Key;
use crate::error::{Error, ErrorCode, Result};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

/// Most tokens remembered as verified.
const VERIFIED_MAX: usize = 100_000;

/// A JSON object in the body, whose every failure is a clear 4xx. Every JSON body of the
/// API is an object: an array is refused even where its items would fill the fields. A NUL
/// character in a string (`\u0000`), which no database keeps in text, is read as U+FFFD: free
/// text an agent reports (a reason, a log line) is kept, and a name or key holding one matches
/// nothing.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self> {
        if !json_content_type(req.headers()) {
            return Err(Error::new(
                ErrorCode::UnsupportedMediaType,
                "send the body as JSON with `Content-Type: application/json`",
            ));
        }
        let mut body = bytes_body(axum::body::Bytes::from_request(req, state).await, "body")?;
        if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(Error::invalid("the body must be a JSON object: `{ ... }`"));
        }
        if let Some(replaced) = replace_nul_escapes(&body) {
            body = replaced.into();
        }
        match Json::<T>::from_bytes(&body) {
            Ok(Json(v)) => Ok(JsonBody(v)),
            Err(JsonRejection::JsonDataError(e)) => Err(Error::invalid(format!(
                "the JSON body does not fit: {}",
                e.body_text()
            ))),
            Err(JsonRejection::JsonSyntaxError(e)) => Err(Error::invalid(format!(
                "the body is not valid JSON: {}",
                e.body_text()
            ))),
            Err(e) => Err(Error::invalid(e.body_text())),
        }
    }
}

/// The JSON text with each escaped NUL character (`\u0000`) made U+FFFD (`\ufffd`, as long),
/// or `None` when it holds none. An escaped backslash before `u0000` is not an escape of it.
fn replace_nul_escapes(json: &[u8]) -> Option<Vec<u8>> {
    let mut at_nul = memchr::memmem::find_iter(json, b"u0000")
        .filter(|&at| {
            let backslashes = json[..at].iter().rev().take_while(|&&b| b == b'\\').count();
            backslashes % 2 == 1
        })
        .peekable();
    at_nul.peek()?;
    let mut out = json.to_vec();
    for at in at_nul {
        out[at..at + 5].copy_from_slice(b"ufffd");
    }
    Some(out)
}

/// Paths and query strings name things or filter them: a NUL character in one is refused.
fn nul_refused(what: &str) -> Error {
    Error::invalid(format!(
        "{what} holds a NUL character (%00), which no name or filter holds"
    ))
}

/// `Content-Type: application/json`, or another JSON type (`application/merge-patch+json`).
fn json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    let Some((kind, sub)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (sub.eq_ignore_ascii_case("json") || sub.to_ascii_lowercase().ends_with("+json"))
}

fn bearer(parts: &Parts) -> Result<&str> {
    parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Error::unauthorized("send `Authorization: Bearer <token>`"))
}

/// The address a request came from, when the listener knows it.
pub struct PeerOf(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerOf {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self> {
        Ok(PeerOf(peer(parts)))
    }
}

fn peer(parts: &Parts) -> Option<std::net::IpAddr> {
    parts.extensions.get::<super::conn::Peer>().map(|p| p.0)
}

/// The keys a failed sign-in from `ip` is counted against.
pub fn peer_keys(ip: Option<std::net::IpAddr>) -> Vec<Key> {
    ip.map(Key::Peer).into_iter().collect()
}

/// An agent authenticated by its access token.
pub struct AgentAuth(pub i64);

impl FromRequestParts<App> for AgentAuth {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self> {
        let token = bearer(parts)?;
        let now = (app.queue.now() / 1000).max(0) as u64;
        let cached = app.verified.lock().expect("verified").get(token).copied();
        let claims = match cached {
            Some(c) if now < c.exp => c,
            _ => {
                let keys = peer_keys(peer(parts));
                let c = app
                    .throttle
                    .guard(&[], &keys, async {
                        app.signer.verify(token).map_err(Error::unauthorized)
                    })
                    .await?;
                let mut verified = app.verified.lock().expect("verified");
                if verified.len() >= VERIFIED_MAX {
                    verified.clear();
                }
                verified.insert(token.to_owned(), c);
                c
            }
        };
        // A reset or a removal of the agent ends its tokens (within `token_recheck`).
        if generation(app, claims.agent).await? != Some(claims.generation) {
            return Err(Error::unauthorized(
                "this access token belongs to an agent that was reset or removed since: enrol again",
            ));
        }
        ClientCertificate::of(parts)
            .check(app, claims.agent)
            .await?;
        if let Some(super::conn::Peer(ip)) = parts.extensions.get() {
            app.connections.agent_at(*ip);
        }
        Ok(AgentAuth(claims.agent))
    }
}

/// The names of the client certificate the request's connection presented (mutual TLS).
pub struct ClientCertificate(pub super::mtls::PeerNames);

impl ClientCertificate {
    fn of(parts: &Parts) -> Self {
        ClientCertificate(parts.extensions.get().cloned().unwrap_or_default())
    }

    /// When the server requires agents' certificates: this one must name `agent`.
    pub async fn check(&self, app: &App, agent: i64) -> Result<()> {
        if !app.agent_certificates {
            return Ok(());
        }
        let name = app.queue.agent_name(agent).await?;
        match &self.0.0 {
            None => Err(Error::unauthorized(format!(
                "this server requires agents to present a client certificate (tls.agent_ca); \
                 agent `{name}` presented none: set tls_certificate and tls_key in its configuration"
            ))),
            Some(names) if names.contains(&name) => Ok(()),
            Some(names) => Err(Error::unauthorized(format!(
                "the client certificate names {}, not agent `{name}`",
                if names.is_empty() {
                    "no DNS name".to_owned()
                } else {
                    names.join(", ")
                }
            ))),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientCertificate {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self> {
        Ok(Self::of(parts))
    }
}

/// An agent's token generation: from the database, at most every `token_recheck`.
async fn generation(app: &App, agent: i64) -> Result<Option<i64>> {
    if let Some(&(g, at)) = app.generations.lock().expect("generations").get(&agent)
        && at.elapsed() < app.token_recheck
    {
        return Ok(Some(g));
    }
    let g = app.queue.token_gen(agent).await?;
    let mut known = app.generations.lock().expect("generations");
    match g {
        Some(g) => {
            if known.len() >= VERIFIED_MAX {
                known.clear();
            }
            known.insert(agent, (g, std::time::Instant::now()));
        }
        None => {
            known.remove(&agent);
        }
    }
    Ok(g)
}

/// An administrator, authenticated by an administrator token: the token's name.
pub struct Admin(pub String);

impl FromRequestParts<App> for Admin {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self> {
        let token = bearer(parts)?;
        let keys = peer_keys(peer(parts));
        let name = app
            .throttle
            .guard(&[], &keys, app.queue.check_admin(token))
            .await?;
        Ok(Admin(name))
    }
}

/// A scraper with the metrics token (`[metrics] token_file`); `/metrics` is not found when no
/// token is set. Wrong tokens count against the address like failed sign-ins.
pub struct MetricsReader;

impl FromRequestParts<App> for MetricsReader {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self> {
        let Some(expected) = app.metrics_token else {
            return Err(Error::not_found(
                "metrics are off: set [metrics] token_file to read them",
            ));
        };
        let token = bearer(parts)?;
        let keys = peer_keys(peer(parts));
        app.throttle
            .guard(&[], &keys, async {
                use sha2::Digest as _;
                let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
                if digest == expected {
                    Ok(MetricsReader)
                } else {
                    Err(Error::unauthorized("not the metrics token"))
                }
            })
            .await
    }
}

pub fn id(s: &str) -> Result<i64> {
    s.parse::<i64>()
        .ok()
        .filter(|&i| i > 0)
        .ok_or_else(|| Error::invalid(format!("`{s}` is not an id")))
}

/// Parameters of the path whose failure (bytes that are not UTF-8, say) is a clear 400.
pub struct PathOf<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathOf<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        if parts.uri.path().contains("%00") {
            return Err(nul_refused("the path"));
        }
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| PathOf(p.0))
            .map_err(|e| Error::invalid(e.body_text()))
    }
}

/// A body of bytes whose failure is a clear 4xx (`what` names it in the message).
pub fn bytes_body(
    body: std::result::Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
    what: &str,
) -> Result<axum::body::Bytes> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Error::too_large(format!("the {what} is over this server's limit"))
        } else {
            Error::invalid(e.body_text())
        }
    })
}

/// A query string whose failure is a clear 400.
pub struct QueryOf<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryOf<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        if parts.uri.query().is_some_and(|q| q.contains("%00")) {
            return Err(nul_refused("the query"));
        }
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| QueryOf(q.0))
            .map_err(|e| Error::invalid(e.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_escapes_become_replacement_characters_and_escaped_backslashes_stay() {
        let replaced = |j: &[u8]| replace_nul_escapes(j).map(|v| String::from_utf8(v).unwrap());
        assert_eq!(
            replaced(br#"{"a": "x\u0000y\u0000"}"#).as_deref(),
            Some(r#"{"a": "x\ufffdy\ufffd"}"#)
        );
        assert_eq!(
            replaced(br#"{"a": "\\\u0000"}"#).as_deref(),
            Some(r#"{"a": "\\\ufffd"}"#)
        );
        assert_eq!(replaced(br#"{"a": "\\u0000"}"#), None);
        assert_eq!(replaced(br#"{"a": "u0000"}"#), None);
        assert_eq!(replaced(br#"{"a": "\u0001"}"#), None);
        let v: serde_json::Value =
            serde_json::from_str(&replaced(br#"{"a": "1\u0000"}"#).unwrap()).unwrap();
        assert_eq!(v["a"], "1\u{fffd}");
    }

    #[test]
    fn json_content_types() {
        let with = |v: &str| {
            let mut h = axum::http::HeaderMap::new();
            h.insert(axum::http::header::CONTENT_TYPE, v.parse().unwrap());
            json_content_type(&h)
        };
        assert!(with("application/json"));
        assert!(with("Application/JSON; charset=utf-8"));
        assert!(with("application/merge-patch+json"));
        assert!(!with("text/json"));
        assert!(!with("application/x-www-form-urlencoded"));
        assert!(!json_content_type(&axum::http::HeaderMap::new()));
    }
}
