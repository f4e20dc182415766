//! The HTTP API: thin handlers over [`Queue`]. Every error is JSON with a stable code; bad
//! input of any kind is a 4xx.

use crate::error::{Error, Result};
use crate::keys::Signer;
use crate::queue::Queue;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{get, post};
use axum::{Json, Router};
use idgard_protocol::{
    AgentView, Completion, CreatedTasks, EnrolAnswer, EnrolRequest, Heartbeat, HeartbeatAnswer,
    Hello, JobView, LogChunk, LogLine, NewAgent, NewAgentAnswer, NewJob, NewTasks, NewUpload,
    OrderResults, OrderResultsAnswer, OrderView, PollAnswer, PollRequest, RunJob, RunRequest,
    TaskOrders, TaskView, Timings, TokenAnswer, TokenRequest, UploadView,
};
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::watch;

/// What every handler shares.
pub struct AppState {
    /// The queue.
    pub queue: Queue,
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
    pub verified: std::sync::Mutex<std::collections::HashMap<String, (i64, u64)>>,
}

/// Most tokens remembered as verified.
const VERIFIED_MAX: usize = 100_000;

/// The shared state.
pub type App = Arc<AppState>;

/// A JSON body whose every failure is a clear 4xx.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(JsonBody(v)),
            Err(JsonRejection::JsonDataError(e)) => Err(Error::bad_request(format!(
                "the JSON body does not fit: {}",
                e.body_text()
            ))),
            Err(JsonRejection::JsonSyntaxError(e)) => Err(Error::bad_request(format!(
                "the body is not valid JSON: {}",
                e.body_text()
            ))),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(Error::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with `Content-Type: application/json`",
            )),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(Error::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "the body is over this server's limit",
            )),
            Err(e) => Err(Error::bad_request(e.body_text())),
        }
    }
}

fn bearer(parts: &Parts) -> Result<&str> {
    parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Error::unauthorized("send `Authorization: Bearer <token>`"))
}

/// An agent authenticated by its access token.
pub struct AgentAuth(pub i64);

impl FromRequestParts<App> for AgentAuth {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self> {
        let token = bearer(parts)?;
        let now = (app.queue.now() / 1000).max(0) as u64;
        if let Some(&(agent, exp)) = app.verified.lock().expect("verified").get(token)
            && now < exp
        {
            return Ok(AgentAuth(agent));
        }
        let (agent, exp) = app.signer.verify(token).map_err(Error::unauthorized)?;
        let mut verified = app.verified.lock().expect("verified");
        if verified.len() >= VERIFIED_MAX {
            verified.clear();
        }
        verified.insert(token.to_owned(), (agent, exp));
        Ok(AgentAuth(agent))
    }
}

/// An administrator, authenticated by an administrator token.
pub struct Admin;

impl FromRequestParts<App> for Admin {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self> {
        let token = bearer(parts)?;
        app.queue.check_admin(token).await?;
        Ok(Admin)
    }
}

fn id(s: &str) -> Result<i64> {
    s.parse::<i64>()
        .ok()
        .filter(|&i| i > 0)
        .ok_or_else(|| Error::bad_request(format!("`{s}` is not an id")))
}

/// The router.
pub fn router(app: App, json_limit: usize, chunk_limit: usize) -> Router {
    let agent = Router::new()
        .route("/token", post(token))
        .route("/hello", post(hello))
        .route("/poll", post(poll))
        .route("/tasks/{id}/heartbeat", post(heartbeat))
        .route("/tasks/{id}/logs", post(logs))
        .route("/tasks/{id}/uploads", post(open_upload))
        .route("/tasks/{id}/complete", post(complete))
        .route("/tasks/{id}/run", post(run_on_server))
        .route("/tasks/{id}/orders", get(task_orders))
        .route("/tasks/{id}/order-results", post(order_results))
        .route(
            "/uploads/{id}",
            get(upload_state)
                .put(put_chunk)
                .layer(DefaultBodyLimit::max(chunk_limit)),
        );
    let admin = Router::new()
        .route("/agents", post(add_agent).get(list_agents))
        .route("/tasks", post(add_tasks))
        .route("/tasks/{id}", get(task))
        .route("/tasks/{id}/log", get(task_log))
        .route("/tasks/{id}/uploads", get(task_uploads))
        .route("/tasks/{id}/cancel", post(cancel_task))
        .route("/uploads/{id}/content", get(upload_content))
        .route("/jobs", post(create_job).get(list_jobs))
        .route("/jobs/{id}", get(job))
        .route("/jobs/{id}/start", post(start_job))
        .route("/jobs/{id}/cancel", post(cancel_job))
        .route("/jobs/{id}/approve", post(approve_job))
        .route("/jobs/run", post(run_job))
        .route("/orders", get(orders))
        .route("/connections/{name}/entries", get(entries))
        .route("/connections/{name}/entries/{key}/history", get(history))
        .route("/connections/{name}/links", get(links));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/api/v1/enrol", post(enrol))
        .nest("/api/v1/agent", agent)
        .nest("/api/v1", admin)
        .fallback(|| async { Error::not_found("no such endpoint") })
        .layer(DefaultBodyLimit::max(json_limit))
        .with_state(app)
}

