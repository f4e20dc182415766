//! The one gate of every UI route, in this order: find the session; refuse an unsafe request
//! another site sent; look up what the route needs ([`super::access::ROUTES`]; a route missing
//! there is refused to all); check the role; check the form's token against the session's (or,
//! before sign-in, against the sign-in cookie's); then add the security headers to the answer.
//! Refusals are recorded in the audit trail.

use super::access::{self, Need};
use super::audit::{Event, Outcome};
use super::security;
use super::sessions::Session;
use crate::http::App;
use axum::body::{Body, to_bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

/// Largest form body (forms carry a few fields, and up to a page of order ids).
pub const FORM_MAX: usize = 256 * 1024;

/// The address a request came from, as text for the audit trail.
pub fn address_of(req: &Request) -> Option<String> {
    req.extensions()
        .get::<crate::http::conn::Peer>()
        .map(|p| p.0.to_string())
}

/// The gate.
pub async fn guard(State(app): State<App>, req: Request, next: Next) -> Response {
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    let asset = path == "/assets/{file}";
    let mut response = match admit(&app, req, &path).await {
        Ok(req) => next.run(req).await,
        Err(refused) => refused,
    };
    security::protect(response.headers_mut(), app.web.https, asset);
    response
}

async fn admit(app: &App, mut req: Request, path: &str) -> Result<Request, Response> {
    let web = &app.web;
    let method = req.method().clone();
    let address = address_of(&req);
    let session = match security::cookie(req.headers(), security::SESSION) {
        Some(secret) => web.sessions.find(secret).await.map_err(|e| {
            tracing::error!("reading a session: {}", e.message);
            super::pages::problem(
                None,
                StatusCode::SERVICE_UNAVAILABLE,
                "Unavailable",
                "The server cannot read sessions now. Try again in a moment.",
            )
        })?,
        None => None,
    };
    let refuse = |status: StatusCode, why: String, user: Option<&Session>| {
        let (app, path, address, user) = (
            app.clone(),
            format!("{method} {path}"),
            address.clone(),
            user.map(|s| s.user.clone()),
        );
        async move {
            app.web
                .audit
                .record(
                    Event {
                        user: user.as_deref(),
                        action: "refused",
                        target: Some(&path),
                        address: address.as_deref(),
                        detail: Some(&why),
                    },
                    Outcome::Refused,
                )
                .await;
            let title = if status == StatusCode::FORBIDDEN {
                "Not allowed"
            } else {
                "Refused"
            };
            super::pages::problem(None, status, title, &why)
        }
    };
    let unsafe_method = !matches!(method, Method::GET | Method::HEAD);
    if unsafe_method && let Err(why) = security::same_origin(req.headers()) {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            format!("{why}: refused"),
            session.as_ref(),
        )
        .await);
    }
    let need = access::need_of(&method, path);
    match need {
        None => {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                "this route is open to nobody".into(),
                session.as_ref(),
            )
            .await);
        }
        Some(Need::Anyone) => {}
        Some(Need::Role(role)) => match &session {
            None if method == Method::GET => {
                let target = req
                    .uri()
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/");
                let next = percent_encoding::utf8_percent_encode(
                    target,
                    percent_encoding::NON_ALPHANUMERIC,
                );
                return Err(Redirect::to(&format!("/signin?next={next}")).into_response());
            }
            None => {
                return Err(super::pages::problem(
                    None,
                    StatusCode::UNAUTHORIZED,
                    "Signed out",
                    "Your session ended. Sign in again.",
                ));
            }
            Some(s) if !access::allows(&s.roles, role) => {
                let why = format!("needs the {} role", role.as_str());
                return Err(refuse(StatusCode::FORBIDDEN, why, Some(s)).await);
            }
            Some(_) => {}
        },
    }
    if unsafe_method {
        // The sign-in forms carry the sign-in page's token (a person may sign in again while
        // a session is live); every other form carries the session's.
        let expected = match (&session, need) {
            (Some(s), Some(Need::Role(_))) => Some(s.csrf.clone()),
            _ => security::cookie(req.headers(), security::PRE).map(str::to_owned),
        };
        let (parts, body) = req.into_parts();
        let bytes = to_bytes(body, FORM_MAX).await.map_err(|_| {
            super::pages::problem(
                None,
                StatusCode::PAYLOAD_TOO_LARGE,
                "Too large",
                "The form is over this server's limit.",
            )
        })?;
        let given = url::form_urlencoded::parse(&bytes)
            .find(|(k, _)| k == "csrf")
            .map(|(_, v)| v.into_owned());
        let ok = matches!((&expected, &given), (Some(e), Some(g)) if security::same_token(e, g));
        req = Request::from_parts(parts, Body::from(bytes));
        if !ok {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                "the form's token is missing or wrong (reload the page and try again)".into(),
                session.as_ref(),
            )
            .await);
        }
    }
    if let Some(s) = session {
        req.extensions_mut().insert(s);
    }
    req.extensions_mut().insert(Address(address));
    Ok(req)
}

/// The request's source address, for handlers that record events.
#[derive(Debug, Clone)]
pub struct Address(pub Option<String>);
