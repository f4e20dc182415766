//! HTTP to the services a connection grants, through the host (the `http` feature).
//!
//! A connector sends plain requests to the service's URL; the agent checks each one against the
//! connection's HTTP grants (scheme, host, port, path), adds the credentials the grant names
//! (a bearer token, basic, OAuth 2.0 client credentials) and sends it with its own client. A
//! connector never sees those credentials and cannot set an `Authorization` header. Redirects
//! are answered as they are (a 3xx response), never followed by the host.
//!
//! ```ignore
//! use idgard_sdk::http::Request;
//! let answer = Request::get("https://app.example.com/api/users?page=1").send()?;
//! if answer.status() == 429 { /* answer.retry_after() */ }
//! let users: Vec<User> = answer.success()?.json()?;
//! let created = Request::post("https://app.example.com/api/users").json(&new_user)?.send()?;
//! ```
//!
//! Bodies are in memory: requests up to 16 MiB, responses up to the grant's `max_response_mib`.

use crate::Error;
use std::time::Duration;

/// A request, built then sent.
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    timeout: Option<Duration>,
}

impl Request {
    /// A request with any method.
    pub fn new(method: &str, url: impl Into<String>) -> Self {
        Request {
            method: method.to_ascii_uppercase(),
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout: None,
        }
    }
    /// `GET url`.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new("GET", url)
    }
    /// `POST url`.
    pub fn post(url: impl Into<String>) -> Self {
        Self::new("POST", url)
    }
    /// `PUT url`.
    pub fn put(url: impl Into<String>) -> Self {
        Self::new("PUT", url)
    }
    /// `PATCH url`.
    pub fn patch(url: impl Into<String>) -> Self {
        Self::new("PATCH", url)
    }
    /// `DELETE url`.
    pub fn delete(url: impl Into<String>) -> Self {
        Self::new("DELETE", url)
    }

    /// Adds a header (`authorization` is refused when sent: the host adds credentials).
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    /// A body, with its content type.
    pub fn body(self, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        let mut r = self.header("content-type", content_type);
        r.body = body.into();
        r
    }

    /// A JSON body (`content-type: application/json` unless one is set).
    pub fn json<T: serde::Serialize + ?Sized>(self, value: &T) -> Result<Self, Error> {
        let body =
            serde_json::to_vec(value).map_err(|e| Error::internal(format!("request body: {e}")))?;
        let content_type = self
            .headers
            .iter()
            .find(|(n, _)| n == "content-type")
            .map_or("application/json".to_owned(), |(_, v)| v.clone());
        let mut r = self;
        r.headers.retain(|(n, _)| n != "content-type");
        Ok(r.body(&content_type, body))
    }

    /// How long to wait for the response to start (the grant's timeout applies too). Each
    /// request sent with one holds one of the run's handles until the run ends: keep it for the
    /// few requests that need a shorter wait than the grant's.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The method.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends the request and reads the whole response. A status of 4xx or 5xx is an answer,
    /// not an error: see [`Response::success`]. Errors: `denied` when the agent refuses the
    /// request (outside the grants, or an `authorization` header), `unavailable` when the
    /// service cannot be reached (refused, timed out, its certificate not trusted),
    /// `invalid-data` when its answer is malformed or too large.
    pub fn send(&self) -> Result<Response, Error> {
        let parts = split_url(&self.url)?;
        imp::finish(self, imp::start(self, &parts)?)
    }
}

/// Sends every request before waiting for any answer (the agent sends them side by side), then
/// reads the answers in order: one result per request. For many independent requests, such as
/// the creates of a batch of orders: a connector sends them in groups of a few (say 8).
pub fn send_all(requests: &[Request]) -> Vec<Result<Response, Error>> {
    let started: Vec<_> = requests
        .iter()
        .map(|r| split_url(&r.url).and_then(|p| imp::start(r, &p)))
        .collect();
    started
        .into_iter()
        .zip(requests)
        .map(|(s, r)| s.and_then(|s| imp::finish(r, s)))
        .collect()
}

/// A response, read whole.
#[derive(Debug, Clone)]
pub struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// A header's first value (names are matched without regard to case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body.
    pub fn bytes(&self) -> &[u8] {
        &self.body
    }

    /// The body as text.
    pub fn text(&self) -> Result<&str, Error> {
        std::str::from_utf8(&self.body)
            .map_err(|e| Error::invalid_data(format!("the response is not UTF-8 text: {e}")))
    }

    /// The body as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body)
            .map_err(|e| Error::invalid_data(format!("the response is not the JSON expected: {e}")))
    }

    /// The response when its status is 2xx; otherwise an error of the kind the status means
    /// (401 and 403: `denied`, 429 and 5xx: `unavailable`, others: `invalid-data`) with the
    /// start of the body.
    pub fn success(self) -> Result<Self, Error> {
        if (200..300).contains(&self.status) {
            return Ok(self);
        }
        let body = String::from_utf8_lossy(&self.body[..self.body.len().min(300)]).into_owned();
        let message = format!("the service answered {}: {}", self.status, body.trim());
        Err(match self.status {
            401 | 403 => Error::denied(message),
            429 | 500..=599 => Error::unavailable(message),
            _ => Error::invalid_data(message),
        })
    }

    /// `Retry-After` in seconds, when the service says it (a date is read as one second).
    pub fn retry_after(&self) -> Option<Duration> {
        let v = self.header("retry-after")?.trim();
        Some(Duration::from_secs(v.parse::<u64>().unwrap_or(1)))
    }
}

