//! Connector packages: administrators publish and activate them, agents download the ones
//! offered to them.

use super::App;
use super::extract::{Admin, AgentAuth, JsonBody};
use crate::error::Result;
use crate::queue::packages::MAX_BUNDLE_BYTES;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use idgard_protocol::{ActivatePackage, PackageView, Published};

/// `/api/v1/packages...` (administrators).
pub fn routes() -> Router<App> {
    Router::new()
        .route(
            "/packages",
            post(publish)
                .get(list)
                .layer(DefaultBodyLimit::max(MAX_BUNDLE_BYTES)),
        )
        .route("/packages/{name}/active", post(activate))
}

/// `/api/v1/agent/packages/{digest}` (agents).
pub fn agent_routes() -> Router<App> {
    Router::new().route("/packages/{digest}", get(download))
}

async fn publish(State(app): State<App>, Admin(by): Admin, body: Bytes) -> Result<Json<Published>> {
    Ok(Json(app.queue.publish_package(&body, &by).await?))
}

async fn list(State(app): State<App>, _: Admin) -> Result<Json<Vec<PackageView>>> {
    Ok(Json(app.queue.packages().await?))
}

async fn activate(
    State(app): State<App>,
    Admin(by): Admin,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<ActivatePackage>,
) -> Result<Json<PackageView>> {
    Ok(Json(
        app.queue.activate_package(&name, &req.version, &by).await?,
    ))
}

async fn download(
    State(app): State<App>,
    AgentAuth(agent): AgentAuth,
    Path(digest): Path<String>,
) -> Result<impl IntoResponse> {
    let bundle = app.queue.package_bundle(agent, &digest).await?;
    Ok(([(header::CONTENT_TYPE, "application/x-tar")], bundle))
}
