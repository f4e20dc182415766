//! The agents' side of the API: enrolment, tokens, polls, heartbeats, logs, uploads,
//! completion, server-side steps and orders.

use super::App;
use super::extract::{AgentAuth, ClientCertificate, JsonBody, PeerOf, id, peer_keys};
use super::throttle::Key;
use crate::error::{Error, Result};
use crate::identity::provision::StoredOrder;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use idgard_protocol::{
    Completion, EnrolAnswer, EnrolRequest, Heartbeat, HeartbeatAnswer, Hello, LaunchAnswer,
    LaunchOffer, LaunchView, LogChunk, NewUpload, OrderResults, OrderResultsAnswer, PollAnswer,
    PollRequest, RunRequest, SigningKeyAnswer, TaskOrders, TaskView, Timings, TokenAnswer,
    TokenRequest, UploadView,
};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// `/api/v1/agent/...` (and `/api/v1/enrol`, which an agent calls before it has a token).
pub fn routes(chunk_limit: usize) -> Router<App> {
    Router::new()
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
        .route("/launches/{id}", post(answer_launch))
        .route("/signing-key", get(signing_key))
        .route(
            "/uploads/{id}",
            get(upload_state)
                .put(put_chunk)
                .layer(DefaultBodyLimit::max(chunk_limit)),
        )
}

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

async fn answer_launch(
    State(app): State<App>,
    AgentAuth(agent): AgentAuth,
    Path(id): Path<String>,
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

async fn signing_key(State(app): State<App>, _: AgentAuth) -> Json<SigningKeyAnswer> {
    Json(SigningKeyAnswer {
        signing_key: app.signer.public_pem.clone(),
    })
}

async fn heartbeat(
    State(app): State<App>,
    AgentAuth(agent): AgentAuth,
    Path(task): Path<String>,
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

async fn logs(
    State(app): State<App>,
    AgentAuth(agent): AgentAuth,
    Path(task): Path<String>,
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
        offset.map_err(|_| Error::invalid("say where the chunk starts: `?offset=<bytes>`"))?;
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Error::too_large("the chunk is over this server's limit: send smaller chunks")
        } else {
            Error::invalid(e.body_text())
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

async fn run_on_server(
    State(app): State<App>,
    AgentAuth(agent): AgentAuth,
    Path(task): Path<String>,
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
#[derive(serde::Deserialize)]
struct PageQuery {
    fence: i64,
    #[serde(default)]
    fresh: bool,
}

async fn task_orders(
    State(app): State<App>,
    AgentAuth(agent): AgentAuth,
    Path(task): Path<String>,
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

async fn order_results(
    State(app): State<App>,
    AgentAuth(agent): AgentAuth,
    Path(task): Path<String>,
    JsonBody(req): JsonBody<OrderResults>,
) -> Result<Json<OrderResultsAnswer>> {
    Ok(Json(
        app.engine.order_results(agent, id(&task)?, &req).await?,
    ))
}
