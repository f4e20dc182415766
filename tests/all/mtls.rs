//! Mutual TLS for agents: with `tls.agent_ca`, an agent's requests need a client certificate of
//! that authority naming the agent; administrators and browsers present none and are served.

use crate::system::{Agent, Backend, Server, noop};
use idgard_protocol::{AgentView, TaskState};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

/// Points the agent's configuration at `<name>.pem` and `<name>.key` of `certs` (or at none).
fn present(agent: &Agent, certs: &Path, name: Option<&str>) {
    let path = agent.dir.join("agent.toml");
    let mut text: String = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("tls_"))
        .map(|l| format!("{l}\n"))
        .collect();
    if let Some(name) = name {
        text.push_str(&format!(
            "tls_certificate = \"{}\"\ntls_key = \"{}\"\n",
            certs.join(format!("{name}.pem")).display(),
            certs.join(format!("{name}.key")).display()
        ));
    }
    std::fs::write(path, text).unwrap();
}

fn wait_log(agent: &Agent, text: &str) {
    let until = Instant::now() + Duration::from_secs(30);
    while !agent.log().contains(text) {
        assert!(Instant::now() < until, "no `{text}` in:\n{}", agent.log());
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn agents_must_present_a_certificate_naming_them_when_the_server_asks() {
    let certs = tempfile::tempdir().unwrap();
    idgard_tests::slapd::client_certificates(certs.path(), &["lyon", "nimes"]);
    let ca = certs.path().join("ca.pem");
    let server = Server::start_with(
        Backend::Sqlite,
        &[("IDGARD_TLS_AGENT_CA", ca.to_str().unwrap())],
    );

    // Enrolment takes the one-time token alone; what follows needs the certificate.
    let mut agent = Agent::start(&server, "lyon");
    wait_log(&agent, "presented none");
    let view: AgentView = server
        .admin::<(), _>(Method::GET, "/api/v1/agents/lyon", None)
        .unwrap();
    assert!(
        view.connections.is_empty(),
        "no hello got through: {view:#?}"
    );

    // Another agent's certificate is refused, naming what it names.
    present(&agent, certs.path(), Some("nimes"));
    agent.restart();
    wait_log(&agent, "names nimes, not agent `lyon`");

    // Its own works: tasks run.
    present(&agent, certs.path(), Some("lyon"));
    agent.restart();
    let task = server.enqueue("lyon", vec![noop()])[0];
    let t = server.wait_task(task, 60, |t| t.state.is_final());
    assert_eq!(t.state, TaskState::Succeeded, "{t:#?}\n{}", agent.log());

    // Administrators present no certificate and are served (every call above), and an
    // access token without a certificate is refused even when valid.
    let creds = {
        let token = server.add_agent("brest");
        let (s, v) = server.raw(
            Method::POST,
            "/api/v1/enrol",
            None,
            Some(json!({ "token": token })),
        );
        assert_eq!(s, StatusCode::OK, "{v}");
        v
    };
    let (s, v) = server.raw(
        Method::POST,
        "/api/v1/agent/token",
        None,
        Some(json!({ "agent_id": creds["agent_id"], "client_secret": creds["client_secret"] })),
    );
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    assert!(v.to_string().contains("presented none"), "{v}");
}