async fn ready(State(app): State<App>) -> Result<&'static str> {
    sqlx::query("SELECT 1").execute(&app.queue.db.pool).await?;
    Ok("ready")
}

async fn enrol(
    State(app): State<App>,
    JsonBody(req): JsonBody<EnrolRequest>,
) -> Result<Json<EnrolAnswer>> {
    Ok(Json(app.queue.enrol(&req.token).await?))
}

async fn token(
    State(app): State<App>,
    JsonBody(req): JsonBody<TokenRequest>,
) -> Result<Json<TokenAnswer>> {
    app.queue
        .check_secret(req.agent_id, &req.client_secret)
        .await?;
    Ok(Json(TokenAnswer {
        access_token: app.signer.issue(req.agent_id, app.queue.now())?,
        expires_in: app.signer.ttl_s(),
    }))
}

async fn hello(
    State(app): State<App>,
    AgentAuth(agent): AgentAuth,
    JsonBody(req): JsonBody<Hello>,
) -> Result<Json<Timings>> {
    let released = app.queue.hello(agent, &req).await?;
    tracing::info!(
        agent,
        connections = req.connections.len(),
        restarted = req.restarted,
        released,
        "agent said hello"
    );
    let q = &app.queue.cfg;
    Ok(Json(Timings {
        chunk_bytes: app.max_chunk,
        lease_ms: q.lease_ms,
        heartbeat_ms: q.heartbeat_ms(),
        poll_wait_ms: q.poll_wait_ms,
        ack_ms: q.ack_ms,
    }))
}

async fn poll(
    State(app): State<App>,
    AgentAuth(agent): AgentAuth,
    JsonBody(req): JsonBody<PollRequest>,
) -> Result<Json<PollAnswer>> {
    let queue = &app.queue;
    let waker = queue.db.wakers.get(agent);
    let mine = waker.generation.fetch_add(1, Ordering::SeqCst) + 1;
    // Tell a poll this agent still holds open (its connection may be dead) to step aside.
    waker.notify.notify_one();
    let wait = Duration::from_millis(
        req.wait_ms
            .unwrap_or(queue.cfg.poll_wait_ms)
            .min(queue.cfg.poll_wait_ms),
    );
    let recheck = Duration::from_millis(queue.cfg.poll_recheck_ms);
    let deadline = tokio::time::Instant::now() + wait;
    let mut stopping = app.stopping.clone();
    loop {
        let notified = waker.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if waker.generation.load(Ordering::SeqCst) != mine {
            // Pass the wake-up on: it may have been meant for the newer poll.
            waker.notify.notify_one();
            return Ok(Json(PollAnswer {
                superseded: true,
                ..Default::default()
            }));
        }
        let tasks = queue.claim(agent, req.capacity).await?;
        let cancel = queue.cancelled_for(agent).await?;
        if !tasks.is_empty() || !cancel.is_empty() {
            return Ok(Json(PollAnswer {
                tasks,
                cancel,
                superseded: false,
            }));
        }
        let now = tokio::time::Instant::now();
        if now >= deadline || *stopping.borrow() {
            return Ok(Json(PollAnswer::default()));
        }
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep((deadline - now).min(recheck)) => {}
            _ = stopping.changed() => {}
        }
    }
}

