//! The SQL connector through the real host against the machine's PostgreSQL and MariaDB: export
//! (child tables, groups, incremental with tombstones), every fulfil operation with values that
//! would break SQL built by pasting, and the grant enforced by the host (read-only, an allow-list
//! of statements, another database, a password the connector cannot read, a database down).

use crate::ldap::fulfilled;
use crate::support::*;
use idgard_host::model::{AttributeChange, ChangeOp, ErrorKind, Order, OrderKind, OrderOutcome};
use idgard_host::{Connection, Outcome, Request};
use sqlx::Executor;
use std::sync::OnceLock;

pub fn sql() -> &'static idgard_host::Loaded {
    static L: OnceLock<idgard_host::Loaded> = OnceLock::new();
    L.get_or_init(|| {
        runtime()
            .load(std::path::Path::new(idgard_tests::packages::CONNECTOR_SQL))
            .unwrap()
    })
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A scratch database on one of the machine's servers, and a user with a password that may use
/// it (PostgreSQL here trusts loopback: any password passes), dropped at the end of the test.
pub struct Db {
    pub kind: &'static str,
    pub name: String,
    pub password: String,
    admin: String,
}

impl Db {
    pub fn postgres() -> Self {
        Self::create("postgres", "postgres://postgres@127.0.0.1:5432/postgres")
    }

    pub fn mariadb() -> Self {
        Self::create("mysql", "mysql://root@127.0.0.1:3306/test")
    }

