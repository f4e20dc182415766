//! An information system split across networks that cannot reach each other, in network
//! namespaces the test creates: the server in one; two partitions, each with its own agent and
//! its own slapd, reaching the server and nothing else (no route between partitions, none from
//! the server to an agent or a directory). One declared job provisions both directories from one
//! HR source held in the first partition, each task on the agent of its connection; a partition
//! cut off during the job past the lease, then healed, loses no order and carries none out twice.

use crate::pipeline::{people_connection, write_hr};
use crate::system::{Agent, Server};
use idgard_protocol::*;
use idgard_tests::netns::Topology;
use idgard_tests::slapd::{Options, Slapd};
use reqwest::Method;
use std::time::{Duration, Instant};

const BASE: &str = "dc=idgard,dc=test";

/// Both directories get every active person; each keeps the people of its site in a group.
const RULES: &str = r#"
version = 1

[identities]
connection = "people"

[[targets]]
connection = "dir-a"
filter = 'identity.status == "active"'
key = 'identity.key.lowerAscii()'
correlation = { identity = "key", account = "account.employeeNumber" }
[targets.attributes]
dn = '"uid=" + identity.key.lowerAscii() + ",ou=people,dc=idgard,dc=test"'
uid = "identity.key.lowerAscii()"
cn = 'identity.first_name + " " + identity.last_name'
sn = "identity.last_name"
employeeNumber = "identity.key"
[targets.groups]
member_of = '"dept-" + identity.department.lowerAscii()'
name_attribute = "cn"
[targets.groups.create.attributes]
dn = '"cn=" + group.name + ",ou=groups,dc=idgard,dc=test"'

[[targets]]
connection = "dir-b"
filter = 'identity.status == "active"'
key = 'identity.key.lowerAscii()'
correlation = { identity = "key", account = "account.employeeNumber" }
[targets.attributes]
dn = '"uid=" + identity.key.lowerAscii() + ",ou=people,dc=idgard,dc=test"'
uid = "identity.key.lowerAscii()"
cn = 'identity.first_name + " " + identity.last_name'
sn = "identity.last_name"
employeeNumber = "identity.key"

[[jobs]]
name = "both"
connections = ["people", "dir-a", "dir-b"]
"#;

/// A connection named `name` to slapd `d` (on the loopback of the namespace it runs in) as its
/// writer, over StartTLS, trusting the CA in `ca`.
pub(crate) fn directory(name: &str, d: &Slapd, ca: &std::path::Path) -> String {
    format!(
        "name = \"{name}\"\nconnector = \"ldap\"\n[settings]\nbind_dn = {:?}\n\
         accounts_base = \"ou=people,{BASE}\"\ngroups_base = \"ou=groups,{BASE}\"\n\
         [secrets]\nbind_password = {{ value = {:?} }}\n\
         [grants.endpoints.directory]\naddress = \"127.0.0.1:{}\"\ntls = \"start-tls\"\n\
         ca = {:?}\nserver_name = \"ldap.idgard.test\"\n",
        d.writer_dn,
        d.writer_password,
        d.port,
        ca.display().to_string()
    )
}

