//! Signing in and out, and the "me" page. Each method proves who someone is
//! ([`crate::web::auth`]); here that becomes roles, a fresh session and its cookie. Failures are
//! counted per address and per login (then refused for a while), recorded in the audit trail,
//! and told to the person without saying which part was wrong.

use super::{PageResult, Person, Problem, render, see_other};
use crate::http::App;
use crate::http::throttle::Key;
use crate::keys::random_token;
use crate::web::access::Role;
use crate::web::audit::{Event, Outcome};
use crate::web::auth::{self, Refusal, Verified};
use crate::web::guard::Address;
use crate::web::security::{self, FLOW, PRE, SESSION};
use crate::web::sessions::Session;
use axum::Form;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use idgard_web::{Chrome, pages};
use serde::Deserialize;

/// How long the sign-in form's token lives.
const PRE_S: u64 = 3600;
/// How long an OpenID Connect flow may take.
const FLOW_S: u64 = 600;

/// `/`: the dashboard when signed in, else the sign-in page.
pub async fn home(session: Option<Extension<Session>>) -> Response {
    see_other(if session.is_some() {
        "/dashboard"
    } else {
        "/signin"
    })
}

#[derive(Deserialize, Default)]
pub struct SignInQuery {
    #[serde(default)]
    next: String,
}

/// Where to go after signing in: a path on this server, never another site.
fn safe_next(next: &str) -> String {
    let ok = next.starts_with('/') && !next.starts_with("//") && !next.contains('\\');
    if ok {
        next.to_owned()
    } else {
        "/dashboard".into()
    }
}

/// The sign-in page, with `error` shown and `status` answered.
fn signin_page(
    app: &App,
    headers: &HeaderMap,
    next: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let (token, fresh) = match security::cookie(headers, PRE) {
        Some(t) => (t.to_owned(), false),
        None => (random_token(), true),
    };
    let chrome = Chrome {
        csrf: token.clone(),
        dev: app.web.settings.dev_password.is_some(),
        title: "Sign in".into(),
        now_ms: app.queue.now(),
        ..Default::default()
    };
    let mut r = render(&pages::SignIn {
        chrome: &chrome,
        password: app.web.settings.dev_password.is_some(),
        ldap: app.web.settings.ldap.is_some(),
        oidc: app.web.oidc.as_ref().map(|o| o.label().to_owned()),
        error: error.map(str::to_owned),
        next: safe_next(next),
    });
    *r.status_mut() = status;
    if fresh {
        r.headers_mut()
            .append(header::SET_COOKIE, security::set_cookie(PRE, &token, PRE_S));
    }
    r
}

/// `GET /signin`.
pub async fn page(
    State(app): State<App>,
    headers: HeaderMap,
    Query(q): Query<SignInQuery>,
) -> Response {
    signin_page(&app, &headers, &q.next, None, StatusCode::OK)
}

#[derive(Deserialize)]
pub struct Credentials {
    user: String,
    password: String,
    #[serde(default)]
    next: String,
}

/// `POST /signin/password`: the development password.
pub async fn password(
    State(app): State<App>,
    Extension(Address(address)): Extension<Address>,
    headers: HeaderMap,
    Form(c): Form<Credentials>,
) -> Response {
    let Some(dev) = app.web.settings.dev_password.clone() else {
        return off(&app, &headers, &c, "The development password is off.");
    };
    let verified = guarded(
        &app,
        &address,
        &c.user,
        auth::password::verify(&dev, &c.user, &c.password),
    )
    .await;
    // The configured user's own roles, besides what the role map gives.
    let extra = match &verified {
        Ok(v) if v.user == dev.user => dev.roles.clone(),
        _ => Vec::new(),
    };
    finish(
        &app, &headers, address, "password", verified, extra, &c.next,
    )
    .await
}

