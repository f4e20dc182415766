//! The HTTP layer over the domain, request by request (`tower::ServiceExt::oneshot`, no
//! network): every refusal is `{ "error": { "code", "message" } }`, its status is the one
//! the code maps to, and each route answers the code its domain gives.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use idgard_protocol::{ErrorBody, ErrorCode};
use idgard_server::http::{error::status_of, router};
use idgard_server::identity::Engine;
use serde_json::json;
use std::time::Duration;
use tower::ServiceExt as _;

mod support;

struct Api {
    app: axum::Router,
    engine: Engine,
    admin: String,
    agent_token: String,
    agent: i64,
    _dir: tempfile::TempDir,
}

async fn api() -> Api {
    let dir = tempfile::tempdir().unwrap();
    let config = idgard_server::config::Config {
        data_dir: dir.path().to_owned(),
        ..Default::default()
    };
    let engine = idgard_server::open(&config).await.unwrap();
    let admin = engine.queue.new_admin_token().await.unwrap();
    engine.queue.add_agent("a").await.unwrap();
    let agent = engine.queue.agent_id("a").await.unwrap();
    let signer =
        idgard_server::keys::Signer::load(None, None, &dir.path().join("key.pem"), 600).unwrap();
    let agent_token = signer.issue(agent, 0, engine.queue.now()).unwrap();
    let web = idgard_server::web::Web::new(Default::default(), &engine.queue, true, None).unwrap();
    let state = support::app_state(&engine, signer, web);
    Api {
        app: router(state, 64 << 10, 1 << 16, Duration::from_secs(10)),
        engine,
        admin,
        agent_token,
        agent,
        _dir: dir,
    }
}

enum Who {
    Nobody,
    Admin,
    Agent,
}

impl Api {
    async fn call(
        &self,
        method: &str,
        path: &str,
        who: Who,
        body: Option<Body>,
    ) -> (StatusCode, Vec<u8>) {
        let mut req = Request::builder().method(method).uri(path);
        match who {
            Who::Nobody => {}
            Who::Admin => req = req.header("authorization", format!("Bearer {}", self.admin)),
            Who::Agent => req = req.header("authorization", format!("Bearer {}", self.agent_token)),
        }
        let req = match body {
            Some(b) => req.header("content-type", "application/json").body(b),
            None => req.body(Body::empty()),
        }
        .unwrap();
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, bytes.to_vec())
    }

    /// Calls and checks the refusal: its code, and the status that code maps to.
    async fn refused(
        &self,
        method: &str,
        path: &str,
        who: Who,
        body: Option<&str>,
        code: ErrorCode,
    ) {
        let (status, bytes) = self
            .call(method, path, who, body.map(|b| Body::from(b.to_owned())))
            .await;
        let parsed: ErrorBody = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{method} {path}: not an error body ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        assert_eq!(
            parsed.error.code, code,
            "{method} {path}: {}",
            parsed.error.message
        );
        assert_eq!(status, status_of(code), "{method} {path}");
        assert!(!parsed.error.message.is_empty());
    }
}

const AGENT_ROUTES: &[(&str, &str)] = &[
    ("POST", "/api/v1/agent/hello"),
    ("POST", "/api/v1/agent/poll"),
    ("POST", "/api/v1/agent/tasks/1/heartbeat"),
    ("POST", "/api/v1/agent/tasks/1/logs"),
    ("POST", "/api/v1/agent/tasks/1/uploads"),
    ("POST", "/api/v1/agent/tasks/1/complete"),
    ("POST", "/api/v1/agent/tasks/1/run"),
    ("GET", "/api/v1/agent/tasks/1/orders?fence=1"),
    ("POST", "/api/v1/agent/tasks/1/order-results"),
    ("GET", "/api/v1/agent/uploads/1"),
    ("PUT", "/api/v1/agent/uploads/1?offset=0"),
];

