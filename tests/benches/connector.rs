//! The connector platform's benchmark. Run with
//!
//! ```sh
//! cargo bench -p idgard-tests --bench connector            # 1,000,000 rows
//! IDGARD_BENCH_ROWS=200000 cargo bench -p idgard-tests --bench connector
//! ```
//!
//! It prints, in one run:
//! (a) run overhead: fresh store + instantiate + one trivial call, median over many runs;
//! (b) export of a generated HR file through the host vs the same connector code compiled
//!     natively (same batches, same validation of every batch), and the ratio;
//! (c) the connector's peak linear memory for two file sizes and two batch sizes.

mod support;
use idgard_connector_csv::Csv;
use idgard_host::model::ExportSummary;
use idgard_host::{Connection, Outcome, Request, RunFolders, Runtime, RuntimeOptions};
use idgard_sdk::testing::Harness;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use support::*;

fn connection(text: &str, dir: &Path) -> Connection {
    let path = dir.join("connection.toml");
    std::fs::write(&path, text).unwrap();
    Connection::load(&path).unwrap()
}

fn export_host(
    runtime: &Runtime,
    loaded: &idgard_host::Loaded,
    conn: &Connection,
    collect: &Path,
    batch: u32,
) -> (ExportSummary, Duration) {
    let _ = std::fs::remove_dir_all(collect);
    std::fs::create_dir_all(collect).unwrap();
    let started = Instant::now();
    let folders = RunFolders {
        collect: Some(collect),
        orders: None,
    };
    let out = runtime
        .run(
            loaded,
            conn,
            &folders,
            Request::Export {
                cursor: None,
                batch_size: batch,
            },
            Box::new(Count(Arc::default())),
        )
        .unwrap();
    let elapsed = started.elapsed();
    match out {
        Outcome::Exported(s) => (s, elapsed),
        other => panic!("export failed: {other:?}"),
    }
}

fn export_native(data: &Path, collect: &Path, batch: u32) -> (u64, Duration) {
    let _ = std::fs::remove_dir_all(collect);
    std::fs::create_dir_all(collect).unwrap();
    let seen = Arc::new(AtomicU64::new(0));
    let counter = seen.clone();
    let started = Instant::now();
    let run = Harness::new()
        .settings(serde_json::json!({
            "file": "hr.csv", "key": "employee_id", "delimiter": ",", "entity_type": "person",
            "strict": false, "accounts_file": "accounts.csv", "accounts_key": "login", "multi_value_separator": "|"
        }))
        .folder("source", data)
        .collect_dir(collect)
        .batch_size(batch)
        .export_full_into::<Csv>(move |b| {
            // The host validates every batch it receives; so does the baseline.
            let mut n = 0;
            for entry in idgard_sdk::wire::decode(b) {
                entry.expect("valid batch");
                n += 1;
            }
            counter.fetch_add(n, Ordering::Relaxed);
        });
    let elapsed = started.elapsed();
    run.result.expect("native export");
    (seen.load(Ordering::Relaxed), elapsed)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn vm_hwm_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.split_whitespace().nth(1).unwrap().parse::<f64>().unwrap())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rows: usize = std::env::var("IDGARD_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let small = tmp.path().join("small");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&small).unwrap();
    eprintln!("generating {rows} HR rows…");
    idgard_tests::demo::write_hr(
        std::io::BufWriter::new(std::fs::File::create(data.join("hr.csv")).unwrap()),
        rows,
        7,
    )
    .unwrap();
    idgard_tests::demo::write_hr(
        std::io::BufWriter::new(std::fs::File::create(small.join("hr.csv")).unwrap()),
        rows / 10,
        7,
    )
    .unwrap();
    let size = std::fs::metadata(data.join("hr.csv")).unwrap().len();

    let runtime = Runtime::new(RuntimeOptions {
        cache_dir: Some(tmp.path().join("cache")),
        ..Default::default()
    })
    .unwrap();
    let csv = runtime
        .load(Path::new(idgard_tests::packages::CONNECTOR_CSV))
        .unwrap();
    let guest = runtime
        .load(Path::new(idgard_tests::packages::GUEST_MISBEHAVE))
        .unwrap();

    // (a) run overhead.
    let trivial = connection("name = \"probe\"\n[settings]\nmode = \"ok\"\n", tmp.path());
    let none = RunFolders::default();
    let probe = || {
        runtime
            .run(
                &guest,
                &trivial,
                &none,
                Request::TestConnection,
                Box::new(Count(Arc::default())),
            )
            .unwrap()
    };
    for _ in 0..2000 {
        probe();
    }
    let mut samples = Vec::with_capacity(20_000);
    for _ in 0..20_000 {
        let t = Instant::now();
        let out = probe();
        samples.push(t.elapsed());
        assert_eq!(out, Outcome::Tested);
    }
    let overhead = median(samples.clone());
    samples.sort();
    let p99 = samples[samples.len() * 99 / 100];

    // (b) export through the host vs natively.
    let conn_text = |dir: &Path| {
        format!(
            "name = \"hr\"\n[settings]\nfile = \"hr.csv\"\n[grants.folders.source]\npath = {:?}\naccess = \"read-only\"\n",
            dir.display().to_string()
        )
    };
    let big = connection(&conn_text(&data), tmp.path());
    let collect = tmp.path().join("collect");
    let mut host_runs = Vec::new();
    let mut native_runs = Vec::new();
    let mut host_summary = None;
    for _ in 0..3 {
        let (s, t) = export_host(&runtime, &csv, &big, &collect, 1024);
        host_runs.push(t);
        host_summary = Some(s);
        let (n, t) = export_native(&data, &collect, 1024);
        assert_eq!(n as usize, rows);
        native_runs.push(t);
    }
    let host_summary = host_summary.unwrap();
    assert_eq!(host_summary.entries as usize, rows, "every row exported");
    let host_t = median(host_runs);
    let native_t = median(native_runs);

    // (c) peak memory vs file size and batch size.
    let small_conn = connection(&conn_text(&small), tmp.path());
    let mut memory = Vec::new();
    for (label, conn, n) in [("rows/10", &small_conn, rows / 10), ("rows", &big, rows)] {
        for batch in [256u32, 4096] {
            let (s, _) = export_host(&runtime, &csv, conn, &collect, batch);
            memory.push((label, n, batch, s.peak_memory));
        }
    }

    let rate = |t: Duration| rows as f64 / t.as_secs_f64();
    println!();
    println!(
        "idgard connector benchmark ({rows} rows, {:.1} MiB CSV)",
        size as f64 / (1 << 20) as f64
    );
    println!(
        "(a) run overhead (fresh store + instantiate + test-connection): median {:.1} µs, p99 {:.1} µs   target ≤ 20 µs",
        overhead.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6
    );
    println!(
        "(b) export through the host: {:.3} s, {:.0} entries/s   target ≥ 1,000,000/s",
        host_t.as_secs_f64(),
        rate(host_t)
    );
    println!(
        "    same code natively:      {:.3} s, {:.0} entries/s",
        native_t.as_secs_f64(),
        rate(native_t)
    );
    println!(
        "    ratio host/native: {:.2}   target ≤ 1.5",
        host_t.as_secs_f64() / native_t.as_secs_f64()
    );
    println!("(c) connector peak linear memory:");
    for (label, n, batch, peak) in memory {
        println!(
            "    {label:>8} ({n:>8} rows), batch {batch:>5}: {:.2} MiB",
            peak as f64 / (1 << 20) as f64
        );
    }
    println!("    benchmark process peak RSS: {:.0} MiB", vm_hwm_mib());
}
