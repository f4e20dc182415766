//! The UI's handlers, by area. Each is a few lines: read the request, call the domain, fill a
//! page model from `idgard-web`, render it. Errors become an HTML page with the status their
//! code maps to.

mod admin;
mod browse;
mod connectors;
mod runs;
mod signin;

use super::access::{Role, allows};
use super::guard::Address;
use super::sessions::Session;
use crate::error::Error;
use crate::http::App;
use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use idgard_web::{Chrome, Template, pages};

/// The routes; what each needs is in [`super::access::ROUTES`].
pub fn routes() -> Router<App> {
    Router::new()
        .route("/", get(signin::home))
        .route("/assets/{file}", get(asset))
        .route("/signin", get(signin::page))
        .route("/signin/password", post(signin::password))
        .route("/signin/ldap", post(signin::ldap))
        .route("/signin/oidc", get(signin::oidc_start))
        .route("/signin/oidc/callback", get(signin::oidc_callback))
        .route("/signout", post(signin::signout))
        .route("/me", get(signin::me))
        .route("/me/sessions/{id}/revoke", post(signin::revoke))
        .route("/dashboard", get(browse::dashboard))
        .route("/identities", get(browse::identities))
        .route("/identities/{key}", get(browse::identity))
        .route("/connections", get(browse::connections))
        .route("/connections/{name}", get(browse::connection))
        .route("/connections/{name}/entries/{key}", get(browse::entry))
        .route("/connections/{name}/entries.csv", get(admin::entries_csv))
        .route("/connections/{name}/review", post(admin::review))
        .route("/connections/{name}/test", post(connectors::test))
        .route("/connectors", get(connectors::connectors))
        .route("/jobs", get(runs::jobs))
        .route("/jobs/run", post(runs::run))
        .route("/launches/{id}", get(runs::launch))
        .route("/runs/{id}", get(runs::run_page))
        .route("/runs/{id}/events", get(runs::events))
        .route("/runs/{id}/cancel", post(runs::cancel))
        .route("/runs/{id}/approve", post(runs::approve))
        .route("/approvals", get(runs::approvals))
        .route("/orders", get(admin::orders))
        .route("/orders/{id}", get(admin::order))
        .route("/orders/retry", post(admin::retry))
        .route("/agents", get(admin::agents).post(admin::add_agent))
        .route("/agents/{name}/reset", post(admin::reset_agent))
        .route("/audit", get(admin::audit))
        .route("/audit.csv", get(admin::audit_csv))
}

/// What a page handler answers.
pub type PageResult = Result<Response, Problem>;

/// A page that could not be shown: a domain error rendered as HTML.
#[derive(Debug)]
pub struct Problem(pub Error);

impl From<Error> for Problem {
    fn from(e: Error) -> Self {
        Problem(e)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = crate::http::error::status_of(self.0.code);
        if status.is_server_error() {
            tracing::error!("page failed: {}", self.0.message);
        }
        let (title, message) = match status {
            StatusCode::NOT_FOUND => ("Not found", self.0.message.clone()),
            StatusCode::FORBIDDEN => ("Not allowed", self.0.message.clone()),
            s if s.is_server_error() => (
                "Something went wrong",
                "The server could not answer; its log says more. Try again in a moment.".into(),
            ),
            _ => ("That did not work", self.0.message.clone()),
        };
        problem(None, status, title, &message)
    }
}

/// An HTML page for a refusal or an error.
pub fn problem(
    chrome: Option<&Chrome>,
    status: StatusCode,
    title: &str,
    message: &str,
) -> Response {
    let blank = Chrome {
        title: title.to_owned(),
        ..Default::default()
    };
    let page = pages::Problem {
        chrome: chrome.unwrap_or(&blank),
        status: status.as_u16(),
        title: title.to_owned(),
        message: message.to_owned(),
    };
    let mut r = render(&page);
    *r.status_mut() = status;
    r
}

/// Renders a page.
pub fn render(t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!("rendering a page: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
                .into_response()
        }
    }
}

/// The signed-in person making the request (the guard has checked their role).
pub struct Person {
    /// Their session.
    pub session: Session,
    /// Where the request came from.
    pub address: Option<String>,
    dev: bool,
    now_ms: i64,
}

impl Person {
    /// The page frame for section `nav`, titled `title`.
    pub fn chrome(&self, nav: &'static str, title: impl Into<String>) -> Chrome {
        let roles = &self.session.roles;
        Chrome {
            user: Some(self.session.user.clone()),
            roles: roles.iter().map(|r| r.as_str().to_owned()).collect(),
            csrf: self.session.csrf.clone(),
            dev: self.dev,
            nav,
            title: title.into(),
            now_ms: self.now_ms,
            operator: allows(roles, Role::Operator),
            administrator: allows(roles, Role::Administrator),
            approver: allows(roles, Role::Approver),
        }
    }

    /// Whether they hold `role`.
    pub fn may(&self, role: Role) -> bool {
        allows(&self.session.roles, role)
    }

    /// Records what they did.
    pub async fn record(
        &self,
        app: &App,
        action: &str,
        target: &str,
        result: Result<String, &Error>,
    ) {
        use super::audit::{Event, Outcome};
        let (outcome, detail) = match result {
            Ok(d) => (Outcome::Done, d),
            Err(e) => (Outcome::Failed, e.message.clone()),
        };
        app.web
            .audit
            .record(
                Event {
                    user: Some(&self.session.user),
                    action,
                    target: Some(target),
                    address: self.address.as_deref(),
                    detail: Some(&detail),
                },
                outcome,
            )
            .await;
    }
}

impl FromRequestParts<App> for Person {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Problem> {
        let session = parts
            .extensions
            .get::<Session>()
            .cloned()
            .ok_or_else(|| Problem(Error::unauthorized("sign in first")))?;
        let address = parts.extensions.get::<Address>().and_then(|a| a.0.clone());
        Ok(Person {
            session,
            address,
            dev: app.web.settings.dev_password.is_some(),
            now_ms: app.queue.now(),
        })
    }
}

/// A 303 to `to` (after a form post: the browser then loads `to` with GET).
pub fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_owned())]).into_response()
}

async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    match idgard_web::assets::find(&file) {
        Some(a) => (
            [
                (header::CONTENT_TYPE, a.content_type),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ],
            a.bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}
