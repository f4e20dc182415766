//! `idgard`, the administration client, as an administrator uses it from their own machine:
//! against a real server over HTTPS with a saved context (server, pinned certificate, token),
//! answering "what does this person have, and why?" with one command.

use crate::harness::bin;
use crate::pipeline::{accounts_file_connection, people_connection, write_hr};
use crate::system::{Agent, Backend, Server, on};
use idgard_protocol::{IdentityView, Operation, Situation};
use std::path::Path;
use std::process::{Command, Output};

const RULES: &str = r#"
version = 1
[identities]
connection = "people"
[[targets]]
connection = "directory"
key = 'identity.first_name.lowerAscii() + "." + identity.last_name.lowerAscii()'
correlation = { identity = "key", account = "account.employee_id" }
[targets.attributes]
employee_id = "identity.key"
department = "identity.department"
[[jobs]]
name = "daily"
agent = "lyon"
connections = ["people", "directory"]
"#;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn idgard(context: &Path, args: &[&str]) -> Output {
    Command::new(bin("idgard"))
        .env("IDGARD_CONTEXT", context)
        .args(args)
        .output()
        .unwrap()
}

fn ok(context: &Path, args: &[&str]) -> String {
    let out = idgard(context, args);
    assert!(
        out.status.success(),
        "idgard {args:?}: {}\n{}",
        text(&out.stderr),
        text(&out.stdout)
    );
    text(&out.stdout)
}

