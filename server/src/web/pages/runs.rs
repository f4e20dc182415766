//! Jobs and runs: declared jobs and their schedules, running one, following a run live
//! (server-sent events), cancelling and approving.

use super::browse::{next_of, page_after};
use super::{PageResult, Person, render, see_other};
use crate::error::Error;
use crate::http::App;
use crate::web::access::Role;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use idgard_protocol::{JobState, JobView, LaunchState, LogLine, RunJob};
use idgard_web::report::report;
use idgard_web::{pages, percent};
use serde::Deserialize;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

/// Log lines a run page shows at first, and sends per event.
const LOG_LINES: u32 = 200;
/// How long launching waits for the agent's answer before showing the launch's own page.
const LAUNCH_WAIT: Duration = Duration::from_secs(2);
/// How often a followed run is looked at.
const FOLLOW_EVERY: Duration = Duration::from_millis(300);

#[derive(Deserialize)]
pub struct After {
    after: Option<String>,
}

/// `GET /jobs`.
pub async fn jobs(State(app): State<App>, me: Person, Query(q): Query<After>) -> PageResult {
    let declared = app.engine.declared_jobs().await?;
    let runs = app.queue.jobs(&page_after(q.after)?).await?;
    Ok(render(&pages::Jobs {
        chrome: &me.chrome("jobs", "Jobs"),
        next: next_of(&runs, |j| j.id.to_string()),
        declared,
        runs,
    }))
}

#[derive(Deserialize)]
pub struct RunForm {
    job: String,
    #[serde(default)]
    mode: String,
    #[serde(default)]
    dry_run: Option<String>,
}

/// `POST /jobs/run`: launches the job through the agent that owns it; the launch's page
/// follows the agent's answer.
pub async fn run(State(app): State<App>, me: Person, Form(f): Form<RunForm>) -> PageResult {
    let run = RunJob {
        job: f.job.clone(),
        incremental: f.mode == "incremental",
        dry_run: f.dry_run.is_some(),
    };
    let r = app.engine.launch_declared(&run, &me.session.user).await;
    let detail = r.as_ref().map(|l| {
        format!(
            "launch {} for agent {} ({}{})",
            l.view.id,
            l.view.agent,
            if run.incremental {
                "incremental"
            } else {
                "complete"
            },
            if run.dry_run { ", dry" } else { "" }
        )
    });
    me.record(&app, "job.launch", &f.job, detail).await;
    let id = r?.view.id;
    let l = app.queue.launch_within(&id, LAUNCH_WAIT).await?.view;
    Ok(see_other(&match (l.state, l.job_id) {
        (LaunchState::Accepted, Some(job)) => format!("/runs/{job}"),
        _ => format!("/launches/{id}"),
    }))
}

/// `GET /launches/{id}`: where a launch stands; once its run started, that run's page.
pub async fn launch(State(app): State<App>, me: Person, Path(id): Path<String>) -> PageResult {
    let l = app.queue.launch(&id).await?.view;
    if let (LaunchState::Accepted, Some(job)) = (l.state, l.job_id) {
        return Ok(see_other(&format!("/runs/{job}")));
    }
    Ok(render(&pages::Launch {
        chrome: &me.chrome("jobs", "Launch"),
        pending: matches!(l.state, LaunchState::Waiting | LaunchState::Delivered),
        ttl_s: (app.queue.cfg.launch_ttl_ms / 1000) as i64,
        l,
    }))
}

fn task_rows(job: &JobView) -> Vec<pages::TaskRow> {
    job.tasks
        .iter()
        .map(|t| {
            let (done, total) = t.progress.unwrap_or((0, None));
            let final_ok = t.state == idgard_protocol::TaskState::Succeeded;
            pages::TaskRow {
                id: t.id,
                operation: t.operation.as_str().to_owned(),
                connection: t.connection.clone(),
                state: t.state.as_str().to_owned(),
                attempts: format!("{}/{}", t.attempts, t.max_attempts),
                done,
                total,
                percent: if final_ok {
                    Some(100)
                } else {
                    percent(done, total)
                },
                error: t.error.clone().unwrap_or_default(),
                result: t.result.as_ref().map(report).unwrap_or_default(),
            }
        })
        .collect()
}

/// `GET /runs/{id}`.
pub async fn run_page(State(app): State<App>, me: Person, Path(id): Path<i64>) -> PageResult {
    let job = app.queue.job(id).await?;
    let log = match job.tasks.last() {
        Some(t) => app.queue.task_log(t.id, None, LOG_LINES).await?.lines,
        None => Vec::new(),
    };
    let live = matches!(
        job.state,
        JobState::Pending | JobState::Running | JobState::Blocked
    );
    let blocked = job.state == JobState::Blocked;
    let refused = if blocked && me.may(Role::Approver) {
        app.engine
            .approval_refused(id, &me.session.user, app.web.settings.approve_own_runs)
            .await?
    } else {
        None
    };
    Ok(render(&pages::Run {
        chrome: &me.chrome("jobs", format!("Run {id}")),
        tasks: task_rows(&job),
        blocked: job.blocked.as_ref().map(report).unwrap_or_default(),
        log,
        can_cancel: live && me.may(Role::Operator),
        can_approve: blocked && me.may(Role::Approver) && refused.is_none(),
        no_approve: refused.unwrap_or_default(),
        live,
        job,
    }))
}

