//! The identity pipeline as jobs: server-side tasks started by their agent, declared jobs built
//! from the rules, approvals of blocked runs, and schedules.
//!
//! A declared job over connections runs, in steps: export every connection; synchronize every
//! connection; compute provisioning for every target; fulfil every target. The identities'
//! source is synchronized before any target is computed. A job has at most one run at a time;
//! a later run waits (`pending`) and starts when the running one ends; a complete run cancels
//! the incremental runs still waiting.

use super::Engine;
use super::repo::Checked;
use crate::error::{Error, Result};
use crate::queue::{Queue, Wake};
use idgard_protocol::{
    Completion, JobView, NewJob, Operation, RunJob, TaskArgs, TaskOutcome, TaskSpec, TaskView,
};
use serde_json::json;
use sqlx::Row;

impl Engine {
    /// Runs a server-side task for the agent that holds its lease, and records its end.
    /// Asking again for a task already ended answers how it ended.
    pub async fn run_on_server(&self, agent: i64, task: i64, fence: i64) -> Result<TaskView> {
        let row = sqlx::query(
            "SELECT agent_id, fence, state, operation, connection, args, job_id, completed_fence \
             FROM tasks WHERE id = $1",
        )
        .bind(task)
        .fetch_optional(&self.queue.db.pool)
        .await?
        .ok_or_else(|| Error::not_found(format!("no task {task}")))?;
        if row.try_get::<i64, _>(0)? != agent {
            return Err(Error::not_found(format!("no task {task} for this agent")));
        }
        let state: String = row.try_get(2)?;
        let completed: Option<i64> = row.try_get(7)?;
        if completed == Some(fence) || (state == "blocked" && row.try_get::<i64, _>(1)? == fence) {
            return self.queue.task(task).await;
        }
        if row.try_get::<i64, _>(1)? != fence || !(state == "claimed" || state == "running") {
            return Err(self.queue.refusal_for(agent, task, fence).await?);
        }
        let op: String = row.try_get(3)?;
        let connection: String = row.try_get(4)?;
        let args = TaskArgs::parse_stored(&row.try_get::<String, _>(5)?);
        let job: Option<i64> = row.try_get(6)?;
        let approved = args.approved;
        let live = &self.queue.live;
        let started = std::time::Instant::now();
        let outcome = match Operation::parse(&op) {
            Some(Operation::Synchronize) => {
                let (upload, incremental) = self.job_upload(job, &connection, &args).await?;
                if args.dry_run {
                    let report = live
                        .run(
                            task,
                            self.synchronize_dry(&connection, upload, incremental, job),
                        )
                        .await?;
                    return self
                        .finish_on_server(agent, task, fence, json!(report))
                        .await;
                }
                let thresholds = self
                    .rules
                    .as_ref()
                    .map(|r| r.thresholds(&connection))
                    .filter(|_| !approved);
                let sync =
                    self.synchronize(&connection, upload, incremental, job, thresholds.as_ref());
                live.run(task, sync).await.map(Checked::into_json)
            }
            Some(Operation::Provision) => {
                let rules = self.rules.clone().ok_or_else(|| {
                    Error::invalid("the server has no rules file: provisioning cannot run")
                })?;
                if args.dry_run {
                    let report = live
                        .run(
                            task,
                            self.provision_dry(&rules, &connection, job, args.complete),
                        )
                        .await?;
                    return self
                        .finish_on_server(agent, task, fence, json!(report))
                        .await;
                }
                let provision = self.provision(
                    &rules,
                    &connection,
                    job,
                    args.complete,
                    args.dry_run,
                    approved,
                );
                live.run(task, provision).await.map(Checked::into_json)
            }
            _ => {
                return Err(Error::invalid(format!(
                    "task {task} ({op}) is not one the server runs"
                )));
            }
        };
        self.queue.metrics.server_step(&op, started.elapsed());
        let outcome = match outcome {
            Ok(Checked::Done(result)) => TaskOutcome::Succeeded { result },
            Ok(Checked::Blocked { reason, report }) => {
                self.block(task, fence, job, &reason, report).await?;
                return self.queue.task(task).await;
            }
            Err(e) if e.is_caller_fault() => TaskOutcome::Failed {
                error: e.message.clone(),
                retryable: false,
            },
            Err(e) => return Err(e),
        };
        self.queue
            .complete(agent, task, &Completion { fence, outcome })
            .await
    }

