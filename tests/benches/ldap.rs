//! The LDAP connector against OpenLDAP's own tools, on the same slapd configuration, in one run:
//!
//! (a) provisioning: N accounts and their memberships (N/1,000 groups of 1,000) created through
//!     the host and the sandboxed connector (fulfil batches of 1,000 orders, as the agent sends
//!     them) vs `ldapadd` of the equivalent LDIF, each into a fresh slapd, both as the same bind
//!     account over StartTLS; with `dbnosync`, and again with a sync per write for N/10;
//! (b) export: M entries through the host (paged, StartTLS) vs `ldapsearch -ZZ -E pr=500` of the
//!     same entries with the same account;
//! (c) incremental: 100 changes among the M entries, the connector's incremental export.
//!
//! ```sh
//! cargo bench -p idgard-tests --bench ldap       # N = 10,000, M = 100,000
//! IDGARD_BENCH_ACCOUNTS=2000 IDGARD_BENCH_ENTRIES=20000 cargo bench -p idgard-tests --bench ldap
//! ```

mod support;
use idgard_host::model::{Order, OrderKind, OrderOutcome};
use idgard_host::{
    Connection, Loaded, Observer, Outcome, Request, RunFolders, Runtime, RuntimeOptions,
};
use idgard_tests::slapd::{Options, Slapd};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use support::*;

const PEOPLE: &str = "ou=people,dc=idgard,dc=test";
const GROUPS: &str = "ou=groups,dc=idgard,dc=test";
const GROUP_SIZE: usize = 1_000;
const BATCH: usize = 1_000;

/// Counts entries by entity type and operation (when asked: decoding costs time the export
/// timings must not include).
#[derive(Clone, Default)]
struct Tally(
    std::sync::Arc<std::sync::Mutex<BTreeMap<String, u64>>>,
    bool,
);

impl Observer for Tally {
    fn log(&mut self, _level: idgard_host::Level, _message: &str) {}
    fn entries(&mut self, batch: &[u8], _count: u32) -> anyhow::Result<()> {
        if !self.1 {
            return Ok(());
        }
        let mut t = self.0.lock().unwrap();
        for e in idgard_sdk::wire::decode(batch) {
            let e = e?;
            *t.entry(format!("{} {:?}", e.entity_type, e.op))
                .or_default() += 1;
        }
        Ok(())
    }
}

fn connection(d: &Slapd, dir: &Path) -> Connection {
    connection_tls(d, dir, true)
}

fn connection_tls(d: &Slapd, dir: &Path, tls: bool) -> Connection {
    std::fs::write(dir.join("ca.pem"), &d.ca_pem).unwrap();
    let path = dir.join("connection.toml");
    std::fs::write(
        &path,
        format!(
            "name = \"dir\"\n[settings]\nbind_dn = {:?}\naccounts_base = {PEOPLE:?}\n\
             groups_base = {GROUPS:?}\npage_size = 500\n\
             [secrets]\nbind_password = {{ value = {:?} }}\n\
             [grants.endpoints.directory]\naddress = \"127.0.0.1:{}\"\n{}\n\
             [limits]\ndeadline_secs = 7200\n",
            d.writer_dn,
            d.writer_password,
            d.port,
            if tls {
                "tls = \"start-tls\"\nca = \"ca.pem\""
            } else {
                "tls = \"none\""
            }
        ),
    )
    .unwrap();
    Connection::load(&path).unwrap()
}

fn run(rt: &Runtime, loaded: &Loaded, conn: &Connection, request: Request) -> Outcome {
    run_counted(rt, loaded, conn, request, Tally::default())
}

fn run_counted(
    rt: &Runtime,
    loaded: &Loaded,
    conn: &Connection,
    request: Request,
    tally: Tally,
) -> Outcome {
    let folders = RunFolders {
        collect: None,
        orders: None,
    };
    match rt.run(loaded, conn, &folders, request, Box::new(tally)) {
        Ok(o @ (Outcome::Exported(_) | Outcome::Fulfilled(_))) => o,
        other => panic!("the connector failed: {other:?}"),
    }
}

/// A writer's command line of an OpenLDAP tool, over StartTLS.
fn tool(d: &Slapd, dir: &Path, name: &str) -> Command {
    tool_tls(d, dir, name, true)
}

