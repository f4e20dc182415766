//! The SCIM connector against a Python client of the same service, in one run. Each side gets a
//! fresh `scim2-server` (tests/scim/serve.py, bearer token) and does the same work:
//!
//! (a) N creates of users (userName, name, work e-mail, active, enterprise employeeNumber): the
//!     connector through the host, as the agent sends orders (batches of 1,000); the baseline,
//!     `tests/scim/bench_client.py`, one `scim2-client` request after another;
//! (b) the service is filled to M users (not timed), then a full export of them, pages of P.
//!
//! ```sh
//! cargo bench -p idgard-tests --bench scim        # N = 1,000, M = 10,000, P = 500
//! IDGARD_BENCH_CREATES=200 IDGARD_BENCH_USERS=2000 cargo bench -p idgard-tests --bench scim
//! ```

mod support;
use idgard_host::model::{Order, OrderKind, OrderOutcome};
use idgard_host::{Connection, Loaded, Outcome, Request, RunFolders, Runtime, RuntimeOptions};
use idgard_tests::python;
use idgard_tests::scim::ScimServer;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use support::*;

const BATCH: usize = 1_000;
const TOKEN: &str = "bench-token";

fn connection(dir: &Path, server: &ScimServer, page: usize) -> Connection {
    let path = dir.join("app.toml");
    std::fs::write(
        &path,
        format!(
            "name = \"app\"\nconnector = \"scim\"\n[settings]\nurl = \"{0}\"\npage_size = {page}\n\
             groups = false\n[secrets]\ntoken = {{ value = \"{TOKEN}\" }}\n\
             [grants.http.app]\nurl = \"{0}/\"\nauth = {{ bearer = \"token\" }}\n\
             [limits]\ndeadline_secs = 3600\n",
            server.base()
        ),
    )
    .unwrap();
    Connection::load(&path).unwrap()
}

fn creates(from: usize, n: usize) -> Vec<Order> {
    (from..from + n)
        .map(|i| Order {
            id: format!("o{i}"),
            entity_type: "account".into(),
            key: format!("user-{:05}", i + 1),
            kind: OrderKind::Create {
                attributes: [
                    ("givenName", "Ada".to_owned()),
                    ("familyName", format!("O'Name{i}")),
                    ("email", format!("user{i}@idgard.test")),
                    ("active", "true".to_owned()),
                    ("employeeNumber", format!("E{i:05}")),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), vec![v]))
                .collect(),
            },
        })
        .collect()
}

fn fulfil(rt: &Runtime, loaded: &Loaded, conn: &Connection, from: usize, n: usize) {
    for chunk in creates(from, n).chunks(BATCH) {
        let out = rt
            .run(
                loaded,
                conn,
                &RunFolders::default(),
                Request::Fulfill(chunk.to_vec()),
                Box::new(Count::default()),
            )
            .unwrap();
        let Outcome::Fulfilled(results) = out else {
            panic!("{out:?}")
        };
        assert!(
            results.iter().all(|r| r.outcome == OrderOutcome::Done),
            "{results:?}"
        );
    }
}

fn export(rt: &Runtime, loaded: &Loaded, conn: &Connection) -> u64 {
    let count = Count::default();
    let request = Request::Export {
        cursor: None,
        batch_size: 1000,
    };
    let out = rt
        .run(
            loaded,
            conn,
            &RunFolders::default(),
            request,
            Box::new(count.clone()),
        )
        .unwrap();
    assert!(matches!(out, Outcome::Exported(_)), "{out:?}");
    count.get()
}

/// The connector: (creates, export) times.
fn idgard(n: usize, m: usize, page: usize) -> (Duration, Duration, u64) {
    let server = ScimServer::start(TOKEN, 0);
    let dir = tempfile::tempdir().unwrap();
    let rt = Runtime::new(RuntimeOptions::default()).unwrap();
    let loaded = rt
        .load(Path::new(idgard_tests::packages::CONNECTOR_SCIM))
        .unwrap();
    let conn = connection(dir.path(), &server, page);
    let t = Instant::now();
    fulfil(&rt, &loaded, &conn, 0, n);
    let create = t.elapsed();
    fulfil(&rt, &loaded, &conn, n, m.saturating_sub(n));
    let t = Instant::now();
    let exported = export(&rt, &loaded, &conn);
    (create, t.elapsed(), exported)
}

/// The Python client: (creates, export) times, as it reports them.
fn baseline(n: usize, m: usize, page: usize) -> (Duration, Duration, u64) {
    let server = ScimServer::start(TOKEN, 0);
    let out = Command::new(python())
        .arg(idgard_tests::root().join("tests/scim/bench_client.py"))
        .arg(server.base())
        .args([
            "--token",
            TOKEN,
            "--creates",
            &n.to_string(),
            "--export",
            &m.to_string(),
        ])
        .args(["--page-size", &page.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(line.lines().last().unwrap_or("")).unwrap();
    let secs = |k: &str| Duration::from_secs_f64(v[k].as_f64().unwrap());
    (
        secs("create_s"),
        secs("export_s"),
        v["exported"].as_u64().unwrap(),
    )
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n = env("IDGARD_BENCH_CREATES", 1_000);
    let m = env("IDGARD_BENCH_USERS", 10_000).max(n);
    let page = env("IDGARD_BENCH_PAGE", 500);
    println!(
        "SCIM: {n} creates, then a full export of {m} users in pages of {page} (scim2-server, loopback)"
    );
    let (ic, ie, iexp) = idgard(n, m, page);
    let (bc, be, bexp) = baseline(n, m, page);
    assert_eq!(iexp as usize, m, "idgard exported {iexp}");
    assert_eq!(bexp as usize, m, "the baseline exported {bexp}");
    let row = |what: &str, i: Duration, b: Duration| {
        println!(
            "  {what:<10} idgard {:>8.2} s   scim2-client {:>8.2} s   ratio {:.2}",
            i.as_secs_f64(),
            b.as_secs_f64(),
            i.as_secs_f64() / b.as_secs_f64()
        );
    };
    row("creates", ic, bc);
    row("export", ie, be);
}
