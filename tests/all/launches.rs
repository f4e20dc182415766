//! Runs launched from the browser through the agent, end to end: the real server hands the
//! real agent a signed launch on its held poll; the agent checks it against the key it pinned at
//! enrolment and against its own `launchable` list, logs who launched what, and answers. A job
//! off the list is refused with the agent's reason; a launch nobody picks up says so.

use crate::pipeline::{accounts_file_connection, people_connection, write_hr};
use crate::system::{Agent, Backend, Server, on};
use idgard_protocol::{AgentView, JobState, LaunchState, LaunchView, Operation, RunJob, TaskState};
use reqwest::Method;
use serde_json::Value;
use std::time::{Duration, Instant};

const RULES: &str = r#"
version = 1
[identities]
connection = "people"
[[targets]]
connection = "directory"
key = 'identity.first_name.lowerAscii() + "." + identity.last_name.lowerAscii()'
correlation = { identity = "key", account = "account.employee_id" }
[targets.attributes]
employee_id = "identity.key"
[[jobs]]
name = "daily"
agent = "lyon"
connections = ["people", "directory"]
[[jobs]]
name = "weekly"
agent = "lyon"
connections = ["people"]
"#;

fn launch(server: &Server, job: &str) -> LaunchView {
    let run = RunJob {
        job: job.into(),
        incremental: false,
        dry_run: false,
    };
    server
        .admin(Method::POST, "/api/v1/launches", Some(&run))
        .unwrap()
}

/// Waits until the launch leaves `waiting` and `delivered`.
fn answered(server: &Server, agent: &Agent, id: &str, secs: u64) -> LaunchView {
    let until = Instant::now() + Duration::from_secs(secs);
    loop {
        let l: LaunchView = server
            .admin::<(), _>(Method::GET, &format!("/api/v1/launches/{id}"), None)
            .unwrap();
        // An accepted launch records its run a moment after its answer: wait for both.
        let starting = l.state == LaunchState::Accepted && l.job_id.is_none() && l.reason.is_none();
        if !matches!(l.state, LaunchState::Waiting | LaunchState::Delivered) && !starting {
            return l;
        }
        assert!(
            Instant::now() < until,
            "launch {id} still {:?} after {secs} s\n--- agent log\n{}",
            l.state,
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_run_launched_from_the_browser_goes_through_its_agent() {
    let tmp = tempfile::tempdir().unwrap();
    let (hr, target) = (tmp.path().join("hr"), tmp.path().join("directory"));
    std::fs::create_dir_all(&hr).unwrap();
    std::fs::create_dir_all(&target).unwrap();
    write_hr(
        &hr,
        &["E1,Zoé,Martin,Sales,active", "E2,Paul,Durand,IT,active"],
    );
    std::fs::write(target.join("accounts.csv"), "login,employee_id\n").unwrap();
    let rules = tmp.path().join("rules.toml");
    std::fs::write(&rules, RULES).unwrap();
    let server = Server::start_with(
        Backend::Sqlite,
        &[
            ("IDGARD_RULES", rules.to_str().unwrap()),
            ("IDGARD_QUEUE_LAUNCH_TTL_MS", "3000"),
        ],
    );
    let mut agent = Agent::start_with(
        &server,
        "lyon",
        &[
            ("people.toml", people_connection(&hr)),
            ("directory.toml", accounts_file_connection(&target)),
        ],
    );
    agent.configure("launchable = [\"daily\"]\n");
    agent.restart();

    // On the list: accepted, and the run it starts succeeds.
    let sent = launch(&server, "daily");
    let l = answered(&server, &agent, &sent.id, 30);
    assert_eq!(l.state, LaunchState::Accepted, "{l:?}\n{}", agent.log());
    let job = server.wait_job(l.job_id.expect("the run started"), 60);
    assert_eq!(job.state, JobState::Succeeded, "{job:#?}");
    let log = agent.log();
    assert!(
        log.contains("launch accepted") && log.contains("launched job `daily`"),
        "{log}"
    );
    assert!(
        log.contains(&l.user),
        "the agent logs who launched it: {log}"
    );

    // Off the list: refused with the agent's reason, and nothing runs.
    let sent = launch(&server, "weekly");
    let l = answered(&server, &agent, &sent.id, 30);
    assert_eq!(l.state, LaunchState::Refused, "{l:?}");
    assert!(l.reason.as_deref().unwrap().contains("launchable"), "{l:?}");
    assert_eq!(l.job_id, None);
    assert!(agent.log().contains("launch refused"), "{}", agent.log());

    // Both answers are in the audit trail, in the agent's name.
    let events: Vec<Value> = server
        .admin::<(), _>(Method::GET, "/api/v1/audit?action=launch.", None)
        .unwrap();
    for (action, outcome) in [("launch.accept", "done"), ("launch.refuse", "refused")] {
        assert!(
            events.iter().any(|e| e["action"] == action
                && e["outcome"] == outcome
                && e["user"] == "agent:lyon"),
            "{action}: {events:#?}"
        );
    }

    // The agents page's figures: the version it reported and the tasks it holds now.
    let slow = server.enqueue("lyon", vec![on("slow", Operation::Export)])[0];
    server.wait_task(slow, 30, |t| t.state == TaskState::Running);
    let lyon: AgentView = server
        .admin::<(), _>(Method::GET, "/api/v1/agents/lyon", None)
        .unwrap();
    assert_eq!(lyon.version.as_deref(), Some(env!("CARGO_PKG_VERSION")));
    assert_eq!(lyon.running, 1, "{lyon:?}");
    // The connectors page's figures: what each connector asks for beside what is granted.
    let people = lyon
        .connections
        .iter()
        .find(|c| c.name == "people")
        .unwrap();
    assert!(!people.contract.is_empty(), "{people:?}");
    assert!(
        people
            .asks
            .iter()
            .any(|a| a.starts_with("folder `source` (read-only)")),
        "{people:?}"
    );
    assert_eq!(
        people.grants,
        [format!("folder `source`: {} (read-only)", hr.display())],
        "{people:?}"
    );
    // Testing a connection is a run of one task on its agent.
    let test: idgard_protocol::JobView = server
        .admin::<(), _>(Method::POST, "/api/v1/connections/people/test", None)
        .unwrap();
    let test = server.wait_job(test.id, 30);
    assert_eq!(test.state, JobState::Succeeded, "{test:#?}");
    assert_eq!(test.tasks[0].operation, Operation::TestConnection);

    // The agent is down: nobody picks the launch up, and the UI says so once it expires.
    agent.kill();
    let sent = launch(&server, "daily");
    let l = answered(&server, &agent, &sent.id, 30);
    assert_eq!(l.state, LaunchState::NotPickedUp, "{l:?}");
    assert_eq!(l.job_id, None);
}
