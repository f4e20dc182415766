//! `GET /metrics`: the figures for Prometheus (OpenMetrics text), behind their own token.

use super::App;
use super::extract::MetricsReader;
use crate::error::Result;
use crate::metrics::Snapshot;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub async fn metrics(State(app): State<App>, _: MetricsReader) -> Result<impl IntoResponse> {
    let snap = Snapshot::read(&app.queue.db.read, app.queue.now()).await?;
    Ok((
        [(CONTENT_TYPE, OPENMETRICS)],
        app.queue.metrics.render(&snap),
    ))
}
