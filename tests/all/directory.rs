//! The identity pipeline into a real directory: the server with a rules file that manages
//! groups, a real agent, the CSV connector as the HR source and the LDAP connector on slapd as
//! the target. A hire, a move between departments (a rename and move of the entry, a change of
//! groups) and a leave (out of its groups, then deleted), with values that need escaping.

use crate::pipeline::{context, people_connection, write_hr};
use crate::system::{Agent, Backend, Server};
use idgard_protocol::*;
use idgard_tests::slapd::Slapd;
use reqwest::Method;
use serde_json::Value;

const BASE: &str = "dc=idgard,dc=test";

const RULES: &str = r#"
version = 1

[identities]
connection = "people"

[[targets]]
connection = "directory"
filter = 'identity.status == "active"'
key = 'identity.key.lowerAscii()'
max_attempts = 1
correlation = { identity = "key", account = "account.employeeNumber" }
leave = { delete_after_days = 0 }

[targets.attributes]
dn = '"uid=" + identity.key.lowerAscii() + ",ou=" + identity.department + ",ou=people,dc=idgard,dc=test"'
uid = "identity.key.lowerAscii()"
cn = 'identity.first_name + " " + identity.last_name'
sn = "identity.last_name"
givenName = "identity.first_name"
employeeNumber = "identity.key"

[targets.groups]
member_of = '["staff-" + identity.department.lowerAscii()]'
name_attribute = "cn"
managed = 'group.name.startsWith("staff-")'

[targets.groups.create.attributes]
dn = '"cn=" + group.name + ",ou=groups,dc=idgard,dc=test"'
description = '"Managed by idgard"'

[[jobs]]
name = "daily"
agent = "lyon"
connections = ["people", "directory"]
"#;

fn run(server: &Server, incremental: bool) -> JobView {
    let body = RunJob {
        job: "daily".into(),
        incremental,
        dry_run: false,
    };
    let job: JobView = server
        .admin(Method::POST, "/api/v1/jobs/run", Some(&body))
        .unwrap();
    server.wait_job(job.id, 180)
}

fn orders(server: &Server, job: i64) -> Vec<(String, String, OrderState)> {
    let list: Vec<OrderView> = server
        .admin::<(), _>(Method::GET, &format!("/api/v1/orders?job={job}"), None)
        .unwrap();
    let mut out: Vec<_> = list
        .into_iter()
        .map(|o| (o.entity_type, o.kind, o.state))
        .collect();
    out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    out
}

/// The DNs of a group's members, sorted.
fn members(d: &Slapd, group: &str) -> Vec<String> {
    let out = d.search(
        &format!("cn={group},ou=groups,{BASE}"),
        "(objectClass=*)",
        &["member"],
    );
    let mut m: Vec<String> = out
        .lines()
        .filter_map(|l| l.strip_prefix("member: "))
        .map(str::to_owned)
        .collect();
    m.sort();
    m
}

/// The connection to slapd `d` as its writer, over StartTLS with its CA (written into `dir`).
fn directory_connection(d: &Slapd, dir: &std::path::Path) -> String {
    std::fs::write(dir.join("ca.pem"), &d.ca_pem).unwrap();
    crate::partitions::directory("directory", d, &dir.join("ca.pem"))
}

/// The organisational units of the departments the tests' people work in.
fn departments_ldif() -> String {
    ["Sales", "IT", "R&D"]
        .iter()
        .map(|ou| {
            format!("dn: ou={ou},ou=people,{BASE}\nobjectClass: organizationalUnit\nou: {ou}\n\n")
        })
        .collect()
}

fn dn(uid: &str, ou: &str) -> String {
    format!("uid={uid},ou={ou},ou=people,{BASE}")
}

