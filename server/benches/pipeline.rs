//! The identity pipeline on a large HR file, on SQLite, in one process (no network): the
//! initial load of N rows (synchronize), the complete provisioning computation that follows,
//! then an incremental run with 1,000 changes timed from "upload complete" to "orders ready".
//! The baseline, run at the same time, is raw SQL: the same rows inserted with multi-row
//! INSERTs into an empty table, with no comparison and no history.
//!
//! Encryption at rest is measured on the same export: the initial load and the complete
//! provisioning on an encrypted database from sealed chunks against the same on a database in
//! clear from chunks in clear, in alternating rounds; and what the agent does to the same bytes
//! (seal them into its spool file, read them back for the upload) against plain file writes and
//! reads.
//!
//! `cargo bench -p idgard-server --bench pipeline -- [rows]` (default 1,000,000).

#[path = "../tests/support/mod.rs"]
mod support;

use idgard_model::wire::BatchBuffer;
use idgard_model::wire::EntryOp;
use idgard_protocol::frames;
use idgard_server::identity::Engine;
use idgard_server::identity::repo::Checked;
use idgard_server::identity::rules::Rules;
use std::sync::Arc;
use std::time::Instant;
use support::{frame, person};

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

async fn upload(q: &Engine, agent: i64, content: &[u8]) -> (i64, i64, i64) {
    support::upload(q, "bench", agent, "hr", content).await
}

/// Latencies (ms) of what agents and pages do while `busy` runs: a heartbeat, a poll that
/// finds nothing, a page read; one round every 20 ms.
async fn probe(q: &Engine, agent: i64, task: i64, fence: i64, busy: impl Future) -> Vec<f64> {
    let stop = std::sync::atomic::AtomicBool::new(false);
    let probes = async {
        let mut out = Vec::new();
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let t = Instant::now();
            q.queue.heartbeat(agent, task, fence, None).await.unwrap();
            out.push(t.elapsed().as_secs_f64() * 1000.0);
            let t = Instant::now();
            q.queue.claim(agent, 1).await.unwrap();
            q.queue.cancelled_for(agent).await.unwrap();
            out.push(t.elapsed().as_secs_f64() * 1000.0);
            let t = Instant::now();
            q.queue.task(task).await.unwrap();
            out.push(t.elapsed().as_secs_f64() * 1000.0);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        out
    };
    let busy = async {
        busy.await;
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
    };
    let (out, ()) = tokio::join!(probes, busy);
    out
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
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

/// Encryption at rest on the agent's side: the export `content` written into a sealed spool
/// file and read back, against plain files.
async fn at_rest(q: &Engine, dir: &std::path::Path, content: &[u8]) {
    let rows = content.len();
    // The agent: the spool file written sealed as the export goes, then read back in the
    // upload's 1 MiB chunks; the same with a plain file.
    let time = |f: &mut dyn FnMut()| {
        let started = Instant::now();
        f();
        started.elapsed().as_secs_f64()
    };
    let ring = q.queue.sealer.ring();
    let (plain_path, sealed_path) = (dir.join("plain.entries"), dir.join("sealed.entries"));
    let plain_write = time(&mut || {
        use std::io::Write;
        let mut f =
            std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&plain_path).unwrap());
        for piece in content.chunks(64 << 10) {
            f.write_all(piece).unwrap();
        }
        f.into_inner().unwrap().sync_all().unwrap();
    });
    let sealed_write = time(&mut || {
        use std::io::Write;
        let mut w =
            idgard_vault::SealedWriter::new(ring, std::fs::File::create(&sealed_path).unwrap())
                .unwrap();
        for piece in content.chunks(64 << 10) {
            w.write_all(piece).unwrap();
        }
        w.finish().unwrap().sync_all().unwrap();
    });
    let mut buf = vec![0u8; 1 << 20];
    let plain_read = time(&mut || {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::open(&plain_path).unwrap();
        let mut at = 0;
        while at < rows {
            let n = buf.len().min(rows - at);
            f.read_exact_at(&mut buf[..n], at as u64).unwrap();
            at += n;
        }
    });
    let sealed_read = time(&mut || {
        let mut f = idgard_vault::SealedFile::open(ring, &sealed_path).unwrap();
        let mut at = 0;
        while at < rows {
            let n = buf.len().min(rows - at);
            f.read_exact_at(&mut buf[..n], at as u64).unwrap();
            at += n;
        }
    });
    println!(
        "agent spool, sealed vs plain:        write {sealed_write:.3} s vs {plain_write:.3} s, \
         read for the upload {sealed_read:.3} s vs {plain_read:.3} s ({:.0} MiB/s sealed write)",
        rows as f64 / 1048576.0 / sealed_write
    );
}

