//! The host's SQL capability seen from a connector that runs whatever SQL it is told
//! (`tests/guests/sqlprobe`): what the host withholds (the database password), and SQL Server
//! through tiberius against the TDS mock (`mssql-mock-tds`, installed by `scripts/setup.sh`):
//! login, rows and counts without TLS, and a driver that panics on the mock's TLS handshake
//! failing the run, not the agent. A real SQL Server is tested only when one is given
//! (`IDGARD_TEST_MSSQL_URL`); otherwise that test is ignored, not passed.

use crate::sql::Db;
use crate::support::*;
use idgard_host::model::ErrorKind;
use idgard_host::{Connection, Outcome, Request};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

fn probe() -> &'static idgard_host::Loaded {
    static L: OnceLock<idgard_host::Loaded> = OnceLock::new();
    L.get_or_init(|| {
        runtime()
            .load(std::path::Path::new(idgard_tests::packages::GUEST_SQLPROBE))
            .unwrap()
    })
}

/// A probe connection: `settings` and the database grant's `grant` lines.
fn probe_connection(s: &Scratch, settings: &str, grant: &str) -> Connection {
    s.connection(&format!(
        "name = \"probe\"\nconnector = \"sqlprobe\"\n[settings]\ndatabase = \"db\"\n{settings}\n\
         [secrets]\ndb_password = {{ value = \"s3cret-db\" }}\nother = {{ value = \"x\" }}\n\
         [grants.databases.db]\npassword = \"db_password\"\n{grant}\n"
    ))
}

fn exported(s: &Scratch, conn: &Connection) -> (Vec<idgard_sdk::wire::Entry>, Captured) {
    let (out, cap) = s.run(probe(), conn, full());
    assert!(
        matches!(out, Ok(Outcome::Exported(_))),
        "{out:?} {:?}",
        cap.logs()
    );
    (cap.entries(), cap)
}

#[test]
fn the_database_password_never_reaches_the_connector() {
    let db = Db::postgres();
    let s = Scratch::new();
    let grant = format!(
        "url = \"{}\"\ntls = \"none\"\naccess = \"read-only\"",
        db.granted_url()
    );
    for (secret, seen) in [("db_password", "secret: none"), ("other", "secret: found")] {
        let conn = probe_connection(
            &s,
            &format!("query = \"SELECT 1\"\nsecret = \"{secret}\""),
            &grant,
        );
        let (entries, cap) = exported(&s, &conn);
        assert_eq!(entries.len(), 1);
        assert!(cap.logged(seen), "{secret}: {:?}", cap.logs());
        assert!(cap.logs().iter().all(|(_, l)| !l.contains("s3cret-db")));
    }
}

/// `mssql-mock-tds` on a free loopback port, stopped when dropped.
struct Mock(Child, u16);

impl Mock {
    fn start(tls: &[&str]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mock = Command::new("mssql-mock-tds")
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(tls)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(|child| Mock(child, port))
            .expect("mssql-mock-tds (scripts/setup.sh installs it with cargo install) is needed");
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return mock;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        panic!("mssql-mock-tds did not listen on port {port}");
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const THREE: &str = "query = \"SELECT CAST(1 AS BIGINT), 2, 3\"";

#[test]
fn sql_server_through_the_tds_mock_without_tls() {
    let mock = Mock::start(&["--tls-mode", "none"]);
    let s = Scratch::new();
    let conn = probe_connection(
        &s,
        &format!("{THREE}\nstatements = [\"UPDATE t SET x = 1\"]"),
        &format!(
            "url = \"mssql://idgard@127.0.0.1:{}/master\"\ntls = \"none\"\naccess = \"read-write\"",
            mock.1
        ),
    );
    let (entries, cap) = exported(&s, &conn);
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].get("c0"), Some("1"));
    assert_eq!(entries[0].get("c2"), Some("3"));
    assert!(cap.logged("counts: [0]"), "{:?}", cap.logs());
}

