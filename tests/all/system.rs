//! The server and its agents as processes on loopback: the real binaries over HTTPS, on SQLite
//! and on PostgreSQL. Tests that play an agent by hand (to lose answers, replay completions,
//! send garbage) use the API like an agent would.

pub(crate) use crate::harness::*;
use idgard_protocol::*;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn sqlite() {
                    super::$name(super::Backend::Sqlite)
                }
                #[test]
                fn postgres() {
                    super::$name(super::Backend::Postgres)
                }
            }
        )*
    };
}
pub(crate) use on_both;

on_both!(
    export_job_goes_up_and_is_stored,
    killed_agent_task_is_requeued_and_completed_once,
    lost_poll_answer_returns_after_the_ack_deadline,
    stale_holder_is_refused_and_nothing_is_recorded,
    replayed_completion_records_one_result,
    agents_restart_with_the_server_and_nothing_is_lost,
    cancellation_reaches_the_running_agent,
    fulfil_orders_go_down_and_results_come_back,
    a_newer_poll_replaces_the_held_one,
    lapses_end_lost_failed_or_timed_out,
);

fn export_job_goes_up_and_is_stored(b: Backend) {
    let server = Server::start(b);
    let agent = Agent::start(&server, "paris");
    let job = server.create_job(
        "paris",
        vec![vec![on("demo-hr", Operation::Export)], vec![noop()]],
    );
    let job = server.wait_job(job.id, 60);
    assert_eq!(job.state, JobState::Succeeded, "{job:#?}\n{}", agent.log());
    assert_eq!(job.tasks.len(), 2);
    let export = &job.tasks[0];
    let result = export.result.as_ref().unwrap();
    assert_eq!(result["entries"], 5000);
    let upload = result["upload_id"].as_i64().unwrap();
    let uploads: Vec<UploadView> = server
        .admin::<(), _>(
            Method::GET,
            &format!("/api/v1/tasks/{}/uploads", export.id),
            None,
        )
        .unwrap();
    assert_eq!(uploads.len(), 1);
    assert!(uploads[0].complete);
    assert_eq!(uploads[0].entries, Some(5000));
    assert_eq!(uploads[0].id, upload);
    // What is stored is what the connector emitted: every frame decodes, 5,000 people.
    let (status, _) = server.raw(
        Method::GET,
        &format!("/api/v1/uploads/{upload}/content"),
        Some(&server.admin),
        None,
    );
    assert_eq!(status, StatusCode::OK);
    // The task's log came up.
    let log: LogPage = server
        .admin::<(), _>(
            Method::GET,
            &format!("/api/v1/tasks/{}/log", export.id),
            None,
        )
        .unwrap();
    assert!(!log.more, "{} lines and more", log.lines.len());
    // The agent reported its connections and listens on nothing.
    let agents: Vec<AgentView> = server
        .admin::<(), _>(Method::GET, "/api/v1/agents", None)
        .unwrap();
    let names: Vec<&str> = agents[0]
        .connections
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["accounts", "demo-hr", "slow"]);
    // Work for a connection the agent does not have, or an operation its connector lacks, is
    // refused when it is asked for.
    for (spec, expected) in [
        (on("nope", Operation::Export), "has no connection `nope`"),
        (on("slow", Operation::Schema), "does not support schema"),
    ] {
        let e = server
            .admin::<_, JobView>(
                Method::POST,
                "/api/v1/jobs",
                Some(&NewJob {
                    agent: "paris".into(),
                    name: None,
                    steps: vec![vec![spec]],
                    start: None,
                }),
            )
            .unwrap_err();
        assert_eq!(e.0, StatusCode::BAD_REQUEST);
        assert!(
            e.1["error"]["message"].as_str().unwrap().contains(expected),
            "{}",
            e.1
        );
    }
    assert_eq!(agent.listening_sockets(), 0);
}

