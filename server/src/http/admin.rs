//! The administrators' side of the queue: agents, tasks, uploads and jobs, including the
//! declared jobs of the rules and their approval.

use super::App;
use super::extract::{Admin, JsonBody, QueryOf, id};
use crate::error::{Error, Result};
use crate::page::Page;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use idgard_protocol::{
    AdminTokenView, AgentView, CreatedTasks, JobView, ListQuery, LogPage, NewAdminToken,
    NewAdminTokenAnswer, NewAgent, NewAgentAnswer, NewJob, NewTasks, RunJob, TaskView, UploadView,
};

/// `/api/v1/agents`, `/api/v1/tasks...`, `/api/v1/uploads...`, `/api/v1/jobs...`.
pub fn routes() -> Router<App> {
    Router::new()
        .route("/agents", post(add_agent).get(list_agents))
        .route("/agents/{name}", get(agent).delete(remove_agent))
        .route("/agents/{name}/reset", post(reset_agent))
        .route("/admin-tokens", post(add_admin_token).get(admin_tokens))
        .route(
            "/admin-tokens/{id}",
            axum::routing::delete(revoke_admin_token),
        )
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
}

async fn add_agent(
    State(app): State<App>,
    _: Admin,
    JsonBody(req): JsonBody<NewAgent>,
) -> Result<Json<NewAgentAnswer>> {
    Ok(Json(app.queue.add_agent(&req.name).await?))
}

async fn agent(
    State(app): State<App>,
    _: Admin,
    Path(name): Path<String>,
) -> Result<Json<AgentView>> {
    Ok(Json(app.queue.agent(&name).await?))
}

async fn reset_agent(
    State(app): State<App>,
    _: Admin,
    Path(name): Path<String>,
) -> Result<Json<NewAgentAnswer>> {
    Ok(Json(app.queue.reset_agent(&name).await?))
}

async fn remove_agent(
    State(app): State<App>,
    _: Admin,
    Path(name): Path<String>,
) -> Result<axum::http::StatusCode> {
    app.queue.remove_agent(&name).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

async fn add_admin_token(
    State(app): State<App>,
    _: Admin,
    JsonBody(req): JsonBody<NewAdminToken>,
) -> Result<Json<NewAdminTokenAnswer>> {
    Ok(Json(app.queue.create_admin_token(&req).await?))
}

async fn admin_tokens(
    State(app): State<App>,
    _: Admin,
    QueryOf(q): QueryOf<ListQuery>,
) -> Result<Json<Vec<AdminTokenView>>> {
    Ok(Json(app.queue.admin_tokens(&Page::new(q)?).await?))
}

async fn revoke_admin_token(
    State(app): State<App>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Json<AdminTokenView>> {
    Ok(Json(app.queue.revoke_admin_token(&id).await?))
}

async fn list_agents(
    State(app): State<App>,
    _: Admin,
    QueryOf(q): QueryOf<ListQuery>,
) -> Result<Json<Vec<AgentView>>> {
    Ok(Json(app.queue.agents(&Page::new(q)?).await?))
}

async fn add_tasks(
    State(app): State<App>,
    _: Admin,
    JsonBody(req): JsonBody<NewTasks>,
) -> Result<Json<CreatedTasks>> {
    if req.tasks.len() > 10_000 {
        return Err(Error::invalid("at most 10000 tasks per request"));
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

/// `?after=POS&limit=N` of a log page.
#[derive(serde::Deserialize)]
struct LogQuery {
    after: Option<String>,
    limit: Option<u32>,
}

async fn task_log(
    State(app): State<App>,
    _: Admin,
    Path(task): Path<String>,
    QueryOf(q): QueryOf<LogQuery>,
) -> Result<Json<LogPage>> {
    let task = id(&task)?;
    app.queue.task(task).await?;
    let page = app
        .queue
        .task_log(task, q.after.as_deref(), q.limit.unwrap_or(1000))
        .await?;
    Ok(Json(page))
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
) -> Result<axum::body::Body> {
    let upload = id(&upload)?;
    let view = app.queue.upload(None, upload).await?;
    if !view.complete {
        return Err(Error::conflict(format!("upload {upload} is not complete")));
    }
    if app.queue.upload_pruned(upload).await? {
        return Err(Error::not_found(format!(
            "upload {upload} was removed after its retention (queue.upload_retention_h)"
        )));
    }
    Ok(axum::body::Body::from_stream(
        app.queue.upload_content(upload),
    ))
}

async fn create_job(
    State(app): State<App>,
    _: Admin,
    JsonBody(req): JsonBody<NewJob>,
) -> Result<Json<JobView>> {
    Ok(Json(app.queue.create_job(&req).await?))
}

async fn list_jobs(
    State(app): State<App>,
    _: Admin,
    QueryOf(q): QueryOf<ListQuery>,
) -> Result<Json<Vec<JobView>>> {
    Ok(Json(app.queue.jobs(&Page::new(q)?).await?))
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

async fn approve_job(
    State(app): State<App>,
    _: Admin,
    Path(job): Path<String>,
) -> Result<Json<JobView>> {
    Ok(Json(app.engine.approve_job(id(&job)?).await?))
}

async fn run_job(
    State(app): State<App>,
    _: Admin,
    JsonBody(req): JsonBody<RunJob>,
) -> Result<Json<JobView>> {
    Ok(Json(app.engine.run_declared(&req).await?))
}
