//! What the API refuses, played by hand over HTTPS on SQLite and PostgreSQL: another agent's
//! tasks, malformed and hostile input of every kind (each a clear 4xx, never a 5xx), and upload
//! chunks out of order or whose checksum does not match.

use crate::system::{Backend, Hand, Server, noop, on, on_both};
use idgard_protocol::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

on_both!(
    an_agent_cannot_touch_another_agents_tasks,
    bad_input_gets_a_clear_4xx,
    uploads_resume_and_checksums_are_checked,
);

fn an_agent_cannot_touch_another_agents_tasks(b: Backend) {
    let server = Server::start(b);
    let a = Hand::enrol(&server, "agent-a");
    let other = Hand::enrol(&server, "agent-b");
    let id = server.enqueue("agent-a", vec![noop()])[0];
    assert!(other.poll(&server, 200).tasks.is_empty());
    let task = a.poll(&server, 0).tasks.remove(0);
    let fence = task.fence;
    for (path, body) in [
        (
            format!("/api/v1/agent/tasks/{id}/heartbeat"),
            json!({ "fence": fence }),
        ),
        (
            format!("/api/v1/agent/tasks/{id}/complete"),
            json!({ "fence": fence, "outcome": { "status": "succeeded" } }),
        ),
        (
            format!("/api/v1/agent/tasks/{id}/uploads"),
            json!({ "fence": fence, "name": "entries", "size": 1, "sha256": "00".repeat(32) }),
        ),
        (
            format!("/api/v1/agent/tasks/{id}/logs"),
            json!({ "fence": fence, "seq": 0, "lines": [] }),
        ),
    ] {
        let (s, v) = other.call(&server, Method::POST, &path, body);
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}: {v}");
    }
    // Agents' tokens do not open the administration API, and the reverse.
    let (s, _) = server.raw(Method::GET, "/api/v1/agents", Some(&a.token), None);
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = server.raw(
        Method::POST,
        "/api/v1/agent/poll",
        Some(&server.admin),
        Some(json!({ "capacity": 1 })),
    );
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = a.complete(&server, id, fence, json!({}));
    assert_eq!(s, StatusCode::OK);
}

fn bad_input_gets_a_clear_4xx(b: Backend) {
    let server = Server::start(b);
    let hand = Hand::enrol(&server, "metz");
    let poll = "/api/v1/agent/poll";
    // What, method, path, token, body, expected status.
    type Case<'a> = (
        &'a str,
        Method,
        String,
        Option<&'a str>,
        Vec<u8>,
        StatusCode,
    );
    let cases: Vec<Case> = vec![
        (
            "malformed JSON",
            Method::POST,
            poll.into(),
            Some(&hand.token),
            b"{\"capacity\": ".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "wrong shape",
            Method::POST,
            poll.into(),
            Some(&hand.token),
            b"{\"capacity\": \"many\"}".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "unknown field",
            Method::POST,
            poll.into(),
            Some(&hand.token),
            b"{\"capacity\": 1, \"x\": 1}".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "an array where an object goes (its items would fill the fields)",
            Method::POST,
            "/api/v1/admin-tokens".into(),
            Some(&server.admin),
            b"[]".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "a NUL character in a path",
            Method::GET,
            "/api/v1/agents/a%00b".into(),
            Some(&server.admin),
            Vec::new(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "oversized body",
            Method::POST,
            poll.into(),
            Some(&hand.token),
            vec![b' '; 2 << 20],
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            "no token",
            Method::POST,
            poll.into(),
            None,
            b"{\"capacity\": 1}".to_vec(),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "forged token",
            Method::POST,
            poll.into(),
            Some("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhZ2VudDoxIn0.c2lnbmF0dXJl"),
            b"{\"capacity\": 1}".to_vec(),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "unknown task",
            Method::POST,
            "/api/v1/agent/tasks/999999/heartbeat".into(),
            Some(&hand.token),
            b"{\"fence\": 1}".to_vec(),
            StatusCode::NOT_FOUND,
        ),
        (
            "not an id",
            Method::POST,
            "/api/v1/agent/tasks/abc/heartbeat".into(),
            Some(&hand.token),
            b"{\"fence\": 1}".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "unknown upload",
            Method::GET,
            "/api/v1/agent/uploads/424242".into(),
            Some(&hand.token),
            vec![],
            StatusCode::NOT_FOUND,
        ),
        (
            "used enrolment token",
            Method::POST,
            "/api/v1/enrol".into(),
            None,
            b"{\"token\": \"0000\"}".to_vec(),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "wrong secret",
            Method::POST,
            "/api/v1/agent/token".into(),
            None,
            format!("{{\"agent_id\": {}, \"client_secret\": \"nope\"}}", hand.id).into_bytes(),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "unknown job",
            Method::GET,
            "/api/v1/jobs/77".into(),
            Some(&server.admin),
            vec![],
            StatusCode::NOT_FOUND,
        ),
        (
            "empty job",
            Method::POST,
            "/api/v1/jobs".into(),
            Some(&server.admin),
            b"{\"agent\": \"metz\", \"steps\": []}".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "unknown endpoint",
            Method::GET,
            "/api/v1/nothing".into(),
            Some(&server.admin),
            vec![],
            StatusCode::NOT_FOUND,
        ),
    ];
    for (what, method, path, token, body, expected) in cases {
        let (s, v) = server.raw_bytes(
            method,
            &path,
            token,
            (!body.is_empty()).then_some(body),
            "application/json",
        );
        assert_eq!(s, expected, "{what}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{what}: no message: {v}"
        );
    }
    // A NUL character in what an agent reports (PostgreSQL keeps none in text) is kept as
    // U+FFFD, not refused: the report is not lost.
    let (s, v) = hand.call(
        &server,
        Method::POST,
        "/api/v1/agent/hello",
        json!({ "version": "1\u{0}", "connections": [], "restarted": false }),
    );
    assert_eq!(s, StatusCode::OK, "{v}");
    let agent: AgentView = server
        .admin(Method::GET, "/api/v1/agents/metz", None::<&()>)
        .unwrap();
    assert_eq!(agent.version.as_deref(), Some("1\u{fffd}"));
    assert!(!server.log().contains("panicked"));
}

