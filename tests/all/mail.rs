//! Mail notifications against a real SMTP server (aiosmtpd) on loopback: STARTTLS and implicit
//! TLS with a login, events gathered into one mail per kind and period, an offline agent, and
//! an SMTP server that is down (the run is not held back; the mail waits and goes later).

use crate::harness::browser::free_port;
use crate::system::{Backend, Hand, Server, noop};
use idgard_protocol::*;
use idgard_tests::mail::{self, SmtpServer, Tls};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;

/// A one-step job on `agent` that `hand` fails with `error`; the job, failed.
fn failed_run(server: &Server, hand: &Hand, agent: &str, error: &str) -> JobView {
    let mut spec = noop();
    spec.max_attempts = Some(1);
    let job = server.create_job(agent, vec![vec![spec]]);
    let task = hand.poll(server, 5000).tasks.remove(0);
    let (s, v) = hand.call(
        server,
        Method::POST,
        &format!("/api/v1/agent/tasks/{}/complete", task.id),
        json!({ "fence": task.fence,
                "outcome": { "status": "failed", "error": error, "retryable": false } }),
    );
    assert_eq!(s, StatusCode::OK, "{v}");
    let job = server.wait_job(job.id, 30);
    assert_eq!(job.state, JobState::Failed, "{job:#?}");
    job
}

/// The value of header `name` in a received message.
fn header<'a>(message: &'a str, name: &str) -> &'a str {
    message
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
        .unwrap_or_else(|| panic!("no {name} in\n{message}"))
}

fn failed_runs_are_gathered_into_one_mail_per_period(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let smtp = SmtpServer::start(dir.path(), port, Tls::Starttls);
    let env = mail::server_env(dir.path(), port, Tls::Starttls, 8);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Server::start_with(b, &env);
    let hand = Hand::enrol(&server, "rennes");

    let first = failed_run(&server, &hand, "rennes", "export: the HR folder is empty");
    let got = smtp.wait(30, |m| !m.is_empty());
    let m = &got[0];
    assert_eq!(header(m, "Subject"), "idgard: 1 run failed", "{m}");
    assert_eq!(header(m, "X-Test-User"), mail::USER, "logged in");
    assert_eq!(header(m, "X-Test-Tls"), "yes", "over STARTTLS");
    assert_eq!(
        header(m, "X-Test-Rcpt-To"),
        "iam@example.org, audit@example.org"
    );
    let body = mail::decoded(m);
    assert!(body.contains(&format!("run {} (", first.id)), "{body}");
    assert!(body.contains("export: the HR folder is empty"), "{body}");

    // Two more failures within the period: no mail until it has passed, then one for both.
    let second = failed_run(&server, &hand, "rennes", "fulfil: the directory refused");
    let third = failed_run(&server, &hand, "rennes", "fulfil: the directory refused");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        smtp.messages().len(),
        1,
        "one mail per period: {:#?}",
        smtp.messages()
    );
    let got = smtp.wait(30, |m| m.len() == 2);
    let m = mail::decoded(&got[1]);
    assert_eq!(header(&m, "Subject"), "idgard: 2 runs failed", "{m}");
    for job in [&second, &third] {
        assert!(m.contains(&format!("run {} (", job.id)), "{m}");
    }
    assert!(
        !m.contains(&format!("run {} (", first.id)),
        "reported once: {m}"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(smtp.messages().len(), 2, "nothing new, no mail");
    assert!(
        !server.log().contains(mail::PASSWORD),
        "the password is never logged"
    );
}

mod failed_runs_are_gathered_into_one_mail_per_period {
    #[test]
    fn sqlite() {
        super::failed_runs_are_gathered_into_one_mail_per_period(super::Backend::Sqlite)
    }
    #[test]
    fn postgres() {
        super::failed_runs_are_gathered_into_one_mail_per_period(super::Backend::Postgres)
    }
}

/// With the SMTP server down, a failed run still ends at once; its mail waits in the database
/// and goes when the server is back (implicit TLS here). An agent silent past the threshold is
/// reported offline.
#[test]
fn mail_waits_for_a_server_that_is_down_and_offline_agents_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut env = mail::server_env(dir.path(), port, Tls::Implicit, 1);
    env.push(("IDGARD_MAIL_AGENT_OFFLINE_S", "3".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Server::start_with(Backend::Sqlite, &env);
    let hand = Hand::enrol(&server, "quimper");
    let started = std::time::Instant::now();
    let job = failed_run(&server, &hand, "quimper", "the share is unreachable");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "a run is never held back by mail"
    );
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while !server.log().contains("could not be handed over") {
        assert!(
            std::time::Instant::now() < until,
            "no failed delivery logged:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let smtp = SmtpServer::start(dir.path(), port, Tls::Implicit);
    let got = smtp.wait(60, |m| {
        m.iter()
            .any(|m| m.contains("Subject: idgard: 1 run failed"))
            && m.iter()
                .any(|m| m.contains("Subject: idgard: agent quimper is offline"))
    });
    let run = got.iter().find(|m| m.contains("run failed")).unwrap();
    assert!(
        mail::decoded(run).contains(&format!("run {} (", job.id)),
        "{run}"
    );
    assert_eq!(header(run, "X-Test-User"), mail::USER);
    let offline = got.iter().find(|m| m.contains("is offline")).unwrap();
    assert!(
        mail::decoded(offline).contains("last heard from at"),
        "{offline}"
    );
    std::thread::sleep(Duration::from_secs(3));
    let again = smtp.messages();
    assert_eq!(
        again.iter().filter(|m| m.contains("is offline")).count(),
        1,
        "an offline agent is reported once: {again:#?}"
    );
}
