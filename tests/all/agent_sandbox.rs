//! The hostile test guest run by a real agent process: a connector that sleeps, floods its log
//! or hoards file handles ends by its deadline or its limits, is cancelled promptly, does not
//! stop the agent's shutdown, and leaves the agent's memory bounded and its other connections
//! working.

use crate::system::{Agent, Backend, Server, on};
use idgard_protocol::{JobState, Operation, TaskState, TaskView};
use reqwest::Method;
use std::time::{Duration, Instant};

/// How far past its deadline a stopped task may end: heartbeats, the completion round trip.
const MARGIN: Duration = Duration::from_secs(8);

fn hostile(
    name: &str,
    settings: &str,
    limits: &str,
    data: Option<&std::path::Path>,
) -> (String, String) {
    let grant = data.map_or(String::new(), |d| {
        std::fs::create_dir_all(d).unwrap();
        format!(
            "[grants.folders.data]\npath = \"{}\"\naccess = \"read-write\"\n",
            d.display()
        )
    });
    (
        format!("{name}.toml"),
        format!(
            "name = \"{name}\"\nconnector = \"hostile\"\n[settings]\n{settings}\n[limits]\n{limits}\n{grant}"
        ),
    )
}

fn final_state(server: &Server, id: i64) -> TaskView {
    server.wait_task(id, 120, |t| t.state.is_final())
}

#[test]
fn a_hostile_connector_cannot_hurt_a_running_agent() {
    let server = Server::start(Backend::Sqlite);
    let scratch = tempfile::tempdir().unwrap();
    let files = [
        hostile("sleeper", "mode = \"sleep\"", "deadline_secs = 2", None),
        hostile("napper", "mode = \"sleep\"", "", None),
        hostile("logger", "mode = \"log-empty\"\ncount = 20000000", "", None),
        hostile(
            "holder",
            "mode = \"hold-files\"\npath = \"/grants/data\"\ncount = 100000",
            "max_handles = 64",
            Some(&scratch.path().join("holder")),
        ),
    ];
    let files: Vec<(&str, String)> = files.iter().map(|(f, t)| (f.as_str(), t.clone())).collect();
    let mut agent = Agent::start_with(&server, "nantes", &files);

    // A sleeping connector ends at its deadline while another connection's export goes through.
    let sleeper = server.enqueue("nantes", vec![on("sleeper", Operation::Export)])[0];
    let other = server.enqueue("nantes", vec![on("demo-hr", Operation::Export)])[0];
    server.wait_task(sleeper, 30, |t| t.state == TaskState::Running);
    let started = Instant::now();
    let t = final_state(&server, sleeper);
    assert_eq!(t.state, TaskState::Failed, "{t:#?}\n{}", agent.log());
    assert!(
        t.error
            .as_deref()
            .unwrap_or("")
            .contains("deadline exceeded"),
        "{t:#?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2) + MARGIN,
        "{:?}",
        started.elapsed()
    );
    assert_eq!(final_state(&server, other).state, TaskState::Succeeded);

    // File handles are capped per run; the other connection still works meanwhile.
    let holder = server.enqueue("nantes", vec![on("holder", Operation::Export)])[0];
    let other = server.enqueue("nantes", vec![on("demo-hr", Operation::Export)])[0];
    let t = final_state(&server, holder);
    assert_eq!(t.state, TaskState::Failed, "{t:#?}");
    assert!(
        t.error
            .as_deref()
            .unwrap_or("")
            .contains("open handles limit exceeded"),
        "{t:#?}"
    );
    assert_eq!(final_state(&server, other).state, TaskState::Succeeded);

    // A flood of empty log lines is capped by the host: the task is neither starved of
    // heartbeats nor run again, and the agent's memory stays small.
    let logger = server.enqueue("nantes", vec![on("logger", Operation::Export)])[0];
    let t = final_state(&server, logger);
    assert_eq!(t.state, TaskState::Succeeded, "{t:#?}\n{}", agent.log());
    assert_eq!(t.attempts, 1, "the task was handed out again: {t:#?}");
    let peak = agent.peak_rss_mib();
    println!("agent peak RSS after the hostile runs: {peak} MiB");
    assert!(peak < 1024, "the agent grew to {peak} MiB");

    // Cancelling a job stops a connector that sleeps with no deadline in sight.
    let job = server.create_job("nantes", vec![vec![on("napper", Operation::Export)]]);
    let napper = job.tasks[0].id;
    server.wait_task(napper, 30, |t| t.state == TaskState::Running);
    let started = Instant::now();
    let j: idgard_protocol::JobView = server
        .admin::<(), _>(
            Method::POST,
            &format!("/api/v1/jobs/{}/cancel", job.id),
            None,
        )
        .unwrap();
    assert_eq!(j.state, JobState::Cancelled);
    assert_eq!(final_state(&server, napper).state, TaskState::Cancelled);
    assert!(
        started.elapsed() < MARGIN,
        "cancelled after {:?}",
        started.elapsed()
    );

    // SIGTERM does not wait for it either: the agent stops within its shutdown grace (10 s).
    let napper = server.enqueue("nantes", vec![on("napper", Operation::Export)])[0];
    server.wait_task(napper, 30, |t| t.state == TaskState::Running);
    let took = agent.terminate();
    assert!(
        took < Duration::from_secs(10) + MARGIN,
        "the agent took {took:?} to stop"
    );
    assert!(
        agent.log().contains("stopped by the agent's shutdown"),
        "{}",
        agent.log()
    );
    assert_eq!(
        server.task(napper).state,
        TaskState::Running,
        "not reported as done"
    );
}

