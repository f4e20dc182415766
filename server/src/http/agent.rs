//! The agents' side of the API: enrolment, tokens, polls, heartbeats, logs, uploads,
//! completion, server-side steps and orders.

use super::App;
use super::extract::{
    AgentAuth, ClientCertificate, JsonBody, PathOf, PeerOf, bytes_body, id, peer_keys,
};
use super::throttle::Key;
use crate::error::{Error, Result};
use crate::identity::provision::StoredOrder;
use axum::Json;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::StatusCode;
use idgard_protocol::{
    Completion, EnrolAnswer, EnrolRequest, Heartbeat, HeartbeatAnswer, Hello, LaunchAnswer,
    LaunchOffer, LaunchView, LogChunk, NewUpload, OrderResults, OrderResultsAnswer, PollAnswer,
    PollRequest, RunRequest, SigningKeyAnswer, TaskOrders, TaskView, Timings, TokenAnswer,
    TokenRequest, UploadView,
};
use std::sync::atomic::Ordering;
use std::time::Duration;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

/// `/api/v1/agent/...` (and `/api/v1/enrol`, which an agent calls before it has a token).
pub fn routes(chunk_limit: usize) -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(token))
        .routes(routes!(hello))
        .routes(routes!(poll))
        .routes(routes!(heartbeat))
        .routes(routes!(logs))
        .routes(routes!(open_upload))
        .routes(routes!(complete))
        .routes(routes!(run_on_server))
        .routes(routes!(task_orders))
        .routes(routes!(order_results))
        .routes(routes!(answer_launch))
        .routes(routes!(signing_key))
        .routes(routes!(upload_state, put_chunk).layer(DefaultBodyLimit::max(chunk_limit)))
}

/// An agent trades its one-time enrolment token for its credentials.
#[utoipa::path(post, path = "/api/v1/enrol", tag = "agent protocol", request_body = EnrolRequest, responses((status = 200, body = EnrolAnswer)))]
pub async fn enrol(
    State(app): State<App>,
    PeerOf(ip): PeerOf,
    JsonBody(req): JsonBody<EnrolRequest>,
) -> Result<Json<EnrolAnswer>> {
    let keys = peer_keys(ip);
    let mut enrolled = app
        .throttle
        .guard(&keys, &keys, app.queue.enrol(&req.token))
        .await?;
    enrolled.signing_key = Some(app.signer.public_pem.clone());
    Ok(Json(enrolled))
}

/// An agent trades its credentials for a short-lived access token.
#[utoipa::path(post, path = "/token", tag = "agent protocol", request_body = TokenRequest, responses((status = 200, body = TokenAnswer)))]
async fn token(
    State(app): State<App>,
    PeerOf(ip): PeerOf,
    certificate: ClientCertificate,
    JsonBody(req): JsonBody<TokenRequest>,
) -> Result<Json<TokenAnswer>> {
    let first = peer_keys(ip);
    let mut counted = first.clone();
    counted.push(Key::Agent(req.agent_id));
    let generation = app
        .throttle
        .guard(
            &first,
            &counted,
            app.queue.check_secret(req.agent_id, &req.client_secret),
        )
        .await?;
    certificate.check(&app, req.agent_id).await?;
    Ok(Json(TokenAnswer {
        access_token: app
            .signer
            .issue(req.agent_id, generation, app.queue.now())?,
        expires_in: app.signer.ttl_s(),
    }))
}

/// An agent says what it runs (after a start or a reload); the answer sets its timings.
#[utoipa::path(post, path = "/hello", tag = "agent protocol", request_body = Hello, responses((status = 200, body = Timings)))]
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

/// An agent asks for work; the answer is held until there is some or the wait ends.
#[utoipa::path(post, path = "/poll", tag = "agent protocol", request_body = PollRequest, responses((status = 200, body = PollAnswer)))]
async fn poll(
    State(app): State<App>,
    AgentAuth(agent): AgentAuth,
    JsonBody(req): JsonBody<PollRequest>,
) -> Result<Json<PollAnswer>> {
    let queue = &app.queue;
    queue.seen_later(agent);
    if let Some(figures) = &req.figures {
        crate::metrics::agents::record(&queue.db.pool, agent, figures).await?;
    }
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
    // Package offers are looked at when the poll starts and when it is woken (a publication
    // wakes every poll), not at each recheck.
    let mut look_at_packages = true;
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
        let launches = launch_offers(&app, agent).await?;
        let packages = if std::mem::take(&mut look_at_packages) {
            // News: offers other than those the agent holds (none held and none offered is
            // no news: a poll that says nothing of packages is held as before).
            Some(queue.package_offers(agent).await?).filter(|p| match &req.packages {
                Some(held) => *held != p.tag,
                None => !p.offers.is_empty(),
            })
        } else {
            None
        };
        if !tasks.is_empty() || !cancel.is_empty() || !launches.is_empty() || packages.is_some() {
            return Ok(Json(PollAnswer {
                tasks,
                cancel,
                superseded: false,
                launches,
                packages,
            }));
        }
        let now = tokio::time::Instant::now();
        if now >= deadline || *stopping.borrow() {
            return Ok(Json(PollAnswer::default()));
        }
        tokio::select! {
            _ = &mut notified => look_at_packages = true,
            _ = tokio::time::sleep((deadline - now).min(recheck)) => {}
            _ = stopping.changed() => {}
        }
    }
}