fn killed_agent_task_is_requeued_and_completed_once(b: Backend) {
    let server = Server::start(b);
    let mut agent = Agent::start(&server, "lyon");
    let id = server.enqueue("lyon", vec![on("slow", Operation::Export)])[0];
    server.wait_task(id, 30, |t| t.state == TaskState::Running);
    std::thread::sleep(Duration::from_millis(300));
    agent.kill();
    assert_eq!(server.task(id).state, TaskState::Running);
    agent.restart();
    let t = server.wait_task(id, 60, |t| t.state.is_final());
    assert_eq!(t.state, TaskState::Succeeded, "{t:#?}\n{}", agent.log());
    assert_eq!(t.attempts, 2, "the first attempt died with the agent");
    assert_eq!(t.result.as_ref().unwrap()["entries"], 300);
    let uploads: Vec<UploadView> = server
        .admin::<(), _>(Method::GET, &format!("/api/v1/tasks/{id}/uploads"), None)
        .unwrap();
    assert_eq!(
        uploads.iter().filter(|u| u.complete).count(),
        1,
        "{uploads:#?}"
    );
    assert_eq!(agent.listening_sockets(), 0);
}

fn lost_poll_answer_returns_after_the_ack_deadline(b: Backend) {
    let server = Server::start(b);
    let hand = Hand::enrol(&server, "nantes");
    let id = server.enqueue("nantes", vec![noop()])[0];
    // The answer is "lost": the agent never acknowledges it.
    let first = hand.poll(&server, 0);
    assert_eq!(first.tasks.len(), 1);
    assert_eq!(first.tasks[0].fence, 1);
    assert!(
        hand.poll(&server, 0).tasks.is_empty(),
        "claimed tasks are not handed out twice"
    );
    // After the ack deadline (1 s) it comes back, as a new attempt with a new fence.
    let again = hand.poll(&server, 5000);
    assert_eq!(again.tasks.len(), 1, "the task came back");
    assert_eq!(again.tasks[0].id, id);
    assert_eq!(again.tasks[0].attempt, 2);
    assert_eq!(again.tasks[0].fence, 2);
    let (s, v) = hand.complete(&server, id, 2, json!({}));
    assert_eq!(s, StatusCode::OK, "{v}");
}

fn stale_holder_is_refused_and_nothing_is_recorded(b: Backend) {
    let server = Server::start(b);
    let hand = Hand::enrol(&server, "lille");
    let id = server.enqueue("lille", vec![noop()])[0];
    let old = hand.poll(&server, 0).tasks[0].fence;
    // Lapses (no acknowledgement), then is handed out again.
    let new = hand.poll(&server, 5000).tasks[0].fence;
    assert!(new > old);
    let (s, v) = hand.complete(&server, id, old, json!({ "from": "stale" }));
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "stale_lease");
    let (s, _) = hand.call(
        &server,
        Method::POST,
        &format!("/api/v1/agent/tasks/{id}/heartbeat"),
        json!({ "fence": old }),
    );
    assert_eq!(s, StatusCode::CONFLICT);
    let t = server.task(id);
    assert_eq!(t.state, TaskState::Claimed);
    assert!(t.result.is_none());
    let (s, _) = hand.complete(&server, id, new, json!({ "from": "current" }));
    assert_eq!(s, StatusCode::OK);
    assert_eq!(server.task(id).result.unwrap()["from"], "current");
}

fn replayed_completion_records_one_result(b: Backend) {
    let server = Server::start(b);
    let hand = Hand::enrol(&server, "brest");
    let job = server.create_job("brest", vec![vec![noop()], vec![noop()]]);
    let a = hand.poll(&server, 1000).tasks.remove(0);
    for _ in 0..5 {
        let (s, v) = hand.complete(&server, a.id, a.fence, json!({ "n": 1 }));
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["result"]["n"], 1);
    }
    // A replay that says something else still gets the first result.
    let (s, v) = hand.complete(&server, a.id, a.fence, json!({ "n": 2 }));
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["result"]["n"], 1);
    // The job moved on exactly once: one task for step 2.
    let j = server.job(job.id);
    assert_eq!(j.tasks.len(), 2, "{j:#?}");
    assert_eq!(j.step, 1);
}

