//! The identity repository as administrators read it: orders, entries and their history,
//! links of accounts to identities.

use super::App;
use super::extract::{Admin, QueryOf};
use crate::error::Result;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use idgard_protocol::OrderView;

/// `/api/v1/orders`, `/api/v1/connections/...`.
pub fn routes() -> Router<App> {
    Router::new()
        .route("/orders", get(orders))
        .route("/connections/{name}/entries", get(entries))
        .route("/connections/{name}/entries/{key}/history", get(history))
        .route("/connections/{name}/links", get(links))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct OrderFilter {
    job: Option<i64>,
    connection: Option<String>,
    state: Option<String>,
    limit: Option<u32>,
}

async fn orders(
    State(app): State<App>,
    _: Admin,
    QueryOf(f): QueryOf<OrderFilter>,
) -> Result<Json<Vec<OrderView>>> {
    Ok(Json(
        app.engine
            .orders(
                f.job,
                f.connection.as_deref(),
                f.state.as_deref(),
                f.limit.unwrap_or(1000).min(100_000),
            )
            .await?,
    ))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Page {
    after: Option<String>,
    limit: Option<u32>,
    situation: Option<String>,
}

async fn entries(
    State(app): State<App>,
    _: Admin,
    Path(name): Path<String>,
    QueryOf(p): QueryOf<Page>,
) -> Result<Json<Vec<serde_json::Value>>> {
    Ok(Json(
        app.engine
            .entries(
                &name,
                p.after.as_deref(),
                p.limit.unwrap_or(1000).min(100_000),
            )
            .await?,
    ))
}

async fn history(
    State(app): State<App>,
    _: Admin,
    Path((name, key)): Path<(String, String)>,
) -> Result<Json<Vec<serde_json::Value>>> {
    Ok(Json(app.engine.history(&name, &key).await?))
}

async fn links(
    State(app): State<App>,
    _: Admin,
    Path(name): Path<String>,
    QueryOf(p): QueryOf<Page>,
) -> Result<Json<Vec<serde_json::Value>>> {
    Ok(Json(app.engine.links(&name, p.situation.as_deref()).await?))
}
