//! Encryption at rest, end to end: after a pipeline run, an export caught in the agent's spool
//! and a password sent to a target, no file the agent or the server wrote holds a password or a
//! personal attribute in clear: not the agent's spool, secrets or log, not the server's
//! database (encrypted whole, its WAL too), nor a backup of it (docs/operations.md,
//! "Encryption at rest").

use crate::pipeline::{accounts_file_connection, people_connection, write_hr};
use crate::system::{Agent, Backend, Server, files_holding, on};
use idgard_protocol::{JobState, Operation, TaskState};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A surname found nowhere else (and as it appears in an account's login).
const SURNAME: &str = "Quetzalcoatl";
const LOGIN: &str = "quetzalcoatl";
/// The password of a set-password order.
const PASSWORD: &str = "Pw-7f3c-order-secret";
/// A connection secret stored with `idgard-agent secret set`.
const STORED: &str = "St-91ab-stored-secret";

fn set_secret(agent: &Agent, name: &str, value: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new(crate::harness::bin("idgard-agent"))
        .args(["secret", "set", name, "--config"])
        .arg(agent.dir.join("agent.toml"))
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{value}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The big HR file: the surname first, then `rows` others.
fn write_big_hr(dir: &Path, rows: usize) {
    use std::fmt::Write;
    let mut text = String::from("employee_id,first_name,last_name,department,status\n");
    text.push_str(&format!("B0,Ada,{SURNAME},Sales,active\n"));
    for i in 1..rows {
        writeln!(text, "B{i},First{i},Last{i},Dept{},active", i % 40).unwrap();
    }
    std::fs::write(dir.join("hr.csv"), text).unwrap();
}

/// Runs an administration command of the server's, as an operator would; its standard output.
fn admin_command(server: &Server, ring: &Path, args: &[&std::ffi::OsStr]) -> String {
    let out = std::process::Command::new(crate::harness::bin("idgard-server"))
        .arg("--data-dir")
        .arg(&server.data)
        .args(args)
        .env("IDGARD_KEYRING", ring)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn sealed(path: &Path) -> bool {
    let bytes = std::fs::read(path).unwrap();
    bytes.starts_with(b"IGV1") || bytes.starts_with(b"IGF1")
}

#[test]
fn nothing_is_kept_in_clear_on_either_side() {
    let tmp = tempfile::tempdir().unwrap();
    let (hr, big, target) = (
        tmp.path().join("hr"),
        tmp.path().join("big"),
        tmp.path().join("directory"),
    );
    for d in [&hr, &big, &target] {
        std::fs::create_dir_all(d).unwrap();
    }
    let rules = tmp.path().join("rules.toml");
    std::fs::write(&rules, crate::pipeline::RULES).unwrap();
    write_hr(
        &hr,
        &[
            "E1,Ada,Quetzalcoatl,Sales,active",
            "E2,Paul,Durand,IT,active",
        ],
    );
    write_big_hr(&big, 200_000);
    std::fs::write(
        target.join("accounts.csv"),
        "login,enabled,employee_id,name,department\n",
    )
    .unwrap();
    // The server's own key ring, its first key made by the operator (docs/operations.md).
    let ring = tmp.path().join("server-keys");
    std::fs::create_dir_all(&ring).unwrap();
    let made = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(ring.join("key-1.pem"))
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let mut server = Server::start_with(
        Backend::Sqlite,
        &[
            ("IDGARD_RULES", &rules.display().to_string()),
            ("IDGARD_KEYRING", &ring.display().to_string()),
            ("IDGARD_QUEUE_LEASE_MS", "120000"),
        ],
    );
    // The HR connection needs a stored secret: a run reads every secret of its connection, so
    // the job below succeeds only if the sealed secret opened.
    let people = format!(
        "{}[secrets]\nhr_api = {{ stored = \"hr-api\" }}\n",
        people_connection(&hr)
    );
    let bulk = people_connection(&big).replace("name = \"people\"", "name = \"bulk\"");
    let mut agent = Agent::start_with(
        &server,
        "lyon",
        &[
            ("people.toml", people),
            ("directory.toml", accounts_file_connection(&target)),
            ("bulk.toml", bulk),
        ],
    );
    set_secret(&agent, "hr-api", STORED);

    // 1. The pipeline: HR → identities → accounts.
    let job = crate::pipeline::run(&server, false, false);
    assert_eq!(
        job.state,
        JobState::Succeeded,
        "{}",
        crate::pipeline::context(&job, &agent, &server)
    );
    let accounts = std::fs::read_to_string(target.join("accounts.csv")).unwrap();
    assert!(accounts.contains(SURNAME), "{accounts}");

    // 2. A password on its way to a target (the CSV connector refuses it; it went through).
    let mut spec = on("directory", Operation::Fulfill);
    spec.args = json!({ "orders": [
        { "id": "p1", "entity-type": "account", "key": "ada.quetzalcoatl", "kind": "set-password", "password": PASSWORD },
    ]});
    let fulfil = server.create_job("lyon", vec![vec![spec]]);
    assert_eq!(server.wait_job(fulfil.id, 60).state, JobState::Succeeded);

    // 3. An export caught in the agent's spool: the server goes away while it runs.
    let id = server.enqueue("lyon", vec![on("bulk", Operation::Export)])[0];
    server.wait_task(id, 60, |t| t.state == TaskState::Running);
    server.stop();
    let until = Instant::now() + Duration::from_secs(120);
    while !agent.log().contains("cannot deliver the result") {
        assert!(
            Instant::now() < until,
            "the export never finished\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let spool: Vec<PathBuf> = std::fs::read_dir(agent.dir.join("work/spool"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    let kinds = |ext: &str| {
        spool
            .iter()
            .filter(|p| p.extension().is_some_and(|x| x == ext))
            .count()
    };
    assert!(kinds("entries") == 1 && kinds("json") == 1, "{spool:?}");
    for p in &spool {
        assert!(sealed(p), "{} is not sealed", p.display());
    }
    assert_eq!(
        files_holding(&agent.dir, SURNAME.as_bytes()),
        [] as [PathBuf; 0]
    );
    assert!(
        std::fs::metadata(
            spool
                .iter()
                .find(|p| p.extension().is_some_and(|x| x == "entries"))
                .unwrap()
        )
        .unwrap()
        .len()
            > 4 << 20
    );

    // The server comes back; the sealed export is delivered and opens on the server.
    server.restart();
    let t = server.wait_task(id, 120, |t| t.state.is_final());
    assert_eq!(t.state, TaskState::Succeeded, "{t:#?}\n{}", agent.log());
    assert_eq!(t.result.as_ref().unwrap()["entries"], 200_000);
    let upload = t.result.as_ref().unwrap()["upload_id"].as_i64().unwrap();
    let (status, _, content) = server.get_text(
        &format!("/api/v1/uploads/{upload}/content"),
        Some(&server.admin),
    );
    assert!(status.is_success() && content.contains(SURNAME), "{status}");
    agent.terminate();

    // No file of the agent's holds any of them: its folder has the configuration, the key
    // ring, the stored secret, the work folder and its log.
    for needle in [SURNAME, LOGIN, PASSWORD, STORED] {
        assert_eq!(
            files_holding(&agent.dir, needle.as_bytes()),
            [] as [PathBuf; 0],
            "{needle}"
        );
    }
    // The server's: none of them in any file of its folder (database, WAL, key files, log),
    // although the repository holds the surname and the login, and the orders the password.
    let server_dir = server.data.parent().unwrap().to_owned();
    let backup = server_dir.join("backup.db");
    admin_command(&server, &ring, &["backup".as_ref(), backup.as_os_str()]);
    for needle in [SURNAME, LOGIN, PASSWORD, STORED] {
        assert_eq!(
            files_holding(&server_dir, needle.as_bytes()),
            [] as [PathBuf; 0],
            "{needle}"
        );
    }
    let db = server.data.join("idgard.db");
    for file in [&db, &backup] {
        let head = std::fs::read(file).unwrap();
        assert!(
            head.len() > 1 << 20 && !head.starts_with(b"SQLite format 3"),
            "{} is in clear",
            file.display()
        );
    }
    for key in ["idgard.db.key", "backup.db.key"] {
        let path = if key.starts_with("idgard") {
            server.data.join(key)
        } else {
            server_dir.join(key)
        };
        assert!(sealed(&path), "{} is not sealed", path.display());
    }
    // Read with the database's key, the repository holds them; the upload's chunks are sealed
    // on their own too.
    let count = format!("SELECT COUNT(*) FROM entries WHERE attrs LIKE '%{SURNAME}%'");
    let out = admin_command(&server, &ring, &["sql".as_ref(), count.as_ref()]);
    let found: u64 = out
        .strip_prefix("COUNT(*)\n")
        .and_then(|n| n.trim_end().parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(found >= 1, "{out}");
    // A rotation of the key ring seals the database's key again at once; it still opens.
    let rotated = admin_command(&server, &ring, &["keys".as_ref(), "rotate".as_ref()]);
    assert!(
        rotated.contains("idgard.db.key is now sealed under key 2"),
        "{rotated}"
    );
    assert_eq!(
        idgard_vault::key_of(&std::fs::read(server.data.join("idgard.db.key")).unwrap()),
        Some(2)
    );
    let out = admin_command(&server, &ring, &["sql".as_ref(), count.as_ref()]);
    assert!(out.starts_with("COUNT(*)\n"), "{out}");
    let chunks: Vec<Vec<u8>> = server.column("SELECT data FROM upload_chunks");
    assert!(chunks.len() > 4, "{} chunks", chunks.len());
    assert!(chunks.iter().all(|c| c.starts_with(b"IGV1")));
    assert!(
        !chunks
            .iter()
            .any(|c| c.windows(SURNAME.len()).any(|w| w == SURNAME.as_bytes()))
    );
}
