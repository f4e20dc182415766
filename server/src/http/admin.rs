//! The administrators' side of the queue: agents, tasks, uploads and jobs, including the
//! declared jobs of the rules and their approval.

use super::App;
use super::extract::{Admin, JsonBody, PathOf, QueryOf, id};
use crate::error::{Error, Result};
use crate::page::Page;
use axum::Json;
use axum::extract::State;
use idgard_protocol::{
    AdminTokenView, AgentView, CreatedTasks, JobView, ListQuery, LogPage, NewAdminToken,
    NewAdminTokenAnswer, NewAgent, NewAgentAnswer, NewJob, NewTasks, RunJob, TaskView, UploadView,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// `/api/v1/agents`, `/api/v1/tasks...`, `/api/v1/uploads...`, `/api/v1/jobs...`.
pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(add_agent, list_agents))
        .routes(routes!(agent, remove_agent))
        .routes(routes!(reset_agent))
        .routes(routes!(add_admin_token, admin_tokens))
        .routes(routes!(revoke_admin_token))
        .routes(routes!(add_tasks))
        .routes(routes!(task))
        .routes(routes!(task_log))
        .routes(routes!(task_uploads))
        .routes(routes!(cancel_task))
        .routes(routes!(upload_content))
        .routes(routes!(create_job, list_jobs))
        .routes(routes!(job))
        .routes(routes!(start_job))
        .routes(routes!(cancel_job))
        .routes(routes!(approve_job))
        .routes(routes!(run_job))
}

/// Adds an agent; the answer holds its one-time enrolment token.
#[utoipa::path(post, path = "/agents", tag = "agents", request_body = NewAgent, responses((status = 200, body = NewAgentAnswer)))]
async fn add_agent(
    State(app): State<App>,
    _: Admin,
    JsonBody(req): JsonBody<NewAgent>,
) -> Result<Json<NewAgentAnswer>> {
    Ok(Json(app.queue.add_agent(&req.name).await?))
}

/// One agent.
#[utoipa::path(get, path = "/agents/{name}", tag = "agents", responses((status = 200, body = AgentView)))]
async fn agent(
    State(app): State<App>,
    _: Admin,
    PathOf(name): PathOf<String>,
) -> Result<Json<AgentView>> {
    Ok(Json(app.queue.agent(&name).await?))
}

/// Resets an agent: its tokens end at once; the answer holds a new enrolment token.
#[utoipa::path(post, path = "/agents/{name}/reset", tag = "agents", responses((status = 200, body = NewAgentAnswer)))]
async fn reset_agent(
    State(app): State<App>,
    _: Admin,
    PathOf(name): PathOf<String>,
) -> Result<Json<NewAgentAnswer>> {
    Ok(Json(app.queue.reset_agent(&name).await?))
}

/// Removes an agent: its tokens end at once.
#[utoipa::path(delete, path = "/agents/{name}", tag = "agents", responses((status = 204, description = "removed")))]
async fn remove_agent(
    State(app): State<App>,
    _: Admin,
    PathOf(name): PathOf<String>,
) -> Result<axum::http::StatusCode> {
    app.queue.remove_agent(&name).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// Creates an administrator token; the answer holds it, once.
#[utoipa::path(post, path = "/admin-tokens", tag = "administrators", request_body = NewAdminToken, responses((status = 200, body = NewAdminTokenAnswer)))]
async fn add_admin_token(
    State(app): State<App>,
    _: Admin,
    JsonBody(req): JsonBody<NewAdminToken>,
) -> Result<Json<NewAdminTokenAnswer>> {
    Ok(Json(app.queue.create_admin_token(&req).await?))
}

/// The administrator tokens (never their secrets).
#[utoipa::path(get, path = "/admin-tokens", tag = "administrators", params(ListQuery), responses((status = 200, body = Vec<AdminTokenView>)))]
async fn admin_tokens(
    State(app): State<App>,
    _: Admin,
    QueryOf(q): QueryOf<ListQuery>,
) -> Result<Json<Vec<AdminTokenView>>> {
    Ok(Json(app.queue.admin_tokens(&Page::new(q)?).await?))
}

/// Revokes an administrator token.
#[utoipa::path(delete, path = "/admin-tokens/{id}", tag = "administrators", responses((status = 200, body = AdminTokenView)))]
async fn revoke_admin_token(
    State(app): State<App>,
    _: Admin,
    PathOf(id): PathOf<String>,
) -> Result<Json<AdminTokenView>> {
    Ok(Json(app.queue.revoke_admin_token(&id).await?))
}

/// The agents, a page at a time.
#[utoipa::path(get, path = "/agents", tag = "agents", params(ListQuery), responses((status = 200, body = Vec<AgentView>)))]
async fn list_agents(
    State(app): State<App>,
    _: Admin,
    QueryOf(q): QueryOf<ListQuery>,
) -> Result<Json<Vec<AgentView>>> {
    Ok(Json(app.queue.agents(&Page::new(q)?).await?))
}

/// Queues tasks for an agent (at most 10,000 per request).
#[utoipa::path(post, path = "/tasks", tag = "tasks", request_body = NewTasks, responses((status = 200, body = CreatedTasks)))]
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

/// One task.
#[utoipa::path(get, path = "/tasks/{id}", tag = "tasks", params(("id" = i64, Path, minimum = 1, description = "the task")), responses((status = 200, body = TaskView)))]
async fn task(
    State(app): State<App>,
    _: Admin,
    PathOf(task): PathOf<String>,
) -> Result<Json<TaskView>> {
    Ok(Json(app.queue.task(id(&task)?).await?))
}

/// `?after=POS&limit=N` of a log page.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct LogQuery {
    /// The position after which to read (the previous page's `next`).
    after: Option<String>,
    /// How many lines, at most: 1 to 10,000 (1000 when absent).
    #[param(minimum = 1, maximum = 10_000)]
    limit: Option<u32>,
}

