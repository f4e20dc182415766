//! Guessing credentials: past 20 failed sign-ins in a minute from one address, failures are
//! answered `rate_limited` and the address may not try a secret again before the minute ends;
//! valid tokens keep working; the server logs the failures in aggregate.

use super::system::{Backend, Hand, Server};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[test]
fn failed_sign_ins_are_limited_and_logged() {
    let server = Server::start(Backend::Sqlite);
    let hand = Hand::enrol(&server, "guessed");
    let mut statuses = Vec::new();
    for i in 0..22 {
        let (s, v) = server.raw(
            Method::POST,
            "/api/v1/agent/token",
            None,
            Some(json!({ "agent_id": hand.id, "client_secret": format!("guess-{i}") })),
        );
        statuses.push((
            s,
            v["error"]["code"].as_str().unwrap_or_default().to_owned(),
        ));
    }
    assert!(
        statuses[..20]
            .iter()
            .all(|(s, c)| *s == StatusCode::UNAUTHORIZED && c == "unauthorized"),
        "{statuses:?}"
    );
    assert!(
        statuses[20..]
            .iter()
            .all(|(s, c)| *s == StatusCode::TOO_MANY_REQUESTS && c == "rate_limited"),
        "{statuses:?}"
    );
    // Wrong administrator tokens from the same address are refused at once too.
    let (s, v) = server.raw(Method::GET, "/api/v1/agents", Some("not-a-token"), None);
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    let (s, v) = server.raw(Method::GET, "/api/v1/agents", Some(&server.admin), None);
    assert_eq!(
        s,
        StatusCode::OK,
        "a valid administrator token is never refused: {v}"
    );
    // An agent's valid access token keeps working: failures of others never lock it out.
    let (s, v) = hand.call(
        &server,
        Method::POST,
        "/api/v1/agent/poll",
        json!({ "capacity": 1, "wait_ms": 0 }),
    );
    assert_eq!(s, StatusCode::OK, "{v}");
    let log = server.log();
    assert!(log.contains("failed sign-ins"), "{log}");
    assert!(!log.contains("guess-"), "a tried secret reached the log");
}