#[test]
fn hire_move_and_leave_with_group_memberships_in_a_directory() {
    let d = Slapd::start();
    // Departments as OUs; staff-it exists with a member idgard does not know (kept), and an
    // unmanaged group holds one of the accounts idgard will create.
    let mut ldif = departments_ldif();
    ldif.push_str(&format!(
        "dn: uid=svc,ou=people,{BASE}\nobjectClass: inetOrgPerson\nuid: svc\ncn: Service\nsn: svc\n\n\
         dn: cn=staff-it,ou=groups,{BASE}\nobjectClass: groupOfNames\ncn: staff-it\n\
         member: uid=svc,ou=people,{BASE}\n\n"
    ));
    d.ldapadd(&ldif);

    let tmp = tempfile::tempdir().unwrap();
    let hr = tmp.path().join("hr");
    std::fs::create_dir_all(&hr).unwrap();
    let rules = tmp.path().join("rules.toml");
    std::fs::write(&rules, RULES).unwrap();
    write_hr(
        &hr,
        &[
            "E1,Zoë,Martin,Sales,active",
            "E2,Paul,O'Brien,IT,active",
            "E3,Ana,\"Lima, Jr\",IT,active",
            "E4,Li,Wei,IT,inactive",
        ],
    );
    let server = Server::start_with(
        Backend::Sqlite,
        &[("IDGARD_RULES", rules.to_str().unwrap())],
    );
    let people = people_connection(&hr);
    let directory = directory_connection(&d, tmp.path());
    let agent = Agent::start_with(
        &server,
        "lyon",
        &[("people.toml", people), ("directory.toml", directory)],
    );
    let ctx = |job: &JobView| context(job, &agent, &server);

    // 1. The first run: three accounts in their departments' OUs, each in its staff group;
    // staff-sales is created with its first member; svc stays in staff-it.
    let job = run(&server, false);
    assert_eq!(job.state, JobState::Succeeded, "{}", ctx(&job));
    use OrderState::Done;
    assert_eq!(
        orders(&server, job.id),
        [
            ("account".into(), "create".into(), Done),
            ("account".into(), "create".into(), Done),
            ("account".into(), "create".into(), Done),
            ("group".into(), "create".into(), Done),
            ("group".into(), "update".into(), Done),
            ("group".into(), "update".into(), Done),
        ],
        "{}",
        ctx(&job)
    );
    let accounts = d.search(
        &format!("ou=people,{BASE}"),
        "(employeeNumber=*)",
        &["dn", "cn"],
    );
    assert!(
        accounts.contains(&format!("dn: {}", dn("e1", "Sales"))),
        "{accounts}"
    );
    assert!(
        accounts.contains("cn:: "),
        "a non-ASCII cn comes back in base64: {accounts}"
    );
    assert_eq!(members(&d, "staff-sales"), [dn("e1", "Sales")]);
    let mut it = vec![
        dn("e2", "IT"),
        dn("e3", "IT"),
        format!("uid=svc,ou=people,{BASE}"),
    ];
    it.sort();
    assert_eq!(members(&d, "staff-it"), it);
    let created = d.search(
        &format!("cn=staff-sales,ou=groups,{BASE}"),
        "(objectClass=*)",
        &["description"],
    );
    assert!(
        created.contains("description: Managed by idgard"),
        "{created}"
    );

    // 2. A hire into a new department, a move from IT to Sales, a leave.
    write_hr(
        &hr,
        &[
            "E1,Zoë,Martin,Sales,active",
            "E2,Paul,O'Brien,Sales,active",
            "E4,Li,Wei,IT,inactive",
            "E5,Eve,Stone,R&D,active",
        ],
    );
    let uuid_before = d.search(&dn("e2", "IT"), "(objectClass=*)", &["entryUUID"]);
    let job = run(&server, true);
    assert_eq!(job.state, JobState::Succeeded, "{}", ctx(&job));
    assert!(
        orders(&server, job.id).iter().all(|o| o.2 == Done),
        "{}",
        ctx(&job)
    );
    // The move is a rename and move of the same entry, not a delete and a create.
    let moved = d.search(&dn("e2", "Sales"), "(objectClass=*)", &["entryUUID"]);
    assert_eq!(
        moved.lines().find(|l| l.starts_with("entryUUID")),
        uuid_before.lines().find(|l| l.starts_with("entryUUID")),
        "{moved}"
    );
    assert_eq!(
        members(&d, "staff-sales"),
        [dn("e1", "Sales"), dn("e2", "Sales")]
    );
    assert_eq!(
        members(&d, "staff-it"),
        [format!("uid=svc,ou=people,{BASE}")]
    );
    assert_eq!(members(&d, "staff-r&d"), [dn("e5", "R&D")]);
    assert!(
        d.search(&dn("e3", "IT"), "(objectClass=*)", &["dn"])
            .is_empty(),
        "the leaver is deleted"
    );

    // 3. Nothing changed: the directory's export confirms what was written; no order.
    let job = run(&server, true);
    assert_eq!(job.state, JobState::Succeeded, "{}", ctx(&job));
    assert!(orders(&server, job.id).is_empty(), "{}", ctx(&job));

    // The group's history shows its members over time.
    let groups: Vec<Value> = server
        .admin::<(), _>(
            Method::GET,
            "/api/v1/connections/directory/entries?limit=100",
            None,
        )
        .unwrap();
    let sales = groups
        .iter()
        .find(|e| e["attributes"]["cn"][0] == "staff-sales")
        .unwrap_or_else(|| panic!("{groups:#?}"));
    let key = sales["key"].as_str().unwrap();
    let history: Vec<Value> = server
        .admin::<(), _>(
            Method::GET,
            &format!("/api/v1/connections/directory/entries/{key}/history"),
            None,
        )
        .unwrap();
    let sizes: Vec<usize> = history
        .iter()
        .map(|v| v["attributes"]["member"].as_array().map_or(0, Vec::len))
        .collect();
    assert!(
        sizes.contains(&1) && sizes.last() == Some(&2),
        "{history:#?}"
    );
}