    fn create(kind: &'static str, admin: &str) -> Self {
        let name = format!(
            "idgard_sql_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        );
        let db = Db {
            kind,
            password: format!("pw-{name}"),
            name,
            admin: admin.to_owned(),
        };
        db.admin_run(&format!("CREATE DATABASE {}", db.name));
        if kind == "mysql" {
            db.admin_run(&format!(
                "CREATE USER '{0}'@'127.0.0.1' IDENTIFIED BY '{1}'",
                db.name, db.password
            ));
            db.admin_run(&format!("GRANT ALL ON {0}.* TO '{0}'@'127.0.0.1'", db.name));
        }
        db
    }

    /// The database's URL as the tests' own client uses it (the server's administrator).
    pub fn url(&self) -> String {
        let base = self.admin.rsplit_once('/').unwrap().0;
        format!("{base}/{}", self.name)
    }

    /// The URL the connection grants: the test user, whose password is a secret.
    pub fn granted_url(&self) -> String {
        match self.kind {
            "mysql" => format!("mysql://{0}@127.0.0.1:3306/{0}", self.name),
            _ => self.url(),
        }
    }

    fn admin_run(&self, sql: &str) {
        sqlx::any::install_default_drivers();
        rt().block_on(async {
            let mut c = <sqlx::AnyConnection as sqlx::Connection>::connect(&self.admin)
                .await
                .unwrap_or_else(|e| {
                    panic!("{} on loopback is needed by these tests: {e}", self.kind)
                });
            c.execute(sql).await.unwrap();
        });
    }

    /// Runs statements on the scratch database.
    pub fn run(&self, sql: &[&str]) {
        sqlx::any::install_default_drivers();
        rt().block_on(async {
            let mut c = <sqlx::AnyConnection as sqlx::Connection>::connect(&self.url())
                .await
                .unwrap();
            for s in sql {
                c.execute(*s).await.unwrap_or_else(|e| panic!("{s}: {e}"));
            }
        });
    }

    /// One text column of a query, every row.
    pub fn texts(&self, sql: &str) -> Vec<String> {
        sqlx::any::install_default_drivers();
        rt().block_on(async {
            let mut c = <sqlx::AnyConnection as sqlx::Connection>::connect(&self.url())
                .await
                .unwrap();
            sqlx::query_scalar::<_, String>(sql)
                .fetch_all(&mut c)
                .await
                .unwrap()
        })
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if self.kind == "postgres" {
            self.admin_run(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        } else {
            self.admin_run(&format!("DROP DATABASE IF EXISTS {}", self.name));
            self.admin_run(&format!("DROP USER IF EXISTS '{}'@'127.0.0.1'", self.name));
        }
    }
}

const SCHEMA: &[&str] = &[
    "CREATE TABLE people (id VARCHAR(64) PRIMARY KEY, login VARCHAR(200), first_name VARCHAR(200), \
     active BOOLEAN NOT NULL DEFAULT TRUE, version BIGINT NOT NULL DEFAULT 0, \
     deleted BOOLEAN NOT NULL DEFAULT FALSE, password VARCHAR(200))",
    "CREATE TABLE people_aliases (person_id VARCHAR(64) NOT NULL REFERENCES people(id), \
     alias VARCHAR(200) NOT NULL)",
    "CREATE TABLE teams (id VARCHAR(64) PRIMARY KEY, name VARCHAR(200))",
    "CREATE TABLE team_members (team_id VARCHAR(64) NOT NULL, member_id VARCHAR(64) NOT NULL)",
    "CREATE TABLE x (id INT)",
    "INSERT INTO people (id, login, first_name, version) VALUES \
     ('p1', 'ada', 'Ada', 1), ('p2', 'obrien', 'O''Brien', 2), ('p3', 'zoe', 'Zoë', 3)",
    "INSERT INTO people_aliases VALUES ('p1', 'ada@idgard.test'), ('p1', 'a.l@idgard.test')",
    "INSERT INTO teams VALUES ('t1', 'Engineering')",
    "INSERT INTO team_members VALUES ('t1', 'p1'), ('t1', 'p3')",
];

/// A connection to `db` with `grant` lines added to its database grant.
fn connection(s: &Scratch, db: &Db, grant: &str) -> Connection {
    s.connection(&format!(
        "name = \"app\"\nconnector = \"sql\"\n\
         [settings]\ndatabase = \"app\"\naccounts_table = \"people\"\nkey = \"id\"\n\
         columns = [\"login\", \"first_name\", \"active\"]\nwatermark = \"version\"\n\
         tombstone = \"deleted\"\nenabled_column = \"active\"\n\
         multi_valued = [\"alias:people_aliases(person_id,alias)\"]\n\
         set_password_statement = \"UPDATE people SET password = :password WHERE id = :key\"\n\
         groups_table = \"teams\"\ngroups_key = \"id\"\nmembers = \"team_members(team_id,member_id)\"\n\
         [secrets]\ndb_password = {{ value = \"{}\" }}\n\
         [grants.databases.app]\nurl = \"{}\"\npassword = \"db_password\"\ntls = \"none\"\n{grant}\n",
        db.password,
        db.granted_url()
    ))
}

fn read_write(s: &Scratch, db: &Db) -> Connection {
    connection(s, db, "access = \"read-write\"")
}

fn create(id: &str, key: &str, attrs: &[(&str, &[&str])]) -> Order {
    order(
        id,
        "account",
        key,
        OrderKind::Create {
            attributes: attrs
                .iter()
                .map(|(n, v)| ((*n).to_owned(), v.iter().map(|s| (*s).to_owned()).collect()))
                .collect(),
        },
    )
}

fn exported(
    s: &Scratch,
    conn: &Connection,
    request: Request,
) -> (
    Vec<idgard_sdk::wire::Entry>,
    Option<idgard_host::model::Cursor>,
) {
    let (out, cap) = s.run(sql(), conn, request);
    match out {
        Ok(Outcome::Exported(summary)) => (cap.entries(), summary.cursor),
        other => panic!("{other:?}"),
    }
}

fn both(test: impl Fn(&Db)) {
    for db in [Db::postgres(), Db::mariadb()] {
        db.run(SCHEMA);
        test(&db);
    }
}

#[test]
fn exports_accounts_their_aliases_and_groups_then_what_changed() {
    both(|db| {
        let s = Scratch::new();
        let conn = read_write(&s, db);
        let (entries, cursor) = exported(&s, &conn, full());
        let accounts: Vec<_> = entries
            .iter()
            .filter(|e| e.entity_type == "account")
            .collect();
        assert_eq!(accounts.len(), 3, "{}: {entries:?}", db.kind);
        let p2 = accounts.iter().find(|e| e.key == "p2").unwrap();
        assert_eq!(p2.get("first_name"), Some("O'Brien"));
        let active = p2.get("active").unwrap();
        assert!(active == "true" || active == "1", "{active}");
        let p1 = accounts.iter().find(|e| e.key == "p1").unwrap();
        let aliases = &p1.attributes.iter().find(|(n, _)| n == "alias").unwrap().1;
        assert_eq!(aliases.len(), 2);
        let team = entries.iter().find(|e| e.entity_type == "group").unwrap();
        let mut members = team
            .attributes
            .iter()
            .find(|(n, _)| n == "member")
            .unwrap()
            .1
            .clone();
        members.sort();
        assert_eq!(members, ["p1", "p3"]);

        // A change past the watermark and a deletion by tombstone.
        db.run(&[
            "UPDATE people SET first_name = 'Augusta', version = 10 WHERE id = 'p1'",
            "UPDATE people SET deleted = TRUE, version = 11 WHERE id = 'p3'",
        ]);
        let (changes, next) = exported(&s, &conn, since(cursor));
        let accounts: Vec<_> = changes
            .iter()
            .filter(|e| e.entity_type == "account")
            .collect();
        assert_eq!(accounts.len(), 2, "{}: {changes:?}", db.kind);
        assert_eq!(accounts[0].key, "p1");
        assert_eq!(accounts[0].get("first_name"), Some("Augusta"));
        assert_eq!(accounts[1].key, "p3");
        assert_eq!(accounts[1].op, idgard_sdk::wire::EntryOp::Delete);
        // Nothing new: only the rows at the last watermark again.
        let (again, _) = exported(&s, &conn, since(next));
        assert!(
            again.iter().filter(|e| e.entity_type == "account").count() <= 1,
            "{again:?}"
        );
    });
}

#[test]
fn fulfils_every_order_with_values_that_would_break_pasted_sql() {
    both(|db| {
        let s = Scratch::new();
        let conn = read_write(&s, db);
        let injection = "Robert'); DROP TABLE x;--";
        let orders = vec![
            create(
                "c1",
                "p4",
                &[
                    ("login", &[injection]),
                    ("first_name", &["O'Brien"]),
                    ("alias", &["b@idgard.test"]),
                ],
            ),
            create("c2", "p5", &[("login", &["eve"])]),
            create("c3", "p1", &[("login", &["again"])]),
            order(
                "u1",
                "account",
                "p2",
                OrderKind::Update {
                    changes: vec![
                        AttributeChange {
                            name: "first_name".into(),
                            op: ChangeOp::Replace,
                            values: vec!["Miles".into()],
                        },
                        AttributeChange {
                            name: "alias".into(),
                            op: ChangeOp::Add,
                            values: vec!["m@idgard.test".into()],
                        },
                    ],
                },
            ),
            order(
                "u2",
                "account",
                "nobody",
                OrderKind::Update {
                    changes: vec![AttributeChange {
                        name: "login".into(),
                        op: ChangeOp::Replace,
                        values: vec!["x".into()],
                    }],
                },
            ),
            order("d1", "account", "p2", OrderKind::Disable),
            order(
                "s1",
                "account",
                "p5",
                OrderKind::SetPassword {
                    password: "pa'ss".into(),
                },
            ),
            order("r1", "account", "p1", OrderKind::Delete),
            create("c4", "p6", &[("shoe_size", &["44"])]),
        ];
        let (out, _) = s.run(sql(), &conn, Request::Fulfill(orders));
        let results = fulfilled(out);
        let outcome = |id: &str| results.iter().find(|r| r.id == id).unwrap().outcome.clone();
        for id in ["c1", "c2", "u1", "d1", "s1", "r1"] {
            assert_eq!(
                outcome(id),
                OrderOutcome::Done,
                "{} {id}: {results:?}",
                db.kind
            );
        }
        let OrderOutcome::Failed(m) = outcome("c3") else {
            panic!("{results:?}")
        };
        assert!(m.contains("already exists"), "{m}");
        let OrderOutcome::Failed(m) = outcome("u2") else {
            panic!("{results:?}")
        };
        assert!(m.contains("no account with key `nobody`"), "{m}");
        let OrderOutcome::Failed(m) = outcome("c4") else {
            panic!("{results:?}")
        };
        assert!(m.contains("shoe_size"), "{m}");

        assert_eq!(
            db.texts("SELECT login FROM people WHERE id = 'p4'"),
            [injection]
        );
        assert_eq!(
            db.texts("SELECT first_name FROM people WHERE id = 'p4'"),
            ["O'Brien"]
        );
        assert_eq!(
            db.texts("SELECT alias FROM people_aliases WHERE person_id = 'p4'"),
            ["b@idgard.test"]
        );
        assert_eq!(
            db.texts("SELECT first_name FROM people WHERE id = 'p2'"),
            ["Miles"]
        );
        assert_eq!(
            db.texts("SELECT password FROM people WHERE id = 'p5'"),
            ["pa'ss"]
        );
        assert!(db.texts("SELECT id FROM people WHERE id = 'p1'").is_empty());
        assert!(
            db.texts("SELECT alias FROM people_aliases WHERE person_id = 'p1'")
                .is_empty()
        );
        assert_eq!(
            db.texts(
                "SELECT CASE WHEN active THEN 'on' ELSE 'off' END FROM people WHERE id = 'p2'"
            ),
            ["off"]
        );
        // The table the injected value names is still there.
        db.run(&["SELECT COUNT(*) FROM x"]);
    });
}

#[test]
fn the_host_enforces_the_grant() {
    both(|db| {
        let s = Scratch::new();
        // Read-only: exports work, writes are refused before they reach the database.
        let conn = connection(&s, db, "access = \"read-only\"");
        assert_eq!(exported(&s, &conn, full()).0.len(), 4);
        let (out, _) = s.run(
            sql(),
            &conn,
            Request::Fulfill(vec![create("c1", "p9", &[("login", &["z"])])]),
        );
        let OrderOutcome::Failed(m) = &fulfilled(out)[0].outcome else {
            panic!()
        };
        assert!(m.contains("read-only"), "{m}");
        assert!(db.texts("SELECT id FROM people WHERE id = 'p9'").is_empty());

        // An allow-list without the connector's statements: refused, naming the statement.
        let conn = connection(
            &s,
            db,
            "access = \"read-only\"\nstatements = [\"SELECT 1\"]",
        );
        let (out, _) = s.run(sql(), &conn, full());
        let Ok(Outcome::Failed { kind, message }) = out else {
            panic!("{out:?}")
        };
        assert_eq!(kind, ErrorKind::Denied);
        assert!(message.contains("allows only the statements"), "{message}");

        // Another database than the one granted.
        let s2 = Scratch::new();
        let mut conn = connection(&s2, db, "access = \"read-only\"");
        conn.settings.insert("database".into(), "postgres".into());
        let (out, _) = s2.run(sql(), &conn, Request::TestConnection);
        let Ok(Outcome::Failed { kind, message }) = out else {
            panic!("{out:?}")
        };
        assert_eq!(kind, ErrorKind::Denied);
        assert!(message.contains("no database `postgres`"), "{message}");
    });
}

#[test]
fn a_database_that_is_down_or_refuses_the_login_says_so() {
    let s = Scratch::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conn = s.connection(&format!(
        "name = \"app\"\nconnector = \"sql\"\n[settings]\ndatabase = \"app\"\naccounts_table = \"people\"\nkey = \"id\"\n\
         [grants.databases.app]\nurl = \"postgres://idgard@127.0.0.1:{port}/hr\"\ntls = \"none\"\naccess = \"read-only\"\nconnect_timeout_s = 2\n"
    ));
    let (out, _) = s.run(sql(), &conn, Request::TestConnection);
    let Ok(Outcome::Failed { kind, .. }) = out else {
        panic!("{out:?}")
    };
    assert_eq!(kind, ErrorKind::Unavailable);

    let conn = s.connection(
        "name = \"app\"\nconnector = \"sql\"\n[settings]\ndatabase = \"app\"\naccounts_table = \"people\"\nkey = \"id\"\n\
         [secrets]\npw = { value = \"wrong-password\" }\n\
         [grants.databases.app]\nurl = \"mysql://nobody_at_all@127.0.0.1:3306/test\"\npassword = \"pw\"\ntls = \"none\"\naccess = \"read-only\"\n",
    );
    let (out, cap) = s.run(sql(), &conn, Request::TestConnection);
    let Ok(Outcome::Failed { kind, message }) = out else {
        panic!("{out:?}")
    };
    assert_eq!(kind, ErrorKind::Denied, "{message}");
    assert!(!message.contains("wrong-password"));
    assert!(
        cap.logs()
            .iter()
            .all(|(_, l)| !l.contains("wrong-password"))
    );
}

/// A connection whose accounts come from `query`, on PostgreSQL, with `grant` lines added.
fn query_connection(s: &Scratch, db: &Db, query: &str, grant: &str) -> Connection {
    s.connection(&format!(
        "name = \"app\"\nconnector = \"sql\"\n[settings]\ndatabase = \"app\"\n\
         accounts_query = {query:?}\nkey = \"id\"\n\
         [grants.databases.app]\nurl = \"{}\"\ntls = \"none\"\naccess = \"read-only\"\n{grant}\n",
        db.granted_url()
    ))
}

#[test]
fn a_statement_past_its_timeout_is_stopped_by_the_database() {
    let db = Db::postgres();
    let s = Scratch::new();
    let conn = query_connection(
        &s,
        &db,
        "SELECT 'p1' AS id FROM pg_sleep(60)",
        "statement_timeout_s = 1",
    );
    let t = std::time::Instant::now();
    let (out, _) = s.run(sql(), &conn, full());
    let Ok(Outcome::Failed { kind, message }) = out else {
        panic!("{out:?}")
    };
    assert_eq!(kind, ErrorKind::Unavailable, "{message}");
    assert!(message.contains("57014"), "{message}");
    assert!(
        t.elapsed() < std::time::Duration::from_secs(20),
        "the timeout did not stop it"
    );
}

#[test]
fn a_database_that_goes_away_mid_export_fails_the_export_as_unavailable() {
    let db = Db::postgres();
    db.run(&[
        "CREATE TABLE people (id TEXT PRIMARY KEY, name TEXT)",
        "INSERT INTO people SELECT 'p' || i, repeat('x', 200) FROM generate_series(1, 300000) i",
    ]);
    let s = Scratch::new();
    let conn = query_connection(
        &s,
        &db,
        "SELECT id, name, pg_sleep(0.00001)::text AS pause FROM people",
        "",
    );
    let killer = {
        let admin = db.url();
        std::thread::spawn(move || {
            sqlx::any::install_default_drivers();
            rt().block_on(async {
                let mut c = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin)
                    .await
                    .unwrap();
                // Wait for the connector's query to run, then end its session.
                for _ in 0..200 {
                    let done = sqlx::query_scalar::<_, i64>(
                        "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity \
                         WHERE application_name = 'idgard-agent' AND state = 'active' \
                         AND datname = current_database()",
                    )
                    .fetch_one(&mut c)
                    .await
                    .unwrap();
                    if done > 0 {
                        return true;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                false
            })
        })
    };
    let (out, _) = s.run(sql(), &conn, full());
    assert!(
        killer.join().unwrap(),
        "the export's session was never seen"
    );
    match out {
        Ok(Outcome::Failed { kind, message }) => {
            assert_eq!(kind, ErrorKind::Unavailable, "{message}")
        }
        other => panic!("{other:?}"),
    }
}