/// The launches waiting for `agent`, each with its signed token (delivered once).
async fn launch_offers(app: &App, agent: i64) -> Result<Vec<LaunchOffer>> {
    let mut offers = Vec::new();
    for launch in app.queue.deliver_launches(agent).await? {
        offers.push(LaunchOffer {
            token: app.signer.launch_token(agent, &launch.view)?,
            id: launch.view.id,
        });
    }
    Ok(offers)
}

/// An agent accepts or refuses a launch offered to it.
#[utoipa::path(post, path = "/launches/{id}", tag = "agent protocol", request_body = LaunchAnswer, responses((status = 200, body = LaunchView)))]
async fn answer_launch(
    State(app): State<App>,
    AgentAuth(agent): AgentAuth,
    PathOf(id): PathOf<String>,
    JsonBody(req): JsonBody<LaunchAnswer>,
) -> Result<Json<LaunchView>> {
    let answered = app.engine.answer_launch(agent, &id, &req).await;
    let name = app.queue.agent_name(agent).await?;
    app.web
        .audit
        .launch_answered(&name, &id, req.accept, &answered)
        .await;
    Ok(Json(answered?.view))
}

/// The public key the server signs launches with.
#[utoipa::path(get, path = "/signing-key", tag = "agent protocol", responses((status = 200, body = SigningKeyAnswer)))]
async fn signing_key(State(app): State<App>, _: AgentAuth) -> Json<SigningKeyAnswer> {
    Json(SigningKeyAnswer {
        signing_key: app.signer.public_pem.clone(),
    })
}

/// Renews a task's lease and reports progress.
#[utoipa::path(post, path = "/tasks/{id}/heartbeat", tag = "agent protocol", params(("id" = i64, Path, minimum = 1, description = "the task")), request_body = Heartbeat, responses((status = 200, body = HeartbeatAnswer)))]
async fn heartbeat(
    State(app): State<App>,
    AgentAuth(agent): AgentAuth,
    PathOf(task): PathOf<String>,
    JsonBody(req): JsonBody<Heartbeat>,
) -> Result<Json<HeartbeatAnswer>> {
    let progress = req.done.map(|d| (d, req.total));
    app.queue.seen_later(agent);
    Ok(Json(
        app.queue
            .heartbeat(agent, id(&task)?, req.fence, progress)
            .await?,
    ))
}

/// Appends a chunk of a task's log lines.
#[utoipa::path(post, path = "/tasks/{id}/logs", tag = "agent protocol", params(("id" = i64, Path, minimum = 1, description = "the task")), request_body = LogChunk, responses((status = 204, description = "stored")))]
async fn logs(
    State(app): State<App>,
    AgentAuth(agent): AgentAuth,
    PathOf(task): PathOf<String>,
    JsonBody(req): JsonBody<LogChunk>,
) -> Result<StatusCode> {
    if req.lines.len() > 10_000 {
        return Err(Error::invalid("at most 10000 lines per chunk"));
    }
    app.queue
        .append_log(agent, id(&task)?, req.fence, req.seq, &req.lines)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Opens an upload of a task's output (or finds the one already opened).
#[utoipa::path(post, path = "/tasks/{id}/uploads", tag = "agent protocol", params(("id" = i64, Path, minimum = 1, description = "the task")), request_body = NewUpload, responses((status = 200, body = UploadView)))]
async fn open_upload(
    State(app): State<App>,
    AgentAuth(agent): AgentAuth,
    PathOf(task): PathOf<String>,
    JsonBody(req): JsonBody<NewUpload>,
) -> Result<Json<UploadView>> {
    Ok(Json(
        app.queue
            .open_upload(agent, id(&task)?, &req, app.max_upload)
            .await?,
    ))
}

/// Where an upload stands (to resume it).
#[utoipa::path(get, path = "/uploads/{id}", tag = "agent protocol", params(("id" = i64, Path, minimum = 1, description = "the upload")), responses((status = 200, body = UploadView)))]
async fn upload_state(
    State(app): State<App>,
    AgentAuth(agent): AgentAuth,
    PathOf(upload): PathOf<String>,
) -> Result<Json<UploadView>> {
    Ok(Json(app.queue.upload(Some(agent), id(&upload)?).await?))
}

/// `?offset=N` of a chunk.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct Offset {
    /// Where the chunk starts in the upload, in bytes.
    offset: u64,
}

