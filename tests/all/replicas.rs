//! Two server replicas on one PostgreSQL behind a real reverse proxy (haproxy, TCP mode): a
//! replica killed while a job runs and while the agent holds a poll. The agent reconnects
//! through the proxy, the job finishes on the other replica, and no task runs twice. Three
//! replicas sharing a schedule fire it once. An export of a million entries goes up in chunks
//! spread over two replicas and reads back whole from either.

use crate::harness::browser::free_port;
use crate::pipeline::{people_connection, write_hr};
use crate::system::{Agent, Backend, Hand, Server, noop, on};
use idgard_protocol::*;
use idgard_tests::haproxy::Proxy;
use reqwest::{Method, StatusCode};
use serde_json::json;
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

/// A million entries, framed as an agent uploads them (batches of 10,000).
fn million_entries() -> Vec<u8> {
    let mut content = Vec::with_capacity(80 << 20);
    for b in 0..100 {
        let mut batch = idgard_sdk::wire::BatchBuffer::with_capacity(1 << 20);
        for i in 0..10_000 {
            let at = batch.begin_entry(
                idgard_sdk::wire::EntryOp::Upsert,
                "person",
                &format!("p{b:03}-{i:05}"),
            );
            batch.attribute1("name", "Zoë Lovelace");
            batch.end_entry(at, 1);
        }
        content.extend_from_slice(&frames::header(batch.entries(), batch.len() as u32));
        content.extend_from_slice(batch.as_bytes());
    }
    content
}

/// The chunks of one upload go to two replicas in turn; either serves the whole content back.
#[test]
fn a_million_entries_upload_through_either_replica() {
    use sha2::Digest;
    let a = Server::start(Backend::Postgres);
    let b = a.replica();
    let hand = Hand::enrol(&a, "quimper");
    let content = million_entries();
    assert!(content.len() > 30 << 20, "{} bytes only", content.len());
    let sha = hex::encode(sha2::Sha256::digest(&content));
    let id = a.enqueue("quimper", vec![on("hr", Operation::Export)])[0];
    let fence = hand.poll(&a, 0).tasks[0].fence;
    // Acknowledged, then kept with heartbeats as an agent does (the harness's lease is 3 s).
    let beat = |replica: &Server| {
        let (s, v) = hand.call(
            replica,
            Method::POST,
            &format!("/api/v1/agent/tasks/{id}/heartbeat"),
            json!({ "fence": fence }),
        );
        assert_eq!(s, StatusCode::OK, "{v}");
    };
    beat(&a);
    let (s, v) = hand.call(
        &a,
        Method::POST,
        &format!("/api/v1/agent/tasks/{id}/uploads"),
        json!({ "fence": fence, "name": "entries", "size": content.len(), "sha256": sha }),
    );
    assert_eq!(s, StatusCode::OK, "{v}");
    let slot = v["id"].as_i64().unwrap();
    let chunk = 1 << 20; // the harness's chunk limit (IDGARD_LIMITS_CHUNK_MIB = 1)
    let mut last = serde_json::Value::Null;
    for (n, piece) in content.chunks(chunk).enumerate() {
        let replica = if n % 2 == 0 { &a } else { &b };
        if n % 8 == 7 {
            beat(replica);
        }
        let (s, v) = replica.raw_bytes(
            Method::PUT,
            &format!("/api/v1/agent/uploads/{slot}?offset={}", n * chunk),
            Some(&hand.token),
            Some(piece.to_vec()),
            "application/octet-stream",
        );
        assert_eq!(s, StatusCode::OK, "chunk {n}: {v}");
        last = v;
    }
    assert_eq!(last["complete"], true, "{last}");
    assert_eq!(last["entries"], 1_000_000, "{last}");
    let (s, v) = hand.complete(&b, id, fence, json!({ "upload_id": slot }));
    assert_eq!(s, StatusCode::OK, "{v}");
    for replica in [&a, &b] {
        let (s, len, got) = replica.download(&format!("/api/v1/uploads/{slot}/content"));
        assert_eq!(s, StatusCode::OK);
        assert_eq!((len, got.as_str()), (content.len() as u64, sha.as_str()));
    }
}