const ADMIN_ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/v1/agents"),
    ("POST", "/api/v1/agents"),
    ("POST", "/api/v1/tasks"),
    ("GET", "/api/v1/tasks/1"),
    ("GET", "/api/v1/tasks/1/log"),
    ("GET", "/api/v1/tasks/1/uploads"),
    ("POST", "/api/v1/tasks/1/cancel"),
    ("GET", "/api/v1/uploads/1/content"),
    ("GET", "/api/v1/jobs"),
    ("POST", "/api/v1/jobs"),
    ("GET", "/api/v1/jobs/1"),
    ("POST", "/api/v1/jobs/1/start"),
    ("POST", "/api/v1/jobs/1/cancel"),
    ("POST", "/api/v1/jobs/1/approve"),
    ("POST", "/api/v1/jobs/run"),
    ("GET", "/api/v1/orders"),
    ("GET", "/api/v1/connections/hr/entries"),
    ("GET", "/api/v1/connections/hr/entries/k"),
    ("GET", "/api/v1/connections/hr/entries/k/history"),
    ("GET", "/api/v1/connections/hr/links"),
    ("GET", "/api/v1/identities/k"),
    ("GET", "/api/v1/agents/a"),
    ("DELETE", "/api/v1/agents/a"),
    ("POST", "/api/v1/agents/a/reset"),
    ("GET", "/api/v1/admin-tokens"),
    ("POST", "/api/v1/admin-tokens"),
    ("DELETE", "/api/v1/admin-tokens/0123456789ab"),
];

#[tokio::test]
async fn every_route_refuses_callers_without_credentials() {
    let api = api().await;
    for (method, path) in AGENT_ROUTES.iter().chain(ADMIN_ROUTES) {
        api.refused(
            method,
            path,
            Who::Nobody,
            Some("{}"),
            ErrorCode::Unauthorized,
        )
        .await;
    }
    // An agent's token is not an administrator's, nor the reverse.
    for (method, path) in ADMIN_ROUTES {
        api.refused(
            method,
            path,
            Who::Agent,
            Some("{}"),
            ErrorCode::Unauthorized,
        )
        .await;
    }
    for (method, path) in AGENT_ROUTES {
        api.refused(
            method,
            path,
            Who::Admin,
            Some("{}"),
            ErrorCode::Unauthorized,
        )
        .await;
    }
}

