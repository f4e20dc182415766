//! Outgoing HTTP under grants: the guest speaks `wasi:http`, and every request it sends comes
//! here, where it is checked against the connection's HTTP grants (scheme, host, port, path
//! prefix) and sent by the host's own client, with the credentials the grant names. The
//! connector can set no `Authorization` header of its own, and never sees the credentials.
//!
//! wasmtime-wasi-http is built without its default sender: no request reaches the network except
//! through [`Hooks::send_request`]. Redirects are handed to the connector, not followed, so a
//! redirect outside the grants is a new request, checked like any other.
//!
//! Clients outlive a run: the runtime keeps one per grant (URL, credentials, trust, timeouts), so
//! the runs of a connection reuse their connections and their OAuth 2.0 access token.

pub mod grant;
mod send;
mod service;

use grant::{Base, HttpGrant, Target};
use service::Service;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use wasmtime_wasi_http::{
    DEFAULT_FORBIDDEN_HEADERS, Error as HttpError, ForbiddenHeaderFilter, RequestOptions, WasiBody,
    WasiHttpCtx, WasiHttpHooks,
};

/// Refusals kept for the run's log, at most.
const MAX_REFUSALS_LOGGED: usize = 10;
/// The methods a connector may use.
const ALLOWED_METHODS: [http::Method; 7] = [
    http::Method::GET,
    http::Method::HEAD,
    http::Method::POST,
    http::Method::PUT,
    http::Method::PATCH,
    http::Method::DELETE,
    http::Method::OPTIONS,
];

/// The services a runtime keeps across runs, by everything that built them.
#[derive(Clone, Default)]
pub(crate) struct Services(Arc<Mutex<HashMap<String, Service>>>);

impl Services {
    fn get_or_build(
        &self,
        grant: &HttpGrant,
        secrets: &BTreeMap<String, String>,
    ) -> Result<Service, String> {
        let values: Vec<&str> = grant
            .auth
            .iter()
            .flat_map(|a| a.secrets())
            .map(|s| secrets.get(s).map_or("", String::as_str))
            .collect();
        let key = format!("{grant:?}\0{}", values.join("\0"));
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = all.get(&key) {
            return Ok(s.clone());
        }
        let service = Service::build(grant, secrets)?;
        all.insert(key, service.clone());
        Ok(service)
    }
}

/// One granted service as a run sees it.
struct Route {
    name: String,
    base: Base,
    /// `Err` when the grant cannot be used this run (its CA file cannot be read, a secret is
    /// missing): a request under it fails, and the reason is logged.
    service: Result<Service, String>,
}

/// The `wasi:http` state of one run.
pub(crate) struct Http {
    pub(crate) ctx: WasiHttpCtx,
    pub(crate) hooks: Hooks,
}

/// What the host does with a run's requests.
pub(crate) struct Hooks {
    routes: Vec<Route>,
    /// Requests refused, for the run's log.
    refusals: Vec<String>,
    refused: u64,
}

impl Http {
    /// The run's services: its grants, with clients from the runtime's cache.
    pub(crate) fn new(
        grants: &BTreeMap<String, HttpGrant>,
        secrets: &BTreeMap<String, String>,
        services: &Services,
    ) -> Self {
        let routes = grants
            .iter()
            .filter_map(|(name, grant)| {
                // Checked when the connection was read; a grant failing now is skipped.
                let base = grant.check(name).ok()?;
                let service = services.get_or_build(grant, secrets).inspect_err(
                    |e| tracing::warn!(service = %name, "granted HTTP service unusable: {e}"),
                );
                Some(Route {
                    name: name.clone(),
                    base,
                    service,
                })
            })
            .collect();
        Http {
            ctx: WasiHttpCtx::new(),
            hooks: Hooks {
                routes,
                refusals: Vec::new(),
                refused: 0,
            },
        }
    }

    /// The requests refused during the run, one line each, for its log.
    pub(crate) fn refusals(&self) -> Vec<String> {
        let mut out = self.hooks.refusals.clone();
        let more = self.hooks.refused.saturating_sub(out.len() as u64);
        if more > 0 {
            out.push(format!("{more} more requests refused likewise"));
        }
        out
    }
}

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

impl Hooks {
    fn refuse(&mut self, message: String) -> SendFuture {
        tracing::warn!(target: "connector", "{message}");
        self.refused += 1;
        if self.refusals.len() < MAX_REFUSALS_LOGGED {
            self.refusals.push(message);
        }
        Box::new(async { Err(HttpError::HttpRequestDenied) })
    }

