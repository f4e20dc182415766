//! `idgard-server` as an administrator runs it: configuration errors, agent creation.

use std::process::{Command, Output};

fn server(data: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_idgard-server"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("IDGARD_CONFIG")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn an_unknown_configuration_key_stops_the_server_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("server.toml");
    std::fs::write(&conf, "[queue]\nlease_seconds = 5\n").unwrap();
    let out = server(dir.path(), &["--config", conf.to_str().unwrap(), "serve"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("unknown field `lease_seconds`"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn agent_add_prints_a_one_time_token_and_refuses_bad_names() {
    let dir = tempfile::tempdir().unwrap();
    let out = server(
        dir.path(),
        &["agent", "add", "paris-1", "--url", "https://idm:8443"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("idgard-agent enrol --server https://idm:8443 --token "),
        "{stdout}"
    );
    let token = stdout.lines().nth(1).unwrap().trim();
    assert_eq!(token.len(), 64);

    let listed = text(&server(dir.path(), &["agent", "list"]).stdout);
    assert!(
        listed.contains("paris-1") && listed.contains("waiting"),
        "{listed}"
    );

    let out = server(dir.path(), &["agent", "add", "Paris 1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("lower-case letters"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_job_for_an_unknown_agent_or_operation_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = server(
        dir.path(),
        &["job", "create", "--agent", "nobody", "--step", "export:hr"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no agent named `nobody`"),
        "{}",
        text(&out.stderr)
    );
    let out = server(
        dir.path(),
        &["job", "create", "--agent", "x", "--step", "explode:hr"],
    );
    assert!(
        text(&out.stderr).contains("operations are export"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_configuration_file_in_the_current_directory_is_read_without_flags() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("elsewhere");
    std::fs::write(
        dir.path().join("idgard-server.toml"),
        format!("data_dir = {:?}\n", data.display().to_string()),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_idgard-server"))
        .args(["agent", "add", "lyon"])
        .current_dir(dir.path())
        .env_remove("IDGARD_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        data.join("idgard.db").exists(),
        "the file's data_dir was not used"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_idgard-server"))
        .args(["agent", "list"])
        .current_dir(dir.path())
        .env_remove("IDGARD_CONFIG")
        .output()
        .unwrap();
    assert!(text(&out.stdout).contains("lyon"), "{}", text(&out.stdout));
}

/// `serve` on `data`, on any free port.
fn serve(data: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_idgard-server"));
    c.arg("--data-dir")
        .arg(data)
        .args(["--listen", "127.0.0.1:0", "serve"])
        .env_remove("IDGARD_CONFIG");
    c
}

/// `serve` on `data`, on any free port; returns the process once it listens.
fn serving(data: &std::path::Path) -> std::process::Child {
    use std::io::BufRead;
    let mut child = serve(data)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("listening on"), "{line}");
    child
}

#[test]
fn a_second_server_on_one_embedded_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = serving(dir.path());
    let mut second = serve(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while second.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > until {
            second.kill().unwrap();
            first.kill().unwrap();
            panic!("a second server serves the same embedded database");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = second.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("another idgard-server already serves the database")
            && err.contains("idgard.db"),
        "{err}"
    );
    // The administration commands still work beside it.
    let listed = server(dir.path(), &["agent", "list"]);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    // Once the first is gone (even killed), another may serve.
    first.kill().unwrap();
    first.wait().unwrap();
    let mut again = serving(dir.path());
    again.kill().unwrap();
    again.wait().unwrap();
}

#[test]
fn a_reader_that_goes_away_ends_a_command_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_idgard-server"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["agent", "add", "paris-2"])
        .env_remove("IDGARD_CONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The reading end closed before the command prints (as `| head -0` would).
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
}

#[test]
fn add_reset_and_remove_are_distinct_commands() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| server(dir.path(), args);
    assert!(run(&["agent", "add", "lyon"]).status.success());
    let again = run(&["agent", "add", "lyon"]);
    assert_eq!(
        again.status.code(),
        Some(2),
        "adding an existing name fails"
    );
    assert!(
        text(&again.stderr).contains("exists already"),
        "{}",
        text(&again.stderr)
    );

    let unknown = run(&["agent", "reset", "nantes"]);
    assert_eq!(
        unknown.status.code(),
        Some(2),
        "resetting an unknown name fails"
    );
    assert!(text(&unknown.stderr).contains("no agent named `nantes`"));
    let listed = text(&run(&["agent", "list"]).stdout);
    assert!(
        !listed.contains("nantes"),
        "reset created nothing: {listed}"
    );
    let reset = run(&["agent", "reset", "lyon"]);
    assert!(reset.status.success(), "{}", text(&reset.stderr));
    assert!(text(&reset.stdout).contains("agent `lyon` reset"));

    let job = run(&["job", "create", "--agent", "lyon", "--step", "noop:"]);
    assert!(job.status.success(), "{}", text(&job.stderr));
    let busy = run(&["agent", "remove", "lyon"]);
    assert_eq!(busy.status.code(), Some(2), "work would wait for nobody");
    assert!(
        text(&busy.stderr).contains("cancel them first"),
        "{}",
        text(&busy.stderr)
    );
    let id: serde_json::Value = serde_json::from_slice(&job.stdout).unwrap();
    let id = id["id"].to_string();
    assert!(run(&["job", "cancel", &id]).status.success());
    let removed = run(&["agent", "remove", "lyon"]);
    assert!(removed.status.success(), "{}", text(&removed.stderr));
    assert!(!text(&run(&["agent", "list"]).stdout).contains("lyon"));
    assert_eq!(run(&["agent", "remove", "lyon"]).status.code(), Some(2));
    assert!(
        run(&["agent", "add", "lyon"]).status.success(),
        "a removed agent's name is free again"
    );
}

#[test]
fn administrator_tokens_are_listed_revoked_and_expire() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| server(dir.path(), args);
    let made = run(&[
        "admin-token",
        "create",
        "--name",
        "ci",
        "--expires-in",
        "30d",
    ]);
    assert!(made.status.success(), "{}", text(&made.stderr));
    assert_eq!(
        text(&made.stdout).trim().len(),
        64,
        "the token alone on stdout"
    );
    let listed = text(&run(&["admin-token", "list"]).stdout);
    let line = listed
        .lines()
        .find(|l| l.contains(" ci "))
        .unwrap_or_else(|| panic!("{listed}"));
    assert!(!line.contains("never"), "it expires: {line}");
    let id = line.split_whitespace().next().unwrap();
    assert_eq!(id.len(), 12);
    assert!(run(&["admin-token", "revoke", id]).status.success());
    assert!(!text(&run(&["admin-token", "list"]).stdout).contains(" ci "));
    let again = run(&["admin-token", "revoke", id]);
    assert_eq!(again.status.code(), Some(2));
    assert!(text(&again.stderr).contains("no administrator token"));
    let short = run(&["admin-token", "revoke", "abc"]);
    assert!(
        text(&short.stderr).contains("at least 8"),
        "{}",
        text(&short.stderr)
    );
}

#[test]
fn an_administration_command_without_a_server_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_idgard-server"))
        .args(["agent", "list"])
        .current_dir(dir.path())
        .env_remove("IDGARD_CONFIG")
        .env_remove("IDGARD_DATA_DIR")
        .env_remove("IDGARD_DATABASE_URL")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no server here"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no ./data"
    );
}

#[test]
fn a_commands_help_shows_its_own_options_only() {
    let dir = tempfile::tempdir().unwrap();
    let help = text(&server(dir.path(), &["agent", "add", "--help"]).stdout);
    assert!(help.contains("--url"), "{help}");
    for other in ["--listen", "--dev-http", "--database-url"] {
        assert!(!help.contains(other), "{other} in\n{help}");
    }
    let top = text(&server(dir.path(), &["--help"]).stdout);
    assert!(
        top.contains("--listen") && top.contains("come before the command"),
        "{top}"
    );
}
