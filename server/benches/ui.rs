//! The UI's pages on a large repository: N identities (default 1,000,000) with two accounts each
//! (2 N links and account entries), 100,000 orders, 1,000 runs; every list and detail page
//! requested through the router as a browser would (`oneshot`, signed in, rendered to HTML).
//! The baseline, run at the same time, is the raw SQL query behind each page (the same rows,
//! read and dropped), so the ratio is what the domain, templates and HTTP add.
//!
//! `cargo bench -p idgard-server --bench ui -- [identities] [postgres-url]`

#[path = "../tests/support/mod.rs"]
mod support;

use axum::body::Body;
use axum::http::Request;
use idgard_server::identity::rules::Rules;
use idgard_server::web::access::Role;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower::ServiceExt as _;

const RULES: &str = r#"
version = 1
[identities]
connection = "hr"
search = "last_name"
[[targets]]
connection = "ad"
key = 'identity.key'
correlation = { account = "account.employee_id" }
[targets.attributes]
employee_id = "identity.key"
[[targets]]
connection = "mail"
key = 'identity.key'
correlation = { account = "account.employee_id" }
[targets.attributes]
employee_id = "identity.key"
[[jobs]]
name = "daily"
agent = "bench"
connections = ["hr", "ad", "mail"]
"#;

/// Fills the repository in SQL (the pipeline's own speed is `benches/pipeline.rs`'s matter).
async fn populate(pool: &sqlx::AnyPool, postgres: bool, n: i64) {
    let series = |n: i64| {
        if postgres {
            format!("(SELECT generate_series AS i FROM generate_series(1, {n})) s")
        } else {
            format!(
                "(WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < {n}) SELECT i FROM c) s"
            )
        }
    };
    let key = if postgres {
        "'E' || lpad(i::text, 7, '0')"
    } else {
        "'E' || substr('0000000' || i, -7, 7)"
    };
    let attrs = format!(
        "'{{\"first_name\":[\"First' || (i % 5000) || '\"],\"last_name\":[\"Last' || (i / 5000) || '\"],\"department\":[\"Sales\"],\"employee_id\":[\"' || {key} || '\"]}}'"
    );
    let t = Instant::now();
    for (conn, etype) in [("hr", "person"), ("ad", "account"), ("mail", "account")] {
        sqlx::query(&format!(
            "INSERT INTO entries (connection, entity_type, key, attrs, hash, valid_from, sync_id) \
             SELECT '{conn}', '{etype}', {key}, {attrs}, i, 1000, 1 FROM {}",
            series(n)
        ))
        .execute(pool)
        .await
        .unwrap();
        if conn != "hr" {
            sqlx::query(&format!(
                "INSERT INTO links (connection, entity_type, key, identity, situation, updated_ms) \
                 SELECT '{conn}', 'account', {key}, {key}, CASE WHEN i % 1000 = 0 THEN 'unmatched' ELSE 'linked' END, 1000 FROM {}",
                series(n)
            ))
            .execute(pool)
            .await
            .unwrap();
        }
    }
    let orders = n.min(100_000);
    sqlx::query(&format!(
        "INSERT INTO orders (id, job_id, connection, entity_type, key, identity, kind, body, state, attempts, next_ms, created_ms, updated_ms) \
         SELECT 'o' || i, 1, 'ad', 'account', {key}, {key}, 'update', \
         '{{\"id\":\"o' || i || '\",\"entity-type\":\"account\",\"key\":\"' || {key} || '\",\"kind\":\"update\",\"changes\":[{{\"name\":\"department\",\"op\":\"replace\",\"values\":[\"IT\"]}}]}}', \
         CASE WHEN i % 10 = 0 THEN 'failed' ELSE 'done' END, 1, 0, 1000 + i, 1000 + i FROM {}",
        series(orders)
    ))
    .execute(pool)
    .await
    .unwrap();
    eprintln!(
        "populated {n} identities, {} accounts, {orders} orders in {:.1} s",
        2 * n,
        t.elapsed().as_secs_f64()
    );
}

