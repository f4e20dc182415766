//! The identity pipeline on a large HR file, on SQLite, in one process (no network): the
//! initial load of N rows (synchronize), the complete provisioning computation that follows,
//! then an incremental run with 1,000 changes timed from "upload complete" to "orders ready".
//! The baseline, run at the same time, is raw SQL: the same rows inserted with multi-row
//! INSERTs into an empty table, with no comparison and no history.
//!
//! `cargo bench -p idgard-server --bench pipeline -- [rows]` (default 1,000,000).

use idgard_model::wire::BatchBuffer;
use idgard_model::wire::EntryOp;
use idgard_protocol::{NewUpload, Operation, TaskSpec, frames};
use idgard_server::queue::Queue;
use idgard_server::repo::Checked;
use idgard_server::rules::Rules;
use sha2::Digest as _;
use std::sync::Arc;
use std::time::Instant;

const RULES: &str = r#"
version = 1
[identities]
connection = "hr"
[[targets]]
connection = "accounts"
filter = 'identity.status == "active"'
key = 'identity.first_name.lowerAscii() + "." + identity.last_name.lowerAscii() + "." + identity.key'
enabled_attribute = "enabled"
correlation = { account = "account.employee_id" }
[targets.attributes]
employee_id = "identity.key"
name = 'identity.first_name + " " + identity.last_name'
department = "identity.department"
"#;

const DEPARTMENTS: &[&str] = &["Sales", "IT", "Finance", "Legal", "HR", "Support", "R&D"];

fn person(b: &mut BatchBuffer, i: u64, generation: u64) {
    let key = format!("E{i:07}");
    let at = b.begin_entry(EntryOp::Upsert, "person", &key);
    b.attribute1("employee_id", &key);
    b.attribute1("first_name", &format!("First{}", i % 5000));
    b.attribute1("last_name", &format!("Last{}", i / 5000));
    b.attribute1("department", DEPARTMENTS[((i + generation) % 7) as usize]);
    b.attribute1("site", ["Paris", "Lyon", "Nice"][(i % 3) as usize]);
    b.attribute1("title", "Analyst, level 2");
    b.attribute1("status", "active");
    b.attribute1("manager", &format!("E{:07}", i / 10));
    b.end_entry(at, 8);
}

fn frame(out: &mut Vec<u8>, b: &mut BatchBuffer) {
    if b.entries() == 0 {
        return;
    }
    out.extend_from_slice(&frames::header(b.entries(), b.len() as u32));
    out.extend_from_slice(b.as_bytes());
    b.clear();
}

/// Peak resident memory of this process since the last reset, in MiB.
fn peak_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<f64>().ok())
        .map(|k| k / 1024.0)
        .unwrap_or(f64::NAN)
}

fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

async fn upload(q: &Queue, agent: i64, content: &[u8]) -> i64 {
    let ids = q
        .enqueue(
            "bench",
            &[TaskSpec {
                connection: "hr".into(),
                operation: Operation::Export,
                args: serde_json::Value::Null,
                max_attempts: None,
                timeout_s: None,
            }],
        )
        .await
        .unwrap();
    let claimed = q.claim(agent, 1).await.unwrap();
    assert_eq!(claimed[0].id, ids[0]);
    let view = q
        .open_upload(
            agent,
            ids[0],
            &NewUpload {
                fence: claimed[0].fence,
                name: "entries".into(),
                size: content.len() as u64,
                sha256: hex::encode(sha2::Sha256::digest(content)),
            },
            u64::MAX,
        )
        .await
        .unwrap();
    for (i, chunk) in content.chunks(8 << 20).enumerate() {
        q.put_chunk(agent, view.id, (i * (8 << 20)) as u64, chunk)
            .await
            .unwrap();
    }
    view.id
}

