//! Two server replicas on one PostgreSQL behind a real reverse proxy (haproxy, TCP mode): a
//! replica killed while a job runs and while the agent holds a poll. The agent reconnects
//! through the proxy, the job finishes on the other replica, and no task runs twice. Three
//! replicas sharing a schedule fire it once.

use crate::harness::browser::free_port;
use crate::pipeline::{people_connection, write_hr};
use crate::system::{Agent, Backend, Server, noop, on};
use idgard_protocol::*;
use idgard_tests::haproxy::Proxy;
use reqwest::Method;
use std::time::{Duration, Instant};

#[test]
fn a_replica_killed_during_a_job_leaves_the_job_to_the_other() {
    let mut a = Server::start_with(
        Backend::Postgres,
        &[
            ("IDGARD_QUEUE_LEASE_MS", "5000"),
            ("IDGARD_QUEUE_ACK_MS", "3000"),
            ("IDGARD_QUEUE_POLL_WAIT_MS", "20000"),
        ],
    );
    let b = a.replica();
    let proxy = Proxy::start(free_port(), &[a.port, b.port]);
    let agent = Agent::start_via(&a, "lorient", &[], &proxy.url());
    let step = || vec![on("slow", Operation::Export)];
    let job = a.create_job("lorient", vec![step(), step(), step()]);
    let first = job.tasks[0].id;
    a.wait_task(first, 60, |t| {
        t.state == TaskState::Running && t.progress.is_some_and(|(done, _)| done >= 50)
    });
    // The replica goes away mid-run, with whatever connections and held polls it had.
    a.kill();

    let job = b.wait_job(job.id, 120);
    let context = || {
        format!(
            "{job:#?}\n--- agent\n{}\n--- replica b\n{}",
            agent.log(),
            b.log()
        )
    };
    assert_eq!(job.state, JobState::Succeeded, "{}", context());
    assert_eq!(job.tasks.len(), 3, "{}", context());
    for t in &job.tasks {
        assert_eq!(t.state, TaskState::Succeeded, "{}", context());
        assert_eq!(t.attempts, 1, "task {} ran twice: {}", t.id, context());
        assert_eq!(t.result.as_ref().unwrap()["entries"], 300, "{}", context());
    }
    // The agent polls through the proxy still: new work reaches it.
    let id = b.enqueue("lorient", vec![noop()])[0];
    let t = b.wait_task(id, 30, |t| t.state.is_final());
    assert_eq!(t.state, TaskState::Succeeded, "{}", agent.log());
    drop(agent);
}

/// A declared job scheduled every minute, on three replicas: the minute comes, one replica
/// fires it, the others see it claimed. (Schedules are minutes; the test waits for one.)
#[test]
fn a_schedule_fires_once_across_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let hr = dir.path().join("hr");
    std::fs::create_dir(&hr).unwrap();
    write_hr(&hr, &["1,Ada,Lovelace,R&D,active"]);
    let rules = dir.path().join("rules.toml");
    std::fs::write(
        &rules,
        "version = 1\n[identities]\nconnection = \"people\"\n\n[[jobs]]\nname = \"tick\"\n\
         agent = \"rennes\"\nconnections = [\"people\"]\nschedule = \"* * * * *\"\n",
    )
    .unwrap();
    let a = Server::start_with(
        Backend::Postgres,
        &[("IDGARD_RULES", rules.to_str().unwrap())],
    );
    let replicas = [a.replica(), a.replica()];
    let _agent = Agent::start_with(&a, "rennes", &[("people.toml", people_connection(&hr))]);
    let fired = |s: &Server| s.log().matches("schedule fired").count();
    let all = || fired(&a) + replicas.iter().map(fired).sum::<usize>();
    // The first check writes when the schedule is next due (the next minute); then it fires.
    let until = Instant::now() + Duration::from_secs(100);
    while all() == 0 {
        assert!(Instant::now() < until, "never fired:\n{}", a.log());
        std::thread::sleep(Duration::from_millis(500));
    }
    // Every replica looks again every 10 s: give each two looks past the minute.
    std::thread::sleep(Duration::from_secs(25));
    let logs = || {
        std::iter::once(&a)
            .chain(&replicas)
            .map(|s| s.log())
            .collect::<Vec<_>>()
            .join("\n---\n")
    };
    assert_eq!(all(), 1, "fired more than once:\n{}", logs());
    let jobs: Vec<JobView> = a.admin::<(), _>(Method::GET, "/api/v1/jobs", None).unwrap();
    let ticks = jobs.iter().filter(|j| j.name.starts_with("tick")).count();
    assert_eq!(ticks, 1, "{jobs:#?}");
}