/// An agent killed in the middle of a fulfilment (batches of 16, each batch's results sent while
/// the next is carried out, the next page asked for early) and started again: the job ends with
/// every order done, every account and membership in the directory, nothing failed or lost.
#[test]
fn an_agent_killed_while_fulfilling_resumes_and_nothing_is_lost() {
    let d = Slapd::start();
    d.ldapadd(&departments_ldif());
    let tmp = tempfile::tempdir().unwrap();
    let hr = tmp.path().join("hr");
    std::fs::create_dir_all(&hr).unwrap();
    let rules = tmp.path().join("rules.toml");
    std::fs::write(&rules, RULES).unwrap();
    let n = 600;
    let rows: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "E{i},First{i},Last{i},{},active",
                ["Sales", "IT", "R&D"][i % 3]
            )
        })
        .collect();
    write_hr(&hr, &rows.iter().map(String::as_str).collect::<Vec<_>>());
    let server = Server::start_with(
        Backend::Sqlite,
        &[("IDGARD_RULES", rules.to_str().unwrap())],
    );
    let connections = [
        ("people.toml", people_connection(&hr)),
        ("directory.toml", directory_connection(&d, tmp.path())),
    ];
    let mut agent = Agent::start_with(&server, "lyon", &connections);
    let body = RunJob {
        job: "daily".into(),
        incremental: false,
        dry_run: false,
    };
    let job: JobView = server
        .admin(Method::POST, "/api/v1/jobs/run", Some(&body))
        .unwrap();
    // Killed once some orders are done and before all are.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let done_before_kill = loop {
        let done: Vec<OrderView> = server
            .admin::<(), _>(
                Method::GET,
                &format!("/api/v1/orders?job={}&state=done&limit=10000", job.id),
                None,
            )
            .unwrap();
        if !done.is_empty() {
            agent.kill();
            break done.len();
        }
        assert!(std::time::Instant::now() < until, "{}", agent.log());
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(
        done_before_kill < n,
        "the fulfilment ended before the kill ({done_before_kill} done): make it longer"
    );
    agent.restart();
    let job = server.wait_job(job.id, 180);
    assert_eq!(
        job.state,
        JobState::Succeeded,
        "{}",
        context(&job, &agent, &server)
    );
    let all = orders(&server, job.id);
    assert_eq!(all.len(), n + 3, "{n} accounts and 3 groups");
    assert!(
        all.iter().all(|o| o.2 == OrderState::Done),
        "every order done: {:?}",
        all.iter()
            .filter(|o| o.2 != OrderState::Done)
            .collect::<Vec<_>>()
    );
    let accounts = d.search(&format!("ou=people,{BASE}"), "(employeeNumber=*)", &["1.1"]);
    assert_eq!(accounts.matches("dn: ").count(), n);
    for (group, ou) in [
        ("staff-sales", "Sales"),
        ("staff-it", "IT"),
        ("staff-r&d", "R&D"),
    ] {
        let m = members(&d, group);
        assert_eq!(m.len(), n / 3, "{group}");
        assert!(
            m.iter().all(|dn| dn.contains(&format!(",ou={ou},"))),
            "{group}"
        );
    }
}