fn pct(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

async fn time<F: std::future::Future<Output = ()>>(
    rounds: usize,
    mut f: impl FnMut() -> F,
) -> Vec<f64> {
    f().await; // warm
    let mut out = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        f().await;
        out.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    out
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let n: i64 = args
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let database = args.get(1).cloned();
    let dir = tempfile::tempdir().unwrap();
    let config = idgard_server::config::Config {
        data_dir: dir.path().to_owned(),
        database_url: database.clone(),
        ..Default::default()
    };
    let mut engine = idgard_server::open(&config).await.unwrap();
    engine.rules = Some(Arc::new(Rules::parse(RULES, "bench").unwrap()));
    engine.queue.add_agent("bench").await.unwrap();
    let postgres = database.is_some();
    populate(&engine.queue.db.pool, postgres, n).await;
    let t = Instant::now();
    engine.prepare_search().await.unwrap();
    let index_ms = t.elapsed().as_secs_f64() * 1000.0;
    sqlx::query("ANALYZE")
        .execute(&engine.queue.db.pool)
        .await
        .unwrap();
    let signer =
        idgard_server::keys::Signer::load(None, None, &dir.path().join("key.pem"), 600).unwrap();
    let web = idgard_server::web::Web::new(Default::default(), &engine.queue, true, None).unwrap();
    let state = support::app_state(&engine, signer, web);
    let opened = state
        .web
        .sessions
        .open("bench", "password", &[Role::Administrator], None)
        .await
        .unwrap();
    let cookie = format!("__Host-idgard={}", opened.secret);
    let app =
        idgard_server::http::router(state.clone(), 64 << 10, 1 << 16, Duration::from_secs(10));
    let mid = format!("E{:07}", n / 2);
    let read = &engine.queue.db.read;
    // (page, its address, the raw SQL behind it)
    let pages: Vec<(&str, String, String)> = vec![
        ("dashboard (figures cached)", "/dashboard".into(), "SELECT connection, situation, COUNT(*) FROM links GROUP BY connection, situation".into()),
        ("identity search (prefix)", format!("/identities?q={}", &mid[..6]), format!("SELECT key, attrs FROM entries WHERE connection = 'hr' AND valid_to IS NULL AND key >= '{0}' AND key < '{0}~' ORDER BY key LIMIT 100", &mid[..6])),
        ("identity search (name)", "/identities?q=last12".into(), format!("SELECT key, attrs FROM entries WHERE connection = 'hr' AND entity_type = 'person' AND valid_to IS NULL AND {name} >= 'last12' AND {name} < 'last12{top}' ORDER BY {name}, key LIMIT 100", top = '\u{10FFFF}', name = if postgres { "(lower((attrs::jsonb) -> 'last_name' ->> 0) COLLATE \"C\")" } else { "lower(json_extract(attrs, '$.last_name[0]'))" })),
        ("identity detail", format!("/identities/{mid}"), format!("SELECT attrs FROM entries WHERE connection IN ('hr', 'ad', 'mail') AND key = '{mid}'")),
        ("connection entries", "/connections/ad?situation=unmatched".into(), "SELECT e.key, e.attrs FROM links l JOIN entries e ON e.connection = l.connection AND e.entity_type = l.entity_type AND e.key = l.key AND e.valid_to IS NULL WHERE l.connection = 'ad' AND l.situation = 'unmatched' ORDER BY l.key LIMIT 100".into()),
        ("entry detail", format!("/connections/ad/entries/{mid}"), format!("SELECT attrs, valid_from, valid_to FROM entries WHERE connection = 'ad' AND key = '{mid}'")),
        ("orders (failed)", "/orders?state=failed".into(), "SELECT id, body FROM orders WHERE state = 'failed' ORDER BY created_ms DESC, id LIMIT 100".into()),
        ("order detail", "/orders/o5".into(), "SELECT body FROM orders WHERE id = 'o5'".into()),
        ("connections (cached)", "/connections".into(), "SELECT connection, COUNT(*) FROM entries WHERE valid_to IS NULL GROUP BY connection".into()),
        ("jobs", "/jobs".into(), "SELECT id FROM jobs ORDER BY id DESC LIMIT 100".into()),
        ("agents", "/agents".into(), "SELECT id, name FROM agents".into()),
        ("audit", "/audit".into(), "SELECT id FROM audit ORDER BY id DESC LIMIT 100".into()),
    ];
    let t = Instant::now();
    state.web.figures.refresh(&engine).await.unwrap();
    let refresh_ms = t.elapsed().as_secs_f64() * 1000.0;
    println!(
        "{} with {n} identities and {} accounts; p50 / p95 in ms over 30 requests",
        if postgres { "PostgreSQL" } else { "SQLite" },
        2 * n
    );
    println!(
        "{:<28} {:>9} {:>9} {:>11} {:>7}",
        "page", "p50", "p95", "SQL p95", "ratio"
    );
    for (name, url, sql) in pages {
        let page = time(30, || {
            let req = Request::get(&url)
                .header("cookie", &cookie)
                .body(Body::empty())
                .unwrap();
            let (app, url) = (app.clone(), url.clone());
            async move {
                let r = app.oneshot(req).await.unwrap();
                assert!(r.status().is_success(), "{url}: {}", r.status());
                axum::body::to_bytes(r.into_body(), 64 << 20).await.unwrap();
            }
        })
        .await;
        let raw = time(30, || {
            let sql = sql.clone();
            async move {
                sqlx::query(&sql).fetch_all(read).await.unwrap();
            }
        })
        .await;
        let (p50, p95, s95) = (pct(page.clone(), 0.5), pct(page, 0.95), pct(raw, 0.95));
        println!(
            "{name:<28} {p50:>9.2} {p95:>9.2} {s95:>11.2} {:>7.2}",
            p95 / s95
        );
    }
    println!(
        "taking the dashboard's and connections' figures (in the background, every {} s): {refresh_ms:.0} ms",
        idgard_server::web::figures::REFRESH.as_secs()
    );
    println!("creating the index for searching identities by name (once): {index_ms:.0} ms");
    live_updates(&engine, &app, &cookie).await;
}

/// How long a run page's live view takes to show what the agent reported: progress sent by
/// heartbeat, until the server-sent event carrying it reaches the page's stream.
async fn live_updates(engine: &idgard_server::identity::Engine, app: &axum::Router, cookie: &str) {
    use futures_util::StreamExt as _;
    use idgard_protocol::{NewJob, Operation, TaskSpec};
    let q = &engine.queue;
    let agent = q.agent_id("bench").await.unwrap();
    let job = q
        .create_job(&NewJob {
            agent: "bench".into(),
            name: Some("live".into()),
            steps: vec![vec![TaskSpec {
                connection: "c".into(),
                operation: Operation::Export,
                args: serde_json::Value::Null,
                max_attempts: None,
                timeout_s: None,
                agent: None,
            }]],
            start: Some(true),
        })
        .await
        .unwrap();
    let task = q.claim(agent, 1).await.unwrap().remove(0);
    q.heartbeat(agent, task.id, task.fence, Some((0, Some(1000))))
        .await
        .unwrap();
    let req = Request::get(format!("/runs/{}/events", job.id))
        .header("cookie", cookie)
        .body(Body::empty())
        .unwrap();
    let r = app.clone().oneshot(req).await.unwrap();
    assert!(r.status().is_success(), "events: {}", r.status());
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    tokio::spawn(async move {
        let mut frames = r.into_body().into_data_stream();
        while let Some(Ok(bytes)) = frames.next().await {
            let _ = seen_tx.send((String::from_utf8_lossy(&bytes).into_owned(), Instant::now()));
        }
    });
    let mut lags = Vec::new();
    for done in 1..=40u64 {
        let sent = Instant::now();
        q.heartbeat(agent, task.id, task.fence, Some((done, Some(1000))))
            .await
            .unwrap();
        let wanted = [format!("\"done\":{done},"), format!("\"done\":{done}}}")];
        loop {
            let (frame, at) = tokio::time::timeout(Duration::from_secs(10), seen_rx.recv())
                .await
                .expect("no live update within 10 s")
                .expect("the event stream ended");
            if wanted.iter().any(|w| frame.contains(w.as_str())) {
                lags.push(at.duration_since(sent).as_secs_f64() * 1000.0);
                break;
            }
        }
        // Reports come at any moment of the page's polling period.
        tokio::time::sleep(Duration::from_millis(40 + done * 7919 % 311)).await;
    }
    println!(
        "live updates (a heartbeat's progress until its event reaches the run page's stream, 40 \
         rounds): p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms (the page polls every 300 ms; target 1,000)",
        pct(lags.clone(), 0.5),
        pct(lags.clone(), 0.95),
        pct(lags, 1.0)
    );
}