/// A URL split as `wasi:http` takes it.
#[derive(Debug, PartialEq, Eq)]
struct UrlParts<'a> {
    https: bool,
    authority: &'a str,
    path_and_query: &'a str,
}

fn split_url(url: &str) -> Result<UrlParts<'_>, Error> {
    let bad = || Error::configuration(format!("`{url}` is not an http:// or https:// URL"));
    let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(bad());
    };
    let rest = rest.split('#').next().unwrap_or("");
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.is_empty() || authority.contains('@') {
        return Err(bad());
    }
    Ok(UrlParts {
        https,
        authority,
        path_and_query: if path.is_empty() { "/" } else { path },
    })
}

/// Encodes a value for a URL's query (`filter=userName eq "x"`).
pub fn query_value(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Joins a base URL and a path with one `/` between them.
pub fn join(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::{Request, Response, UrlParts};
    use crate::Error;
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{
        ErrorCode, Fields, FutureIncomingResponse, HeaderError, IncomingResponse, Method,
        OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
    };
    use wasip2::io::streams::StreamError;

    /// Bytes written to the request body per call (the stream's own limit is 4 KiB).
    const WRITE_CHUNK: usize = 4096;
    /// Bytes asked for per read of the response body.
    const READ_CHUNK: u64 = 64 * 1024;

    /// A request on its way.
    pub(super) struct Pending(FutureIncomingResponse);

    /// Sends a request, body and all, without waiting for its answer.
    pub(super) fn start(r: &Request, url: &UrlParts<'_>) -> Result<Pending, Error> {
        let list: Vec<(String, Vec<u8>)> = r
            .headers
            .iter()
            .map(|(n, v)| (n.clone(), v.clone().into_bytes()))
            .collect();
        let headers = Fields::from_list(&list).map_err(|e| match e {
            HeaderError::Forbidden => Error::denied(
                "a connector cannot set this header (`authorization` is the agent's to add, \
                 from the grant's credentials)",
            ),
            other => Error::configuration(format!("request headers: {other:?}")),
        })?;
        let request = OutgoingRequest::new(headers);
        let method = match r.method.as_str() {
            "GET" => Method::Get,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            "HEAD" => Method::Head,
            "OPTIONS" => Method::Options,
            other => Method::Other(other.to_owned()),
        };
        let refused = |what: &str| Error::configuration(format!("{} {}: {what}", r.method, r.url));
        request
            .set_method(&method)
            .map_err(|()| refused("bad method"))?;
        let scheme = if url.https {
            Scheme::Https
        } else {
            Scheme::Http
        };
        request
            .set_scheme(Some(&scheme))
            .map_err(|()| refused("bad scheme"))?;
        request
            .set_authority(Some(url.authority))
            .map_err(|()| refused("bad host"))?;
        request
            .set_path_with_query(Some(url.path_and_query))
            .map_err(|()| refused("bad path"))?;
        // Options only when asked for: the host keeps an options resource until the run ends
        // (wasmtime-wasi-http 48 does not release it), and a run holds a bounded number.
        let options = r.timeout.map(|t| {
            let options = RequestOptions::new();
            let _ = options.set_first_byte_timeout(Some(t.as_nanos() as u64));
            options
        });
        let body = request
            .body()
            .map_err(|()| Error::internal("request body taken twice"))?;
        let pending = outgoing_handler::handle(request, options).map_err(|e| failed(r, &e))?;
        if let Err(e) = write_body(&body, &r.body) {
            // A refused request closes its body: its own error says why.
            drop(body);
            return Err(match finish(r, Pending(pending)) {
                Err(refused) => refused,
                Ok(_) => e,
            });
        }
        OutgoingBody::finish(body, None).map_err(|e| failed(r, &e))?;
        Ok(Pending(pending))
    }

    /// Waits for a request's answer and reads it whole.
    pub(super) fn finish(r: &Request, Pending(pending): Pending) -> Result<Response, Error> {
        let response = loop {
            match pending.get() {
                Some(Ok(Ok(resp))) => break resp,
                Some(Ok(Err(e))) => return Err(failed(r, &e)),
                Some(Err(())) => return Err(Error::internal("response taken twice")),
                None => pending.subscribe().block(),
            }
        };
        read(r, response)
    }

    fn write_body(body: &OutgoingBody, bytes: &[u8]) -> Result<(), Error> {
        if bytes.is_empty() {
            return Ok(());
        }
        let out = body
            .write()
            .map_err(|()| Error::internal("request body stream taken twice"))?;
        for chunk in bytes.chunks(WRITE_CHUNK) {
            out.blocking_write_and_flush(chunk)
                .map_err(|e| Error::unavailable(format!("sending the request body: {e:?}")))?;
        }
        Ok(())
    }

    fn read(r: &Request, response: IncomingResponse) -> Result<Response, Error> {
        let status = response.status();
        let headers = response
            .headers()
            .entries()
            .into_iter()
            .map(|(n, v)| (n, String::from_utf8_lossy(&v).into_owned()))
            .collect();
        let body = response
            .consume()
            .map_err(|()| Error::internal("response body taken twice"))?;
        let stream = body
            .stream()
            .map_err(|()| Error::internal("response body stream taken twice"))?;
        let mut bytes = Vec::new();
        loop {
            match stream.blocking_read(READ_CHUNK) {
                Ok(chunk) => bytes.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => {
                    let code = wasip2::http::types::http_error_code(&e);
                    let text = e.to_debug_string();
                    return Err(match code {
                        Some(code) => failed(r, &code),
                        None if text.contains("size exceeds limit") => {
                            failed(r, &ErrorCode::HttpResponseBodySize(None))
                        }
                        None => Error::unavailable(format!(
                            "{} {}: the response broke off: {text}",
                            r.method, r.url
                        )),
                    });
                }
            }
        }
        drop(stream);
        Ok(Response {
            status,
            headers,
            body: bytes,
        })
    }

    /// What a failed request means to a connector.
    fn failed(r: &Request, e: &ErrorCode) -> Error {
        let at = format!("{} {}", r.method, r.url);
        match e {
            ErrorCode::HttpRequestDenied => Error::denied(format!(
                "{at}: refused by the agent: outside the connection's HTTP grants, or the \
                 grant's credentials were refused (the run's or the agent's log says which)"
            )),
            ErrorCode::TlsCertificateError => Error::unavailable(format!(
                "{at}: the service's certificate is not trusted (the grant's `ca`)"
            )),
            ErrorCode::HttpResponseBodySize(_) => Error::invalid_data(format!(
                "{at}: the response is larger than the grant allows (its `max_response_mib`)"
            )),
            ErrorCode::HttpRequestBodySize(_) => {
                Error::configuration(format!("{at}: the request body is too large"))
            }
            ErrorCode::ConnectionRefused => {
                Error::unavailable(format!("{at}: the service refused the connection"))
            }
            ErrorCode::ConnectionTimeout | ErrorCode::HttpResponseTimeout => {
                Error::unavailable(format!("{at}: timed out"))
            }
            ErrorCode::DnsError(_) => {
                Error::unavailable(format!("{at}: the name does not resolve"))
            }
            other => Error::unavailable(format!("{at}: {other:?}")),
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::{Request, Response, UrlParts};
    use crate::Error;

    pub(super) struct Pending;

    pub(super) fn start(_: &Request, _: &UrlParts<'_>) -> Result<Pending, Error> {
        Err(Error::unsupported(
            "HTTP outside the agent (a native build has no host to send requests)",
        ))
    }

    pub(super) fn finish(_: &Request, _: Pending) -> Result<Response, Error> {
        unreachable!("no request starts natively")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_as_wasi_http_takes_them() {
        let p = split_url("https://app.example.com:8443/scim/v2/Users?count=10#x").unwrap();
        assert_eq!(
            p,
            UrlParts {
                https: true,
                authority: "app.example.com:8443",
                path_and_query: "/scim/v2/Users?count=10"
            }
        );
        assert_eq!(split_url("http://h?x=1").unwrap().path_and_query, "?x=1");
        assert_eq!(split_url("http://h").unwrap().path_and_query, "/");
        assert!(split_url("ftp://h/").is_err());
        assert!(split_url("https://user:pw@h/").is_err());
        assert!(split_url("https:///path").is_err());
    }

    #[test]
    fn statuses_become_kinds() {
        let r = |status: u16| Response {
            status,
            headers: vec![("Retry-After".into(), "7".into())],
            body: b"{\"detail\":\"no\"}".to_vec(),
        };
        assert!(r(201).success().is_ok());
        assert_eq!(r(401).success().unwrap_err().kind, crate::ErrorKind::Denied);
        assert_eq!(
            r(429).success().unwrap_err().kind,
            crate::ErrorKind::Unavailable
        );
        let e = r(409).success().unwrap_err();
        assert_eq!(e.kind, crate::ErrorKind::InvalidData);
        assert!(e.message.contains("409") && e.message.contains("no"));
        assert_eq!(r(429).retry_after(), Some(Duration::from_secs(7)));
        assert_eq!(query_value("a b\"c"), "a%20b%22c");
        assert_eq!(join("https://h/scim/", "/Users"), "https://h/scim/Users");
    }
}
