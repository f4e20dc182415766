//! The web UI request by request (`oneshot`, no network), parsed as HTML: every route of the
//! role table refuses less than it needs and admits what it needs; unsafe requests need a
//! same-origin browser and the session's token; sessions start, rotate and end; every answer
//! carries the security headers; the JSON API never takes the cookie.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use idgard_server::http::router;
use idgard_server::identity::Engine;
use idgard_server::web::access::{Need, ROUTES, Role};
use idgard_server::web::settings::{DevPassword, UiConfig};
use scraper::{Html, Selector};
use std::time::Duration;
use tower::ServiceExt as _;

mod support;

const PASSWORD: &str = "correct horse battery";

struct Ui {
    app: axum::Router,
    engine: Engine,
    state: std::sync::Arc<idgard_server::http::AppState>,
    _dir: tempfile::TempDir,
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Answer {
    fn html(&self) -> Html {
        Html::parse_document(&self.body)
    }

    fn select(&self, css: &str) -> Vec<String> {
        let doc = self.html();
        let sel = Selector::parse(css).unwrap();
        doc.select(&sel)
            .map(|e| e.text().collect::<String>().trim().to_owned())
            .collect()
    }

    fn attr(&self, css: &str, attr: &str) -> Option<String> {
        let doc = self.html();
        let sel = Selector::parse(css).unwrap();
        doc.select(&sel)
            .next()
            .and_then(|e| e.value().attr(attr).map(str::to_owned))
    }

    fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(|v| {
                v[name.len() + 1..]
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .to_owned()
            })
    }
}

/// One declared job, on agent `lyon`.
const RULES: &str = r#"
version = 1
[identities]
connection = "hr"
[[jobs]]
name = "nightly"
agent = "lyon"
connections = ["hr"]
"#;

async fn ui() -> Ui {
    ui_with(|_| {}).await
}

async fn ui_with(adjust: impl FnOnce(&mut UiConfig)) -> Ui {
    let dir = tempfile::tempdir().unwrap();
    let config = idgard_server::config::Config {
        data_dir: dir.path().to_owned(),
        ..Default::default()
    };
    let mut engine = idgard_server::open(&config).await.unwrap();
    engine.rules = Some(std::sync::Arc::new(
        idgard_server::identity::rules::Rules::parse(RULES, "web test rules").unwrap(),
    ));
    let signer =
        idgard_server::keys::Signer::load(None, None, &dir.path().join("key.pem"), 600).unwrap();
    let mut settings = UiConfig {
        dev_password: Some(DevPassword {
            user: "dev".into(),
            hash: idgard_server::web::auth::password::hash(PASSWORD).unwrap(),
            roles: vec![Role::Operator],
        }),
        ..Default::default()
    };
    adjust(&mut settings);
    let web = idgard_server::web::Web::new(settings, &engine.queue, true, None).unwrap();
    let state = support::app_state(&engine, signer, web);
    Ui {
        app: router(state.clone(), 64 << 10, 1 << 16, Duration::from_secs(10)),
        engine,
        state,
        _dir: dir,
    }
}

impl Ui {
    async fn send(&self, req: Request<Body>) -> Answer {
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = axum::body::to_bytes(res.into_body(), 4 << 20)
            .await
            .unwrap();
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn get(&self, path: &str, cookie: Option<&str>) -> Answer {
        let mut req = Request::get(path);
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c);
        }
        self.send(req.body(Body::empty()).unwrap()).await
    }

    /// A form post as a browser on this site sends it.
    async fn post(&self, path: &str, cookie: &str, form: &[(&str, &str)]) -> Answer {
        self.post_from(path, cookie, form, "same-origin").await
    }

    async fn post_from(
        &self,
        path: &str,
        cookie: &str,
        form: &[(&str, &str)],
        site: &str,
    ) -> Answer {
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let req = Request::post(path)
            .header(header::COOKIE, cookie)
            .header("sec-fetch-site", site)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap();
        self.send(req).await
    }

    /// A session holding `roles`: (cookie header, form token).
    async fn session(&self, user: &str, roles: &[Role]) -> (String, String) {
        let opened = self
            .state
            .web
            .sessions
            .open(user, "password", roles, None)
            .await
            .unwrap();
        (
            format!("__Host-idgard={}", opened.secret),
            opened.session.csrf,
        )
    }
}

