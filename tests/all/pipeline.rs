//! The identity pipeline end to end: the real server with a rules file, a real agent, the CSV
//! connector as the HR source and as a target (an accounts file), on SQLite and PostgreSQL.

use crate::system::{Agent, Backend, Hand, Server, on};
use idgard_protocol::*;
use idgard_tests::mail::{SmtpServer, Tls};
use reqwest::Method;
use reqwest::StatusCode;
use serde_json::Value;
use serde_json::json;
use sha2::Digest as _;
use std::path::Path;

pub(crate) const RULES: &str = r#"
version = 1

[identities]
connection = "people"

[[targets]]
connection = "directory"
filter = 'identity.status == "active"'
key = 'identity.first_name.lowerAscii() + "." + identity.last_name.lowerAscii()'
enabled_attribute = "enabled"
max_attempts = 2
retry_after_s = 0
correlation = { identity = "key", account = "account.employee_id" }
leave = { disable = true, delete_after_days = 30 }

[targets.attributes]
employee_id = "identity.key"
name = 'identity.first_name + " " + identity.last_name'
department = "identity.department"

[thresholds.people]
deletes = 1

[[jobs]]
name = "daily"
agent = "lyon"
connections = ["people", "directory"]
"#;

const HEADER: &str = "employee_id,first_name,last_name,department,status\n";

pub(crate) fn write_hr(dir: &Path, rows: &[&str]) {
    let mut text = HEADER.to_owned();
    for r in rows {
        text.push_str(r);
        text.push('\n');
    }
    std::fs::write(dir.join("hr.csv"), text).unwrap();
}

/// The HR source: `hr.csv` in `hr`, keyed by `employee_id`.
pub(crate) fn people_connection(hr: &Path) -> String {
    format!(
        "name = \"people\"\nconnector = \"csv\"\n[settings]\nfile = \"hr.csv\"\nkey = \"employee_id\"\n\
         [grants.folders.source]\npath = \"{}\"\naccess = \"read-only\"\n",
        hr.display()
    )
}

/// The target: an accounts file `accounts.csv` in `target`, keyed by `login`, named `directory`.
pub(crate) fn accounts_file_connection(target: &Path) -> String {
    format!(
        "name = \"directory\"\nconnector = \"csv\"\n[settings]\nfile = \"accounts.csv\"\nkey = \"login\"\n\
         entity_type = \"account\"\naccounts_file = \"accounts.csv\"\naccounts_key = \"login\"\n\
         [grants.folders.source]\npath = \"{0}\"\naccess = \"read-only\"\n\
         [grants.folders.accounts]\npath = \"{0}\"\naccess = \"read-write\"\n",
        target.display()
    )
}

/// A job with the agent's and the server's logs, for a failed assertion.
pub(crate) fn context(job: &JobView, agent: &Agent, server: &Server) -> String {
    format!(
        "{job:#?}\n--- agent\n{}\n--- server\n{}",
        agent.log(),
        server.log()
    )
}

pub(crate) fn run(server: &Server, incremental: bool, dry_run: bool) -> JobView {
    let job: JobView = server
        .admin(
            Method::POST,
            "/api/v1/jobs/run",
            Some(&RunJob {
                job: "daily".into(),
                incremental,
                dry_run,
            }),
        )
        .unwrap();
    server.wait_job(job.id, 120)
}

fn orders(server: &Server, job: i64) -> Vec<(String, String, OrderState)> {
    let list: Vec<OrderView> = server
        .admin::<(), _>(Method::GET, &format!("/api/v1/orders?job={job}"), None)
        .unwrap();
    let mut out: Vec<_> = list.into_iter().map(|o| (o.kind, o.key, o.state)).collect();
    out.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
    out
}

fn provision_report(job: &JobView) -> Value {
    job.tasks
        .iter()
        .find(|t| t.operation == Operation::Provision)
        .and_then(|t| t.result.clone())
        .unwrap_or(Value::Null)
}

fn accounts(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("accounts.csv")).unwrap()
}

fn row_of<'a>(file: &'a str, login: &str) -> &'a str {
    file.lines()
        .find(|l| l.starts_with(&format!("{login},")))
        .unwrap_or_else(|| panic!("no account {login} in\n{file}"))
}

