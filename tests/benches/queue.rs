//! The task queue's benchmark: the release `idgard-server` in its own process, simulated agents
//! in this one, over HTTPS on loopback. Prints
//! - tasks/s sustained (claim → complete, no-op tasks) on SQLite and on PostgreSQL;
//! - p50 / p99 from enqueue to "the agent has it", with idle long-polling agents;
//! - the server's RSS with 1,000 and 10,000 idle long-polling agents;
//! - as an anchor, graphile-worker (npm) processing the same number of no-op jobs on the same
//!   PostgreSQL, when `scripts/bench-queue.sh` installed it.
//!
//! Run with `bash scripts/bench-queue.sh` (it builds the release server first). Settings:
//! IDGARD_BENCH_TASKS (20000), IDGARD_BENCH_AGENTS (8), IDGARD_BENCH_IDLE ("1000,10000"),
//! IDGARD_BENCH_SAMPLES (300).

mod support;

use idgard_protocol::*;
use reqwest::Method;
use serde_json::json;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use support::queue::{Server, create_database, start};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Enqueue → the idle agent's poll returns it; p50 and p99 in ms.
async fn latency(server: Arc<Server>, samples: usize) -> (f64, f64) {
    const AGENTS: usize = 16;
    let tokens = server.agents("idle", AGENTS).await;
    // Task id → when its poll answer arrived (µs since `origin`).
    let received: Arc<std::sync::Mutex<std::collections::HashMap<i64, u64>>> = Arc::default();
    let origin = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let mut set = tokio::task::JoinSet::new();
    for token in tokens {
        let (server, received, stop) = (server.clone(), received.clone(), stop.clone());
        set.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let v = server
                    .call(
                        Method::POST,
                        "/api/v1/agent/poll",
                        &token,
                        json!({ "capacity": 1, "wait_ms": 2000 }),
                    )
                    .await;
                let at = origin.elapsed().as_micros() as u64;
                let answer: PollAnswer = serde_json::from_value(v).unwrap();
                for t in answer.tasks {
                    received.lock().unwrap().insert(t.id, at);
                    server
                        .call(
                            Method::POST,
                            &format!("/api/v1/agent/tasks/{}/complete", t.id),
                            &token,
                            json!({ "fence": t.fence, "outcome": { "status": "succeeded" } }),
                        )
                        .await;
                }
            }
        });
    }
    // Let every agent's poll settle into waiting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut lat = Vec::with_capacity(samples);
    for seq in 0..samples {
        let agent = format!("idle-{}", seq % AGENTS);
        let sent = origin.elapsed().as_micros() as u64;
        let id = server
            .enqueue(&agent, vec![json!({ "operation": "noop" })])
            .await[0];
        let wait_until = Instant::now() + Duration::from_secs(10);
        let at = loop {
            if let Some(&at) = received.lock().unwrap().get(&id) {
                break at;
            }
            assert!(Instant::now() < wait_until, "task {seq} never arrived");
            tokio::time::sleep(Duration::from_micros(200)).await;
        };
        lat.push((at - sent) as f64 / 1000.0);
        // Idle agents: let the completion and the next poll settle.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::Relaxed);
    set.abort_all();
    lat.sort_by(f64::total_cmp);
    let p = |q: f64| lat[((lat.len() - 1) as f64 * q).round() as usize];
    (p(0.5), p(0.99))
}

/// Server RSS with `n` idle agents, each holding a long poll.
async fn idle_rss(server: Arc<Server>, tokens: &[String]) -> f64 {
    let held = Arc::new(AtomicU64::new(0));
    let mut set = tokio::task::JoinSet::new();
    for token in tokens {
        let (server, token, held) = (server.clone(), token.clone(), held.clone());
        set.spawn(async move {
            held.fetch_add(1, Ordering::Relaxed);
            let _ = server
                .http
                .post(format!("{}/api/v1/agent/poll", server.url))
                .bearer_auth(&token)
                .json(&json!({ "capacity": 1, "wait_ms": 60000 }))
                .timeout(Duration::from_secs(90))
                .send()
                .await;
        });
    }
    // Connections open and TLS handshakes finish over a few seconds; then it is idle.
    tokio::time::sleep(Duration::from_secs(5 + tokens.len() as u64 / 1000)).await;
    let rss = server.rss_mib();
    set.abort_all();
    rss
}

fn graphile(database: &str, jobs: usize) -> Option<f64> {
    let script = idgard_tests::root().join("tests/benches/queue-baseline/graphile.cjs");
    let modules = idgard_tests::root().join("target/bench-node/node_modules");
    if !modules.join("graphile-worker").exists() {
        println!("graphile-worker: not installed (scripts/bench-queue.sh installs it); skipped");
        return None;
    }
    let out = Command::new("node")
        .arg(&script)
        .arg(jobs.to_string())
        .env("DATABASE_URL", database)
        .env("NODE_PATH", &modules)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rate = text
        .lines()
        .find_map(|l| l.strip_prefix("jobs/s "))
        .and_then(|r| r.trim().parse().ok());
    if rate.is_none() {
        println!(
            "graphile-worker failed: {}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    rate
}

fn main() {
    let tasks: usize = env_or("IDGARD_BENCH_TASKS", 20_000);
    let agents: usize = env_or("IDGARD_BENCH_AGENTS", 8);
    let samples: usize = env_or("IDGARD_BENCH_SAMPLES", 300);
    let idle: Vec<usize> = std::env::var("IDGARD_BENCH_IDLE")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();

    println!(
        "queue benchmark: {tasks} no-op tasks, {agents} agents, HTTPS on loopback, server in its own process"
    );
    let mut rates = Vec::new();
    for (name, db) in [
        ("SQLite", None),
        ("PostgreSQL", Some(create_database("idgard_bench"))),
    ] {
        let server = Arc::new(start(db));
        let rate = rt.block_on(support::queue::throughput(
            server.clone(),
            "worker",
            tasks,
            agents,
        ));
        let (p50, p99) = rt.block_on(latency(server.clone(), samples));
        println!(
            "{name:<11} {rate:>8.0} tasks/s (claim → complete)   enqueue → agent: p50 {p50:.2} ms, p99 {p99:.2} ms   (targets: ≥ 3000 tasks/s on SQLite, p99 ≤ 20 ms)"
        );
        rates.push((name, rate));
    }
    let baseline_db = create_database("idgard_bench_graphile");
    if let Some(g) = graphile(&baseline_db, tasks) {
        let pg = rates[1].1;
        println!(
            "graphile-worker {g:>8.0} jobs/s on the same PostgreSQL (in-process worker, no network hop); idgard/graphile = {:.2}",
            pg / g
        );
    }
    if !idle.is_empty() {
        let server = Arc::new(start(None));
        let base = server.rss_mib();
        let max = *idle.iter().max().unwrap();
        let tokens = rt.block_on(server.agents("idle", max));
        let after_enrol = server.rss_mib();
        println!(
            "server RSS: {base:.1} MiB at start, {after_enrol:.1} MiB after enrolling {max} agents"
        );
        for n in idle {
            let rss = rt.block_on(idle_rss(server.clone(), &tokens[..n]));
            println!(
                "server RSS with {n:>6} idle long-polling agents: {rss:.1} MiB (target for 10000: ≤ 512 MiB)"
            );
        }
    }
}