    async fn finish_on_server(
        &self,
        agent: i64,
        task: i64,
        fence: i64,
        result: serde_json::Value,
    ) -> Result<TaskView> {
        let outcome = TaskOutcome::Succeeded { result };
        self.queue
            .complete(agent, task, &Completion { fence, outcome })
            .await
    }

    /// The upload a synchronize reads: named in its args, or the export of the same connection
    /// earlier in its job.
    async fn job_upload(
        &self,
        job: Option<i64>,
        connection: &str,
        args: &TaskArgs,
    ) -> Result<(i64, bool)> {
        if let Some(u) = args.upload_id {
            return Ok((u, args.incremental));
        }
        let job = job.ok_or_else(|| {
            Error::invalid("a synchronize outside a job needs `upload_id` in its args")
        })?;
        let row = sqlx::query(
            "SELECT upload_id, args FROM tasks WHERE job_id = $1 AND connection = $2 \
             AND operation = 'export' AND state = 'succeeded' ORDER BY id DESC LIMIT 1",
        )
        .bind(job)
        .bind(connection)
        .fetch_optional(&self.queue.db.pool)
        .await?
        .ok_or_else(|| {
            Error::invalid(format!(
                "job {job} has no finished export of `{connection}` to synchronize"
            ))
        })?;
        let upload: i64 = row
            .try_get::<Option<i64>, _>(0)?
            .ok_or_else(|| Error::invalid("the export's result names no upload"))?;
        let inc = TaskArgs::parse_stored(&row.try_get::<String, _>(1)?).incremental;
        Ok((upload, inc))
    }