/// Writes a chunk of an upload at `offset`.
#[utoipa::path(put, path = "/uploads/{id}", tag = "agent protocol", params(("id" = i64, Path, minimum = 1, description = "the upload"), Offset), request_body(content = inline(super::openapi::Binary), content_type = "application/octet-stream"), responses((status = 200, body = UploadView)))]
async fn put_chunk(
    State(app): State<App>,
    AgentAuth(agent): AgentAuth,
    PathOf(upload): PathOf<String>,
    offset: std::result::Result<Query<Offset>, axum::extract::rejection::QueryRejection>,
    body: std::result::Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<UploadView>> {
    let Query(Offset { offset }) =
        offset.map_err(|_| Error::invalid("say where the chunk starts: `?offset=<bytes>`"))?;
    let body = bytes_body(body, "chunk")?;
    Ok(Json(
        app.queue
            .put_chunk(agent, id(&upload)?, offset, &body)
            .await?,
    ))
}

/// Ends a task with its outcome.
#[utoipa::path(post, path = "/tasks/{id}/complete", tag = "agent protocol", params(("id" = i64, Path, minimum = 1, description = "the task")), request_body = Completion, responses((status = 200, body = TaskView)))]
async fn complete(
    State(app): State<App>,
    AgentAuth(agent): AgentAuth,
    PathOf(task): PathOf<String>,
    JsonBody(req): JsonBody<Completion>,
) -> Result<Json<TaskView>> {
    Ok(Json(app.queue.complete(agent, id(&task)?, &req).await?))
}

/// Runs a task's server-side step (synchronize, plan) now.
#[utoipa::path(post, path = "/tasks/{id}/run", tag = "agent protocol", params(("id" = i64, Path, minimum = 1, description = "the task")), request_body = RunRequest, responses((status = 200, body = TaskView)))]
async fn run_on_server(
    State(app): State<App>,
    AgentAuth(agent): AgentAuth,
    PathOf(task): PathOf<String>,
    JsonBody(req): JsonBody<RunRequest>,
) -> Result<Json<TaskView>> {
    Ok(Json(
        app.engine
            .run_on_server(agent, id(&task)?, req.fence)
            .await?,
    ))
}

/// Which lease asks for a page; `fresh=true`: the agent still holds (or is reporting) orders it
/// was given, and asks for the next ready ones beside them.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct PageQuery {
    /// The lease's fencing token.
    fence: i64,
    /// The agent still holds orders it was given and asks for the next ready ones.
    #[serde(default)]
    fresh: bool,
}

/// The next page of a fulfil task's orders.
#[utoipa::path(get, path = "/tasks/{id}/orders", tag = "agent protocol", params(("id" = i64, Path, minimum = 1, description = "the task"), PageQuery), responses((status = 200, body = TaskOrders<idgard_protocol::model::Order>)))]
async fn task_orders(
    State(app): State<App>,
    AgentAuth(agent): AgentAuth,
    PathOf(task): PathOf<String>,
    query: std::result::Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<TaskOrders<StoredOrder>>> {
    let Query(PageQuery { fence, fresh }) =
        query.map_err(|_| Error::invalid("say which lease: `?fence=<n>` (and `&fresh=true`)"))?;
    Ok(Json(
        app.engine
            .task_orders(agent, id(&task)?, fence, fresh)
            .await?,
    ))
}

/// Records results of a fulfil task's orders.
#[utoipa::path(post, path = "/tasks/{id}/order-results", tag = "agent protocol", params(("id" = i64, Path, minimum = 1, description = "the task")), request_body = OrderResults, responses((status = 200, body = OrderResultsAnswer)))]
async fn order_results(
    State(app): State<App>,
    AgentAuth(agent): AgentAuth,
    PathOf(task): PathOf<String>,
    JsonBody(req): JsonBody<OrderResults>,
) -> Result<Json<OrderResultsAnswer>> {
    Ok(Json(
        app.engine.order_results(agent, id(&task)?, &req).await?,
    ))
}