fn concrete(path: &str) -> String {
    path.replace("{id}", "1")
        .replace("{key}", "E1")
        .replace("{name}", "hr")
        .replace("{file}", "nothing.css")
}

/// The least role below `need`, if any.
fn below(need: Role) -> Option<&'static [Role]> {
    match need {
        Role::Viewer => None,
        Role::Operator => Some(&[Role::Viewer, Role::Approver]),
        Role::Administrator => Some(&[Role::Operator, Role::Approver]),
        Role::Approver => Some(&[Role::Administrator]),
    }
}

#[tokio::test]
async fn every_route_refuses_less_than_it_needs_and_admits_what_it_needs() {
    let ui = ui().await;
    let mut walked = 0;
    for route in ROUTES {
        let Need::Role(need) = route.need else {
            continue;
        };
        let path = concrete(route.path);
        let is_get = route.method == "GET";
        // Nobody signed in: a page leads to sign-in, an action is refused.
        let a = if is_get {
            ui.get(&path, None).await
        } else {
            ui.post(&path, "", &[]).await
        };
        if is_get {
            assert_eq!(a.status, StatusCode::SEE_OTHER, "{} {path}", route.method);
            let to = a.headers[header::LOCATION].to_str().unwrap();
            assert!(to.starts_with("/signin?next="), "{path}: {to}");
        } else {
            assert_eq!(a.status, StatusCode::UNAUTHORIZED, "POST {path}");
        }
        // Less than it needs: refused, whatever the token.
        if let Some(lower) = below(need) {
            let (cookie, csrf) = ui.session("low", lower).await;
            let a = if is_get {
                ui.get(&path, Some(&cookie)).await
            } else {
                ui.post(&path, &cookie, &[("csrf", &csrf)]).await
            };
            assert_eq!(
                a.status,
                StatusCode::FORBIDDEN,
                "{} {path} with {lower:?}",
                route.method
            );
            assert!(
                a.body
                    .contains(&format!("needs the {} role", need.as_str())),
                "{}",
                a.body
            );
        }
        // What it needs: past the gate (the domain may still say no: an unknown run is 404).
        let (cookie, csrf) = ui.session("enough", &[need]).await;
        let a = if is_get {
            ui.get(&path, Some(&cookie)).await
        } else {
            ui.post(
                &path,
                &cookie,
                &[("csrf", &csrf), ("name", "x"), ("job", "j")],
            )
            .await
        };
        assert!(
            !matches!(a.status, StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED),
            "{} {path} with {need:?}: {} {}",
            route.method,
            a.status,
            a.body
        );
        let csp = a.headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{csp}"
        );
        assert!(!csp.contains("unsafe-inline"));
        assert_eq!(a.headers["x-content-type-options"], "nosniff");
        assert!(a.headers.contains_key(header::STRICT_TRANSPORT_SECURITY));
        if is_get && path != "/assets/nothing.css" {
            assert_eq!(a.headers[header::CACHE_CONTROL], "no-store", "{path}");
        }
        walked += 1;
    }
    assert!(walked >= 20, "only {walked} routes need a role");
    // Refusals are in the audit trail.
    let refused = ui
        .state
        .web
        .audit
        .list(
            &idgard_server::web::audit::Filter {
                outcome: Some("refused".into()),
                ..Default::default()
            },
            &idgard_server::page::Page::first(1000),
        )
        .await
        .unwrap();
    assert!(
        refused.iter().any(|e| e.user.as_deref() == Some("low")),
        "{refused:?}"
    );
}

