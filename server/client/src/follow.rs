//! Following work as it happens: a job's steps and tasks with their progress until it ends
//! (`job run --wait`), a task's log until the task ends (`task log --follow`).

use crate::show::{self, Output, Table, time};
use anyhow::Result;
use idgard_client::api::{Api, path};
use idgard_protocol::{JobState, JobView, LogPage, TaskView};
use std::process::ExitCode;
use std::time::Duration;

/// How often a followed job or log is asked for again.
const EVERY: Duration = Duration::from_millis(500);

/// Prints a job and its tasks.
pub fn print_job(j: &JobView, out: Output) {
    if out == Output::Json {
        show::json(j);
        return;
    }
    show::line(&format!(
        "job {} `{}` on {}: {} (step {}/{}), created {}{}",
        j.id,
        j.name,
        j.agent,
        j.state.as_str(),
        (j.step + 1).min(j.steps),
        j.steps,
        time(j.created_ms),
        j.finished_ms
            .map(|f| format!(", ended {}", time(f)))
            .unwrap_or_default()
    ));
    if let Some(b) = &j.blocked {
        show::line(&format!(
            "blocked: {} (approve with `idgard job approve {}`)",
            b["reason"].as_str().unwrap_or("a threshold"),
            j.id
        ));
    }
    let mut t = Table::new(&[
        "TASK",
        "OPERATION",
        "CONNECTION",
        "STATE",
        "PROGRESS",
        "NOTE",
    ]);
    for task in &j.tasks {
        t.row(vec![
            task.id.to_string(),
            task.operation.as_str().into(),
            task.connection.clone(),
            task.state.as_str().into(),
            progress(task),
            note(task),
        ]);
    }
    t.print();
}

/// `1200/5000 entries (24 %)`, `1200 orders`, or `-`.
fn progress(t: &TaskView) -> String {
    let unit = t.operation.unit();
    match t.progress {
        Some((done, Some(total))) if total > 0 => {
            format!("{done}/{total} {unit} ({} %)", done * 100 / total)
        }
        Some((done, _)) => format!("{done} {unit}"),
        None => "-".into(),
    }
}

/// The error, or what a finished step reported, in a few words.
fn note(t: &TaskView) -> String {
    if let Some(e) = &t.error {
        return e.clone();
    }
    let Some(r) = &t.result else {
        return String::new();
    };
    let n = |k: &str| r.get(k).and_then(|v| v.as_u64());
    let counts: Vec<String> = [
        "entries", "inserted", "updated", "deleted", "creates", "updates", "deletes", "done",
        "failed",
    ]
    .iter()
    .filter_map(|k| n(k).filter(|&v| v > 0).map(|v| format!("{k} {v}")))
    .collect();
    let mut text = counts.join(", ");
    if r.get("dry_run").and_then(|v| v.as_bool()) == Some(true) {
        text.push_str(" (dry run)");
    }
    text
}

/// Follows a job until it ends: a line each time a task changes state or moves on; the exit
/// status is 0 when it succeeded, 1 otherwise.
pub async fn job(api: &Api, mut j: JobView, out: Output) -> Result<ExitCode> {
    let id = j.id.to_string();
    let mut seen: Vec<(i64, String)> = Vec::new();
    if out != Output::Json {
        show::line(&format!("job {} `{}` {}", j.id, j.name, j.state.as_str()));
    }
    loop {
        if out != Output::Json {
            for t in &j.tasks {
                let now = format!("{} {}", t.state.as_str(), progress(t));
                if !seen.iter().any(|(i, s)| *i == t.id && *s == now) {
                    seen.retain(|(i, _)| *i != t.id);
                    seen.push((t.id, now));
                    show::line(&format!(
                        "  {} {:<12} {:<10} {}  {}",
                        t.operation.as_str(),
                        t.connection,
                        t.state.as_str(),
                        progress(t),
                        note(t)
                    ));
                }
            }
        }
        if !matches!(j.state, JobState::Pending | JobState::Running) {
            break;
        }
        tokio::time::sleep(EVERY).await;
        j = api.get(&path(&["jobs", &id], &[])).await?;
    }
    print_job(&j, out);
    Ok(if j.state == JobState::Succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Prints a task's log; with `follow`, until the task ends.
pub async fn task_log(api: &Api, id: i64, follow: bool, out: Output) -> Result<()> {
    let id_text = id.to_string();
    let mut after = String::new();
    loop {
        drain(api, &id_text, &mut after, out).await?;
        if !follow {
            return Ok(());
        }
        let task: TaskView = api.get(&path(&["tasks", &id_text], &[])).await?;
        if task.state.is_final() {
            // The last lines may have come with the end.
            drain(api, &id_text, &mut after, out).await?;
            if out != Output::Json {
                show::line(&format!("task {id} {}", task.state.as_str()));
            }
            return Ok(());
        }
        tokio::time::sleep(EVERY).await;
    }
}

/// Prints the log lines stored after `after`, page by page, and moves `after` past them.
async fn drain(api: &Api, id: &str, after: &mut String, out: Output) -> Result<()> {
    loop {
        let page: LogPage = api
            .get(&path(
                &["tasks", id, "log"],
                &[("after", Some(after.clone()).filter(|a| !a.is_empty()))],
            ))
            .await?;
        for l in &page.lines {
            match out {
                Output::Json => show::line(&serde_json::to_string(l)?),
                _ => show::line(&format!("{} {:<5} {}", time(l.at_ms), l.level, l.message)),
            }
        }
        *after = page.next;
        if !page.more {
            return Ok(());
        }
    }
}