/// `POST /runs/{id}/cancel`.
pub async fn cancel(State(app): State<App>, me: Person, Path(id): Path<i64>) -> PageResult {
    let r = app.queue.cancel_job(id).await;
    me.record(
        &app,
        "run.cancel",
        &id.to_string(),
        r.as_ref().map(|j| j.state.as_str().to_owned()),
    )
    .await;
    r?;
    Ok(see_other(&format!("/runs/{id}")))
}

/// `POST /runs/{id}/approve`.
pub async fn approve(State(app): State<App>, me: Person, Path(id): Path<i64>) -> PageResult {
    let r = app
        .engine
        .approve_as(id, &me.session.user, app.web.settings.approve_own_runs)
        .await;
    me.record(
        &app,
        "run.approve",
        &id.to_string(),
        r.as_ref().map(|j| j.state.as_str().to_owned()),
    )
    .await;
    r?;
    Ok(see_other(&format!("/runs/{id}")))
}

/// `GET /approvals`.
pub async fn approvals(State(app): State<App>, me: Person) -> PageResult {
    let runs = app
        .queue
        .jobs_in_state(JobState::Blocked, super::browse::PAGE_ROWS)
        .await?
        .into_iter()
        .map(|j| {
            let why = j
                .blocked
                .as_ref()
                .map(|b| serde_json::to_string_pretty(b).unwrap_or_default())
                .unwrap_or_default();
            (j, why)
        })
        .collect();
    Ok(render(&pages::Approvals {
        chrome: &me.chrome("approvals", "Approvals"),
        runs,
    }))
}

/// What a followed run last showed, and what is still to send.
struct Follow {
    app: App,
    id: i64,
    task: Option<i64>,
    log_after: Option<String>,
    last: Option<String>,
    pending: VecDeque<Event>,
    ended: bool,
}

impl Follow {
    /// Looks at the run once; queues what changed. An error ends the stream (the browser
    /// reconnects and resumes from its last event id).
    async fn look(&mut self) -> Result<(), Error> {
        let job = self.app.queue.job(self.id).await?;
        let tasks: Vec<serde_json::Value> = task_rows(&job)
            .into_iter()
            .map(|t| serde_json::json!({ "id": t.id, "state": t.state, "done": t.done, "total": t.total, "percent": t.percent }))
            .collect();
        let run =
            serde_json::json!({ "state": job.state.as_str(), "step": job.step, "tasks": tasks })
                .to_string();
        if self.last.as_ref() != Some(&run) {
            self.pending
                .push_back(Event::default().event("run").data(&run));
            self.last = Some(run);
        }
        if let Some(t) = job.tasks.last() {
            if self.task != Some(t.id) {
                self.task = Some(t.id);
                self.log_after = None;
            }
            let page = self
                .app
                .queue
                .task_log(t.id, self.log_after.as_deref(), LOG_LINES)
                .await?;
            if !page.lines.is_empty() {
                let lines: Vec<serde_json::Value> = page.lines.iter().map(line_json).collect();
                self.pending.push_back(
                    Event::default()
                        .event("log")
                        .id(format!("{}:{}", t.id, page.next))
                        .data(serde_json::Value::Array(lines).to_string()),
                );
                self.log_after = Some(page.next.clone());
                if page.more {
                    return Ok(());
                }
            }
        }
        if !matches!(
            job.state,
            JobState::Pending | JobState::Running | JobState::Blocked
        ) {
            self.pending
                .push_back(Event::default().event("end").data(job.state.as_str()));
            self.ended = true;
        }
        Ok(())
    }
}

fn line_json(l: &LogLine) -> serde_json::Value {
    serde_json::json!({ "level": l.level, "when": idgard_web::when(l.at_ms), "message": l.message })
}

/// `GET /runs/{id}/events`: the run's state, its tasks' progress and its log as they change.
/// `Last-Event-ID` (`task:position`) resumes the log where the browser left it.
pub async fn events(
    State(app): State<App>,
    _me: Person,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> PageResult {
    app.queue.job(id).await?;
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(':'))
        .and_then(|(t, pos)| Some((t.parse::<i64>().ok()?, pos.to_owned())));
    let follow = Follow {
        app,
        id,
        task: resume.as_ref().map(|r| r.0),
        log_after: resume.map(|r| r.1),
        last: None,
        pending: VecDeque::new(),
        ended: false,
    };
    let stream = futures_util::stream::unfold(follow, |mut f| async move {
        loop {
            if let Some(e) = f.pending.pop_front() {
                return Some((Ok::<_, Infallible>(e), f));
            }
            if f.ended {
                return None;
            }
            if let Err(e) = f.look().await {
                tracing::debug!(run = f.id, "following a run stopped: {}", e.message);
                return None;
            }
            if f.pending.is_empty() {
                tokio::time::sleep(FOLLOW_EVERY).await;
            }
        }
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}