#[tokio::test]
async fn unsafe_requests_need_this_site_and_the_sessions_token() {
    let ui = ui().await;
    let (cookie, csrf) = ui.session("op", &[Role::Operator]).await;
    for (site, token, why) in [
        ("same-origin", "", "no token"),
        ("same-origin", "0000", "a wrong token"),
        ("cross-site", csrf.as_str(), "another site"),
        ("same-site", csrf.as_str(), "a sibling site"),
    ] {
        let a = ui
            .post_from("/signout", &cookie, &[("csrf", token)], site)
            .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{why}: {}", a.body);
    }
    // Without Sec-Fetch-Site, the Origin decides.
    let req = Request::post("/signout")
        .header(header::COOKIE, &cookie)
        .header(header::ORIGIN, "https://evil.example")
        .header(header::HOST, "idm.example")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("csrf={csrf}")))
        .unwrap();
    assert_eq!(ui.send(req).await.status, StatusCode::FORBIDDEN);
    // The session is still live after all that; the right request signs out.
    assert_eq!(ui.get("/me", Some(&cookie)).await.status, StatusCode::OK);
    let a = ui.post("/signout", &cookie, &[("csrf", &csrf)]).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.cookie("__Host-idgard").as_deref(), Some(""));
    // Back after sign-out: the old cookie opens nothing.
    let a = ui.get("/dashboard", Some(&cookie)).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn the_development_password_signs_in_with_a_fresh_session_each_time() {
    let ui = ui().await;
    let a = ui.get("/signin?next=/orders", None).await;
    assert_eq!(a.status, StatusCode::OK);
    let pre = a
        .cookie("__Host-idgard-pre")
        .expect("a sign-in token cookie");
    let token = a
        .attr("form[action='/signin/password'] input[name=csrf]", "value")
        .unwrap();
    assert_eq!(pre, token);
    assert_eq!(
        a.select("p.banner strong"),
        vec!["Development sign-in is on:".to_owned()],
        "the banner is on every page, sign-in included"
    );
    let pre_cookie = format!("__Host-idgard-pre={pre}");
    // Without the sign-in token: refused before the password is looked at.
    let a = ui
        .post(
            "/signin/password",
            &pre_cookie,
            &[("user", "dev"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = ui
        .post(
            "/signin/password",
            &pre_cookie,
            &[("csrf", &pre), ("user", "dev"), ("password", "nope")],
        )
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        a.select("p.error"),
        vec!["Wrong user name or password.".to_owned()]
    );
    let mut sessions = Vec::new();
    for _ in 0..2 {
        let a = ui
            .post(
                "/signin/password",
                &pre_cookie,
                &[
                    ("csrf", &pre),
                    ("user", "dev"),
                    ("password", PASSWORD),
                    ("next", "/orders"),
                ],
            )
            .await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
        assert_eq!(a.headers[header::LOCATION], "/orders");
        let set = a
            .headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .find(|v| v.starts_with("__Host-idgard="))
            .unwrap();
        for part in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
            assert!(set.contains(part), "{set}");
        }
        sessions.push(a.cookie("__Host-idgard").unwrap());
    }
    assert_ne!(
        sessions[0], sessions[1],
        "each sign-in makes a new session id"
    );
    assert_eq!(sessions[0].len(), 64, "256 random bits, hex");
    let cookie = format!("__Host-idgard={}", sessions[1]);
    let a = ui.get("/dashboard", Some(&cookie)).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.select("h1"), vec!["Dashboard".to_owned()]);
    assert_eq!(a.select("header .who a"), vec!["dev".to_owned()]);
    // The stored session is a hash: the database never holds the cookie's value.
    let stored: Vec<(String,)> = sqlx::query_as("SELECT id_hash FROM web_sessions")
        .fetch_all(&ui.engine.queue.db.read)
        .await
        .unwrap();
    assert!(stored.iter().all(|(h,)| h != &sessions[1]));
    // A redirect elsewhere after sign-in is never followed.
    let a = ui
        .post(
            "/signin/password",
            &pre_cookie,
            &[
                ("csrf", &pre),
                ("user", "dev"),
                ("password", PASSWORD),
                ("next", "//evil.example/x"),
            ],
        )
        .await;
    assert_eq!(a.headers[header::LOCATION], "/dashboard");
    // Signing in again while a session is live: the sign-in form's token is the one checked.
    let both = format!("{pre_cookie}; {cookie}");
    let a = ui
        .post(
            "/signin/password",
            &both,
            &[("csrf", &pre), ("user", "dev"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    // The JSON API never takes the cookie.
    let a = ui.get("/api/v1/agents", Some(&cookie)).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    // The trail has the failure and the successes.
    let events = ui
        .state
        .web
        .audit
        .list(&Default::default(), &idgard_server::page::Page::first(100))
        .await
        .unwrap();
    let signins: Vec<&str> = events
        .iter()
        .filter(|e| e.action == "signin.password")
        .map(|e| e.outcome.as_str())
        .collect();
    assert_eq!(
        signins.iter().filter(|o| **o == "refused").count(),
        1,
        "{signins:?}"
    );
    assert_eq!(
        signins.iter().filter(|o| **o == "done").count(),
        4,
        "{signins:?}"
    );
}

#[tokio::test]
async fn guessing_passwords_is_slowed_per_login() {
    let ui = ui().await;
    let a = ui.get("/signin", None).await;
    let pre = a.cookie("__Host-idgard-pre").unwrap();
    let cookie = format!("__Host-idgard-pre={pre}");
    let mut statuses = Vec::new();
    for i in 0..22 {
        let pw = format!("guess-{i}");
        let a = ui
            .post(
                "/signin/password",
                &cookie,
                &[("csrf", &pre), ("user", "dev"), ("password", &pw)],
            )
            .await;
        statuses.push(a.status);
    }
    assert!(
        statuses[..20]
            .iter()
            .all(|s| *s == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
    assert!(
        statuses[20..]
            .iter()
            .all(|s| *s == StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    // Even the right password waits out the window for that login.
    let a = ui
        .post(
            "/signin/password",
            &cookie,
            &[("csrf", &pre), ("user", "dev"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn assets_are_served_by_content_hash_and_kept() {
    let ui = ui().await;
    let a = ui.get("/signin", None).await;
    let css = a.attr("link[rel=stylesheet]", "href").unwrap();
    let js = a.attr("script[src]", "src").unwrap();
    for (url, kind) in [(css, "text/css"), (js, "text/javascript")] {
        let a = ui.get(&url, None).await;
        assert_eq!(a.status, StatusCode::OK, "{url}");
        assert!(
            a.headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with(kind)
        );
        assert!(
            a.headers[header::CACHE_CONTROL]
                .to_str()
                .unwrap()
                .contains("immutable")
        );
    }
    assert_eq!(
        ui.get("/assets/ui.css", None).await.status,
        StatusCode::NOT_FOUND
    );
    // No inline script or style anywhere on the page.
    assert!(!a.body.contains("<script>") && !a.body.contains("style="));
}

#[tokio::test]
async fn an_approver_may_be_kept_from_approving_their_own_run() {
    let ui = ui_with(|s| s.approve_own_runs = false).await;
    ui.engine.queue.add_agent("a").await.unwrap();
    let job = ui
        .engine
        .queue
        .create_job(&idgard_protocol::NewJob {
            agent: "a".into(),
            name: Some("own".into()),
            steps: vec![vec![idgard_protocol::TaskSpec {
                connection: "c".into(),
                operation: idgard_protocol::Operation::Export,
                args: serde_json::Value::Null,
                max_attempts: None,
                timeout_s: None,
                agent: None,
            }]],
            start: Some(false),
        })
        .await
        .unwrap();
    sqlx::query("UPDATE jobs SET state = 'blocked', started_by = 'ann' WHERE id = $1")
        .bind(job.id)
        .execute(&ui.engine.queue.db.pool)
        .await
        .unwrap();
    let path = format!("/runs/{}", job.id);
    let (ann, ann_csrf) = ui.session("ann", &[Role::Approver]).await;
    let page = ui.get(&path, Some(&ann)).await;
    assert!(
        page.body.contains("another approver must approve it"),
        "{}",
        page.body
    );
    assert!(page.select("button").iter().all(|b| b != "Approve"));
    let a = ui
        .post(&format!("{path}/approve"), &ann, &[("csrf", &ann_csrf)])
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
    let (bob, _) = ui.session("bob", &[Role::Approver]).await;
    let page = ui.get(&path, Some(&bob)).await;
    assert!(
        page.select("button").iter().any(|b| b == "Approve"),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn a_run_is_launched_through_its_agent_and_the_page_follows_the_answer() {
    let ui = ui().await;
    let q = &ui.engine.queue;
    let token = q.add_agent("lyon").await.unwrap().enrolment_token;
    let agent = q.enrol(&token).await.unwrap().agent_id;
    let (cookie, csrf) = ui.session("olga", &[Role::Operator]).await;
    let a = ui
        .post(
            "/jobs/run",
            &cookie,
            &[("csrf", &csrf), ("job", "nightly"), ("mode", "incremental")],
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    let to = a.headers[header::LOCATION].to_str().unwrap().to_owned();
    assert!(to.starts_with("/launches/"), "{to}");
    // Nothing runs until the agent accepts; the page says so and reloads by itself.
    let page = ui.get(&to, Some(&cookie)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Waiting for agent"), "{}", page.body);
    assert!(
        page.body.contains(r#"http-equiv="refresh""#),
        "{}",
        page.body
    );
    assert!(page.body.contains("olga"), "{}", page.body);
    // The agent takes it on its poll and accepts: the launch's page leads to the run.
    let delivered = q.deliver_launches(agent).await.unwrap();
    assert_eq!(delivered.len(), 1);
    let answer = idgard_protocol::LaunchAnswer {
        accept: true,
        reason: None,
    };
    let run = ui
        .engine
        .answer_launch(agent, &delivered[0].view.id, &answer)
        .await
        .unwrap()
        .view
        .job_id
        .unwrap();
    let page = ui.get(&to, Some(&cookie)).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.headers[header::LOCATION], format!("/runs/{run}"));
    assert_eq!(
        ui.engine.started_by(run).await.unwrap().as_deref(),
        Some("olga")
    );
    // A refusal is shown with the agent's reason, and the page stops reloading.
    ui.post(
        "/jobs/run",
        &cookie,
        &[("csrf", &csrf), ("job", "nightly"), ("mode", "complete")],
    )
    .await;
    let l = &q.deliver_launches(agent).await.unwrap()[0];
    let no = idgard_protocol::LaunchAnswer {
        accept: false,
        reason: Some("not on the list".into()),
    };
    ui.engine
        .answer_launch(agent, &l.view.id, &no)
        .await
        .unwrap();
    let page = ui
        .get(&format!("/launches/{}", l.view.id), Some(&cookie))
        .await;
    assert!(
        page.body.contains("Refused:") && page.body.contains("not on the list"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("http-equiv"), "{}", page.body);
    // The trail says who launched what.
    let trail = ui
        .state
        .web
        .audit
        .list(
            &idgard_server::web::audit::Filter {
                action: Some("job.launch".into()),
                ..Default::default()
            },
            &support_page(),
        )
        .await
        .unwrap();
    assert_eq!(trail.len(), 2, "{trail:?}");
    assert!(trail.iter().all(|e| e.user.as_deref() == Some("olga")));
}

fn support_page() -> idgard_server::page::Page {
    idgard_server::page::Page::new(idgard_protocol::ListQuery {
        after: None,
        limit: Some(50),
    })
    .unwrap()
}
