//! `/metrics`: behind its own token, parsed by the Prometheus project's OpenMetrics parser,
//! with figures that follow what the queue did, on SQLite and PostgreSQL.

use crate::system::{Agent, Backend, Hand, Server, noop, on};
use idgard_protocol::*;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::io::Write as _;
use std::process::{Command, Stdio};

const TOKEN: &str = "scrape-7f3a9c1e5b2d";

/// The samples of an exposition, read by `tests/metrics/parse.py`: "name {labels} value".
fn parse(text: &str) -> Vec<String> {
    let mut child = Command::new(idgard_tests::python())
        .arg(idgard_tests::root().join("tests/metrics/parse.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the tests' Python (scripts/setup.sh)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the OpenMetrics parser refused the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The value of the sample `name` with exactly `labels` (JSON, keys sorted), if any.
fn value(samples: &[String], name: &str, labels: &str) -> Option<f64> {
    let head = format!("{name} {labels} ");
    samples
        .iter()
        .find_map(|s| s.strip_prefix(&head))
        .map(|v| v.parse().unwrap())
}

fn scrape(server: &Server) -> Vec<String> {
    let (status, kind, text) = server.get_text("/metrics", Some(TOKEN));
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    parse(&text)
}

fn figures_follow_the_queue(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("metrics-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let server = Server::start_with(
        b,
        &[("IDGARD_METRICS_TOKEN_FILE", token_file.to_str().unwrap())],
    );
    let (s, _, _) = server.get_text("/metrics", None);
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _, _) = server.get_text("/metrics", Some("not-the-token-at-all"));
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _, _) = server.get_text("/metrics", Some(&server.admin));
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "an admin token is not the metrics token"
    );

    let hand = Hand::enrol(&server, "vannes");
    server.enqueue("vannes", vec![noop(), noop()]);
    let m = scrape(&server);
    assert_eq!(
        value(&m, "idgard_queue_tasks", r#"{"state": "queued"}"#),
        Some(2.0),
        "{m:#?}"
    );
    assert_eq!(value(&m, "idgard_agents", "{}"), Some(1.0), "{m:#?}");

    let tasks = hand.poll(&server, 5000).tasks;
    assert_eq!(tasks.len(), 2);
    let (s, v) = hand.complete(&server, tasks[0].id, tasks[0].fence, json!({}));
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = hand.call(
        &server,
        Method::POST,
        &format!("/api/v1/agent/tasks/{}/complete", tasks[1].id),
        json!({ "fence": tasks[1].fence,
                "outcome": { "status": "failed", "error": "no", "retryable": false } }),
    );
    assert_eq!(s, StatusCode::OK, "{v}");
    let mut spec = noop();
    spec.max_attempts = Some(1);
    let job = server.create_job("vannes", vec![vec![spec]]);

    let m = scrape(&server);
    let finished = |state: &str| {
        value(
            &m,
            "idgard_tasks_finished_total",
            &format!(r#"{{"operation": "noop", "state": "{state}"}}"#),
        )
    };
    assert_eq!(finished("succeeded"), Some(1.0), "{m:#?}");
    assert_eq!(finished("failed"), Some(1.0), "{m:#?}");
    assert_eq!(
        value(
            &m,
            "idgard_task_latency_seconds_count",
            r#"{"operation": "noop"}"#
        ),
        Some(2.0),
        "{m:#?}"
    );
    assert_eq!(
        value(&m, "idgard_queue_tasks", r#"{"state": "queued"}"#),
        Some(1.0)
    );
    assert_eq!(
        value(&m, "idgard_runs", r#"{"state": "running"}"#),
        Some(1.0),
        "{m:#?}"
    );
    assert_eq!(value(&m, "idgard_agents_online", "{}"), Some(1.0), "{m:#?}");
    assert_eq!(value(&m, "idgard_mail_waiting", "{}"), Some(0.0));
    // Requests are counted by route pattern and status, and timed.
    let poll = r#"{"method": "POST", "route": "/api/v1/agent/poll""#;
    assert_eq!(
        value(
            &m,
            "idgard_http_requests_total",
            &format!(r#"{poll}, "status": "200"}}"#),
        ),
        Some(1.0),
        "{m:#?}"
    );
    let complete =
        r#"{"method": "POST", "route": "/api/v1/agent/tasks/{id}/complete", "status": "200"}"#;
    assert_eq!(
        value(&m, "idgard_http_requests_total", complete),
        Some(2.0),
        "{m:#?}"
    );
    assert_eq!(
        value(
            &m,
            "idgard_http_requests_total",
            r#"{"method": "GET", "route": "/metrics", "status": "401"}"#
        ),
        Some(3.0),
        "{m:#?}"
    );
    assert_eq!(
        value(
            &m,
            "idgard_http_request_duration_seconds_count",
            &format!("{poll}}}")
        ),
        Some(1.0),
        "{m:#?}"
    );

    // A lease that lapses is counted.
    let lapsing = hand.poll(&server, 5000).tasks;
    assert_eq!(lapsing.len(), 1);
    let ended = server.wait_job(job.id, 30);
    assert_eq!(
        ended.state,
        JobState::Failed,
        "never acknowledged: {ended:#?}"
    );
    let m = scrape(&server);
    assert_eq!(
        value(&m, "idgard_lease_lapses_total", "{}"),
        Some(1.0),
        "{m:#?}"
    );
    assert_eq!(
        value(&m, "idgard_runs", r#"{"state": "failed"}"#),
        Some(1.0),
        "{m:#?}"
    );
    assert_eq!(
        value(&m, "idgard_queue_tasks", r#"{"state": "queued"}"#),
        None
    );
}

mod figures_follow_the_queue {
    #[test]
    fn sqlite() {
        super::figures_follow_the_queue(super::Backend::Sqlite)
    }
    #[test]
    fn postgres() {
        super::figures_follow_the_queue(super::Backend::Postgres)
    }
}

/// Without a token, `/metrics` is not there; the log is JSON lines when asked.
#[test]
fn metrics_are_off_without_a_token_and_logs_can_be_json() {
    let server = Server::start_with(Backend::Sqlite, &[("IDGARD_LOG_FORMAT", "json")]);
    let (s, _, text) = server.get_text("/metrics", Some(TOKEN));
    assert_eq!(s, StatusCode::NOT_FOUND, "{text}");
    assert!(text.contains("token_file"), "{text}");
    let log = server.log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let listening = lines
        .iter()
        .find(|l| l["fields"]["message"] == "listening")
        .unwrap_or_else(|| panic!("no listening line in\n{log}"));
    assert_eq!(listening["level"], "INFO");
    assert!(
        listening["fields"]["url"]
            .as_str()
            .unwrap()
            .starts_with("https://")
    );
}

/// A real agent's figures (a CSV export it ran) reach `/metrics` through its polls.
#[test]
fn an_agents_figures_travel_with_its_polls() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("metrics-token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let server = Server::start_with(
        Backend::Sqlite,
        &[("IDGARD_METRICS_TOKEN_FILE", token_file.to_str().unwrap())],
    );
    let hr = dir.path().join("hr");
    std::fs::create_dir_all(&hr).unwrap();
    crate::pipeline::write_hr(&hr, &["E1,Zoé,Martin,Sales,active"]);
    let people = crate::pipeline::people_connection(&hr);
    let agent = Agent::start_with(&server, "brest", &[("people.toml", people)]);
    let job = server.create_job("brest", vec![vec![on("people", Operation::Export)]]);
    let job = server.wait_job(job.id, 60);
    assert_eq!(job.state, JobState::Succeeded, "{job:#?}\n{}", agent.log());
    let labels = r#"{"agent": "brest", "connection": "people", "operation": "export"}"#;
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let m = scrape(&server);
        if value(&m, "idgard_agent_connector_runs_total", labels) == Some(1.0) {
            assert_eq!(
                value(&m, "idgard_agent_connector_failures_total", labels),
                Some(0.0)
            );
            let seconds = value(&m, "idgard_agent_connector_run_seconds_total", labels).unwrap();
            assert!(seconds > 0.0, "{m:#?}");
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "no figures from the agent: {m:#?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}