/// Rounds of [`pipeline_on`] per side in the measure of encryption's cost (`IDGARD_BENCH_ROUNDS`,
/// default 3): the best of each is kept, so that a pause of the machine in one round does not
/// count as a cost.
fn rounds() -> usize {
    std::env::var("IDGARD_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3)
}

/// Encryption's cost on the server: the initial load and the complete provisioning of `content`
/// on an encrypted database from sealed chunks, against the same on a database in clear from
/// chunks in clear, as earlier versions stored everything; rounds alternate, clear first.
async fn encryption_cost(dir: &std::path::Path, content: &[u8], rules: &Arc<Rules>, rows: u64) {
    let (mut clear, mut sealed) = ((f64::MAX, f64::MAX), (f64::MAX, f64::MAX));
    let rounds = rounds();
    for round in 0..rounds {
        for encrypted in [false, true] {
            let (load, provision) = pipeline_on(
                &dir.join(format!("r{round}-{encrypted}")),
                content,
                rules,
                rows,
                encrypted,
            )
            .await;
            let best = if encrypted { &mut sealed } else { &mut clear };
            *best = (best.0.min(load), best.1.min(provision));
            println!(
                "  round {round}, {}: initial load {load:.2} s, complete provisioning {provision:.2} s",
                if encrypted { "encrypted" } else { "in clear " }
            );
        }
    }
    let cost = |sealed: f64, clear: f64| (sealed / clear - 1.0) * 100.0;
    println!(
        "encryption at rest (database and chunks) against all in clear, best of {rounds}: \
         initial load {:.2} s vs {:.2} s → {:+.1} %; complete provisioning {:.2} s vs {:.2} s → {:+.1} %; both {:+.1} %",
        sealed.0,
        clear.0,
        cost(sealed.0, clear.0),
        sealed.1,
        clear.1,
        cost(sealed.1, clear.1),
        cost(sealed.0 + sealed.1, clear.0 + clear.1),
    );
}

/// The initial load and complete provisioning of `content` on a new database in `data`,
/// encrypted or all in clear (with the same probes running); their times.
async fn pipeline_on(
    data: &std::path::Path,
    content: &[u8],
    rules: &Arc<Rules>,
    rows: u64,
    encrypted: bool,
) -> (f64, f64) {
    use idgard_server::db::{Db, cipher};
    let file = data.join("idgard.db");
    std::fs::create_dir_all(data).unwrap();
    let config = idgard_server::config::Config {
        data_dir: data.to_owned(),
        ..Default::default()
    };
    let mut q = if encrypted {
        idgard_server::open(&config).await.unwrap()
    } else {
        let clear = Db::open(&format!("sqlite://{}", file.display()), None)
            .await
            .unwrap();
        idgard_server::engine_on(&config, clear).unwrap()
    };
    q.rules = Some(rules.clone());
    q.queue.add_agent("bench").await.unwrap();
    let agent = q.queue.agent_id("bench").await.unwrap();
    let (up, task, fence) = upload(&q, agent, content).await;
    if !encrypted {
        store_in_clear(&q, up, content).await;
    }
    let mut load = 0.0;
    probe(&q, agent, task, fence, async {
        load = load_full(&q, "hr", up, rows).await;
    })
    .await;
    let started = Instant::now();
    let Checked::Done(p) = q
        .provision(rules, "accounts", None, true, false, true)
        .await
        .unwrap()
    else {
        panic!("approved runs are not blocked");
    };
    let provision = started.elapsed().as_secs_f64();
    assert_eq!(p.creates, rows);
    q.queue.db.pool.close().await;
    q.queue.db.read.close().await;
    let state = if encrypted {
        cipher::FileState::Encrypted
    } else {
        cipher::FileState::Clear
    };
    assert_eq!(cipher::file_state(&file).unwrap(), state);
    std::fs::remove_dir_all(data).unwrap();
    (load, provision)
}

/// Rewrites the chunks of `upload` in clear, as earlier versions stored them.
async fn store_in_clear(q: &Engine, upload: i64, content: &[u8]) {
    use sqlx::Row;
    let starts: Vec<i64> =
        sqlx::query("SELECT start_at FROM upload_chunks WHERE upload_id = $1 ORDER BY start_at")
            .bind(upload)
            .fetch_all(&q.queue.db.pool)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
    for (i, start) in starts.iter().enumerate() {
        let end = starts.get(i + 1).map_or(content.len(), |e| *e as usize);
        sqlx::query("UPDATE upload_chunks SET data = $1 WHERE upload_id = $2 AND start_at = $3")
            .bind(content[*start as usize..end].to_vec())
            .bind(upload)
            .bind(start)
            .execute(&q.queue.db.pool)
            .await
            .unwrap();
    }
}

/// A full synchronize of `upload` into `connection`, timed.
async fn load_full(q: &Engine, connection: &str, upload: i64, entries: u64) -> f64 {
    let started = Instant::now();
    let Checked::Done(report) = q
        .synchronize(connection, upload, false, None, None)
        .await
        .unwrap()
    else {
        panic!("no threshold was set");
    };
    assert_eq!(report.inserted, entries);
    started.elapsed().as_secs_f64()
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
        let mut q = idgard_server::open(&config).await.unwrap();
        let rules = Arc::new(Rules::parse(RULES, "bench rules").unwrap());
        q.rules = Some(rules.clone());
        q.queue.add_agent("bench").await.unwrap();
        let agent = q.queue.agent_id("bench").await.unwrap();

        let content = support::hr_export(rows);
        let mut b = BatchBuffer::with_capacity(1 << 20);
        println!(
            "pipeline benchmark: {rows} HR rows, {:.1} MiB of export",
            content.len() as f64 / 1048576.0
        );
        let raw = baseline(dir.path(), &content).await;
        at_rest(&q, dir.path(), &content).await;
        let (first, task, fence) = upload(&q, agent, &content).await;
        drop(content);
        let mut idle = probe(&q, agent, task, fence, tokio::time::sleep(std::time::Duration::from_secs(2))).await;

        reset_peak();
        let started = Instant::now();
        let mut secs = 0.0;
        let mut during = probe(&q, agent, task, fence, async {
            let Checked::Done(report) = q.synchronize("hr", first, false, None, None).await.unwrap() else {
                panic!("no threshold was set");
            };
            secs = started.elapsed().as_secs_f64();
            assert_eq!(report.inserted, rows);
        })
        .await;
        println!(
            "heartbeat, empty poll, page read:   p50 {:.1} ms, p99 {:.1} ms during the load ({} calls); \
             idle baseline p50 {:.1} ms, p99 {:.1} ms",
            percentile(&mut during, 0.5),
            percentile(&mut during, 0.99),
            during.len(),
            percentile(&mut idle, 0.5),
            percentile(&mut idle, 0.99),
        );
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
        let (second, _, _) = upload(&q, agent, &content).await;
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

        // Last, so that its databases leave nothing in the figures above.
        encryption_cost(dir.path(), &support::hr_export(rows), &rules, rows).await;
    });
}