async fn heartbeat(
    State(app): State<App>,
    AgentAuth(agent): AgentAuth,
    Path(task): Path<String>,
    JsonBody(req): JsonBody<Heartbeat>,
) -> Result<Json<HeartbeatAnswer>> {
    let progress = req.done.map(|d| (d, req.total));
    Ok(Json(
        app.queue
            .heartbeat(agent, id(&task)?, req.fence, progress)
            .await?,
    ))
}

async fn logs(
    State(app): State<App>,
    AgentAuth(agent): AgentAuth,
    Path(task): Path<String>,
    JsonBody(req): JsonBody<LogChunk>,
) -> Result<StatusCode> {
    if req.lines.len() > 10_000 {
        return Err(Error::bad_request("at most 10000 lines per chunk"));
    }
    app.queue
        .append_log(agent, id(&task)?, req.fence, req.seq, &req.lines)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn open_upload(
    State(app): State<App>,
    AgentAuth(agent): AgentAuth,
    Path(task): Path<String>,
    JsonBody(req): JsonBody<NewUpload>,
) -> Result<Json<UploadView>> {
    Ok(Json(
        app.queue
            .open_upload(agent, id(&task)?, &req, app.max_upload)
            .await?,
    ))
}

async fn upload_state(
    State(app): State<App>,
    AgentAuth(agent): AgentAuth,
    Path(upload): Path<String>,
) -> Result<Json<UploadView>> {
    Ok(Json(app.queue.upload(Some(agent), id(&upload)?).await?))
}

#[derive(serde::Deserialize)]
struct Offset {
    offset: u64,
}

async fn put_chunk(
    State(app): State<App>,
    AgentAuth(agent): AgentAuth,
    Path(upload): Path<String>,
    offset: std::result::Result<Query<Offset>, axum::extract::rejection::QueryRejection>,
    body: std::result::Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<UploadView>> {
    let Query(Offset { offset }) =
        offset.map_err(|_| Error::bad_request("say where the chunk starts: `?offset=<bytes>`"))?;
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Error::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "the chunk is over this server's limit: send smaller chunks",
            )
        } else {
            Error::bad_request(e.body_text())
        }
    })?;
    Ok(Json(
        app.queue
            .put_chunk(agent, id(&upload)?, offset, &body)
            .await?,
    ))
}

async fn complete(
    State(app): State<App>,
    AgentAuth(agent): AgentAuth,
    Path(task): Path<String>,
    JsonBody(req): JsonBody<Completion>,
) -> Result<Json<TaskView>> {
    Ok(Json(app.queue.complete(agent, id(&task)?, &req).await?))
}

async fn add_agent(
    State(app): State<App>,
    _: Admin,
    JsonBody(req): JsonBody<NewAgent>,
) -> Result<Json<NewAgentAnswer>> {
    Ok(Json(app.queue.add_agent(&req.name).await?))
}

async fn list_agents(State(app): State<App>, _: Admin) -> Result<Json<Vec<AgentView>>> {
    Ok(Json(app.queue.agents().await?))
}

async fn add_tasks(
    State(app): State<App>,
    _: Admin,
    JsonBody(req): JsonBody<NewTasks>,
) -> Result<Json<CreatedTasks>> {
    if req.tasks.len() > 10_000 {
        return Err(Error::bad_request("at most 10000 tasks per request"));
    }
    Ok(Json(CreatedTasks {
        ids: app.queue.enqueue(&req.agent, &req.tasks).await?,
    }))
}

async fn task(
    State(app): State<App>,
    _: Admin,
    Path(task): Path<String>,
) -> Result<Json<TaskView>> {
    Ok(Json(app.queue.task(id(&task)?).await?))
}

async fn task_log(
    State(app): State<App>,
    _: Admin,
    Path(task): Path<String>,
) -> Result<Json<Vec<LogLine>>> {
    let task = id(&task)?;
    app.queue.task(task).await?;
    Ok(Json(app.queue.task_log(task).await?))
}

async fn task_uploads(
    State(app): State<App>,
    _: Admin,
    Path(task): Path<String>,
) -> Result<Json<Vec<UploadView>>> {
    let task = id(&task)?;
    app.queue.task(task).await?;
    Ok(Json(app.queue.uploads_of(task).await?))
}

async fn cancel_task(
    State(app): State<App>,
    _: Admin,
    Path(task): Path<String>,
) -> Result<Json<TaskView>> {
    Ok(Json(app.queue.cancel_task(id(&task)?).await?))
}

