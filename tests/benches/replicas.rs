//! Replicas: two `idgard-server` processes on one PostgreSQL behind Debian's haproxy (TCP mode),
//! against one replica, in the same run. Prints
//! - tasks/s (claim → complete, no-op tasks) with one replica reached directly and with two
//!   behind the proxy, and their ratio;
//! - each replica's RSS with N idle agents holding long polls through the proxy (through one
//!   more proxy per 5,000 agents);
//! - the time from killing one replica to every one of the N agents having received a task
//!   queued at that moment (agents whose polls were on the killed replica reconnect through
//!   the proxy; the others are woken across replicas).
//!
//! Run: `cargo build --release -p idgard-server && cargo bench -p idgard-tests --bench replicas`
//! (or both with `--profile dev`). Settings: IDGARD_BENCH_TASKS (10000), IDGARD_BENCH_AGENTS (8),
//! IDGARD_BENCH_HELD (1000).

mod support;

use idgard_protocol::*;
use idgard_tests::haproxy::Proxy;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::queue::{Server, create_database, start, throughput};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Most clients one haproxy takes here: it needs two descriptors per client, and the hard
/// descriptor limit is 20,000. More agents go through more proxies, as they would through more
/// load balancers.
const PER_PROXY: usize = 5_000;

/// Agents polling through `via` without end (a failed poll is asked again after 100 ms), one per
/// token, in `set`; `received` counts the tasks they received.
fn hold_polls(
    rt: &tokio::runtime::Runtime,
    via: &Arc<Server>,
    tokens: &[String],
    received: &Arc<AtomicUsize>,
    set: &mut tokio::task::JoinSet<()>,
) {
    for token in tokens {
        let (via, token, received) = (via.clone(), token.clone(), received.clone());
        set.spawn_on(
            async move {
                loop {
                    let answer = via
                        .http
                        .post(format!("{}/api/v1/agent/poll", via.url))
                        .bearer_auth(&token)
                        .json(&json!({ "capacity": 1, "wait_ms": 60000 }))
                        .timeout(Duration::from_secs(90))
                        .send()
                        .await;
                    let Ok(answer) = answer else {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    };
                    let Ok(answer) = answer.json::<PollAnswer>().await else {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    };
                    for t in answer.tasks {
                        received.fetch_add(1, Ordering::Relaxed);
                        let _ = via
                            .http
                            .post(format!("{}/api/v1/agent/tasks/{}/complete", via.url, t.id))
                            .bearer_auth(&token)
                            .json(
                                &json!({ "fence": t.fence, "outcome": { "status": "succeeded" } }),
                            )
                            .send()
                            .await;
                    }
                }
            },
            rt.handle(),
        );
    }
}

fn main() {
    let tasks = support::env("IDGARD_BENCH_TASKS", 10_000);
    let agents = support::env("IDGARD_BENCH_AGENTS", 8);
    let held = support::env("IDGARD_BENCH_HELD", 1_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let database = create_database("idgard_bench_replicas");
    println!(
        "replica benchmark: {tasks} no-op tasks over {agents} agents, PostgreSQL, HTTPS on loopback"
    );

    let a = Arc::new(start(Some(database.clone())));
    let one = rt.block_on(throughput(a.clone(), "single", tasks, agents));
    println!("1 replica, direct:           {one:>8.0} tasks/s");
    let b = Arc::new(a.replica(&database));
    let proxies: Vec<Proxy> = (0..held.div_ceil(PER_PROXY).max(1))
        .map(|_| Proxy::start_for(free_port(), &[a.port(), b.port()], PER_PROXY + 1_000))
        .collect();
    let vias: Vec<Arc<Server>> = proxies.iter().map(|p| Arc::new(a.via(&p.url()))).collect();
    let via = vias[0].clone();
    let two = rt.block_on(throughput(via.clone(), "pair", tasks, agents));
    println!(
        "2 replicas behind haproxy:   {two:>8.0} tasks/s   ratio 2 replicas / 1 = {:.2}",
        two / one
    );

    let tokens = rt.block_on(via.agents("held", held));
    let received = Arc::new(AtomicUsize::new(0));
    let mut set = tokio::task::JoinSet::new();
    for (tokens, via) in tokens.chunks(PER_PROXY).zip(&vias) {
        hold_polls(&rt, via, tokens, &received, &mut set);
    }
    if vias.len() > 1 {
        println!("{held} agents spread over {} proxies", vias.len());
    }
    std::thread::sleep(Duration::from_secs(5 + held as u64 / 500));
    println!(
        "RSS with {held} agents holding polls through the proxy: replica a {:.1} MiB, replica b {:.1} MiB",
        a.rss_mib(),
        b.rss_mib()
    );
    let mut a = Arc::try_unwrap(a).ok().expect("only this holds replica a");
    let killed = Instant::now();
    a.kill();
    // Every agent is given one task now, through the proxy (replica b answers), 32 calls at a
    // time.
    rt.block_on(async {
        let mut calls = tokio::task::JoinSet::new();
        for i in 0..held {
            let via = via.clone();
            calls.spawn(async move {
                via.enqueue(&format!("held-{i}"), vec![json!({ "operation": "noop" })])
                    .await;
            });
            if calls.len() >= 32 {
                calls.join_next().await.unwrap().unwrap();
            }
        }
        while let Some(r) = calls.join_next().await {
            r.unwrap();
        }
    });
    let queued = killed.elapsed();
    let deadline = Instant::now() + Duration::from_secs(300);
    while received.load(Ordering::Relaxed) < held {
        assert!(
            Instant::now() < deadline,
            "only {} of {held} agents were served again",
            received.load(Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    println!(
        "replica a killed: all {held} agents received their task {:.2} s later (queueing the {held} tasks took {:.2} s of it)",
        killed.elapsed().as_secs_f64(),
        queued.as_secs_f64()
    );
    drop(set);
}