fn agents_restart_with_the_server_and_nothing_is_lost(b: Backend) {
    let mut server = Server::start(b);
    let agent = Agent::start(&server, "rennes");
    let before = server.create_job("rennes", vec![vec![noop()]]);
    assert_eq!(server.wait_job(before.id, 30).state, JobState::Succeeded);
    // Queued while the server is down for the agent: enqueued, then the server restarts.
    let queued = server.enqueue("rennes", vec![noop(), noop(), noop()]);
    server.restart();
    let after = server.create_job("rennes", vec![vec![on("demo-hr", Operation::Export)]]);
    assert_eq!(
        server.wait_job(after.id, 60).state,
        JobState::Succeeded,
        "{}",
        agent.log()
    );
    for id in queued {
        let t = server.wait_task(id, 30, |t| t.state.is_final());
        assert_eq!(t.state, TaskState::Succeeded);
        assert_eq!(t.attempts, 1);
    }
    assert_eq!(agent.listening_sockets(), 0);
}

fn cancellation_reaches_the_running_agent(b: Backend) {
    let server = Server::start(b);
    let agent = Agent::start(&server, "tours");
    let job = server.create_job(
        "tours",
        vec![vec![on("slow", Operation::Export)], vec![noop()]],
    );
    let task = job.tasks[0].id;
    server.wait_task(task, 30, |t| t.state == TaskState::Running);
    let started = Instant::now();
    let j: JobView = server
        .admin::<(), _>(
            Method::POST,
            &format!("/api/v1/jobs/{}/cancel", job.id),
            None,
        )
        .unwrap();
    assert_eq!(j.state, JobState::Cancelled);
    let t = server.wait_task(task, 30, |t| t.state.is_final());
    assert_eq!(t.state, TaskState::Cancelled, "{t:#?}\n{}", agent.log());
    // The slow export takes 3 s; the agent stopped it well before.
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    let j = server.job(job.id);
    assert_eq!(j.tasks.len(), 1, "the second step never ran");
}