pub fn hire_move_leave(b: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let hr = tmp.path().join("hr");
    let target = tmp.path().join("directory");
    std::fs::create_dir_all(&hr).unwrap();
    std::fs::create_dir_all(&target).unwrap();
    let rules = tmp.path().join("rules.toml");
    std::fs::write(&rules, RULES).unwrap();
    write_hr(
        &hr,
        &[
            "E1,Zoé,Martin,Sales,active",
            "E2,Paul,Durand,IT,active",
            "E3,Ana,Lima,IT,active",
            "E4,Li,Wei,HR,active",
            "E5,Tom,Hardy,IT,inactive",
        ],
    );
    // The target already holds an account for E2 (wrong department) and an orphan.
    std::fs::write(
        target.join("accounts.csv"),
        "login,enabled,employee_id,name,department\n\
         paul.durand,true,E2,Paul Durand,Old\n\
         ghost,true,X9,Ghost,None\n",
    )
    .unwrap();
    // Failed orders and blocked runs are mailed (tests/all/mail.rs has the mail's own tests).
    let mail_dir = tmp.path().join("mail");
    std::fs::create_dir_all(&mail_dir).unwrap();
    let port = crate::harness::browser::free_port();
    let smtp = SmtpServer::start(&mail_dir, port, Tls::Starttls);
    let mut env = idgard_tests::mail::server_env(&mail_dir, port, Tls::Starttls, 1);
    env.push(("IDGARD_RULES", rules.display().to_string()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Server::start_with(b, &env);
    let people = people_connection(&hr);
    let directory = accounts_file_connection(&target);
    let agent = Agent::start_with(
        &server,
        "lyon",
        &[("people.toml", people), ("directory.toml", directory)],
    );
    let ctx = |job: &JobView| context(job, &agent, &server);

    // 1. Initial load: identities from HR; accounts created, the existing one corrected.
    let job = run(&server, false, false);
    assert_eq!(job.state, JobState::Succeeded, "{}", ctx(&job));
    use OrderState::Done;
    assert_eq!(
        orders(&server, job.id),
        [
            ("create".into(), "ana.lima".into(), Done),
            ("create".into(), "li.wei".into(), Done),
            ("update".into(), "paul.durand".into(), Done),
            ("create".into(), "zoé.martin".into(), Done),
        ]
    );
    let file = accounts(&target);
    assert!(row_of(&file, "paul.durand").contains(",IT"), "{file}");
    assert!(
        row_of(&file, "ana.lima").starts_with("ana.lima,true,E3,Ana Lima,IT"),
        "{file}"
    );
    assert!(
        !file.contains("tom.hardy"),
        "an inactive identity gets no account: {file}"
    );
    let orphans: Vec<Value> = server
        .admin::<(), _>(
            Method::GET,
            "/api/v1/connections/directory/links?situation=unmatched",
            None,
        )
        .unwrap();
    assert_eq!(orphans.len(), 1, "{orphans:?}");
    assert_eq!(orphans[0]["key"], "ghost");
    let sync = job
        .tasks
        .iter()
        .find(|t| t.operation == Operation::Synchronize && t.connection == "people")
        .unwrap();
    assert_eq!(sync.result.as_ref().unwrap()["inserted"], 5);

    // 2. A hire, a move and a leave; a dry run shows the orders and sends nothing.
    write_hr(
        &hr,
        &[
            "E1,Zoé,Martin,Sales,active",
            "E2,Paul,Durand,IT,active",
            "E3,Ana,Lima,Finance,active",
            "E5,Tom,Hardy,IT,inactive",
            "E6,Eve,Stone,Legal,active",
            "E7,Zoé,Martin,IT,active",
        ],
    );
    let expected = |state: OrderState| -> Vec<(String, String, OrderState)> {
        vec![
            ("update".into(), "ana.lima".into(), state),
            ("create".into(), "eve.stone".into(), state),
            ("disable".into(), "li.wei".into(), state),
        ]
    };
    let dry = run(&server, true, true);
    assert_eq!(dry.state, JobState::Succeeded, "{}", ctx(&dry));
    assert_eq!(orders(&server, dry.id), expected(OrderState::Dry));
    assert!(!accounts(&target).contains("eve.stone"));
    let history_of = |key: &str| -> Vec<Value> {
        server
            .admin::<(), _>(
                Method::GET,
                &format!("/api/v1/connections/people/entries/{key}/history"),
                None,
            )
            .unwrap()
    };
    assert_eq!(history_of("E3").len(), 1, "a dry run keeps no version");
    let e6 = server.raw(
        Method::GET,
        "/api/v1/connections/people/entries/E6/history",
        Some(&server.admin),
        None,
    );
    assert_eq!(e6.0, StatusCode::NOT_FOUND, "nor a new entry: {e6:?}");
    let job = run(&server, true, false);
    assert_eq!(job.state, JobState::Succeeded, "{}", ctx(&job));
    assert_eq!(orders(&server, job.id), expected(Done), "{}", ctx(&job));
    // A second Zoé Martin computes the first one's account key: a conflict, not a takeover.
    let report = provision_report(&job);
    assert_eq!(report["conflicts"], 1, "{report}");
    assert!(
        report["samples"][0].as_str().unwrap().contains("E7"),
        "{report}"
    );
    let file = accounts(&target);
    assert!(row_of(&file, "eve.stone").contains("Legal"), "{file}");
    assert!(row_of(&file, "ana.lima").contains("Finance"), "{file}");
    assert!(
        row_of(&file, "li.wei").starts_with("li.wei,false"),
        "{file}"
    );
    // History: E3's two versions.
    let history = history_of("E3");
    assert_eq!(history.len(), 2, "{history:?}");
    assert!(history[0]["valid_to_ms"].is_i64() && history[1]["valid_to_ms"].is_null());

    // 3. Nothing changed: a run changes nothing.
    let job = run(&server, true, false);
    assert_eq!(job.state, JobState::Succeeded, "{}", ctx(&job));
    assert!(orders(&server, job.id).is_empty(), "{}", ctx(&job));

    // 3b. An export run by hand between two runs moves nothing: a change it saw still reaches
    //     the repository and the account at the next incremental run.
    write_hr(
        &hr,
        &[
            "E1,Zoé,Martin,Sales,active",
            "E2,Paul,Durand,Audit,active",
            "E3,Ana,Lima,Finance,active",
            "E5,Tom,Hardy,IT,inactive",
            "E6,Eve,Stone,Legal,active",
            "E7,Zoé,Martin,IT,active",
        ],
    );
    let by_hand = server.create_job("lyon", vec![vec![on("people", Operation::Export)]]);
    let by_hand = server.wait_job(by_hand.id, 120);
    assert_eq!(by_hand.state, JobState::Succeeded, "{}", ctx(&by_hand));
    let job = run(&server, true, false);
    assert_eq!(job.state, JobState::Succeeded, "{}", ctx(&job));
    assert_eq!(
        orders(&server, job.id),
        [("update".into(), "paul.durand".into(), Done)],
        "{}",
        ctx(&job)
    );
    assert!(row_of(&accounts(&target), "paul.durand").contains("Audit"));
    assert_eq!(history_of("E2").len(), 2);

    // 4. An order the target refuses is retried, then recorded as failed with its message.
    write_hr(
        &hr,
        &[
            "E1,Zoé,Martin,R|D,active",
            "E2,Paul,Durand,Audit,active",
            "E3,Ana,Lima,Finance,active",
            "E5,Tom,Hardy,IT,inactive",
            "E6,Eve,Stone,Legal,active",
        ],
    );
    let job = run(&server, true, false);
    assert_eq!(job.state, JobState::Succeeded, "{}", ctx(&job));
    let failing: Vec<OrderView> = server
        .admin::<(), _>(Method::GET, &format!("/api/v1/orders?job={}", job.id), None)
        .unwrap();
    assert_eq!(failing.len(), 1);
    assert_eq!(failing[0].state, OrderState::Retry, "{failing:?}");
    assert!(failing[0].message.as_deref().unwrap().contains("separator"));
    let again = run(&server, true, false);
    assert_eq!(again.state, JobState::Succeeded, "{}", ctx(&again));
    assert_eq!(provision_report(&again)["creates"], 0, "{}", ctx(&again));
    assert!(
        orders(&server, again.id).is_empty(),
        "the retried order is not computed again"
    );
    let failed: Vec<OrderView> = server
        .admin::<(), _>(Method::GET, "/api/v1/orders?state=failed", None)
        .unwrap();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].id, failing[0].id);
    assert_eq!(failed[0].attempts, 2);
    let mails = smtp.wait(30, |m| {
        m.iter().any(|m| m.contains("order failed for good"))
    });
    let mail = mails
        .iter()
        .find(|m| m.contains("order failed for good"))
        .unwrap();
    let mail = idgard_tests::mail::decoded(mail);
    assert!(mail.contains("update zoé.martin in directory"), "{mail}");
    assert!(mail.contains("contains the separator"), "{mail}");

    // 5. Two leavers at once exceed the threshold (one delete): the job stops, blocked, with
    //    nothing applied; an approval lets it go on.
    write_hr(
        &hr,
        &[
            "E1,Zoé,Martin,Sales,active",
            "E5,Tom,Hardy,IT,inactive",
            "E6,Eve,Stone,Legal,active",
        ],
    );
    let job: JobView = server
        .admin(
            Method::POST,
            "/api/v1/jobs/run",
            Some(&RunJob {
                job: "daily".into(),
                incremental: false,
                dry_run: false,
            }),
        )
        .unwrap();
    let job = server.wait_job(job.id, 120);
    assert_eq!(job.state, JobState::Blocked, "{}", ctx(&job));
    let reason = job.blocked.as_ref().unwrap()["reason"].as_str().unwrap();
    assert!(reason.contains("2 deletes"), "{reason}");
    let mails = smtp.wait(30, |m| m.iter().any(|m| m.contains("waits for approval")));
    let mail = mails
        .iter()
        .find(|m| m.contains("waits for approval"))
        .unwrap();
    let mail = idgard_tests::mail::decoded(mail);
    assert!(mail.contains(&format!("run {} (daily", job.id)), "{mail}");
    assert!(mail.contains("2 deletes"), "the threshold is named: {mail}");
    let entries: Vec<Value> = server
        .admin::<(), _>(Method::GET, "/api/v1/connections/people/entries", None)
        .unwrap();
    assert_eq!(entries.len(), 5, "a blocked synchronize applies nothing");
    let approved: JobView = server
        .admin::<(), _>(
            Method::POST,
            &format!("/api/v1/jobs/{}/approve", job.id),
            None,
        )
        .unwrap();
    assert_eq!(approved.state, JobState::Running);
    let job = server.wait_job(job.id, 120);
    assert_eq!(job.state, JobState::Succeeded, "{}", ctx(&job));
    let done = orders(&server, job.id);
    assert!(
        done.contains(&("disable".into(), "paul.durand".into(), Done)),
        "{done:?}"
    );
    assert!(
        done.contains(&("disable".into(), "ana.lima".into(), Done)),
        "{done:?}"
    );
    let entries: Vec<Value> = server
        .admin::<(), _>(Method::GET, "/api/v1/connections/people/entries", None)
        .unwrap();
    assert_eq!(entries.len(), 3);

    // 6. One run at a time: later runs wait; an identical waiting run is not queued twice; a
    //    complete run cancels the incremental runs still waiting.
    let ask = |incremental: bool| -> JobView {
        server
            .admin(
                Method::POST,
                "/api/v1/jobs/run",
                Some(&RunJob {
                    job: "daily".into(),
                    incremental,
                    dry_run: false,
                }),
            )
            .unwrap()
    };
    let a = ask(false);
    let b = ask(true);
    let c = ask(true);
    assert_eq!(a.state, JobState::Running);
    assert_eq!(b.state, JobState::Pending);
    assert_eq!(c.id, b.id, "an identical waiting run is reused");
    let d = ask(false);
    assert_eq!(d.state, JobState::Pending);
    assert_eq!(server.job(b.id).state, JobState::Cancelled);
    assert_eq!(server.wait_job(a.id, 120).state, JobState::Succeeded);
    let d = server.wait_job(d.id, 120);
    assert_eq!(d.state, JobState::Succeeded, "{}", ctx(&d));
    assert!(
        d.tasks
            .iter()
            .all(|t| t.created_ms >= server.job(a.id).finished_ms.unwrap())
    );
    drop(agent);
}