/// A page of a task's log.
#[utoipa::path(get, path = "/tasks/{id}/log", tag = "tasks", params(("id" = i64, Path, minimum = 1, description = "the task"), LogQuery), responses((status = 200, body = LogPage)))]
async fn task_log(
    State(app): State<App>,
    _: Admin,
    PathOf(task): PathOf<String>,
    QueryOf(q): QueryOf<LogQuery>,
) -> Result<Json<LogPage>> {
    let task = id(&task)?;
    let limit = q.limit.unwrap_or(1000);
    if !(1..=crate::queue::MAX_PAGE_LINES).contains(&limit) {
        return Err(Error::invalid(format!(
            "limit={limit}: a page of a log holds 1 to {} lines",
            crate::queue::MAX_PAGE_LINES
        )));
    }
    app.queue.task(task).await?;
    let page = app.queue.task_log(task, q.after.as_deref(), limit).await?;
    Ok(Json(page))
}

/// The uploads of a task.
#[utoipa::path(get, path = "/tasks/{id}/uploads", tag = "tasks", params(("id" = i64, Path, minimum = 1, description = "the task")), responses((status = 200, body = Vec<UploadView>)))]
async fn task_uploads(
    State(app): State<App>,
    _: Admin,
    PathOf(task): PathOf<String>,
) -> Result<Json<Vec<UploadView>>> {
    let task = id(&task)?;
    app.queue.task(task).await?;
    Ok(Json(app.queue.uploads_of(task).await?))
}

/// Asks for a task to be cancelled.
#[utoipa::path(post, path = "/tasks/{id}/cancel", tag = "tasks", params(("id" = i64, Path, minimum = 1, description = "the task")), responses((status = 200, body = TaskView)))]
async fn cancel_task(
    State(app): State<App>,
    _: Admin,
    PathOf(task): PathOf<String>,
) -> Result<Json<TaskView>> {
    Ok(Json(app.queue.cancel_task(id(&task)?).await?))
}

/// The content of a complete upload, as the agent sent it.
#[utoipa::path(get, path = "/uploads/{id}/content", tag = "tasks", params(("id" = i64, Path, minimum = 1, description = "the upload")), responses((status = 200, description = "the upload's bytes", content_type = "application/octet-stream")))]
async fn upload_content(
    State(app): State<App>,
    _: Admin,
    PathOf(upload): PathOf<String>,
) -> Result<impl axum::response::IntoResponse> {
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
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
        axum::body::Body::from_stream(app.queue.upload_content(upload)),
    ))
}

/// Creates a job from tasks.
#[utoipa::path(post, path = "/jobs", tag = "jobs", request_body = NewJob, responses((status = 200, body = JobView)))]
async fn create_job(
    State(app): State<App>,
    _: Admin,
    JsonBody(req): JsonBody<NewJob>,
) -> Result<Json<JobView>> {
    Ok(Json(app.queue.create_job(&req).await?))
}

/// The jobs, a page at a time.
#[utoipa::path(get, path = "/jobs", tag = "jobs", params(ListQuery), responses((status = 200, body = Vec<JobView>)))]
async fn list_jobs(
    State(app): State<App>,
    _: Admin,
    QueryOf(q): QueryOf<ListQuery>,
) -> Result<Json<Vec<JobView>>> {
    Ok(Json(app.queue.jobs(&Page::new(q)?).await?))
}

/// One job.
#[utoipa::path(get, path = "/jobs/{id}", tag = "jobs", params(("id" = i64, Path, minimum = 1, description = "the job")), responses((status = 200, body = JobView)))]
async fn job(
    State(app): State<App>,
    _: Admin,
    PathOf(job): PathOf<String>,
) -> Result<Json<JobView>> {
    Ok(Json(app.queue.job(id(&job)?).await?))
}

/// Starts a job created without starting.
#[utoipa::path(post, path = "/jobs/{id}/start", tag = "jobs", params(("id" = i64, Path, minimum = 1, description = "the job")), responses((status = 200, body = JobView)))]
async fn start_job(
    State(app): State<App>,
    _: Admin,
    PathOf(job): PathOf<String>,
) -> Result<Json<JobView>> {
    Ok(Json(app.queue.start_job(id(&job)?).await?))
}

/// Cancels a job and its tasks.
#[utoipa::path(post, path = "/jobs/{id}/cancel", tag = "jobs", params(("id" = i64, Path, minimum = 1, description = "the job")), responses((status = 200, body = JobView)))]
async fn cancel_job(
    State(app): State<App>,
    _: Admin,
    PathOf(job): PathOf<String>,
) -> Result<Json<JobView>> {
    Ok(Json(app.queue.cancel_job(id(&job)?).await?))
}

/// Approves a run held by a threshold; it goes on.
#[utoipa::path(post, path = "/jobs/{id}/approve", tag = "jobs", params(("id" = i64, Path, minimum = 1, description = "the job")), responses((status = 200, body = JobView)))]
async fn approve_job(
    State(app): State<App>,
    _: Admin,
    PathOf(job): PathOf<String>,
) -> Result<Json<JobView>> {
    Ok(Json(app.engine.approve_job(id(&job)?).await?))
}

/// Runs a job declared in the rules.
#[utoipa::path(post, path = "/jobs/run", tag = "jobs", request_body = RunJob, responses((status = 200, body = JobView)))]
async fn run_job(
    State(app): State<App>,
    _: Admin,
    JsonBody(req): JsonBody<RunJob>,
) -> Result<Json<JobView>> {
    Ok(Json(app.engine.run_declared(&req).await?))
}