    fn granted(&self) -> String {
        if self.routes.is_empty() {
            return "the connection grants no HTTP service".into();
        }
        let urls: Vec<String> = self
            .routes
            .iter()
            .map(|r| {
                format!(
                    "{}://{}:{}{}",
                    r.base.scheme, r.base.host, r.base.port, r.base.path
                )
            })
            .collect();
        format!("granted: {}", urls.join(", "))
    }
}

impl WasiHttpHooks for Hooks {
    fn forbidden_header_filter(&mut self) -> ForbiddenHeaderFilter {
        // Credentials are the host's to add: a connector setting its own could send them
        // anywhere its grants allow, and the grant's would be overridden.
        Arc::new(|name| {
            *name == http::header::AUTHORIZATION || DEFAULT_FORBIDDEN_HEADERS.contains(name)
        })
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        drop(fut);
        let uri = request.uri().clone();
        let scheme = uri.scheme_str().unwrap_or("");
        let default_port = if scheme == "http" { 80 } else { 443 };
        let target = Target {
            scheme,
            host: uri.host().unwrap_or(""),
            port: uri.port_u16().unwrap_or(default_port),
            path: uri.path(),
        };
        // Methods that echo a request back (TRACE, TRACK, DEBUG) would hand the connector the
        // credentials the host adds; CONNECT would open a tunnel.
        if !ALLOWED_METHODS.contains(request.method()) {
            let message = format!(
                "refused an HTTP {} request to {}: only {} are sent",
                request.method(),
                target.shown(),
                ALLOWED_METHODS
                    .iter()
                    .map(http::Method::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            return self.refuse(message);
        }
        // A user in the URL would become an Authorization header of the guest's own.
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            let message = format!(
                "refused an HTTP request to {}: a URL carrying a user name or password",
                target.shown()
            );
            return self.refuse(message);
        }
        let Some(route) = self.routes.iter().find(|r| r.base.admits(&target)) else {
            let message = format!(
                "refused an HTTP request to {}: outside the connection's HTTP grants ({})",
                target.shown(),
                self.granted()
            );
            return self.refuse(message);
        };
        if request.headers().contains_key(http::header::AUTHORIZATION) {
            let message = format!(
                "refused an HTTP request to {}: it sets its own Authorization header",
                target.shown()
            );
            return self.refuse(message);
        }
        match &route.service {
            Ok(service) => Box::new(send::forward(
                route.name.clone(),
                service.clone(),
                request,
                options,
            )),
            Err(e) => {
                let message = format!("HTTP service `{}` is unusable: {e}", route.name);
                self.refuse(message)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn hooks() -> Hooks {
        let grants: BTreeMap<String, HttpGrant> =
            toml::from_str("[app]\nurl = \"http://127.0.0.1:9/api/\"").unwrap();
        Http::new(&grants, &BTreeMap::new(), &Services::default()).hooks
    }

    /// Hands a request to the hooks; the future is dropped unpolled, so nothing is ever sent.
    fn offer(h: &mut Hooks, method: &str, uri: &str) {
        let body = http_body_util::Empty::new()
            .map_err(|_| unreachable!())
            .boxed_unsync();
        let request = http::Request::builder()
            .method(method)
            .uri(uri)
            .body(body)
            .unwrap();
        drop(h.send_request(request, None, Box::new(async { Ok(()) })));
    }

    #[test]
    fn requests_are_refused_before_anything_is_sent() {
        let mut h = hooks();
        offer(&mut h, "GET", "http://127.0.0.1:9/api/users");
        assert_eq!(h.refused, 0);
        for (method, uri, why) in [
            ("TRACE", "http://127.0.0.1:9/api/x", "only GET, HEAD"),
            ("CONNECT", "http://127.0.0.1:9/api/x", "only GET, HEAD"),
            (
                "GET",
                "http://u:p@127.0.0.1:9/api/x",
                "user name or password",
            ),
            ("GET", "http://127.0.0.1:9/api/..;/admin", "outside"),
            ("GET", "http://127.0.0.1:9/other", "outside"),
            ("GET", "http://127.0.0.1:10/api/x", "outside"),
        ] {
            let before = h.refused;
            offer(&mut h, method, uri);
            assert_eq!(h.refused, before + 1, "{method} {uri}");
            let last = h.refusals.last().unwrap();
            assert!(last.contains(why), "{method} {uri}: {last}");
        }
        assert!(h.refusals[3].contains("granted: http://127.0.0.1:9/api/"));
    }
}
