//! The identity repository as administrators read it: orders, entries and their history,
//! links of accounts to identities, one identity with everything it has.

use super::App;
use super::extract::{Admin, PathOf, QueryOf};
use crate::error::Result;
use crate::identity::views::OrderFilter;
use crate::page::Page;
use axum::Json;
use axum::extract::State;
use idgard_protocol::{
    EntryView, IdentityView, LinkView, ListQuery, OrderState, OrderView, Situation, VersionView,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// `/api/v1/orders`, `/api/v1/connections/...`, `/api/v1/identities/{key}`.
pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(orders))
        .routes(routes!(entries))
        .routes(routes!(entry))
        .routes(routes!(history))
        .routes(routes!(links))
        .routes(routes!(identity))
}

/// The filters of `GET /orders` (unknown names and values are refused).
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct OrderQuery {
    /// Only the orders of this job.
    job: Option<i64>,
    /// Only the orders for this connection.
    connection: Option<String>,
    /// Only the orders in this state.
    state: Option<OrderState>,
    /// Only the orders of this identity.
    identity: Option<String>,
    /// Only the orders of this kind.
    kind: Option<String>,
    /// The last key of the previous page.
    after: Option<String>,
    /// How many orders, at most.
    #[param(minimum = 1, maximum = 10_000)]
    limit: Option<u32>,
}

/// Orders, filtered, a page at a time.
#[utoipa::path(get, path = "/orders", tag = "identities", params(OrderQuery), responses((status = 200, body = Vec<OrderView>)))]
async fn orders(
    State(app): State<App>,
    _: Admin,
    QueryOf(q): QueryOf<OrderQuery>,
) -> Result<Json<Vec<OrderView>>> {
    let filter = OrderFilter {
        job: q.job,
        connection: q.connection,
        state: q.state,
        identity: q.identity,
        kind: q.kind,
    };
    let page = Page::new(ListQuery {
        after: q.after,
        limit: q.limit,
    })?;
    Ok(Json(app.engine.orders(&filter, &page).await?))
}

/// `?situation=&after=&limit=` of entries and links.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct SituationQuery {
    /// Only the entries or links in this situation.
    situation: Option<Situation>,
    /// The last key of the previous page.
    after: Option<String>,
    /// How many items, at most.
    #[param(minimum = 1, maximum = 10_000)]
    limit: Option<u32>,
}

impl SituationQuery {
    fn split(self) -> Result<(Option<Situation>, Page)> {
        let page = Page::new(ListQuery {
            after: self.after,
            limit: self.limit,
        })?;
        Ok((self.situation, page))
    }
}

/// A connection's entries, a page at a time.
#[utoipa::path(get, path = "/connections/{name}/entries", tag = "identities", params(SituationQuery), responses((status = 200, body = Vec<EntryView>)))]
async fn entries(
    State(app): State<App>,
    _: Admin,
    PathOf(name): PathOf<String>,
    QueryOf(q): QueryOf<SituationQuery>,
) -> Result<Json<Vec<EntryView>>> {
    let (situation, page) = q.split()?;
    Ok(Json(app.engine.entries(&name, situation, &page).await?))
}

/// One entry of a connection.
#[utoipa::path(get, path = "/connections/{name}/entries/{key}", tag = "identities", responses((status = 200, body = EntryView)))]
async fn entry(
    State(app): State<App>,
    _: Admin,
    PathOf((name, key)): PathOf<(String, String)>,
) -> Result<Json<EntryView>> {
    Ok(Json(app.engine.entry(&name, &key).await?))
}

/// The versions an entry went through.
#[utoipa::path(get, path = "/connections/{name}/entries/{key}/history", tag = "identities", responses((status = 200, body = Vec<VersionView>)))]
async fn history(
    State(app): State<App>,
    _: Admin,
    PathOf((name, key)): PathOf<(String, String)>,
) -> Result<Json<Vec<VersionView>>> {
    Ok(Json(app.engine.history(&name, &key).await?))
}

/// How a target connection's accounts stand against the identities.
#[utoipa::path(get, path = "/connections/{name}/links", tag = "identities", params(SituationQuery), responses((status = 200, body = Vec<LinkView>)))]
async fn links(
    State(app): State<App>,
    _: Admin,
    PathOf(name): PathOf<String>,
    QueryOf(q): QueryOf<SituationQuery>,
) -> Result<Json<Vec<LinkView>>> {
    let (situation, page) = q.split()?;
    Ok(Json(app.engine.links(&name, situation, &page).await?))
}

/// One identity with its accounts and orders.
#[utoipa::path(get, path = "/identities/{key}", tag = "identities", responses((status = 200, body = IdentityView)))]
async fn identity(
    State(app): State<App>,
    _: Admin,
    PathOf(key): PathOf<String>,
) -> Result<Json<IdentityView>> {
    Ok(Json(app.engine.identity(&key).await?))
}
