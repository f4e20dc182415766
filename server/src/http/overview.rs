//! What the UI's pages show, for scripts: the overview, connections, declared jobs, identity
//! search, the audit trail; and the actions the UI offers that the API had not: retrying
//! failed orders. Each handler calls the same domain function as its page.

use super::App;
use super::extract::{Admin, JsonBody, PathOf, QueryOf};
use crate::error::Result;
use crate::identity::operate::Review;
use crate::page::Page;
use crate::web::audit::Filter;
use axum::Json;
use axum::extract::State;
use idgard_protocol::{
    AuditView, ConnectionView, DeclaredJobView, EntryView, JobView, LaunchView, LinkView,
    ListQuery, Overview, RunJob,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// `/api/v1/overview`, `/api/v1/connections`, `/api/v1/declared-jobs`, `/api/v1/identities`,
/// `/api/v1/audit`, `/api/v1/orders/retry`, `/api/v1/connections/{name}/links/{key}/confirm|reject`,
/// `/api/v1/launches`.
pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(overview))
        .routes(routes!(connections))
        .routes(routes!(declared_jobs))
        .routes(routes!(identities))
        .routes(routes!(audit))
        .routes(routes!(retry))
        .routes(routes!(confirm))
        .routes(routes!(reject))
        .routes(routes!(test_connection))
        .routes(routes!(launch))
        .routes(routes!(launch_view))
}

/// Tests a connection now: a run of one `test-connection` task.
#[utoipa::path(post, path = "/connections/{name}/test", tag = "connections", responses((status = 200, body = JobView)))]
async fn test_connection(
    State(app): State<App>,
    Admin(by): Admin,
    PathOf(name): PathOf<String>,
) -> Result<Json<JobView>> {
    let user = format!("token:{by}");
    Ok(Json(app.engine.test_connection(&name, &user).await?))
}

/// Launches a declared job through its agent, in the name of the administrator token.
#[utoipa::path(post, path = "/launches", tag = "jobs", request_body = RunJob, responses((status = 200, body = LaunchView)))]
async fn launch(
    State(app): State<App>,
    Admin(by): Admin,
    JsonBody(run): JsonBody<RunJob>,
) -> Result<Json<LaunchView>> {
    let user = format!("token:{by}");
    Ok(Json(app.engine.launch_declared(&run, &user).await?.view))
}

/// One launch.
#[utoipa::path(get, path = "/launches/{id}", tag = "jobs", responses((status = 200, body = LaunchView)))]
async fn launch_view(
    State(app): State<App>,
    _: Admin,
    PathOf(id): PathOf<String>,
) -> Result<Json<LaunchView>> {
    Ok(Json(app.queue.launch(&id).await?.view))
}

/// What the home page shows.
#[utoipa::path(get, path = "/overview", tag = "overview", responses((status = 200, body = Overview)))]
async fn overview(State(app): State<App>, _: Admin) -> Result<Json<Overview>> {
    Ok(Json(app.engine.overview().await?))
}

/// The connections of the rules, with their state.
#[utoipa::path(get, path = "/connections", tag = "connections", responses((status = 200, body = Vec<ConnectionView>)))]
async fn connections(State(app): State<App>, _: Admin) -> Result<Json<Vec<ConnectionView>>> {
    Ok(Json(app.engine.connections().await?))
}

/// The jobs the rules declare.
#[utoipa::path(get, path = "/declared-jobs", tag = "jobs", responses((status = 200, body = Vec<DeclaredJobView>)))]
async fn declared_jobs(State(app): State<App>, _: Admin) -> Result<Json<Vec<DeclaredJobView>>> {
    Ok(Json(app.engine.declared_jobs().await?))
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct SearchQuery {
    /// Words to look for in identities' attributes.
    #[serde(default)]
    q: String,
    /// A name prefix instead (the rules' `identities.search` attribute).
    name: Option<String>,
    /// The last key of the previous page.
    after: Option<String>,
    /// How many identities, at most.
    #[param(minimum = 1, maximum = 10_000)]
    limit: Option<u32>,
}

/// Searches identities.
#[utoipa::path(get, path = "/identities", tag = "identities", params(SearchQuery), responses((status = 200, body = Vec<EntryView>)))]
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

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    /// Only what this user did.
    user: Option<String>,
    /// Only this action.
    action: Option<String>,
    /// Only this outcome.
    outcome: Option<String>,
    /// The last key of the previous page.
    after: Option<String>,
    /// How many records, at most.
    #[param(minimum = 1, maximum = 10_000)]
    limit: Option<u32>,
}

/// The audit trail, newest first.
#[utoipa::path(get, path = "/audit", tag = "overview", params(AuditQuery), responses((status = 200, body = Vec<AuditView>)))]
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
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RetryOrders {
    /// The orders to retry (at most 1000).
    #[schema(max_items = 1000)]
    ids: Vec<String>,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
struct Retried {
    /// How many were failed and are ready again.
    retried: u64,
}

/// Makes failed orders ready again.
#[utoipa::path(post, path = "/orders/retry", tag = "identities", request_body = RetryOrders, responses((status = 200, body = Retried)))]
async fn retry(
    State(app): State<App>,
    _: Admin,
    JsonBody(req): JsonBody<RetryOrders>,
) -> Result<Json<Retried>> {
    Ok(Json(Retried {
        retried: app.engine.retry_orders(&req.ids).await?,
    }))
}

/// Confirms a link waiting for review.
#[utoipa::path(post, path = "/connections/{name}/links/{key}/confirm", tag = "identities", responses((status = 200, body = LinkView)))]
async fn confirm(
    State(app): State<App>,
    _: Admin,
    PathOf((name, key)): PathOf<(String, String)>,
) -> Result<Json<LinkView>> {
    Ok(Json(
        app.engine.review_link(&name, &key, Review::Confirm).await?,
    ))
}

/// Rejects a link waiting for review.
#[utoipa::path(post, path = "/connections/{name}/links/{key}/reject", tag = "identities", responses((status = 200, body = LinkView)))]
async fn reject(
    State(app): State<App>,
    _: Admin,
    PathOf((name, key)): PathOf<(String, String)>,
) -> Result<Json<LinkView>> {
    Ok(Json(
        app.engine.review_link(&name, &key, Review::Reject).await?,
    ))
}
