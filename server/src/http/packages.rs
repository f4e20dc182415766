//! Connector packages: administrators publish and activate them, agents download the ones
//! offered to them.

use super::App;
use super::extract::{Admin, AgentAuth, JsonBody, PathOf, bytes_body};
use crate::error::Result;
use crate::queue::packages::MAX_BUNDLE_BYTES;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header;
use axum::response::IntoResponse;
use idgard_protocol::{ActivatePackage, PackageView, Published};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

/// `/api/v1/packages...` (administrators).
pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(publish, list).layer(DefaultBodyLimit::max(MAX_BUNDLE_BYTES)))
        .routes(routes!(activate))
}

/// `/api/v1/agent/packages/{digest}` (agents).
pub fn agent_routes() -> OpenApiRouter<App> {
    OpenApiRouter::new().routes(routes!(download))
}

/// Publishes a signed connector package (a tar bundle: manifest, component, signature).
#[utoipa::path(post, path = "/packages", tag = "packages", request_body(content((inline(super::openapi::Binary) = "application/x-tar"), (inline(super::openapi::Binary) = "application/octet-stream"))), responses((status = 200, body = Published)))]
async fn publish(
    State(app): State<App>,
    Admin(by): Admin,
    body: std::result::Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<Published>> {
    let body = bytes_body(body, "package")?;
    Ok(Json(app.queue.publish_package(&body, &by).await?))
}

/// The published packages.
#[utoipa::path(get, path = "/packages", tag = "packages", responses((status = 200, body = Vec<PackageView>)))]
async fn list(State(app): State<App>, _: Admin) -> Result<Json<Vec<PackageView>>> {
    Ok(Json(app.queue.packages().await?))
}

/// Makes a published version the one agents run (a rollback is activating an older one).
#[utoipa::path(post, path = "/packages/{name}/active", tag = "packages", request_body = ActivatePackage, responses((status = 200, body = PackageView)))]
async fn activate(
    State(app): State<App>,
    Admin(by): Admin,
    PathOf(name): PathOf<String>,
    JsonBody(req): JsonBody<ActivatePackage>,
) -> Result<Json<PackageView>> {
    Ok(Json(
        app.queue.activate_package(&name, &req.version, &by).await?,
    ))
}

/// An agent downloads a package offered to it.
#[utoipa::path(get, path = "/packages/{digest}", tag = "agent protocol", responses((status = 200, description = "the package's tar bundle", content_type = "application/x-tar")))]
async fn download(
    State(app): State<App>,
    AgentAuth(agent): AgentAuth,
    PathOf(digest): PathOf<String>,
) -> Result<impl IntoResponse> {
    let bundle = app.queue.package_bundle(agent, &digest).await?;
    Ok(([(header::CONTENT_TYPE, "application/x-tar")], bundle))
}