/// tiberius 0.12 asserts that every packet of a TLS handshake is a pre-login packet; the mock's
/// TDS 7.4 TLS sends others, and the driver panics. A real fault of a real driver: it must fail
/// the run, not the agent, and the next run must work.
#[test]
fn a_driver_that_panics_fails_the_run_not_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    idgard_tests::slapd::server_certificates(
        dir.path(),
        vec!["127.0.0.1".into()],
        "mssql.idgard.test",
    );
    let (cert, key) = (dir.path().join("server.pem"), dir.path().join("server.key"));
    let tls = Mock::start(&[
        "--tls-mode",
        "optional",
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
    let s = Scratch::new();
    for settings in [THREE, "statements = [\"UPDATE t SET x = 1\"]"] {
        let conn = probe_connection(
            &s,
            settings,
            &format!(
                "url = \"mssql://idgard@127.0.0.1:{}/master\"\ntls = \"required\"\nca = {:?}\n\
                 access = \"read-write\"",
                tls.1,
                dir.path().join("ca.pem")
            ),
        );
        let (out, _) = s.run(probe(), &conn, full());
        let Ok(Outcome::Failed { kind, message }) = out else {
            panic!("{out:?}")
        };
        assert_eq!(kind, ErrorKind::Internal, "{message}");
        assert!(message.contains("driver failed"), "{message}");
    }
    let plain = Mock::start(&["--tls-mode", "none"]);
    let conn = probe_connection(
        &s,
        THREE,
        &format!(
            "url = \"mssql://idgard@127.0.0.1:{}/master\"\ntls = \"none\"\naccess = \"read-only\"",
            plain.1
        ),
    );
    assert_eq!(exported(&s, &conn).0.len(), 1);
}

#[test]
#[ignore = "needs a real SQL Server: set IDGARD_TEST_MSSQL_URL (mssql://user@host:port/db) and \
            IDGARD_TEST_MSSQL_PASSWORD, then run with --ignored"]
fn a_real_sql_server_when_one_is_given() {
    let url = std::env::var("IDGARD_TEST_MSSQL_URL").expect("IDGARD_TEST_MSSQL_URL");
    let password = std::env::var("IDGARD_TEST_MSSQL_PASSWORD").unwrap_or_default();
    let s = Scratch::new();
    let conn = s.connection(&format!(
        "name = \"probe\"\nconnector = \"sqlprobe\"\n[settings]\ndatabase = \"db\"\n\
         query = \"SELECT CAST(N'O''Brien' AS NVARCHAR(20)), CAST(42 AS INT), SYSUTCDATETIME()\"\n\
         statements = [\"CREATE TABLE #idgard (id INT)\", \"INSERT INTO #idgard VALUES (1), (2)\"]\n\
         [secrets]\ndb_password = {{ value = {password:?} }}\n\
         [grants.databases.db]\nurl = {url:?}\npassword = \"db_password\"\ntls = \"none\"\naccess = \"read-write\"\n"
    ));
    let (entries, cap) = exported(&s, &conn);
    assert_eq!(entries[0].get("c0"), Some("O'Brien"));
    assert_eq!(entries[0].get("c1"), Some("42"));
    assert!(cap.logged("counts: [0, 2]"), "{:?}", cap.logs());
}

#[test]
fn a_read_only_grant_refuses_statements_on_every_driver() {
    let mock = Mock::start(&["--tls-mode", "none"]);
    let s = Scratch::new();
    let conn = probe_connection(
        &s,
        "statements = [\"DELETE FROM t\"]",
        &format!(
            "url = \"mssql://idgard@127.0.0.1:{}/master\"\ntls = \"none\"\naccess = \"read-only\"",
            mock.1
        ),
    );
    let (out, _) = s.run(
        probe(),
        &conn,
        Request::Export {
            cursor: None,
            batch_size: 10,
        },
    );
    let Ok(Outcome::Failed { kind, message }) = out else {
        panic!("{out:?}")
    };
    assert_eq!(kind, ErrorKind::Denied, "{message}");
    assert!(message.contains("read-only"), "{message}");
}