#[test]
fn a_package_that_hangs_at_load_costs_one_deadline_not_one_per_connection() {
    let server = Server::start(Backend::Sqlite);
    let files: Vec<(String, String)> = (1..=5)
        .map(|i| {
            (
                format!("stalled-{i}.toml"),
                format!("name = \"stalled-{i}\"\nconnector = \"stall\"\n"),
            )
        })
        .collect();
    let files: Vec<(&str, String)> = files.iter().map(|(f, t)| (f.as_str(), t.clone())).collect();
    let started = Instant::now();
    let agent = Agent::start_with(&server, "brest", &files);
    while !agent.log().contains("agent starting") {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the agent did not start: {}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // describe gets 10 s at load; five connections of the package wait for it once.
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(10) + MARGIN,
        "the agent started after {took:?}"
    );
    let log = agent.log();
    assert_eq!(log.matches("connection refused").count(), 5, "{log}");
    assert!(log.contains("deadline exceeded"), "{log}");
    // The agent's other connections serve.
    let other = server.enqueue("brest", vec![on("demo-hr", Operation::Export)])[0];
    assert_eq!(final_state(&server, other).state, TaskState::Succeeded);
}

/// A second SIGTERM stops the agent at once, though its shutdown grace would wait for a
/// connector that sleeps; the task is left to the server to hand out again.
#[test]
fn a_second_signal_stops_the_agent_at_once() {
    let server = Server::start(Backend::Sqlite);
    let napper = hostile("napper", "mode = \"sleep\"", "", None);
    let mut agent = Agent::start_with(&server, "vannes", &[(napper.0.as_str(), napper.1)]);
    agent.configure("shutdown_grace_secs = 600\n");
    agent.restart();
    let task = server.enqueue("vannes", vec![on("napper", Operation::Export)])[0];
    server.wait_task(task, 30, |t| t.state == TaskState::Running);
    agent.signal();
    let waiting = Instant::now();
    while !agent.log().contains("signal again to stop at once") {
        assert!(
            waiting.elapsed() < Duration::from_secs(30),
            "{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !agent.exited_within(Duration::from_secs(1)),
        "the first signal waits for the task (grace 600 s)"
    );
    agent.signal();
    assert!(
        agent.exited_within(Duration::from_secs(60)),
        "the second signal stops the agent: {}",
        agent.log()
    );
    assert!(
        agent.log().contains("second signal: stopping at once"),
        "{}",
        agent.log()
    );
    assert_eq!(
        server.task(task).state,
        TaskState::Running,
        "left to the server"
    );
}