/// `POST /signin/ldap`: a directory account.
pub async fn ldap(
    State(app): State<App>,
    Extension(Address(address)): Extension<Address>,
    headers: HeaderMap,
    Form(c): Form<Credentials>,
) -> Response {
    let Some(cfg) = app.web.settings.ldap.clone() else {
        return off(&app, &headers, &c, "Directory sign-in is off.");
    };
    let verified = guarded(
        &app,
        &address,
        &c.user,
        auth::ldap::verify(&cfg, &c.user, &c.password),
    )
    .await;
    finish(
        &app,
        &headers,
        address,
        "ldap",
        verified,
        Vec::new(),
        &c.next,
    )
    .await
}

/// The sign-in page, saying a method is off (404).
fn off(app: &App, headers: &HeaderMap, c: &Credentials, why: &str) -> Response {
    signin_page(app, headers, &c.next, Some(why), StatusCode::NOT_FOUND)
}

/// Runs a password check under the sign-in throttle: refused at once past the limit, a
/// failure counted against the address and the login.
async fn guarded(
    app: &App,
    address: &Option<String>,
    login: &str,
    check: impl std::future::Future<Output = Result<Verified, Refusal>>,
) -> Result<Verified, Refusal> {
    let mut keys = vec![Key::login(login)];
    if let Some(ip) = address.as_deref().and_then(|a| a.parse().ok()) {
        keys.push(Key::Peer(ip));
    }
    if let Err(e) = app.throttle.check(&keys) {
        return Err(Refusal::Credentials(e.message));
    }
    let r = check.await;
    if let Err(Refusal::Credentials(why)) = &r {
        app.throttle.failed(&keys, why);
    }
    r
}

/// Turns a proven identity into a session (or a refusal page), and records either.
async fn finish(
    app: &App,
    headers: &HeaderMap,
    address: Option<String>,
    method: &str,
    verified: Result<Verified, Refusal>,
    extra_roles: Vec<Role>,
    next: &str,
) -> Response {
    let action = format!("signin.{method}");
    let audit = |user: Option<String>, outcome: Outcome, detail: String| {
        let (app, action, address) = (app.clone(), action.clone(), address.clone());
        async move {
            app.web
                .audit
                .record(
                    Event {
                        user: user.as_deref(),
                        action: &action,
                        target: None,
                        address: address.as_deref(),
                        detail: Some(&detail),
                    },
                    outcome,
                )
                .await
        }
    };
    let v = match verified {
        Ok(v) => v,
        Err(refusal) => {
            audit(None, Outcome::Refused, refusal.reason().to_owned()).await;
            let limited = refusal.reason().contains("too many failed sign-ins");
            let (msg, status) = if limited {
                (
                    "Too many failed sign-ins: wait a minute before trying again.",
                    StatusCode::TOO_MANY_REQUESTS,
                )
            } else if matches!(refusal, Refusal::Unavailable(_)) {
                (refusal.message(), StatusCode::SERVICE_UNAVAILABLE)
            } else {
                (refusal.message(), StatusCode::UNAUTHORIZED)
            };
            return signin_page(app, headers, next, Some(msg), status);
        }
    };
    let mut roles = app.web.settings.roles.roles_of(&v.user, &v.groups);
    roles.extend(extra_roles);
    roles.sort();
    roles.dedup();
    if roles.is_empty() {
        audit(
            Some(v.user.clone()),
            Outcome::Refused,
            format!("no role is granted (groups: {})", v.groups.join(", ")),
        )
        .await;
        return super::problem(
            None,
            StatusCode::FORBIDDEN,
            "No access",
            &format!(
                "You are signed in as {}, but no role on this server is granted to you or your groups. Ask an administrator.",
                v.user
            ),
        );
    }
    let opened = match app
        .web
        .sessions
        .open(&v.user, method, &roles, address.clone())
        .await
    {
        Ok(o) => o,
        Err(e) => return Problem(e).into_response(),
    };
    let roles_text: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
    audit(
        Some(v.user.clone()),
        Outcome::Done,
        format!("roles: {}", roles_text.join(", ")),
    )
    .await;
    let mut r = see_other(&safe_next(next));
    let h = r.headers_mut();
    h.append(
        header::SET_COOKIE,
        security::set_cookie(SESSION, &opened.secret, app.web.settings.max_s),
    );
    h.append(header::SET_COOKIE, security::set_cookie(PRE, "", 0));
    h.append(header::SET_COOKIE, security::set_cookie(FLOW, "", 0));
    r
}

