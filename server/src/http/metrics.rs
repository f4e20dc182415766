//! `GET /metrics`: the figures for Prometheus (OpenMetrics text), behind their own token; and
//! the layer that counts and times every request answered by a route.

use super::App;
use super::extract::MetricsReader;
use crate::error::Result;
use crate::metrics::Snapshot;
use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::IntoResponse;
use axum::response::Response;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub async fn metrics(State(app): State<App>, _: MetricsReader) -> Result<impl IntoResponse> {
    let snap = Snapshot::read(&app.queue.db.read, app.queue.now()).await?;
    Ok((
        [(CONTENT_TYPE, OPENMETRICS)],
        app.queue.metrics.render(&snap),
    ))
}

/// Counts and times a request by its route's pattern (a layer on the routes: a request no route
/// matched is not counted, so strangers' paths cannot grow the label set).
pub async fn count(State(app): State<App>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    // Methods from a fixed set: any other word a client sends counts as `other`.
    let method = match *req.method() {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    app.queue.metrics.http_request(
        method,
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}
