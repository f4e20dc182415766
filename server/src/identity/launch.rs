//! Runs launched from the browser: recorded for the agent that owns the job, started only once
//! that agent accepts, in the name of whoever launched them.

use super::Engine;
use crate::error::{Error, Result};
use crate::queue::Launch;
use idgard_protocol::{LaunchAnswer, RunJob};

impl Engine {
    /// Records a launch of the declared job `run` by `user`, for the agent that owns the job,
    /// good for the queue's `launch_ttl_ms`.
    pub async fn launch_declared(&self, run: &RunJob, user: &str) -> Result<Launch> {
        let ttl_ms = self.queue.cfg.launch_ttl_ms.min(i64::MAX as u64) as i64;
        let (agent, _) = self
            .declared_steps(&run.job, run.incremental, run.dry_run)
            .await?;
        let agent = self.queue.agent(&agent).await?;
        if !agent.enrolled {
            return Err(Error::conflict(format!(
                "agent `{}` has not enrolled: nothing would pick this launch up",
                agent.name
            )));
        }
        let launch = self
            .queue
            .record_launch(agent.id, run, user, ttl_ms)
            .await?;
        tracing::info!(
            launch = %launch.view.id, job = %run.job, user, agent = %agent.name,
            "run launched from the browser; waiting for the agent"
        );
        Ok(launch)
    }

    /// Records `agent`'s answer to launch `id`; an accepted launch starts its run in the name of
    /// the person who launched it. A run that cannot start (the job is no longer declared) is
    /// recorded on the launch and answered as an error.
    pub async fn answer_launch(
        &self,
        agent: i64,
        id: &str,
        answer: &LaunchAnswer,
    ) -> Result<Launch> {
        let mut launch = self.queue.answer_launch(agent, id, answer).await?;
        let view = &mut launch.view;
        if !answer.accept {
            tracing::info!(launch = id, job = %view.job, agent = %view.agent,
                reason = view.reason.as_deref().unwrap_or(""), "the agent refused a launch");
            return Ok(launch);
        }
        let run = RunJob {
            job: view.job.clone(),
            incremental: view.incremental,
            dry_run: view.dry_run,
        };
        match self.run_declared_by(&run, &view.user).await {
            Ok(job) => {
                self.queue.launch_started(id, Ok(job.id)).await?;
                view.job_id = Some(job.id);
                tracing::info!(launch = id, job = %view.job, run = job.id, user = %view.user,
                    "the agent accepted a launch: run started");
                Ok(launch)
            }
            Err(e) => {
                let why = format!("the run could not start: {e}");
                self.queue.launch_started(id, Err(why)).await?;
                Err(e)
            }
        }
    }
}