#[test]
fn an_administrator_works_from_a_saved_context() {
    let tmp = tempfile::tempdir().unwrap();
    let hr = tmp.path().join("hr");
    let target = tmp.path().join("directory");
    std::fs::create_dir_all(&hr).unwrap();
    std::fs::create_dir_all(&target).unwrap();
    write_hr(
        &hr,
        &["E1,Zoé,Martin,Sales,active", "E2,Paul,Durand,IT,active"],
    );
    std::fs::write(
        target.join("accounts.csv"),
        "login,employee_id,department\nghost,X9,None\n",
    )
    .unwrap();
    let rules = tmp.path().join("rules.toml");
    std::fs::write(&rules, RULES).unwrap();
    let server = Server::start_with(
        Backend::Sqlite,
        &[("IDGARD_RULES", rules.to_str().unwrap())],
    );
    let directory = accounts_file_connection(&target);
    let agent = Agent::start_with(
        &server,
        "lyon",
        &[
            ("people.toml", people_connection(&hr)),
            ("directory.toml", directory),
            (
                "broken.toml",
                "name = \"broken\"\nconnector = \"nope\"\n".into(),
            ),
        ],
    );
    let context = tmp.path().join("home/.config/idgard/context.toml");
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, format!("{}\n", server.admin)).unwrap();

    // Before any login: an error that says what to do, and nothing created.
    let out = idgard(&context, &["agent", "list"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("idgard login"),
        "{}",
        text(&out.stderr)
    );
    assert!(!context.exists());

    // A certificate other than the pinned one is refused, and nothing is saved.
    let wrong = "00".repeat(32);
    let login = |fingerprint: &str| {
        idgard(
            &context,
            &[
                "login",
                "--server",
                &server.url,
                "--fingerprint",
                fingerprint,
                "--token-file",
                token_file.to_str().unwrap(),
            ],
        )
    };
    let out = login(&wrong);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("not the one pinned"),
        "{}",
        text(&out.stderr)
    );
    assert!(!context.exists());
    let out = login(&server.fingerprint);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(context.exists());

    // Once the agent has said hello, its connections (and the file it refused) are listed.
    let started = std::time::Instant::now();
    let agents = loop {
        let agents = ok(&context, &["agent", "list"]);
        if agents.contains("people") || started.elapsed().as_secs() > 30 {
            break agents;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(agents.starts_with("NAME"), "a header: {agents}");
    assert!(
        agents.contains("lyon") && agents.contains("enrolled"),
        "{agents}"
    );
    // A connection file the agent refused is seen on the server, with why.
    assert!(
        agents.contains("agent lyon: broken.toml refused:") && agents.contains("nope"),
        "{agents}\n{}\n{}",
        ok(&context, &["agent", "list", "-o", "json"]),
        agent.log()
    );

    // A declared job, followed to its end.
    let run = ok(&context, &["job", "run", "daily", "--wait"]);
    assert!(run.contains("succeeded"), "{run}");
    assert!(run.contains("provision"), "its steps are shown: {run}");

    // One person, everything they have.
    let shown = ok(&context, &["identity", "show", "E1"]);
    assert!(shown.contains("department: Sales"), "{shown}");
    assert!(
        shown.contains("zoé.martin") && shown.contains("linked"),
        "{shown}"
    );
    let v: IdentityView =
        serde_json::from_str(&ok(&context, &["identity", "show", "E1", "-o", "json"])).unwrap();
    assert_eq!(v.accounts.len(), 1);
    assert_eq!(v.accounts[0].link.situation, Situation::Linked);
    assert_eq!(
        v.accounts[0].attributes.as_ref().unwrap()["department"],
        ["Sales"]
    );
    let missing = idgard(&context, &["identity", "show", "E404"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing.stderr).contains("no identity `E404`"));

    // The orphan, by situation; a situation that does not exist is named in the refusal.
    let orphans = ok(
        &context,
        &["links", "directory", "--situation", "unmatched"],
    );
    assert!(orphans.contains("ghost"), "{orphans}");
    let bad = idgard(&context, &["links", "directory", "--situation", "orphan"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).contains("unmatched"),
        "the values are listed: {}",
        text(&bad.stderr)
    );

    let history = ok(&context, &["history", "people", "E2"]);
    assert_eq!(
        history.lines().count(),
        2,
        "a header and one version: {history}"
    );
    let entry = ok(&context, &["entry", "show", "directory", "zoé.martin"]);
    assert!(entry.contains("situation: linked; identity: E1"), "{entry}");
    let orders = ok(&context, &["orders", "--identity", "E2"]);
    assert!(
        orders.contains("create") && orders.contains("paul.durand"),
        "{orders}"
    );
    let jobs = ok(&context, &["job", "list"]);
    assert!(
        jobs.contains("succeeded") && jobs.contains("daily"),
        "{jobs}"
    );

    // A long export's progress, labelled, on the agent's log; its log, followed to its end.
    let slow = server.enqueue("lyon", vec![on("slow", Operation::Export)])[0];
    let log = ok(&context, &["task", "log", &slow.to_string(), "--follow"]);
    assert!(log.contains("slow system: entry 200"), "{log}");
    assert!(
        log.trim_end().ends_with(&format!("task {slow} succeeded")),
        "{log}"
    );
    let agent_log = agent.log();
    assert!(
        agent_log.contains("export slow: ") && agent_log.contains(" entries after "),
        "{agent_log}"
    );

    // Checking rules on the server: a misspelt attribute is a warning with its line, once the
    // repository holds the source's entries.
    let misspelt = tmp.path().join("misspelt.toml");
    std::fs::write(
        &misspelt,
        RULES.replace("identity.department", "identity.departement"),
    )
    .unwrap();
    let checked = Command::new(bin("idgard-server"))
        .arg("--data-dir")
        .arg(&server.data)
        .args(["check-rules", misspelt.to_str().unwrap()])
        .env("IDGARD_KEYRING", server.keyring())
        .env_remove("IDGARD_CONFIG")
        .output()
        .unwrap();
    assert!(checked.status.success(), "{}", text(&checked.stderr));
    let warned = text(&checked.stderr);
    assert!(
        warned.contains(":11: `identity.departement`: no entry of `people` holds `departement`"),
        "{warned}"
    );
    assert!(
        warned.contains("department"),
        "the names it has are listed: {warned}"
    );

    // Administrator tokens, over the API: made, listed by id, revoked.
    let made = ok(
        &context,
        &[
            "admin-token",
            "create",
            "--name",
            "ci",
            "--expires-in-days",
            "30",
        ],
    );
    assert_eq!(made.trim().len(), 64, "{made}");
    let listed = ok(&context, &["admin-token", "list"]);
    let line = listed
        .lines()
        .find(|l| l.contains(" ci "))
        .unwrap_or_else(|| panic!("{listed}"));
    let id = line.split_whitespace().next().unwrap();
    assert!(ok(&context, &["admin-token", "revoke", id]).contains("revoked"));
    assert!(!ok(&context, &["admin-token", "list"]).contains(" ci "));

    assert!(ok(&context, &["logout"]).contains("forgotten"));
    assert!(!context.exists());

    // Log files are plain text: no colour codes, no `Some(..)`, no empty `error=""`.
    for (who, log) in [("agent", agent.log()), ("server", server.log())] {
        assert!(
            !log.contains('\u{1b}'),
            "colour codes in the {who}'s log:\n{log}"
        );
        assert!(!log.contains("Some("), "the {who}'s log:\n{log}");
        assert!(!log.contains("=\"\""), "the {who}'s log:\n{log}");
    }
}