/// The same, over StartTLS or not.
fn tool_tls(d: &Slapd, dir: &Path, name: &str, tls: bool) -> Command {
    let mut cmd = Command::new(name);
    cmd.env("LDAPTLS_CACERT", dir.join("ca.pem")).arg("-x");
    if tls {
        cmd.arg("-ZZ");
    }
    cmd.args(["-H", &d.url, "-D", &d.writer_dn, "-w", &d.writer_password]);
    cmd
}

fn ldif(n: usize) -> String {
    let mut out = String::with_capacity(n * 120);
    for i in 0..n {
        out.push_str(&format!(
            "dn: uid=p{i},{PEOPLE}\nobjectClass: top\nobjectClass: person\n\
             objectClass: organizationalPerson\nobjectClass: inetOrgPerson\n\
             uid: p{i}\ncn: Person {i}\nsn: {i}\nmail: p{i}@example.org\n\n"
        ));
    }
    for g in 0..n / GROUP_SIZE {
        out.push_str(&format!(
            "dn: cn=g{g},{GROUPS}\nobjectClass: top\nobjectClass: groupOfNames\ncn: g{g}\n"
        ));
        for i in g * GROUP_SIZE..(g + 1) * GROUP_SIZE {
            out.push_str(&format!("member: uid=p{i},{PEOPLE}\n"));
        }
        out.push('\n');
    }
    out
}

fn ldapadd(d: &Slapd, dir: &Path, text: &str) -> Duration {
    let file = dir.join("load.ldif");
    std::fs::write(&file, text).unwrap();
    let started = Instant::now();
    let out = tool(d, dir, "ldapadd")
        .arg("-f")
        .arg(&file)
        .output()
        .unwrap();
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "ldapadd: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn create(id: String, key: String, attrs: &[(&str, Vec<String>)]) -> Order {
    let attributes: BTreeMap<String, Vec<String>> = attrs
        .iter()
        .map(|(n, v)| ((*n).to_owned(), v.clone()))
        .collect();
    Order {
        id,
        entity_type: if key.starts_with('g') {
            "group"
        } else {
            "account"
        }
        .into(),
        key,
        kind: OrderKind::Create { attributes },
    }
}

/// The same entries as [`ldif`], created by the connector; returns the time taken.
fn provision(rt: &Runtime, loaded: &Loaded, conn: &Connection, n: usize) -> Duration {
    let started = Instant::now();
    let mut keys = Vec::with_capacity(n);
    let accounts: Vec<Order> = (0..n)
        .map(|i| {
            let v = |s: String| vec![s];
            create(
                format!("a{i}"),
                format!("p{i}"),
                &[
                    ("uid", v(format!("p{i}"))),
                    ("cn", v(format!("Person {i}"))),
                    ("sn", v(i.to_string())),
                    ("mail", v(format!("p{i}@example.org"))),
                ],
            )
        })
        .collect();
    for batch in accounts.chunks(BATCH) {
        let Outcome::Fulfilled(results) = run(rt, loaded, conn, Request::Fulfill(batch.to_vec()))
        else {
            unreachable!()
        };
        for r in results {
            match r.outcome {
                OrderOutcome::Created(k) => keys.push(k),
                other => panic!("order {}: {other:?}", r.id),
            }
        }
    }
    let groups: Vec<Order> = (0..n / GROUP_SIZE)
        .map(|g| {
            let members = keys[g * GROUP_SIZE..(g + 1) * GROUP_SIZE].to_vec();
            create(
                format!("g{g}"),
                format!("g{g}"),
                &[("cn", vec![format!("g{g}")]), ("member", members)],
            )
        })
        .collect();
    for batch in groups.chunks(BATCH) {
        let Outcome::Fulfilled(results) = run(rt, loaded, conn, Request::Fulfill(batch.to_vec()))
        else {
            unreachable!()
        };
        assert!(
            results
                .iter()
                .all(|r| matches!(r.outcome, OrderOutcome::Created(_))),
            "{results:?}"
        );
    }
    started.elapsed()
}

