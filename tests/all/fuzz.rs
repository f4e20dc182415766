//! The API against its own OpenAPI document: schemathesis (PyPI, `scripts/setup.sh`) reads
//! `/api/v1/openapi.json` and sends requests generated from it, valid and invalid, as an
//! administrator and as an agent, on SQLite and PostgreSQL. No answer may be a 5xx or break
//! the document (an undocumented status, content type, header or body shape), invalid input
//! must be refused, and endpoints must not answer without their token. Each run is bounded in
//! time (`IDGARD_FUZZ_SECONDS`, 40 s by default); `IDGARD_FUZZ_SEED` replays a run.

use crate::system::{Backend, Hand, Server, noop};
use reqwest::{Method, StatusCode};
use std::process::Command;

/// What schemathesis checks of every answer.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
response_headers_conformance,response_schema_conformance,negative_data_rejection,ignored_auth";

/// The metrics token of the fuzzed server (its HTTP metrics say which routes answered what).
const METRICS: &str = "fuzz-metrics-4be1d07a";

fn api_survives_fuzzing(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("metrics-token");
    std::fs::write(&token_file, METRICS).unwrap();
    // Polls held briefly: a generated poll must not use up the time budget waiting.
    // Requests without a token or with a wrong one are part of the run: they must all be
    // answered `unauthorized`, not `rate_limited` past the usual 20 a minute.
    let server = Server::start_with(
        b,
        &[
            ("IDGARD_QUEUE_POLL_WAIT_MS", "300"),
            ("IDGARD_LIMITS_FAILED_SIGNINS", "1000000"),
            ("IDGARD_METRICS_TOKEN_FILE", token_file.to_str().unwrap()),
        ],
    );
    let (status, document) = server.raw(Method::GET, "/api/v1/openapi.json", None, None);
    assert_eq!(status, StatusCode::OK, "{document}");
    assert!(
        document["paths"]["/api/v1/agent/poll"]["post"].is_object(),
        "the document describes the agents' endpoints"
    );
    // Something to find: an agent with queued tasks, a job.
    let hand = Hand::enrol(&server, "fuzz");
    server.enqueue("fuzz", vec![noop(), noop()]);
    server.create_job("fuzz", vec![vec![noop()]]);

    // The agent first: the administrator's run resets and removes agents. Revoking tokens
    // comes last, alone: it revokes the very token the run uses once it finds its id.
    fuzz(
        &server,
        "agent",
        &hand.token,
        &["--exclude-path-regex", "^/api/v1/(?!agent/|enrol)"],
        40,
    );
    fuzz(
        &server,
        "administrator",
        &server.admin,
        &[
            "--exclude-path-regex",
            "^/api/v1/agent/",
            "--exclude-operation-id",
            "revoke_admin_token",
        ],
        40,
    );
    fuzz(
        &server,
        "administrator (revoking tokens)",
        &server.admin,
        &["--include-operation-id", "revoke_admin_token"],
        10,
    );

    // The runs got past the tokens: most routes answered a success to generated requests.
    let (status, _, text) = server.get_text("/metrics", Some(METRICS));
    assert_eq!(status, StatusCode::OK, "{text}");
    let succeeded = routes_answering_2xx(&text);
    assert!(
        succeeded.len() >= MIN_ROUTES_SUCCEEDING,
        "only {} routes answered a success: {succeeded:?}",
        succeeded.len()
    );
    eprintln!("{} routes answered a success", succeeded.len());

    let log = server.log();
    assert!(!log.contains("panicked"), "the server panicked:\n{log}");
    let (status, body) = server.raw(Method::GET, "/readyz", None, None);
    assert_eq!(status, StatusCode::OK, "the server answers on: {body}");
}

/// Fewer routes answering a success means the runs stopped at the tokens (or at 404s); 30
/// to 32 of the 57 operations' routes do on SQLite and PostgreSQL (2026-11-29).
const MIN_ROUTES_SUCCEEDING: usize = 24;

/// The routes with a 2xx among `idgard_http_requests_total{method,route,status}`.
fn routes_answering_2xx(metrics: &str) -> std::collections::BTreeSet<String> {
    metrics
        .lines()
        .filter(|l| l.starts_with("idgard_http_requests_total{") && l.contains("status=\"2"))
        .filter_map(|l| {
            let route = l.split("route=\"").nth(1)?.split('"').next()?;
            let method = l.split("method=\"").nth(1)?.split('"').next()?;
            route
                .starts_with("/api/v1/")
                .then(|| format!("{method} {route}"))
        })
        .collect()
}

/// One schemathesis run with `token`, on the operations `select` picks, for at most `seconds`
/// (`IDGARD_FUZZ_SECONDS` overrides it).
fn fuzz(server: &Server, who: &str, token: &str, select: &[&str], seconds: u32) {
    let seconds = std::env::var("IDGARD_FUZZ_SECONDS").unwrap_or_else(|_| seconds.to_string());
    let seed = std::env::var("IDGARD_FUZZ_SEED").unwrap_or_else(|_| "20261129".into());
    let report = tempfile::tempdir().unwrap();
    let out = Command::new(idgard_tests::root().join("target/py-venv/bin/schemathesis"))
        .current_dir(report.path())
        .arg("--config-file")
        .arg(idgard_tests::root().join("tests/fuzz/schemathesis.toml"))
        .args(["run", &format!("{}/api/v1/openapi.json", server.url)])
        .args(select)
        .args(["--url", &server.url, "--tls-verify", "false"])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--checks", CHECKS])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-time", &seconds, "--seed", &seed])
        .args(["--workers", "1", "--request-timeout", "10"])
        .args(["--max-examples", "200", "--no-color"])
        .args(["--generation-database", "none"])
        .args(["--generation-with-security-parameters", "false"])
        .env("SCHEMATHESIS_HOOKS", "")
        .output()
        .expect("schemathesis from the tests' Python (scripts/setup.sh)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "schemathesis, as {who}, found answers that break the API's document (seed {seed}):\n{text}"
    );
    // A run that tested nothing would pass too: it must have sent requests
    // ("Test cases: N generated, N passed, ...").
    let passed = text
        .lines()
        .find(|l| l.contains(" generated, "))
        .and_then(|l| l.split(", ").find_map(|p| p.strip_suffix(" passed")))
        .and_then(|n| n.trim().parse::<u64>().ok());
    assert!(
        passed.is_some_and(|n| n > 0),
        "schemathesis, as {who}, tested nothing:\n{text}"
    );
    eprintln!("schemathesis as {who}:\n{text}");
}

crate::system::on_both!(api_survives_fuzzing);