/// The agent picks up a new connection without a restart; a broken file is refused with a log
/// line and the previous version keeps serving.
#[test]
fn connections_reload_without_a_restart() {
    let server = Server::start(Backend::Sqlite);
    let agent = Agent::start(&server, "caen");
    let listed = |server: &Server| -> Vec<String> {
        let agents: Vec<AgentView> = server
            .admin::<(), _>(Method::GET, "/api/v1/agents", None)
            .unwrap();
        agents[0]
            .connections
            .iter()
            .map(|c| c.name.clone())
            .collect()
    };
    let wait_for = |what: &str, ok: &dyn Fn() -> bool| {
        let until = Instant::now() + Duration::from_secs(30);
        while !ok() {
            assert!(
                Instant::now() < until,
                "{what}\n--- agent log\n{}",
                agent.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_for("the agent reports its connections", &|| {
        listed(&server).len() == 3
    });
    let demo = std::fs::read_to_string(agent.dir.join("connections/demo-hr.toml")).unwrap();
    let extra = agent.dir.join("connections/extra.toml");
    std::fs::write(
        &extra,
        demo.replace("name = \"demo-hr\"", "name = \"extra\""),
    )
    .unwrap();
    wait_for("the new connection is reported", &|| {
        listed(&server).contains(&"extra".to_owned())
    });

    std::fs::write(
        &extra,
        "name = \"extra\"\nconnector = \"csv\"\n[settings]\nfile = 42\n",
    )
    .unwrap();
    wait_for("the broken file is refused in the log", &|| {
        agent.log().contains("connection refused")
            && agent.log().contains("keeping its previous version")
    });
    assert!(listed(&server).contains(&"extra".to_owned()));
    let job = server.create_job("caen", vec![vec![on("extra", Operation::Export)]]);
    let job = server.wait_job(job.id, 60);
    assert_eq!(job.state, JobState::Succeeded, "{job:#?}\n{}", agent.log());
    assert_eq!(job.tasks[0].result.as_ref().unwrap()["entries"], 5000);
}

fn fulfil_orders_go_down_and_results_come_back(b: Backend) {
    let server = Server::start(b);
    let agent = Agent::start(&server, "nice");
    let orders = json!([
        { "id": "o1", "entity-type": "account", "key": "jdoe", "kind": "create", "attributes": { "name": ["Jeanne Doé"] } },
        { "id": "o2", "entity-type": "account", "key": "asmith", "kind": "create", "attributes": { "name": ["Al Smith"] } },
        { "id": "o3", "entity-type": "account", "key": "jdoe", "kind": "disable" },
        { "id": "o4", "entity-type": "account", "key": "asmith", "kind": "set-password", "password": "not-logged-1" },
    ]);
    let mut spec = on("accounts", Operation::Fulfill);
    spec.args = json!({ "orders": orders });
    let job = server.create_job("nice", vec![vec![spec]]);
    let job = server.wait_job(job.id, 60);
    assert_eq!(job.state, JobState::Succeeded, "{job:#?}\n{}", agent.log());
    let task = &job.tasks[0];
    let results = task.result.as_ref().unwrap()["results"]
        .as_array()
        .unwrap()
        .clone();
    let outcomes: Vec<(&str, &str)> = results
        .iter()
        .map(|r| (r["id"].as_str().unwrap(), r["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("o1", "done"),
            ("o2", "done"),
            ("o3", "done"),
            ("o4", "failed")
        ]
    );
    let file = std::fs::read_to_string(agent.dir.join("accounts/accounts.csv")).unwrap();
    assert!(
        file.contains("jdoe") && file.contains("Jeanne Doé") && file.contains("asmith"),
        "{file}"
    );
    // The password is in no log, and on no file of the agent's: orders reach the connector as
    // the call's argument only.
    assert!(!agent.log().contains("not-logged-1") && !server.log().contains("not-logged-1"));
    assert_eq!(
        files_holding(&agent.dir.join("work"), b"not-logged-1"),
        [] as [PathBuf; 0]
    );
    // Nor in the server's database, its WAL, or any file of its data folder: it is sealed.
    assert_eq!(
        files_holding(&server.data, b"not-logged-1"),
        [] as [PathBuf; 0]
    );
    let args: Vec<String> = server.column("SELECT args FROM tasks");
    assert!(args.iter().any(|a| a.contains("sealed:v2:")), "{args:?}");
    assert!(!args.iter().any(|a| a.contains("not-logged-1")), "{args:?}");
}

/// Files under `dir` whose bytes hold `needle`.
pub(crate) fn files_holding(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut folders = vec![dir.to_owned()];
    while let Some(dir) = folders.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else if std::fs::read(&path)
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle)
            {
                found.push(path);
            }
        }
    }
    found
}

fn a_newer_poll_replaces_the_held_one(b: Backend) {
    let server = Server::start(b);
    let hand = std::sync::Arc::new(Hand::enrol(&server, "pau"));
    let server = std::sync::Arc::new(server);
    let held = {
        let (server, hand) = (server.clone(), hand.clone());
        std::thread::spawn(move || hand.poll(&server, 5000))
    };
    std::thread::sleep(Duration::from_millis(300));
    let id = {
        let newer = {
            let (server, hand) = (server.clone(), hand.clone());
            std::thread::spawn(move || hand.poll(&server, 5000))
        };
        let first = held.join().unwrap();
        assert!(first.superseded, "{first:?}");
        assert!(first.tasks.is_empty());
        let id = server.enqueue("pau", vec![noop()])[0];
        let second = newer.join().unwrap();
        assert!(!second.superseded);
        assert_eq!(second.tasks.iter().map(|t| t.id).collect::<Vec<_>>(), [id]);
        id
    };
    assert_eq!(server.task(id).state, TaskState::Claimed);
}

/// Two servers on one PostgreSQL: a task queued through one wakes the poll held by the other.
#[test]
fn replicas_wake_each_others_polls() {
    // The held poll re-reads the database only after 60 s, so only a wake-up can answer it.
    let a = Server::start_with(
        Backend::Postgres,
        &[
            ("IDGARD_QUEUE_POLL_RECHECK_MS", "60000"),
            ("IDGARD_QUEUE_POLL_WAIT_MS", "20000"),
        ],
    );
    let b = std::sync::Arc::new(a.replica());
    let hand = std::sync::Arc::new(Hand::enrol(&a, "vannes"));
    let held = {
        let (b, hand) = (b.clone(), hand.clone());
        std::thread::spawn(move || {
            let started = Instant::now();
            (hand.poll(&b, 20000), started.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let id = a.enqueue("vannes", vec![noop()])[0];
    let (answer, waited) = held.join().unwrap();
    assert_eq!(
        answer.tasks.iter().map(|t| t.id).collect::<Vec<_>>(),
        [id],
        "after {waited:?}"
    );
    // Completed through the other replica.
    let (s, v) = hand.complete(&a, id, answer.tasks[0].fence, json!({}));
    assert_eq!(s, StatusCode::OK, "{v}");
}

/// A result the agent could not deliver survives its restart and is delivered once.
#[test]
fn a_spooled_result_survives_an_agent_restart() {
    let mut server = Server::start_with(Backend::Sqlite, &[("IDGARD_QUEUE_LEASE_MS", "120000")]);
    let mut agent = Agent::start(&server, "quimper");
    let id = server.enqueue("quimper", vec![on("slow", Operation::Export)])[0];
    server.wait_task(id, 30, |t| t.state == TaskState::Running);
    // The server goes away while the export runs; the agent finishes and cannot deliver.
    server.stop();
    let spool = agent.dir.join("work/spool");
    let until = Instant::now() + Duration::from_secs(30);
    let spooled = loop {
        let found = std::fs::read_dir(&spool)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "json"));
        // The result is sealed in the spool: the log says when it could not go.
        if let Some(p) = found
            && agent.log().contains("cannot deliver the result")
        {
            break p;
        }
        assert!(Instant::now() < until, "no spooled result\n{}", agent.log());
        std::thread::sleep(Duration::from_millis(50));
    };
    agent.kill();
    assert!(spooled.exists());
    server.restart();
    agent.restart();
    let t = server.wait_task(id, 60, |t| t.state.is_final());
    assert_eq!(t.state, TaskState::Succeeded, "{t:#?}\n{}", agent.log());
    assert_eq!(t.attempts, 1, "delivered from the spool, not run again");
    assert_eq!(t.result.as_ref().unwrap()["entries"], 300);
    let until = Instant::now() + Duration::from_secs(10);
    while spooled.exists() {
        assert!(
            Instant::now() < until,
            "the spool entry stays after delivery"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn lapses_end_lost_failed_or_timed_out(b: Backend) {
    let server = Server::start(b);
    let hand = Hand::enrol(&server, "arles");
    let mut fulfil = on("accounts", Operation::Fulfill);
    fulfil.args = json!({ "orders": [] });
    let mut once = noop();
    once.max_attempts = Some(1);
    let mut short = noop();
    short.timeout_s = Some(1);
    let ids = server.enqueue("arles", vec![fulfil, once, short]);
    let claimed = hand.poll(&server, 0).tasks;
    assert_eq!(claimed.len(), 3);
    let beat = |t: &Assignment| {
        hand.call(
            &server,
            Method::POST,
            &format!("/api/v1/agent/tasks/{}/heartbeat", t.id),
            json!({ "fence": t.fence }),
        )
    };
    // The fulfil is acknowledged, then its agent goes silent: it may have half-run, so it is
    // not repeated.
    assert_eq!(beat(&claimed[0]).0, StatusCode::OK);
    // The short task keeps beating but runs past its time.
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(2500) {
        let (s, v) = beat(&claimed[2]);
        if s != StatusCode::OK {
            assert_eq!(s, StatusCode::CONFLICT, "{v}");
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let lost = server.wait_task(ids[0], 30, |t| t.state.is_final());
    assert_eq!(lost.state, TaskState::Lost, "{lost:#?}");
    assert!(
        lost.error.as_ref().unwrap().contains("not repeated"),
        "{lost:#?}"
    );
    let failed = server.wait_task(ids[1], 30, |t| t.state.is_final());
    assert_eq!(failed.state, TaskState::Failed);
    assert!(
        failed.error.as_ref().unwrap().contains("no attempt left"),
        "{failed:#?}"
    );
    let timed_out = server.wait_task(ids[2], 30, |t| t.state.is_final());
    assert_eq!(timed_out.state, TaskState::Failed);
    assert!(
        timed_out.error.as_ref().unwrap().contains("timed out"),
        "{timed_out:#?}"
    );
    // None of them comes back.
    assert!(hand.poll(&server, 1500).tasks.is_empty());
}