async fn upload_content(
    State(app): State<App>,
    _: Admin,
    Path(upload): Path<String>,
) -> Result<Vec<u8>> {
    let upload = id(&upload)?;
    let view = app.queue.upload(None, upload).await?;
    if !view.complete {
        return Err(Error::conflict(format!("upload {upload} is not complete")));
    }
    app.queue.upload_content(upload).await
}

async fn create_job(
    State(app): State<App>,
    _: Admin,
    JsonBody(req): JsonBody<NewJob>,
) -> Result<Json<JobView>> {
    Ok(Json(app.queue.create_job(&req).await?))
}

#[derive(serde::Deserialize)]
struct Limit {
    limit: Option<u32>,
}

async fn list_jobs(
    State(app): State<App>,
    _: Admin,
    limit: std::result::Result<Query<Limit>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<JobView>>> {
    let Query(Limit { limit }) = limit.map_err(|e| Error::bad_request(e.body_text()))?;
    Ok(Json(app.queue.jobs(limit.unwrap_or(50)).await?))
}

async fn job(State(app): State<App>, _: Admin, Path(job): Path<String>) -> Result<Json<JobView>> {
    Ok(Json(app.queue.job(id(&job)?).await?))
}

async fn start_job(
    State(app): State<App>,
    _: Admin,
    Path(job): Path<String>,
) -> Result<Json<JobView>> {
    Ok(Json(app.queue.start_job(id(&job)?).await?))
}

async fn cancel_job(
    State(app): State<App>,
    _: Admin,
    Path(job): Path<String>,
) -> Result<Json<JobView>> {
    Ok(Json(app.queue.cancel_job(id(&job)?).await?))
}

async fn run_on_server(
    State(app): State<App>,
    AgentAuth(agent): AgentAuth,
    Path(task): Path<String>,
    JsonBody(req): JsonBody<RunRequest>,
) -> Result<Json<TaskView>> {
    Ok(Json(
        app.queue
            .run_on_server(agent, id(&task)?, req.fence)
            .await?,
    ))
}

#[derive(serde::Deserialize)]
struct Fence {
    fence: i64,
}

async fn task_orders(
    State(app): State<App>,
    AgentAuth(agent): AgentAuth,
    Path(task): Path<String>,
    fence: std::result::Result<Query<Fence>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<TaskOrders>> {
    let Query(Fence { fence }) =
        fence.map_err(|_| Error::bad_request("say which lease: `?fence=<n>`"))?;
    Ok(Json(TaskOrders {
        orders: app.queue.task_orders(agent, id(&task)?, fence).await?,
    }))
}

async fn order_results(
    State(app): State<App>,
    AgentAuth(agent): AgentAuth,
    Path(task): Path<String>,
    JsonBody(req): JsonBody<OrderResults>,
) -> Result<Json<OrderResultsAnswer>> {
    Ok(Json(
        app.queue.order_results(agent, id(&task)?, &req).await?,
    ))
}

async fn approve_job(
    State(app): State<App>,
    _: Admin,
    Path(job): Path<String>,
) -> Result<Json<JobView>> {
    Ok(Json(app.queue.approve_job(id(&job)?).await?))
}

async fn run_job(
    State(app): State<App>,
    _: Admin,
    JsonBody(req): JsonBody<RunJob>,
) -> Result<Json<JobView>> {
    Ok(Json(app.queue.run_declared(&req).await?))
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
    filter: std::result::Result<Query<OrderFilter>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<OrderView>>> {
    let Query(f) = filter.map_err(|e| Error::bad_request(e.body_text()))?;
    Ok(Json(
        app.queue
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
    page: std::result::Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<serde_json::Value>>> {
    let Query(p) = page.map_err(|e| Error::bad_request(e.body_text()))?;
    Ok(Json(
        app.queue
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
    Ok(Json(app.queue.history(&name, &key).await?))
}

async fn links(
    State(app): State<App>,
    _: Admin,
    Path(name): Path<String>,
    page: std::result::Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<serde_json::Value>>> {
    let Query(p) = page.map_err(|e| Error::bad_request(e.body_text()))?;
    Ok(Json(app.queue.links(&name, p.situation.as_deref()).await?))
}
