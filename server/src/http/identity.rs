//! The identity repository as administrators read it: orders, entries and their history,
//! links of accounts to identities, one identity with everything it has.

use super::App;
use super::extract::{Admin, QueryOf};
use crate::error::Result;
use crate::identity::views::OrderFilter;
use crate::page::Page;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use idgard_protocol::{
    EntryView, IdentityView, LinkView, ListQuery, OrderState, OrderView, Situation, VersionView,
};

/// `/api/v1/orders`, `/api/v1/connections/...`, `/api/v1/identities/{key}`.
pub fn routes() -> Router<App> {
    Router::new()
        .route("/orders", get(orders))
        .route("/connections/{name}/entries", get(entries))
        .route("/connections/{name}/entries/{key}", get(entry))
        .route("/connections/{name}/entries/{key}/history", get(history))
        .route("/connections/{name}/links", get(links))
        .route("/identities/{key}", get(identity))
}

/// The filters of `GET /orders` (unknown names and values are refused).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct OrderQuery {
    job: Option<i64>,
    connection: Option<String>,
    state: Option<OrderState>,
    identity: Option<String>,
    kind: Option<String>,
    after: Option<String>,
    limit: Option<u32>,
}

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
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SituationQuery {
    situation: Option<Situation>,
    after: Option<String>,
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

async fn entries(
    State(app): State<App>,
    _: Admin,
    Path(name): Path<String>,
    QueryOf(q): QueryOf<SituationQuery>,
) -> Result<Json<Vec<EntryView>>> {
    let (situation, page) = q.split()?;
    Ok(Json(app.engine.entries(&name, situation, &page).await?))
}

async fn entry(
    State(app): State<App>,
    _: Admin,
    Path((name, key)): Path<(String, String)>,
) -> Result<Json<EntryView>> {
    Ok(Json(app.engine.entry(&name, &key).await?))
}

async fn history(
    State(app): State<App>,
    _: Admin,
    Path((name, key)): Path<(String, String)>,
) -> Result<Json<Vec<VersionView>>> {
    Ok(Json(app.engine.history(&name, &key).await?))
}

async fn links(
    State(app): State<App>,
    _: Admin,
    Path(name): Path<String>,
    QueryOf(q): QueryOf<SituationQuery>,
) -> Result<Json<Vec<LinkView>>> {
    let (situation, page) = q.split()?;
    Ok(Json(app.engine.links(&name, situation, &page).await?))
}

async fn identity(
    State(app): State<App>,
    _: Admin,
    Path(key): Path<String>,
) -> Result<Json<IdentityView>> {
    Ok(Json(app.engine.identity(&key).await?))
}