/// `GET /signin/oidc`: off to the provider.
pub async fn oidc_start(State(app): State<App>, headers: HeaderMap) -> Response {
    let Some(provider) = &app.web.oidc else {
        return signin_page(
            &app,
            &headers,
            "",
            Some("Single sign-on is off."),
            StatusCode::NOT_FOUND,
        );
    };
    match provider.start().await {
        Ok(start) => {
            let mut r = see_other(&start.url);
            r.headers_mut().append(
                header::SET_COOKIE,
                security::set_cookie(FLOW, &start.state, FLOW_S),
            );
            r
        }
        Err(refusal) => {
            tracing::warn!("single sign-on cannot start: {}", refusal.reason());
            signin_page(
                &app,
                &headers,
                "",
                Some(refusal.message()),
                StatusCode::SERVICE_UNAVAILABLE,
            )
        }
    }
}

#[derive(Deserialize)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /signin/oidc/callback`: the provider's answer.
pub async fn oidc_callback(
    State(app): State<App>,
    Extension(Address(address)): Extension<Address>,
    headers: HeaderMap,
    Query(q): Query<Callback>,
) -> Response {
    let Some(provider) = app.web.oidc.clone() else {
        return signin_page(
            &app,
            &headers,
            "",
            Some("Single sign-on is off."),
            StatusCode::NOT_FOUND,
        );
    };
    let verified = match (&q.error, &q.code, &q.state) {
        (Some(e), _, _) => Err(Refusal::Invalid(format!(
            "the provider answered {e}: {}",
            q.error_description.as_deref().unwrap_or("")
        ))),
        (None, Some(code), Some(state)) => {
            provider
                .finish(code, state, security::cookie(&headers, FLOW))
                .await
        }
        _ => Err(Refusal::Invalid("an answer without code or state".into())),
    };
    finish(
        &app,
        &headers,
        address,
        "oidc",
        verified,
        Vec::new(),
        "/dashboard",
    )
    .await
}

/// `POST /signout`: ends this session.
pub async fn signout(State(app): State<App>, me: Person) -> PageResult {
    let r = app
        .web
        .sessions
        .revoke(&me.session.user, &me.session.id_hash)
        .await;
    me.record(
        &app,
        "signout",
        &me.session.user,
        r.as_ref().map(|_| String::new()),
    )
    .await;
    let mut resp = see_other("/signin");
    resp.headers_mut()
        .append(header::SET_COOKIE, security::set_cookie(SESSION, "", 0));
    resp.headers_mut().insert(
        "clear-site-data",
        axum::http::HeaderValue::from_static("\"cache\""),
    );
    Ok(resp)
}

/// `GET /me`.
pub async fn me(State(app): State<App>, me: Person) -> PageResult {
    let sessions = app.web.sessions.of_user(&me.session.user).await?;
    let rows = sessions
        .into_iter()
        .map(|s| pages::SessionRow {
            current: s.id_hash == me.session.id_hash,
            id: s.id_hash,
            method: s.method,
            created_ms: s.created_ms,
            seen_ms: s.seen_ms,
            address: s.address.unwrap_or_default(),
        })
        .collect();
    Ok(render(&pages::Me {
        chrome: &me.chrome("me", "Me"),
        method: me.session.method.clone(),
        sessions: rows,
    }))
}

/// `POST /me/sessions/{id}/revoke`: ends one of the person's own sessions.
pub async fn revoke(State(app): State<App>, me: Person, Path(id): Path<String>) -> PageResult {
    let r = app.web.sessions.revoke(&me.session.user, &id).await;
    me.record(
        &app,
        "session.revoke",
        &id[..id.len().min(12)],
        r.as_ref().map(|_| String::new()),
    )
    .await;
    r?;
    Ok(see_other(if id == me.session.id_hash {
        "/signin"
    } else {
        "/me"
    }))
}