async fn baseline(dir: &std::path::Path, content: &[u8]) -> f64 {
    use sqlx::Row as _;
    let url = format!("sqlite://{}?mode=rwc", dir.join("raw.db").display());
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    sqlx::query("PRAGMA journal_mode = WAL")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("PRAGMA synchronous = NORMAL")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("CREATE TABLE raw (key TEXT PRIMARY KEY, attrs TEXT NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    let started = Instant::now();
    let mut tx = pool.begin().await.unwrap();
    let mut rows: Vec<(String, String)> = Vec::with_capacity(128);
    let mut n = 0u64;
    for (_, batch) in frames::split(content).unwrap() {
        for e in idgard_model::wire::decode(batch) {
            let e = e.unwrap();
            let attrs: std::collections::BTreeMap<&str, Vec<&str>> = e.attributes().collect();
            rows.push((e.key.to_owned(), serde_json::to_string(&attrs).unwrap()));
            if rows.len() == 128 {
                n += insert_raw(&mut tx, &mut rows).await;
            }
        }
    }
    n += insert_raw(&mut tx, &mut rows).await;
    tx.commit().await.unwrap();
    let secs = started.elapsed().as_secs_f64();
    let count: i64 = sqlx::query("SELECT COUNT(*) FROM raw")
        .fetch_one(&pool)
        .await
        .unwrap()
        .get(0);
    assert_eq!(count as u64, n);
    n as f64 / secs
}

async fn insert_raw(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    rows: &mut Vec<(String, String)>,
) -> u64 {
    if rows.is_empty() {
        return 0;
    }
    let values: Vec<String> = (0..rows.len())
        .map(|i| format!("(${}, ${})", 2 * i + 1, 2 * i + 2))
        .collect();
    let sql = format!("INSERT INTO raw (key, attrs) VALUES {}", values.join(","));
    let mut q = sqlx::query(&sql);
    for (k, a) in rows.iter() {
        q = q.bind(k.as_str()).bind(a.as_str());
    }
    q.execute(&mut **tx).await.unwrap();
    let n = rows.len() as u64;
    rows.clear();
    n
}

fn main() {
    let rows: u64 = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let config = idgard_server::config::Config {
            data_dir: dir.path().to_owned(),
            ..Default::default()
        };
        let mut q = idgard_server::open_queue(&config).await.unwrap();
        let rules = Arc::new(Rules::parse(RULES, "bench rules").unwrap());
        q.rules = Some(rules.clone());
        q.add_agent("bench").await.unwrap();
        let agent = q.agent_id("bench").await.unwrap();

        let mut content = Vec::new();
        let mut b = BatchBuffer::with_capacity(1 << 20);
        for i in 0..rows {
            person(&mut b, i, 0);
            if b.entries() == 1000 {
                frame(&mut content, &mut b);
            }
        }
        frame(&mut content, &mut b);
        println!(
            "pipeline benchmark: {rows} HR rows, {:.1} MiB of export",
            content.len() as f64 / 1048576.0
        );
        let raw = baseline(dir.path(), &content).await;
        let first = upload(&q, agent, &content).await;
        drop(content);

        reset_peak();
        let started = Instant::now();
        let Checked::Done(report) = q.synchronize("hr", first, false, None, None).await.unwrap() else {
            panic!("no threshold was set");
        };
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(report.inserted, rows);
        let load_peak = peak_mib();
        println!(
            "initial load (synchronize, full):   {:>9.0} rows/s  ({secs:.2} s; peak RSS {load_peak:.0} MiB)",
            rows as f64 / secs
        );
        println!(
            "baseline (raw SQL INSERT):           {raw:>9.0} rows/s  → idgard at {:.2}× the raw insert rate",
            (rows as f64 / secs) / raw
        );

        reset_peak();
        let started = Instant::now();
        let Checked::Done(p) = q.provision(&rules, "accounts", None, true, false, true).await.unwrap() else {
            panic!("approved runs are not blocked");
        };
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(p.creates, rows);
        println!(
            "complete provisioning:               {:>9.0} identities/s ({secs:.2} s, {} create orders; peak RSS {:.0} MiB)",
            rows as f64 / secs,
            p.creates,
            peak_mib()
        );

        // 1,000 changes: 400 moves, 300 hires, 300 leaves.
        let mut content = Vec::new();
        for i in 0..400u64 {
            person(&mut b, i * (rows / 400).max(1), 1);
        }
        for i in 0..300u64 {
            person(&mut b, rows + i, 0);
        }
        for i in 0..300u64 {
            let at = b.begin_entry(EntryOp::Delete, "person", &format!("E{:07}", rows - 1 - i * 3));
            b.end_entry(at, 0);
        }
        frame(&mut content, &mut b);
        let second = upload(&q, agent, &content).await;
        reset_peak();
        let started = Instant::now();
        let Checked::Done(s) = q.synchronize("hr", second, true, None, None).await.unwrap() else {
            panic!("no threshold was set");
        };
        let synced = started.elapsed().as_secs_f64();
        let Checked::Done(p) = q.provision(&rules, "accounts", None, false, false, true).await.unwrap() else {
            panic!("approved runs are not blocked");
        };
        let secs = started.elapsed().as_secs_f64();
        println!(
            "incremental, 1,000 changes:          {:.3} s upload complete → orders ready \
             (synchronize {synced:.3} s: {} updated, {} inserted, {} deleted; {} orders; peak RSS {:.0} MiB)",
            secs,
            s.updated,
            s.inserted,
            s.deleted,
            p.orders(),
            peak_mib()
        );
    });
}