mod hire_move_leave {
    #[test]
    fn sqlite() {
        super::hire_move_leave(super::Backend::Sqlite)
    }
    #[test]
    fn postgres() {
        super::hire_move_leave(super::Backend::Postgres)
    }
}

/// A server killed in the middle of a synchronize: the repository is as it was, and the run
/// asked again completes once.
pub fn killed_during_synchronize(b: Backend) {
    // Leases long enough for a slow upload and a server restart on a loaded machine.
    let mut server = Server::start_with(
        b,
        &[
            ("IDGARD_QUEUE_LEASE_MS", "60000"),
            ("IDGARD_QUEUE_ACK_MS", "60000"),
        ],
    );
    let hand = Hand::enrol(&server, "metz");
    let job = server.create_job(
        "metz",
        vec![
            vec![on("hr", Operation::Export)],
            vec![on("hr", Operation::Synchronize)],
        ],
    );
    let export = hand.poll(&server, 0).tasks[0].clone();
    // 150,000 people, uploaded in 1 MiB chunks.
    let rows = 150_000u32;
    let mut content = Vec::new();
    let mut batch = idgard_sdk::wire::BatchBuffer::with_capacity(1 << 20);
    for i in 0..rows {
        let at = batch.begin_entry(
            idgard_sdk::wire::EntryOp::Upsert,
            "person",
            &format!("E{i:07}"),
        );
        batch.attribute1("first_name", "Zoë");
        batch.attribute1("last_name", &format!("Name{i}"));
        batch.attribute1("department", "Sales");
        batch.end_entry(at, 3);
        if batch.entries() == 1000 || i + 1 == rows {
            content.extend_from_slice(&frames::header(batch.entries(), batch.len() as u32));
            content.extend_from_slice(batch.as_bytes());
            batch.clear();
        }
    }
    let (s, v) = hand.call(
        &server,
        Method::POST,
        &format!("/api/v1/agent/tasks/{}/uploads", export.id),
        json!({ "fence": export.fence, "name": "entries", "size": content.len(),
                "sha256": hex::encode(sha2::Sha256::digest(&content)) }),
    );
    assert_eq!(s, StatusCode::OK, "{v}");
    let slot = v["id"].as_i64().unwrap();
    for (i, chunk) in content.chunks(1 << 20).enumerate() {
        let (s, v) = server.raw_bytes(
            Method::PUT,
            &format!("/api/v1/agent/uploads/{slot}?offset={}", i << 20),
            Some(&hand.token),
            Some(chunk.to_vec()),
            "application/octet-stream",
        );
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let (s, v) = hand.complete(
        &server,
        export.id,
        export.fence,
        json!({ "upload_id": slot, "entries": rows }),
    );
    assert_eq!(s, StatusCode::OK, "{v}");
    let sync = hand.poll(&server, 5000).tasks[0].clone();
    assert_eq!(sync.operation, Operation::Synchronize);
    let beat = |server: &Server| {
        hand.call(
            server,
            Method::POST,
            &format!("/api/v1/agent/tasks/{}/heartbeat", sync.id),
            json!({ "fence": sync.fence }),
        )
    };
    assert_eq!(beat(&server).0, StatusCode::OK);
    // Ask for the run, and kill the server while it works.
    let url = format!("{}/api/v1/agent/tasks/{}/run", server.url, sync.id);
    let token = hand.token.clone();
    let fence = sync.fence;
    let asked = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                reqwest::Client::builder()
                    .danger_accept_invalid_certs(true)
                    .build()
                    .unwrap()
                    .post(url)
                    .bearer_auth(token)
                    .json(&json!({ "fence": fence }))
                    .send()
                    .await
                    .map(|r| r.status())
            })
    });
    std::thread::sleep(std::time::Duration::from_millis(400));
    assert!(
        !asked.is_finished(),
        "the synchronize ended before the kill: make the upload larger"
    );
    // While it runs, the task shows how far it got (entries read of the upload's).
    let running: TaskView = server
        .admin::<(), _>(Method::GET, &format!("/api/v1/tasks/{}", sync.id), None)
        .unwrap();
    let (done, total) = running.progress.expect("progress while it runs");
    assert!(done > 0 && total.is_some_and(|t| t >= done), "{running:?}");
    server.kill_and_start();
    assert!(
        asked.join().unwrap().is_err(),
        "the request died with the server"
    );
    // Nothing kept: the connection holds no entry (so much so that it is unknown).
    let (status, entries) = server.raw(
        Method::GET,
        "/api/v1/connections/hr/entries?limit=10",
        Some(&server.admin),
        None,
    );
    assert!(
        status == StatusCode::NOT_FOUND || entries == json!([]),
        "a killed synchronize keeps nothing: {status} {entries:?}"
    );
    // The agent asks again (same lease): it completes, once.
    assert_eq!(beat(&server).0, StatusCode::OK);
    let (s, v) = hand.call(
        &server,
        Method::POST,
        &format!("/api/v1/agent/tasks/{}/run", sync.id),
        json!({ "fence": sync.fence }),
    );
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "succeeded", "{v}");
    assert_eq!(v["result"]["inserted"], rows, "{v}");
    // Asked once more (a lost answer): the same result, nothing applied twice.
    let (s, again) = hand.call(
        &server,
        Method::POST,
        &format!("/api/v1/agent/tasks/{}/run", sync.id),
        json!({ "fence": sync.fence }),
    );
    assert_eq!(s, StatusCode::OK);
    assert_eq!(again["result"], v["result"]);
    let job = server.wait_job(job.id, 30);
    assert_eq!(job.state, JobState::Succeeded);
    let page: Vec<Value> = server
        .admin::<(), _>(
            Method::GET,
            "/api/v1/connections/hr/entries?after=E0149990&limit=100",
            None,
        )
        .unwrap();
    assert_eq!(page.len(), 9, "the last keys are there once");
}

mod killed_during_synchronize {
    #[test]
    fn sqlite() {
        super::killed_during_synchronize(super::Backend::Sqlite)
    }
    #[test]
    fn postgres() {
        super::killed_during_synchronize(super::Backend::Postgres)
    }
}
