//! The SQL connector against the database's own tools, in one run, on a scratch database:
//!
//! (a) export: M rows of an accounts table through the host and the sandboxed connector (a full
//!     export, entries validated and counted by the host) vs `psql -c "\copy (SELECT ...) TO
//!     '/dev/null'"` of the same query;
//! (b) fulfil: N creates through the host (batches of 1,000 orders, as the agent sends them) vs
//!     a plain client (sqlx) inserting the same rows with multi-row INSERTs of 1,000 rows, each
//!     batch in its own transaction.
//!
//! PostgreSQL always; MariaDB too for (b) (no `\copy` there; its export is timed alone).
//!
//! ```sh
//! cargo bench -p idgard-tests --bench sql              # M = 1,000,000, N = 10,000
//! IDGARD_BENCH_ROWS=100000 cargo bench -p idgard-tests --bench sql
//! ```

mod support;
use idgard_host::model::{Order, OrderKind, OrderOutcome};
use idgard_host::{Connection, Loaded, Outcome, Request, RunFolders, Runtime, RuntimeOptions};
use sqlx::{Executor, Row};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use support::*;

const BATCH: usize = 1_000;

struct Scratch {
    admin: String,
    url: String,
    name: String,
    postgres: bool,
}

impl Scratch {
    fn new(rt: &tokio::runtime::Runtime, admin: &str, postgres: bool) -> Self {
        let name = format!("idgard_sqlbench_{}", std::process::id());
        rt.block_on(async {
            let mut c = <sqlx::AnyConnection as sqlx::Connection>::connect(admin)
                .await
                .expect("the database server on loopback");
            c.execute(format!("DROP DATABASE IF EXISTS {name}").as_str())
                .await
                .unwrap();
            c.execute(format!("CREATE DATABASE {name}").as_str())
                .await
                .unwrap();
        });
        let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
        Self {
            admin: admin.to_owned(),
            url,
            name,
            postgres,
        }
    }

    fn run(&self, rt: &tokio::runtime::Runtime, sql: &[String]) {
        rt.block_on(async {
            let mut c = <sqlx::AnyConnection as sqlx::Connection>::connect(&self.url)
                .await
                .unwrap();
            for s in sql {
                c.execute(s.as_str()).await.unwrap();
            }
        });
    }

    fn drop_with(&self, rt: &tokio::runtime::Runtime) {
        let force = if self.postgres { " WITH (FORCE)" } else { "" };
        rt.block_on(async {
            let mut c = <sqlx::AnyConnection as sqlx::Connection>::connect(&self.admin)
                .await
                .unwrap();
            c.execute(format!("DROP DATABASE IF EXISTS {}{force}", self.name).as_str())
                .await
                .unwrap();
        });
    }
}

const TABLE: &str = "CREATE TABLE people (id VARCHAR(32) PRIMARY KEY, login VARCHAR(64), \
    first_name VARCHAR(64), last_name VARCHAR(64), mail VARCHAR(128), active BOOLEAN, version BIGINT)";

fn connection(dir: &Path, url: &str) -> Connection {
    let path = dir.join("app.toml");
    std::fs::write(
        &path,
        format!(
            "name = \"app\"\nconnector = \"sql\"\n[settings]\ndatabase = \"app\"\n\
             accounts_table = \"people\"\nkey = \"id\"\n\
             columns = [\"login\", \"first_name\", \"last_name\", \"mail\", \"active\"]\n\
             watermark = \"version\"\nenabled_column = \"active\"\n\
             [grants.databases.app]\nurl = \"{url}\"\ntls = \"none\"\naccess = \"read-write\"\n\
             [limits]\ndeadline_secs = 3600\nmax_output_mib = 4096\n"
        ),
    )
    .unwrap();
    Connection::load(&path).unwrap()
}

fn best<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut out = None;
    let mut best = Duration::MAX;
    for _ in 0..runs {
        let t = Instant::now();
        let r = f();
        best = best.min(t.elapsed());
        out = Some(r);
    }
    (best, out.unwrap())
}

fn export(rt: &Runtime, loaded: &Loaded, conn: &Connection) -> u64 {
    let count = Count::default();
    let out = rt
        .run(
            loaded,
            conn,
            &RunFolders::default(),
            Request::Export {
                cursor: None,
                batch_size: 1000,
            },
            Box::new(count.clone()),
        )
        .unwrap();
    assert!(matches!(out, Outcome::Exported(_)), "{out:?}");
    count.get()
}

fn creates(from: usize, n: usize) -> Vec<Order> {
    (from..from + n)
        .map(|i| Order {
            id: format!("o{i}"),
            entity_type: "account".into(),
            key: format!("new{i}"),
            kind: OrderKind::Create {
                attributes: [
                    ("login", format!("user{i}")),
                    ("first_name", "Ada".to_owned()),
                    ("last_name", format!("O'Name{i}")),
                    ("mail", format!("user{i}@idgard.test")),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), vec![v]))
                .collect(),
            },
        })
        .collect()
}