    /// A threshold stopped a task: the task is `blocked`, its job too, until approved.
    async fn block(
        &self,
        task: i64,
        fence: i64,
        job: Option<i64>,
        reason: &str,
        report: serde_json::Value,
    ) -> Result<()> {
        let now = self.queue.now();
        let mut tx = self.queue.begin().await?;
        let n = sqlx::query(
            "UPDATE tasks SET state = 'blocked', error = $1, result = $2, finished_ms = $3, \
             lease_until_ms = NULL WHERE id = $4 AND fence = $5 AND state IN ('claimed', 'running')",
        )
        .bind(reason)
        .bind(report.to_string())
        .bind(now)
        .bind(task)
        .bind(fence)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 1
            && let Some(job) = job
        {
            sqlx::query("UPDATE jobs SET state = 'blocked', blocked = $1 WHERE id = $2 AND state = 'running'")
                .bind(json!({ "task": task, "reason": reason, "report": report }).to_string())
                .bind(job)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        tracing::warn!(
            task,
            job = job.unwrap_or(0),
            "blocked: {reason}; approve the job to go on"
        );
        Ok(())
    }

    /// Releases a blocked job: its blocked task runs again, past the threshold.
    pub async fn approve_job(&self, job: i64) -> Result<JobView> {
        let mut tx = self.queue.begin().await?;
        let mut wake = Wake::default();
        let row = sqlx::query(
            "UPDATE jobs SET state = 'running', blocked = NULL WHERE id = $1 AND state = 'blocked' \
             RETURNING id",
        )
        .bind(job)
        .fetch_optional(&mut *tx)
        .await?;
        if row.is_none() {
            // Read in the same transaction: SQLite's one connection is held by it.
            let state = Queue::job_state_in(&mut tx, job).await?;
            return Err(Error::conflict(format!(
                "job {job} is {}, not blocked: there is nothing to approve",
                state.as_str()
            )));
        }
        let rows = sqlx::query(
            "SELECT id, args, agent_id FROM tasks WHERE job_id = $1 AND state = 'blocked'",
        )
        .bind(job)
        .fetch_all(&mut *tx)
        .await?;
        for r in rows {
            let id: i64 = r.try_get(0)?;
            let agent: i64 = r.try_get(2)?;
            let mut args: serde_json::Value =
                serde_json::from_str(&r.try_get::<String, _>(1)?).unwrap_or(json!({}));
            args["approved"] = json!(true);
            sqlx::query(
                "UPDATE tasks SET state = 'queued', args = $1, error = NULL, result = NULL, \
                 finished_ms = NULL, run_after_ms = $2 WHERE id = $3",
            )
            .bind(args.to_string())
            .bind(self.queue.now())
            .bind(id)
            .execute(&mut *tx)
            .await?;
            self.queue.notify(&mut tx, &mut wake, agent).await?;
        }
        self.queue.commit(tx, wake).await?;
        tracing::info!(job, "approved");
        self.queue.job(job).await
    }

    /// The steps of a declared job, and the agent it belongs to (the first connection's, when
    /// the job names none and each task goes to its connection's agent).
    pub(super) async fn declared_steps(
        &self,
        name: &str,
        incremental: bool,
        dry_run: bool,
    ) -> Result<(String, Vec<Vec<TaskSpec>>)> {
        let rules = self
            .rules
            .as_ref()
            .ok_or_else(|| Error::invalid("the server has no rules file: no job is declared"))?;
        let def = rules.job(name).ok_or_else(|| {
            let known: Vec<&str> = rules.jobs.iter().map(|j| j.name.as_str()).collect();
            Error::not_found(format!(
                "no job `{name}` in {} (declared: {})",
                rules.origin,
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            ))
        })?;
        let mut agents: std::collections::HashMap<&str, String> = Default::default();
        for c in &def.connections {
            let agent = match &def.agent {
                Some(a) => a.clone(),
                None => self.queue.agent_of(c).await?,
            };
            agents.insert(c.as_str(), agent);
        }
        let home = agents[def.connections[0].as_str()].clone();
        let spec = |c: &str, op: Operation, args: serde_json::Value| TaskSpec {
            connection: c.to_owned(),
            operation: op,
            args,
            max_attempts: None,
            timeout_s: None,
            agent: Some(agents[c].clone()).filter(|a| *a != home),
        };
        let src = &rules.identities.connection;
        let mut ordered: Vec<&str> = def
            .connections
            .iter()
            .filter(|c| *c == src)
            .map(String::as_str)
            .collect();
        let targets: Vec<&str> = def
            .connections
            .iter()
            .filter(|c| *c != src)
            .map(String::as_str)
            .collect();
        ordered.extend(&targets);
        let mut steps = vec![
            ordered
                .iter()
                .map(|c| spec(c, Operation::Export, json!({ "incremental": incremental })))
                .collect::<Vec<_>>(),
            ordered
                .iter()
                .map(|c| {
                    let args = if dry_run {
                        json!({ "dry_run": true })
                    } else {
                        json!({})
                    };
                    spec(c, Operation::Synchronize, args)
                })
                .collect(),
        ];
        if !targets.is_empty() {
            steps.push(
                targets
                    .iter()
                    .map(|c| {
                        spec(
                            c,
                            Operation::Provision,
                            json!({ "complete": !incremental, "dry_run": dry_run }),
                        )
                    })
                    .collect(),
            );
            if !dry_run {
                steps.push(
                    targets
                        .iter()
                        .map(|c| spec(c, Operation::Fulfill, json!({ "server_orders": true })))
                        .collect(),
                );
            }
        }
        Ok((home, steps))
    }

    /// Creates a run of a declared job: started at once, or waiting for the running one.
    pub async fn run_declared(&self, run: &RunJob) -> Result<JobView> {
        let (agent, steps) = self
            .declared_steps(&run.job, run.incremental, run.dry_run)
            .await?;
        let mode = if run.incremental {
            "incremental"
        } else {
            "complete"
        };
        // An identical run already waiting is enough.
        if let Some(r) = sqlx::query(
            "SELECT id FROM jobs WHERE definition = $1 AND state = 'pending' AND mode = $2 ORDER BY id LIMIT 1",
        )
        .bind(&run.job)
        .bind(mode)
        .fetch_optional(&self.queue.db.pool)
        .await?
            && !run.dry_run
        {
            return self.queue.job(r.try_get(0)?).await;
        }
        let created = self
            .queue
            .create_job(&NewJob {
                agent,
                name: Some(format!(
                    "{} ({mode}{})",
                    run.job,
                    if run.dry_run { ", dry run" } else { "" }
                )),
                steps,
                start: Some(false),
            })
            .await?;
        let mut tx = self.queue.begin().await?;
        let mut wake = Wake::default();
        sqlx::query("UPDATE jobs SET definition = $1, mode = $2 WHERE id = $3")
            .bind(&run.job)
            .bind(mode)
            .bind(created.id)
            .execute(&mut *tx)
            .await?;
        if !run.incremental {
            let n = sqlx::query(
                "UPDATE jobs SET state = 'cancelled', finished_ms = $1 WHERE definition = $2 \
                 AND state = 'pending' AND mode = 'incremental'",
            )
            .bind(self.queue.now())
            .bind(&run.job)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n > 0 {
                tracing::info!(
                    job = run.job,
                    "a complete run supersedes {n} waiting incremental run(s)"
                );
            }
        }
        self.queue.start_next(&mut tx, &mut wake, &run.job).await?;
        self.queue.commit(tx, wake).await?;
        self.queue.job(created.id).await
    }

    /// Fires due schedules once (several servers share the work: a firing is claimed with a
    /// guarded update).
    pub async fn fire_schedules(&self) -> Result<u32> {
        let Some(rules) = self.rules.clone() else {
            return Ok(0);
        };
        let now = self.queue.now();
        let mut fired = 0;
        for def in &rules.jobs {
            for (schedule, incremental) in
                [(&def.schedule, false), (&def.incremental_schedule, true)]
            {
                let Some(s) = schedule else { continue };
                let name = format!(
                    "{}:{}",
                    def.name,
                    if incremental {
                        "incremental"
                    } else {
                        "complete"
                    }
                );
                let row = sqlx::query("SELECT next_ms FROM schedules WHERE name = $1")
                    .bind(&name)
                    .fetch_optional(&self.queue.db.pool)
                    .await?;
                let Some(next) = s.next_after(now) else {
                    continue;
                };
                let Some(row) = row else {
                    sqlx::query("INSERT INTO schedules (name, next_ms) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
                        .bind(&name)
                        .bind(next)
                        .execute(&self.queue.db.pool)
                        .await?;
                    continue;
                };
                let due: i64 = row.try_get(0)?;
                if due > now {
                    continue;
                }
                let claimed = sqlx::query(
                    "UPDATE schedules SET next_ms = $1 WHERE name = $2 AND next_ms = $3",
                )
                .bind(next)
                .bind(&name)
                .bind(due)
                .execute(&self.queue.db.pool)
                .await?
                .rows_affected();
                if claimed == 1 {
                    tracing::info!(job = def.name, incremental, cron = s.cron, "schedule fired");
                    match self
                        .run_declared(&RunJob {
                            job: def.name.clone(),
                            incremental,
                            dry_run: false,
                        })
                        .await
                    {
                        Ok(_) => fired += 1,
                        Err(e) => tracing::error!(
                            job = def.name,
                            "scheduled run not created: {}",
                            e.message
                        ),
                    }
                }
            }
        }
        Ok(fired)
    }
}
