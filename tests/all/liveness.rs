//! What the server knows of its agents' liveness (`last_seen` follows their polls, not only
//! their hellos, and stops with them), and how soon it reaches them (a job queued from the
//! command line wakes the poll an agent holds).

use crate::system::{Agent, Backend, Hand, Server};
use idgard_protocol::AgentView;
use reqwest::Method;
use std::time::{Duration, Instant};

fn last_seen(server: &Server, name: &str) -> Option<i64> {
    let agents: Vec<AgentView> = server
        .admin::<(), _>(Method::GET, "/api/v1/agents", None)
        .unwrap();
    agents.into_iter().find(|a| a.name == name)?.last_seen_ms
}

#[test]
fn last_seen_follows_polls_and_stops_with_the_agent() {
    // Polls held 1 s at most: an idle agent polls about once a second.
    let server = Server::start_with(Backend::Sqlite, &[("IDGARD_QUEUE_POLL_WAIT_MS", "1000")]);
    let mut agent = Agent::start(&server, "seen");
    let until = Instant::now() + Duration::from_secs(30);
    let first = loop {
        if let Some(t) = last_seen(&server, "seen") {
            break t;
        }
        assert!(Instant::now() < until, "{}", agent.log());
        std::thread::sleep(Duration::from_millis(50));
    };
    // Polls only from now on: last seen moves (written at most every 5 s).
    loop {
        let now = last_seen(&server, "seen").unwrap();
        if now >= first + 4_000 {
            break;
        }
        assert!(
            Instant::now() < until,
            "last seen stays at the hello while the agent polls\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    agent.kill();
    std::thread::sleep(Duration::from_millis(500));
    let stopped = last_seen(&server, "seen").unwrap();
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(
        last_seen(&server, "seen"),
        Some(stopped),
        "a stopped agent is not seen"
    );
}

#[test]
fn a_job_queued_from_the_command_line_wakes_the_held_poll() {
    // The held poll re-reads the database only after 60 s: only a wake-up answers it sooner.
    let server = Server::start_with(
        Backend::Sqlite,
        &[
            ("IDGARD_QUEUE_POLL_RECHECK_MS", "60000"),
            ("IDGARD_QUEUE_POLL_WAIT_MS", "20000"),
        ],
    );
    let hand = std::sync::Arc::new(Hand::enrol(&server, "vannes"));
    let server = std::sync::Arc::new(server);
    let held = {
        let (server, hand) = (server.clone(), hand.clone());
        std::thread::spawn(move || {
            let started = Instant::now();
            (hand.poll(&server, 20000), started.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let out = server.cli(&["job", "create", "--agent", "vannes", "--step", "noop:x"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (answer, waited) = held.join().unwrap();
    assert_eq!(answer.tasks.len(), 1, "after {waited:?}");
    assert!(
        waited < Duration::from_secs(15),
        "the poll was answered by its own end ({waited:?}), not woken"
    );
}
