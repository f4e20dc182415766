//! The HTTP API: one router per area, handlers a few lines each over the domain
//! ([`Queue`], [`Engine`]). Every error is JSON with a stable code (`error.rs` maps codes to
//! statuses); bad input of any kind is a 4xx.

mod admin;
mod agent;
pub mod conn;
pub mod error;
mod extract;
mod identity;
mod linger;
mod metrics;
pub mod mtls;
pub mod openapi;
mod overview;
mod packages;
pub mod throttle;

use crate::error::{Error, Result};
use crate::identity::Engine;
use crate::keys::Signer;
use crate::queue::Queue;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header;
use axum::routing::get;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// What every handler shares.
pub struct AppState {
    /// The queue.
    pub queue: Queue,
    /// The identity engine (on the same queue).
    pub engine: Engine,
    /// Token signing.
    pub signer: Signer,
    /// Largest upload.
    pub max_upload: u64,
    /// Largest upload chunk.
    pub max_chunk: u64,
    /// Flips to true when the server stops: held polls answer at once.
    pub stopping: watch::Receiver<bool>,
    /// Access tokens already verified: token → (agent, expiry in s). Saves an RSA verification
    /// per request; bounded by clearing it when full.
    pub verified: std::sync::Mutex<std::collections::HashMap<String, crate::keys::TokenFor>>,
    /// The open connections (agents' addresses are recorded on it).
    pub connections: std::sync::Arc<conn::Connections>,
    /// Failed sign-ins, by address and agent.
    pub throttle: throttle::Throttle,
    /// Agents' token generations as last read, and when: read again after `token_recheck`
    /// (a reset made by the CLI, in another process, ends older tokens within that time).
    pub generations: std::sync::Mutex<std::collections::HashMap<i64, (i64, std::time::Instant)>>,
    /// How long a token generation read from the database is trusted.
    pub token_recheck: Duration,
    /// The web UI.
    pub web: crate::web::Web,
    /// SHA-256 of the token `/metrics` asks for; none: metrics are off.
    pub metrics_token: Option<[u8; 32]>,
    /// Agents must present a client certificate naming them (`tls.agent_ca`).
    pub agent_certificates: bool,
}

/// How long a token generation read from the database is trusted by default.
pub const TOKEN_RECHECK: Duration = Duration::from_secs(1);

/// The shared state.
pub type App = Arc<AppState>;

/// The router.
pub fn router(app: App, json_limit: usize, chunk_limit: usize, body_timeout: Duration) -> Router {
    let (api, document) = api(chunk_limit);
    // Served as it is: built once.
    let document = (
        [(header::CONTENT_TYPE, "application/json")],
        Bytes::from(serde_json::to_vec(&document).expect("the OpenAPI document serialises")),
    );
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics::metrics))
        .route(
            "/api/v1/openapi.json",
            get(move || std::future::ready(document.clone())),
        )
        .merge(api)
        .merge(crate::web::router(app.clone()))
        .route_layer(axum::middleware::from_fn_with_state(
            app.clone(),
            metrics::count,
        ))
        .fallback(|| async { Error::not_found("no such endpoint") })
        .layer(DefaultBodyLimit::max(json_limit))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            body_timeout,
        ))
        .layer(axum::middleware::map_request(linger::lingering))
        .with_state(app)
}

/// The API's routes and their OpenAPI document.
fn api(chunk_limit: usize) -> (Router<App>, utoipa::openapi::OpenApi) {
    let (api, mut document) = OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(agent::enrol))
        .nest(
            "/api/v1/agent",
            agent::routes(chunk_limit).merge(packages::agent_routes()),
        )
        .nest(
            "/api/v1",
            admin::routes()
                .merge(identity::routes())
                .merge(overview::routes())
                .merge(packages::routes()),
        )
        .split_for_parts();
    openapi::finish(&mut document);
    (api, document)
}

/// The API's OpenAPI document, as `/api/v1/openapi.json` serves it.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    api(usize::MAX).1
}

async fn ready(State(app): State<App>) -> Result<&'static str> {
    sqlx::query("SELECT 1").execute(&app.queue.db.pool).await?;
    Ok("ready")
}