/// Waits until every named agent has reported its connections.
fn wait_reported(server: &Server, names: &[&str], logs: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let agents: Vec<AgentView> = server
            .admin::<(), _>(Method::GET, "/api/v1/agents", None)
            .unwrap();
        let ready = names.iter().all(|n| {
            agents
                .iter()
                .any(|a| a.name == *n && !a.connections.is_empty())
        });
        if ready {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "agents never reported: {agents:?}\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn run(server: &Server, incremental: bool) -> JobView {
    let body = RunJob {
        job: "both".into(),
        incremental,
        dry_run: false,
    };
    server
        .admin(Method::POST, "/api/v1/jobs/run", Some(&body))
        .unwrap()
}

fn uids(d: &Slapd) -> Vec<String> {
    let out = d.search(&format!("ou=people,{BASE}"), "(uid=*)", &["uid"]);
    let mut v: Vec<String> = out
        .lines()
        .filter_map(|l| l.strip_prefix("uid: "))
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

#[test]
fn one_job_provisions_two_partitioned_directories_and_survives_a_cut_past_the_lease() {
    let net = Topology::new(2);
    let slapd_in = |i: usize| {
        Slapd::start_with(Options {
            netns: Some(net.partitions[i].clone()),
            ..Default::default()
        })
    };
    let (da, db) = (slapd_in(0), slapd_in(1));
    let tmp = tempfile::tempdir().unwrap();
    let hr = tmp.path().join("hr");
    std::fs::create_dir_all(&hr).unwrap();
    let (ca_a, ca_b) = (tmp.path().join("ca-a.pem"), tmp.path().join("ca-b.pem"));
    std::fs::write(&ca_a, &da.ca_pem).unwrap();
    std::fs::write(&ca_b, &db.ca_pem).unwrap();
    let rules = tmp.path().join("rules.toml");
    std::fs::write(&rules, RULES).unwrap();
    write_hr(
        &hr,
        &[
            "E1,Zoë,Martin,Sales,active",
            "E2,Paul,O'Brien,IT,active",
            "E3,Ana,Lima,IT,inactive",
        ],
    );
    let server = Server::start_in(
        &net.server,
        &net.server_from_test,
        &[("IDGARD_RULES", rules.to_str().unwrap())],
    );
    // No route between partitions, none from the server's namespace into one.
    let slapd_b = format!("{}:{}", net.partition_addresses[1], db.port);
    assert!(!Topology::reaches(&net.partitions[0], &slapd_b));
    assert!(!Topology::reaches(&net.server, &slapd_b));
    assert!(Topology::reaches(
        &net.partitions[0],
        &format!("{}:{}", net.server_from[0], server.port)
    ));
    // A connection of partition A granted partition B's directory: unreachable.
    let stray = directory("stray", &db, &ca_b).replace(&format!("127.0.0.1:{}", db.port), &slapd_b);
    let paris = Agent::start_in(
        &server,
        "paris",
        &[
            ("people.toml", people_connection(&hr)),
            ("dir-a.toml", directory("dir-a", &da, &ca_a)),
            ("stray.toml", stray),
        ],
        &net.partitions[0],
        &server.url_at(&net.server_from[0]),
    );
    let lyon = Agent::start_in(
        &server,
        "lyon",
        &[("dir-b.toml", directory("dir-b", &db, &ca_b))],
        &net.partitions[1],
        &server.url_at(&net.server_from[1]),
    );
    wait_reported(&server, &["paris", "lyon"], || {
        format!("--- paris\n{}\n--- lyon\n{}", paris.log(), lyon.log())
    });
    let ctx = |job: &JobView| {
        format!(
            "{job:#?}\n--- paris\n{}\n--- lyon\n{}\n--- server\n{}",
            paris.log(),
            lyon.log(),
            server.log()
        )
    };
    let id = server.enqueue(
        "paris",
        vec![crate::system::on("stray", Operation::TestConnection)],
    );
    let stray = server.wait_task(id[0], 60, |t| t.state.is_final());
    assert_ne!(stray.state, TaskState::Succeeded, "{stray:?}");

    // 1. One job, each task on the agent of its connection.
    let job = run(&server, false);
    let job = server.wait_job(job.id, 120);
    assert_eq!(job.state, JobState::Succeeded, "{}", ctx(&job));
    let on = |c: &str| {
        job.tasks
            .iter()
            .filter(|t| t.connection == c)
            .map(|t| t.agent.clone())
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert_eq!(on("people"), ["paris".to_owned()].into());
    assert_eq!(on("dir-a"), ["paris".to_owned()].into());
    assert_eq!(on("dir-b"), ["lyon".to_owned()].into());
    assert_eq!(uids(&da), ["e1", "e2"]);
    assert_eq!(uids(&db), ["e1", "e2"]);

    // 2. Partition B is cut off as soon as it holds a task of the next run, longer than the
    // lease, then healed: the job finishes, each order once.
    write_hr(
        &hr,
        &[
            "E1,Zoë,Martin,Sales,active",
            "E2,Paul,O'Brien,IT,active",
            "E3,Ana,Lima,IT,active",
            "E4,Li,Wei,Sales,active",
        ],
    );
    let job = run(&server, true);
    let deadline = Instant::now() + Duration::from_secs(60);
    let held = loop {
        let j = server.job(job.id);
        let held = j.tasks.iter().find(|t| {
            t.agent == "lyon" && matches!(t.state, TaskState::Claimed | TaskState::Running)
        });
        if let Some(t) = held {
            break t.id;
        }
        assert!(
            matches!(j.state, JobState::Running | JobState::Pending),
            "the job ended before lyon took a task: {}",
            ctx(&j)
        );
        assert!(
            Instant::now() < deadline,
            "lyon never took a task: {}",
            ctx(&j)
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    net.cut(1);
    // Past the lease (3 s), not past every attempt (3): a poll answer lost in the cut
    // counts as an attempt too.
    std::thread::sleep(Duration::from_secs(5));
    net.heal(1);
    let job = server.wait_job(job.id, 120);
    assert_eq!(job.state, JobState::Succeeded, "{}", ctx(&job));
    // The task held across the cut lapsed and ran again.
    let t = server.task(held);
    assert_eq!(t.state, TaskState::Succeeded, "{t:?}");
    assert!(
        t.attempts >= 2,
        "the cut outlived the lease: {t:?}\n{}",
        ctx(&job)
    );
    assert_eq!(uids(&da), ["e1", "e2", "e3", "e4"]);
    assert_eq!(uids(&db), ["e1", "e2", "e3", "e4"]);
    let orders: Vec<OrderView> = server
        .admin::<(), _>(Method::GET, &format!("/api/v1/orders?job={}", job.id), None)
        .unwrap();
    let creates: Vec<(&str, &str)> = orders
        .iter()
        .filter(|o| o.kind == "create" && o.entity_type == "account")
        .map(|o| (o.connection.as_str(), o.state.as_str()))
        .collect();
    assert_eq!(
        creates.len(),
        4,
        "two accounts in each directory, ordered once each: {orders:#?}"
    );
    assert!(creates.iter().all(|c| c.1 == "done"), "{orders:#?}");
    let members = da.search(
        &format!("cn=dept-sales,ou=groups,{BASE}"),
        "(objectClass=*)",
        &["member"],
    );
    assert_eq!(members.matches("member: ").count(), 2, "{members}");
    // 3. Nothing changed: nothing to do in either partition.
    let job = server.wait_job(run(&server, true).id, 120);
    assert_eq!(job.state, JobState::Succeeded, "{}", ctx(&job));
    let orders: Vec<OrderView> = server
        .admin::<(), _>(Method::GET, &format!("/api/v1/orders?job={}", job.id), None)
        .unwrap();
    assert!(orders.is_empty(), "{orders:#?}");
}