#[tokio::test]
async fn bodies_paths_and_queries_that_do_not_fit_are_refused_with_their_code() {
    let api = api().await;
    api.refused("GET", "/nowhere", Who::Nobody, None, ErrorCode::NotFound)
        .await;
    api.refused(
        "POST",
        "/api/v1/agent/poll",
        Who::Agent,
        Some("{"),
        ErrorCode::Invalid,
    )
    .await;
    api.refused(
        "POST",
        "/api/v1/agent/poll",
        Who::Agent,
        Some(r#"{"capacity":"x"}"#),
        ErrorCode::Invalid,
    )
    .await;
    let big = format!(r#"{{"capacity":1,"pad":"{}"}}"#, "x".repeat(70 << 10));
    api.refused(
        "POST",
        "/api/v1/agent/poll",
        Who::Agent,
        Some(&big),
        ErrorCode::TooLarge,
    )
    .await;
    // No content type.
    let (status, bytes) = api.call("POST", "/api/v1/agents", Who::Admin, None).await;
    let parsed: ErrorBody = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(parsed.error.code, ErrorCode::UnsupportedMediaType);
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    api.refused(
        "GET",
        "/api/v1/tasks/abc",
        Who::Admin,
        None,
        ErrorCode::Invalid,
    )
    .await;
    api.refused(
        "GET",
        "/api/v1/tasks/-3",
        Who::Admin,
        None,
        ErrorCode::Invalid,
    )
    .await;
    api.refused(
        "GET",
        "/api/v1/jobs?limit=x",
        Who::Admin,
        None,
        ErrorCode::Invalid,
    )
    .await;
    api.refused(
        "GET",
        "/api/v1/orders?color=red",
        Who::Admin,
        None,
        ErrorCode::Invalid,
    )
    .await;
    api.refused(
        "GET",
        "/api/v1/agent/tasks/1/orders",
        Who::Agent,
        None,
        ErrorCode::Invalid,
    )
    .await;
    api.refused(
        "PUT",
        "/api/v1/agent/uploads/1",
        Who::Agent,
        None,
        ErrorCode::Invalid,
    )
    .await;
    let tasks = |timeout: &str| {
        format!(
            r#"{{"agent":"a","tasks":[{{"connection":"hr","operation":"export","timeout_s":{timeout}}}]}}"#
        )
    };
    for t in ["0", "604801", "18446744073709551615", "9223372036854776"] {
        api.refused(
            "POST",
            "/api/v1/tasks",
            Who::Admin,
            Some(&tasks(t)),
            ErrorCode::Invalid,
        )
        .await;
    }
    api.refused(
        "POST",
        "/api/v1/tasks",
        Who::Admin,
        Some(&tasks("-1")),
        ErrorCode::Invalid,
    )
    .await;
}

/// Every list checks what it is given: a bad filter value or limit is a 400 naming it, an
/// unknown connection or job a 404 — never a 200 with everything, or with nothing.
#[tokio::test]
async fn list_filters_are_checked_and_named_when_wrong() {
    let api = api().await;
    for (path, named) in [
        ("/api/v1/connections/hr/links?situation=bogus", "bogus"),
        ("/api/v1/connections/hr/entries?situation=orphan", "orphan"),
        ("/api/v1/orders?state=bogus", "bogus"),
        ("/api/v1/orders?after=zzz", "zzz"),
        ("/api/v1/connections/hr/links?limit=0", "limit=0"),
        ("/api/v1/jobs?limit=10001", "limit=10001"),
        ("/api/v1/jobs?after=x", "after=x"),
        ("/api/v1/agents?limit=100000", "limit=100000"),
    ] {
        let (status, bytes) = api.call("GET", path, Who::Admin, None).await;
        let body: ErrorBody = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(body.error.code, ErrorCode::Invalid, "{path}");
        assert!(
            body.error.message.contains(named),
            "{path}: {}",
            body.error.message
        );
    }
    for path in [
        "/api/v1/connections/nope/links",
        "/api/v1/connections/nope/entries",
        "/api/v1/connections/nope/entries/k/history",
        "/api/v1/orders?connection=nope",
        "/api/v1/orders?job=77",
    ] {
        api.refused("GET", path, Who::Admin, None, ErrorCode::NotFound)
            .await;
    }
}

#[tokio::test]
async fn the_domain_answers_not_found_stale_lease_and_conflict() {
    let api = api().await;
    let q = &api.engine.queue;
    for (method, path) in [
        ("GET", "/api/v1/tasks/99"),
        ("GET", "/api/v1/jobs/99"),
        ("POST", "/api/v1/jobs/99/approve"),
        ("POST", "/api/v1/jobs/99/start"),
        ("GET", "/api/v1/uploads/99/content"),
    ] {
        api.refused(method, path, Who::Admin, Some("{}"), ErrorCode::NotFound)
            .await;
    }
    api.refused(
        "POST",
        "/api/v1/agent/tasks/99/heartbeat",
        Who::Agent,
        Some(r#"{"fence":1}"#),
        ErrorCode::NotFound,
    )
    .await;

    let (status, _) = api
        .call(
            "POST",
            "/api/v1/tasks",
            Who::Admin,
            Some(Body::from(
                r#"{"agent":"a","tasks":[{"connection":"hr","operation":"export"}]}"#,
            )),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let claimed = q.claim(api.agent, 1).await.unwrap();
    let (task, fence) = (claimed[0].id, claimed[0].fence);
    let beat = |fence: i64| format!(r#"{{"fence":{fence}}}"#);
    let path = format!("/api/v1/agent/tasks/{task}/heartbeat");
    let (status, _) = api
        .call("POST", &path, Who::Agent, Some(Body::from(beat(fence))))
        .await;
    assert_eq!(status, StatusCode::OK);
    api.refused(
        "POST",
        &path,
        Who::Agent,
        Some(&beat(fence + 1)),
        ErrorCode::StaleLease,
    )
    .await;
    let complete = format!(
        r#"{{"fence":{},"outcome":{{"status":"cancelled"}}}}"#,
        fence + 1
    );
    api.refused(
        "POST",
        &format!("/api/v1/agent/tasks/{task}/complete"),
        Who::Agent,
        Some(&complete),
        ErrorCode::StaleLease,
    )
    .await;
    api.refused(
        "GET",
        &format!("/api/v1/agent/tasks/{task}/orders?fence={fence}"),
        Who::Agent,
        None,
        ErrorCode::Invalid,
    )
    .await;
    api.refused(
        "POST",
        &format!("/api/v1/agent/tasks/{task}/order-results"),
        Who::Agent,
        Some(&format!(r#"{{"fence":{},"results":[]}}"#, fence + 1)),
        ErrorCode::StaleLease,
    )
    .await;

    // A job that is not blocked has nothing to approve, and says so at once.
    let job =
        json!({"agent": "a", "name": "j", "steps": [[{"connection": "hr", "operation": "noop"}]]});
    let (status, bytes) = api
        .call(
            "POST",
            "/api/v1/jobs",
            Who::Admin,
            Some(Body::from(job.to_string())),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    let id = serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()["id"]
        .as_i64()
        .unwrap();
    api.refused(
        "POST",
        &format!("/api/v1/jobs/{id}/approve"),
        Who::Admin,
        None,
        ErrorCode::Conflict,
    )
    .await;
    api.refused(
        "POST",
        &format!("/api/v1/jobs/{id}/start"),
        Who::Admin,
        None,
        ErrorCode::Conflict,
    )
    .await;
}

#[tokio::test]
async fn a_removed_agent_and_a_revoked_or_expired_token_are_refused_at_once() {
    let api = api().await;
    let poll = r#"{"capacity": 1, "wait_ms": 0}"#;
    let body = || Some(Body::from(poll));
    let (status, _) = api
        .call("POST", "/api/v1/agent/poll", Who::Agent, body())
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = api
        .call("DELETE", "/api/v1/agents/a", Who::Admin, None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    api.refused(
        "POST",
        "/api/v1/agent/poll",
        Who::Agent,
        Some(poll),
        ErrorCode::Unauthorized,
    )
    .await;
    api.refused(
        "GET",
        "/api/v1/agents/a",
        Who::Admin,
        None,
        ErrorCode::NotFound,
    )
    .await;

    let (status, bytes) = api
        .call(
            "POST",
            "/api/v1/admin-tokens",
            Who::Admin,
            Some(Body::from(r#"{"name": "short", "expires_in_s": 1}"#)),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let short: idgard_protocol::NewAdminTokenAnswer = serde_json::from_slice(&bytes).unwrap();
    let with = |token: &str, path: &str| {
        let req = Request::builder()
            .uri(path)
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        let app = api.app.clone();
        async move { app.oneshot(req).await.unwrap().status() }
    };
    assert_eq!(with(&short.token, "/api/v1/agents").await, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        with(&short.token, "/api/v1/agents").await,
        StatusCode::UNAUTHORIZED,
        "expired"
    );

    let ci = api
        .engine
        .queue
        .create_admin_token(&Default::default())
        .await
        .unwrap();
    assert_eq!(with(&ci.token, "/api/v1/agents").await, StatusCode::OK);
    let (status, _) = api
        .call(
            "DELETE",
            &format!("/api/v1/admin-tokens/{}", ci.view.id),
            Who::Admin,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        with(&ci.token, "/api/v1/agents").await,
        StatusCode::UNAUTHORIZED,
        "revoked"
    );
}

#[tokio::test]
async fn a_reset_ends_the_agents_access_tokens_and_secret_at_once() {
    let api = api().await;
    let poll = r#"{"capacity": 1, "wait_ms": 0}"#;
    let (status, _) = api
        .call(
            "POST",
            "/api/v1/agent/poll",
            Who::Agent,
            Some(Body::from(poll)),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    api.engine.queue.reset_agent("a").await.unwrap();
    // The token issued before the reset is refused, though it has not expired.
    api.refused(
        "POST",
        "/api/v1/agent/poll",
        Who::Agent,
        Some(poll),
        ErrorCode::Unauthorized,
    )
    .await;
    // So is the client secret: no new token without enrolling again.
    let token = format!(
        r#"{{"agent_id": {}, "client_secret": "anything"}}"#,
        api.agent
    );
    api.refused(
        "POST",
        "/api/v1/agent/token",
        Who::Nobody,
        Some(&token),
        ErrorCode::Unauthorized,
    )
    .await;
}

#[tokio::test]
async fn a_connection_is_served_by_one_agent() {
    let api = api().await;
    let hello = |name: &str| {
        format!(
            r#"{{"version": "t", "restarted": false, "connections": [{{"name": "{name}", "connector": "csv", "version": "1", "operations": ["export-full"]}}]}}"#
        )
    };
    let (status, _) = api
        .call(
            "POST",
            "/api/v1/agent/hello",
            Who::Agent,
            Some(Body::from(hello("hr"))),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // Another agent claiming `hr` is refused, naming its owner.
    let q = &api.engine.queue;
    q.add_agent("b").await.unwrap();
    let b = q.agent_id("b").await.unwrap();
    let refused = q
        .hello(b, &serde_json::from_str(&hello("hr")).unwrap())
        .await
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::Conflict);
    assert!(
        refused.message.contains("belongs to agent `a`"),
        "{}",
        refused.message
    );
    q.hello(b, &serde_json::from_str(&hello("crm")).unwrap())
        .await
        .unwrap();
}