fn uploads_resume_and_checksums_are_checked(b: Backend) {
    use sha2::Digest;
    let server = Server::start(b);
    let hand = Hand::enrol(&server, "dijon");
    let id = server.enqueue("dijon", vec![on("hr", Operation::Export)])[0];
    let fence = hand.poll(&server, 0).tasks[0].fence;
    // Three batches of real entries, framed.
    let mut content = Vec::new();
    for b in 0..3 {
        let mut batch = idgard_sdk::wire::BatchBuffer::with_capacity(1024);
        for i in 0..100 {
            let at = batch.begin_entry(
                idgard_sdk::wire::EntryOp::Upsert,
                "person",
                &format!("p{b}-{i}"),
            );
            batch.attribute1("name", "Zoë");
            batch.end_entry(at, 1);
        }
        content.extend_from_slice(&frames::header(batch.entries(), batch.len() as u32));
        content.extend_from_slice(batch.as_bytes());
    }
    let sha = hex::encode(sha2::Sha256::digest(&content));
    let open = |sha: &str| {
        hand.call(
            &server,
            Method::POST,
            &format!("/api/v1/agent/tasks/{id}/uploads"),
            json!({ "fence": fence, "name": "entries", "size": content.len(), "sha256": sha }),
        )
    };
    let (s, v) = open(&sha);
    assert_eq!(s, StatusCode::OK, "{v}");
    let slot = v["id"].as_i64().unwrap();
    let put = |offset: usize, bytes: &[u8]| {
        server.raw_bytes(
            Method::PUT,
            &format!("/api/v1/agent/uploads/{slot}?offset={offset}"),
            Some(&hand.token),
            Some(bytes.to_vec()),
            "application/octet-stream",
        )
    };
    let half = content.len() / 2;
    let (s, v) = put(0, &content[..half]);
    assert_eq!(s, StatusCode::OK, "{v}");
    // A retry of the same chunk is refused with where to go on; asking again resumes.
    let (s, v) = put(0, &content[..half]);
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let (s, v) = open(&sha);
    assert_eq!(
        (s, v["received"].as_u64()),
        (StatusCode::OK, Some(half as u64))
    );
    // Completing before the upload is whole is refused.
    let (s, _) = hand.complete(&server, id, fence, json!({ "upload_id": slot }));
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, v) = put(half, &content[half..]);
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["complete"], true);
    assert_eq!(v["entries"], 300);
    let (s, v) = hand.complete(&server, id, fence, json!({ "upload_id": slot }));
    assert_eq!(s, StatusCode::OK, "{v}");

    // A wrong checksum: the whole upload is refused and the slot emptied.
    let id = server.enqueue("dijon", vec![on("hr", Operation::Export)])[0];
    let fence = hand.poll(&server, 0).tasks[0].fence;
    let (s, v) = hand.call(
        &server,
        Method::POST,
        &format!("/api/v1/agent/tasks/{id}/uploads"),
        json!({ "fence": fence, "name": "entries", "size": content.len(), "sha256": "ab".repeat(32) }),
    );
    assert_eq!(s, StatusCode::OK, "{v}");
    let slot = v["id"].as_i64().unwrap();
    let (s, v) = server.raw_bytes(
        Method::PUT,
        &format!("/api/v1/agent/uploads/{slot}?offset=0"),
        Some(&hand.token),
        Some(content.clone()),
        "application/octet-stream",
    );
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("checksum mismatch")
    );
    let (_, v) = hand.call(
        &server,
        Method::GET,
        &format!("/api/v1/agent/uploads/{slot}"),
        Value::Null,
    );
    assert_eq!(v["received"], 0);
    assert!(!server.log().contains("panicked"));
}

/// A client that sends its whole body before reading (Python's `http.client`, like most) gets
/// the answer to an oversized body, not a reset connection; one announcing more than the server
/// reads on is cut.
#[test]
fn an_oversized_body_is_answered_before_the_connection_closes() {
    let server = Server::start(Backend::Sqlite);
    let script = r#"
import http.client, ssl, sys
port, token, size = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
conn = http.client.HTTPSConnection("127.0.0.1", port, context=ssl._create_unverified_context())
try:
    conn.request("POST", "/api/v1/orders/retry", body=b" " * size,
                 headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    answer = conn.getresponse()
    print(answer.status, answer.read().decode())
except (ConnectionError, ssl.SSLError, http.client.HTTPException) as e:
    print("cut", type(e).__name__)
"#;
    let run = |size: usize| {
        let out = std::process::Command::new("python3")
            .args(["-c", script, &server.port.to_string(), &server.admin])
            .arg(size.to_string())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    for _ in 0..3 {
        let answer = run(3 << 20);
        assert!(
            answer.starts_with("413 ") && answer.contains("\"too_large\""),
            "{answer}"
        );
    }
    assert!(run(64 << 20).starts_with("cut"), "over what is read on");
    // The server serves on.
    let (status, _) = server.raw(Method::GET, "/api/v1/agents", Some(&server.admin), None);
    assert_eq!(status, StatusCode::OK);
}