fn fulfil(rt: &Runtime, loaded: &Loaded, conn: &Connection, n: usize) {
    for chunk in creates(0, n).chunks(BATCH) {
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

/// The plain client: multi-row INSERTs of BATCH rows, one transaction each.
async fn client_inserts(url: &str, n: usize, postgres: bool) {
    let mut c = <sqlx::AnyConnection as sqlx::Connection>::connect(url)
        .await
        .unwrap();
    for start in (0..n).step_by(BATCH) {
        let mut sql = String::from(
            "INSERT INTO people (id, login, first_name, last_name, mail, active) VALUES ",
        );
        let mut p = 0;
        for i in start..(start + BATCH).min(n) {
            if i > start {
                sql.push_str(", ");
            }
            sql.push('(');
            for col in 0..6 {
                if col > 0 {
                    sql.push_str(", ");
                }
                p += 1;
                if postgres {
                    sql.push_str(&format!("${p}"));
                } else {
                    sql.push('?');
                }
            }
            sql.push(')');
        }
        let mut q = sqlx::query(&sql);
        for i in start..(start + BATCH).min(n) {
            q = q
                .bind(format!("new{i}"))
                .bind(format!("user{i}"))
                .bind("Ada")
                .bind(format!("O'Name{i}"))
                .bind(format!("user{i}@idgard.test"))
                .bind(true);
        }
        let mut tx = sqlx::Connection::begin(&mut c).await.unwrap();
        q.execute(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();
    }
}

fn count(rt: &tokio::runtime::Runtime, url: &str) -> i64 {
    rt.block_on(async {
        let mut c = <sqlx::AnyConnection as sqlx::Connection>::connect(url)
            .await
            .unwrap();
        sqlx::query("SELECT COUNT(*) FROM people")
            .fetch_one(&mut c)
            .await
            .unwrap()
            .get::<i64, _>(0)
    })
}

fn main() {
    let rows = env("IDGARD_BENCH_ROWS", 1_000_000);
    let creates_n = env("IDGARD_BENCH_CREATES", 10_000);
    sqlx::any::install_default_drivers();
    let tokio = tokio::runtime::Runtime::new().unwrap();
    let host = Runtime::new(RuntimeOptions::default()).unwrap();
    let loaded = host
        .load(Path::new(idgard_tests::packages::CONNECTOR_SQL))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (admin, postgres) in [
        ("postgres://postgres@127.0.0.1:5432/postgres", true),
        ("mysql://root@127.0.0.1:3306/test", false),
    ] {
        let db = Scratch::new(&tokio, admin, postgres);
        let kind = if postgres { "PostgreSQL" } else { "MariaDB" };
        let fill = if postgres {
            format!(
                "INSERT INTO people SELECT 'p' || i, 'user' || i, 'Ada', 'Name' || i, \
                 'user' || i || '@idgard.test', TRUE, i FROM generate_series(1, {rows}) i"
            )
        } else {
            // MariaDB's sequence engine: `seq_1_to_N` is a table of 1..N.
            format!(
                "INSERT INTO people SELECT CONCAT('p', seq), CONCAT('user', seq), 'Ada', \
                 CONCAT('Name', seq), CONCAT('user', seq, '@idgard.test'), TRUE, seq \
                 FROM seq_1_to_{rows}"
            )
        };
        let setup = vec![TABLE.to_owned(), fill];
        let t = Instant::now();
        db.run(&tokio, &setup);
        println!("{kind}: {rows} rows loaded in {:.1?}", t.elapsed());
        let conn = connection(dir.path(), &db.url);

        let (idgard, n) = best(3, || export(&host, &loaded, &conn));
        assert_eq!(n as usize, rows);
        if postgres {
            let (psql, ()) = best(3, || {
                let ok = Command::new("psql")
                    .args([&db.url, "-q", "-c"])
                    .arg("\\copy (SELECT * FROM people) TO '/dev/null'")
                    .status()
                    .unwrap()
                    .success();
                assert!(ok, "psql \\copy failed");
            });
            println!(
                "{kind} export of {rows} rows: idgard {idgard:.2?}, psql \\copy {psql:.2?}: ratio {:.2}",
                idgard.as_secs_f64() / psql.as_secs_f64()
            );
        } else {
            println!("{kind} export of {rows} rows: idgard {idgard:.2?}");
        }

        let reset = vec!["DELETE FROM people WHERE id LIKE 'new%'".to_owned()];
        let mut idgard = Duration::MAX;
        let mut client = Duration::MAX;
        for _ in 0..3 {
            db.run(&tokio, &reset);
            let t = Instant::now();
            fulfil(&host, &loaded, &conn, creates_n);
            idgard = idgard.min(t.elapsed());
            assert_eq!(count(&tokio, &db.url) as usize, rows + creates_n);
            db.run(&tokio, &reset);
            let t = Instant::now();
            tokio.block_on(client_inserts(&db.url, creates_n, postgres));
            client = client.min(t.elapsed());
        }
        println!(
            "{kind} fulfil of {creates_n} creates: idgard {idgard:.2?}, batched INSERT {client:.2?}: ratio {:.2}",
            idgard.as_secs_f64() / client.as_secs_f64()
        );
        db.drop_with(&tokio);
    }
}