fn provisioning(rt: &Runtime, loaded: &Loaded, n: usize, dbnosync: bool) {
    let text = ldif(n);
    let tmp = tempfile::tempdir().unwrap();
    let base = Slapd::start_with(Options {
        dbnosync,
        ..Default::default()
    });
    connection(&base, tmp.path());
    let baseline = ldapadd(&base, tmp.path(), &text);
    drop(base);
    let d = Slapd::start_with(Options {
        dbnosync,
        ..Default::default()
    });
    let conn = connection(&d, tmp.path());
    let ours = provision(rt, loaded, &conn, n);
    let count = d
        .search(PEOPLE, "(objectClass=inetOrgPerson)", &["1.1"])
        .matches("dn: ")
        .count();
    assert_eq!(count, n, "every account is in the directory");
    println!(
        "provisioning {n} accounts + {} groups of {GROUP_SIZE} ({}): connector {:.2} s, ldapadd {:.2} s, ratio {:.2}",
        n / GROUP_SIZE,
        if dbnosync {
            "dbnosync"
        } else {
            "a sync per write"
        },
        ours.as_secs_f64(),
        baseline.as_secs_f64(),
        ours.as_secs_f64() / baseline.as_secs_f64()
    );
}

fn export(rt: &Runtime, loaded: &Loaded, m: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let d = Slapd::start();
    let conn = connection(&d, tmp.path());
    d.ldapadd(&ldif(m));
    let mut cursor = None;
    for tls in [true, false] {
        let conn = connection_tls(&d, tmp.path(), tls);
        let (mut ours, mut theirs) = (Duration::MAX, Duration::MAX);
        for _ in 0..3 {
            let started = Instant::now();
            let request = Request::Export {
                cursor: None,
                batch_size: 5000,
            };
            let Outcome::Exported(s) = run(rt, loaded, &conn, request) else {
                unreachable!()
            };
            ours = ours.min(started.elapsed());
            assert_eq!(s.entries as usize, m + m / GROUP_SIZE);
            cursor = s.cursor;
            let started = Instant::now();
            let out = tool_tls(&d, tmp.path(), "ldapsearch", tls)
                .args([
                    "-LLL",
                    "-E",
                    "pr=500/noprompt",
                    "-b",
                    "dc=idgard,dc=test",
                    "(|(objectClass=inetOrgPerson)(objectClass=groupOfNames))",
                    "*",
                    "entryUUID",
                ])
                .stdout(std::process::Stdio::null())
                .status()
                .unwrap();
            theirs = theirs.min(started.elapsed());
            assert!(out.success());
        }
        println!(
            "export of {m} accounts + {} groups ({}, best of 3): connector {:.2} s, ldapsearch paged {:.2} s, ratio {:.2}",
            m / GROUP_SIZE,
            if tls { "StartTLS" } else { "plain" },
            ours.as_secs_f64(),
            theirs.as_secs_f64(),
            ours.as_secs_f64() / theirs.as_secs_f64()
        );
    }
    let changes: String = (0..100)
        .map(|i| {
            format!(
                "dn: uid=p{},{PEOPLE}\nchangetype: modify\nreplace: cn\ncn: Changed {i}\n\n",
                i * (m / 100)
            )
        })
        .collect();
    d.ldapmodify(&changes);
    let started = Instant::now();
    let tally = Tally(Default::default(), true);
    let request = Request::Export {
        cursor,
        batch_size: 5000,
    };
    let Outcome::Exported(s) = run_counted(rt, loaded, &conn, request, tally.clone()) else {
        unreachable!()
    };
    let took = started.elapsed();
    println!(
        "incremental export of 100 changes among {m} entries: {} entries ({:?}) in {:.3} s",
        s.entries,
        tally.0.lock().unwrap(),
        took.as_secs_f64()
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n = env("IDGARD_BENCH_ACCOUNTS", 10_000);
    let m = env("IDGARD_BENCH_ENTRIES", 100_000);
    let cache = tempfile::tempdir().unwrap();
    let rt = Runtime::new(RuntimeOptions {
        cache_dir: Some(cache.path().to_owned()),
        ..Default::default()
    })
    .unwrap();
    let loaded = rt
        .load(Path::new(idgard_tests::packages::CONNECTOR_LDAP))
        .unwrap();
    provisioning(&rt, &loaded, n, true);
    provisioning(&rt, &loaded, (n / 10).max(GROUP_SIZE), false);
    export(&rt, &loaded, m);
}
