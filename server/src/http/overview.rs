//! What the UI's pages show, for scripts: the overview, connections, declared jobs, identity
//! search, the audit trail; and the actions the UI offers that the API had not: retrying
//! failed orders. Each handler calls the same domain function as its page.

use super::App;
use super::extract::{Admin, JsonBody, QueryOf};
use crate::error::Result;
use crate::identity::operate::Review;
use crate::page::Page;
use crate::web::audit::Filter;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use idgard_protocol::{
    AuditView, ConnectionView, DeclaredJobView, EntryView, JobView, LaunchView, LinkView,
    ListQuery, Overview, RunJob,
};

/// `/api/v1/overview`, `/api/v1/connections`, `/api/v1/declared-jobs`, `/api/v1/identities`,
/// `/api/v1/audit`, `/api/v1/orders/retry`, `/api/v1/connections/{name}/links/{key}/confirm|reject`,
/// `/api/v1/launches`.
pub fn routes() -> Router<App> {
    Router::new()
        .route("/overview", get(overview))
        .route("/connections", get(connections))
        .route("/declared-jobs", get(declared_jobs))
        .route("/identities", get(identities))
        .route("/audit", get(audit))
        .route("/orders/retry", post(retry))
        .route("/connections/{name}/links/{key}/confirm", post(confirm))
        .route("/connections/{name}/links/{key}/reject", post(reject))
        .route("/connections/{name}/test", post(test_connection))
        .route("/launches", post(launch))
        .route("/launches/{id}", get(launch_view))
}

/// Tests a connection now: a run of one `test-connection` task.
async fn test_connection(
    State(app): State<App>,
    Admin(by): Admin,
    Path(name): Path<String>,
) -> Result<Json<JobView>> {
    let user = format!("token:{by}");
    Ok(Json(app.engine.test_connection(&name, &user).await?))
}

/// Launches a declared job through its agent, in the name of the administrator token.
async fn launch(
    State(app): State<App>,
    Admin(by): Admin,
    JsonBody(run): JsonBody<RunJob>,
) -> Result<Json<LaunchView>> {
    let user = format!("token:{by}");
    Ok(Json(app.engine.launch_declared(&run, &user).await?.view))
}

async fn launch_view(
    State(app): State<App>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Json<LaunchView>> {
    Ok(Json(app.queue.launch(&id).await?.view))
}

async fn overview(State(app): State<App>, _: Admin) -> Result<Json<Overview>> {
    Ok(Json(app.engine.overview().await?))
}

async fn connections(State(app): State<App>, _: Admin) -> Result<Json<Vec<ConnectionView>>> {
    Ok(Json(app.engine.connections().await?))
}

async fn declared_jobs(State(app): State<App>, _: Admin) -> Result<Json<Vec<DeclaredJobView>>> {
    Ok(Json(app.engine.declared_jobs().await?))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchQuery {
    #[serde(default)]
    q: String,
    /// A name prefix instead (the rules' `identities.search` attribute).
    name: Option<String>,
    after: Option<String>,
    limit: Option<u32>,
}

async fn identities(
    State(app): State<App>,
    _: Admin,
    QueryOf(q): QueryOf<SearchQuery>,
) -> Result<Json<Vec<EntryView>>> {
    let page = Page::new(ListQuery {
        after: q.after,
        limit: q.limit,
    })?;
    if let Some(name) = q.name {
        return Ok(Json(app.engine.search_names(&name).await?));
    }
    Ok(Json(app.engine.search_identities(&q.q, &page).await?))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    user: Option<String>,
    action: Option<String>,
    outcome: Option<String>,
    after: Option<String>,
    limit: Option<u32>,
}

async fn audit(
    State(app): State<App>,
    _: Admin,
    QueryOf(q): QueryOf<AuditQuery>,
) -> Result<Json<Vec<AuditView>>> {
    let page = Page::new(ListQuery {
        after: q.after,
        limit: q.limit,
    })?;
    let filter = Filter {
        user: q.user,
        action: q.action,
        outcome: q.outcome,
    };
    Ok(Json(app.web.audit.list(&filter, &page).await?))
}

/// `POST /api/v1/orders/retry`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryOrders {
    ids: Vec<String>,
}

#[derive(serde::Serialize)]
struct Retried {
    retried: u64,
}

async fn retry(
    State(app): State<App>,
    _: Admin,
    JsonBody(req): JsonBody<RetryOrders>,
) -> Result<Json<Retried>> {
    Ok(Json(Retried {
        retried: app.engine.retry_orders(&req.ids).await?,
    }))
}

async fn confirm(
    State(app): State<App>,
    _: Admin,
    Path((name, key)): Path<(String, String)>,
) -> Result<Json<LinkView>> {
    Ok(Json(
        app.engine.review_link(&name, &key, Review::Confirm).await?,
    ))
}

async fn reject(
    State(app): State<App>,
    _: Admin,
    Path((name, key)): Path<(String, String)>,
) -> Result<Json<LinkView>> {
    Ok(Json(
        app.engine.review_link(&name, &key, Review::Reject).await?,
    ))
}
