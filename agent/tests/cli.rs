//! `idgard-agent connector ...` as an author uses it: the real binary, the real packages.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn agent(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_idgard-agent"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn demo() -> PathBuf {
    idgard_tests::root().join("connectors/csv/demo/hr-connection.toml")
}

#[test]
fn run_exports_json_lines_then_nothing_when_nothing_changed() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path().to_str().unwrap();
    let pkg = idgard_tests::packages::CONNECTOR_CSV;
    let demo = demo();
    let out = agent(
        &[
            "connector",
            "run",
            pkg,
            "export",
            "--config",
            demo.to_str().unwrap(),
            "--work",
            w,
        ],
        work.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5000);
    assert_eq!(lines[0]["op"], "upsert");
    assert_eq!(lines[0]["key"], "E0000001");
    assert!(
        text(&out.stderr).contains("exported 5000 entries (0 rejected"),
        "{}",
        text(&out.stderr)
    );
    assert!(work.path().join("state/demo-hr/cursor.json").exists());

    let out = agent(
        &[
            "connector",
            "run",
            pkg,
            "export",
            "--incremental",
            "--config",
            demo.to_str().unwrap(),
            "--work",
            w,
        ],
        work.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "");
    assert!(
        text(&out.stderr).contains("exported 0 entries"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn describe_fulfill_and_clear_failures() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path().to_str().unwrap();
    let pkg = idgard_tests::packages::CONNECTOR_CSV;
    let out = agent(
        &["connector", "run", pkg, "describe", "--work", w],
        work.path(),
    );
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["name"], "csv");

    std::fs::create_dir(work.path().join("accounts")).unwrap();
    std::fs::write(
        work.path().join("target.toml"),
        "name = \"target\"\n[grants.folders.accounts]\npath = \"accounts\"\naccess = \"read-write\"\n",
    )
    .unwrap();
    std::fs::write(
        work.path().join("orders.jsonl"),
        "{\"id\":\"1\",\"entity-type\":\"account\",\"key\":\"ann\",\"kind\":\"create\",\"attributes\":{\"name\":[\"Ann\"]}}\n\
         {\"id\":\"2\",\"type\":\"account\",\"key\":\"bob\",\"kind\":\"disable\"}\n",
    )
    .unwrap();
    let out = agent(
        &[
            "connector",
            "run",
            pkg,
            "fulfill",
            "--config",
            "target.toml",
            "--orders",
            "orders.jsonl",
            "--work",
            w,
        ],
        work.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "{\"id\":\"1\",\"outcome\":\"done\"}\n{\"id\":\"2\",\"outcome\":\"failed\",\"message\":\"no account `bob`\"}\n"
    );
    assert_eq!(
        std::fs::read_to_string(work.path().join("accounts/accounts.csv")).unwrap(),
        "login,enabled,name\nann,true,Ann\n"
    );

    // A connector error exits 1 with its kind; a package that cannot load exits 2 naming the file.
    std::fs::write(
        work.path().join("nofile.toml"),
        "name = \"x\"\n[settings]\nfile = \"nope.csv\"\n",
    )
    .unwrap();
    let out = agent(
        &[
            "connector",
            "run",
            pkg,
            "test-connection",
            "--config",
            "nofile.toml",
            "--work",
            w,
        ],
        work.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("connector error (denied)"),
        "{}",
        text(&out.stderr)
    );
    let out = agent(
        &["connector", "run", w, "describe", "--work", w],
        work.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("connector.toml"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_new_connector_passes_its_own_test_builds_and_runs() {
    let root = idgard_tests::root();
    // Inside the workspace's target folder, so that the pinned toolchain applies.
    let base = root.join("target/template-test");
    let dir = base.join("people-file");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&base).unwrap();
    // By default the crate depends on the published SDK of this agent's version, and carries no
    // path of the machine that made it.
    let published = base.join("published");
    let _ = std::fs::remove_dir_all(&published);
    let out = agent(
        &[
            "connector",
            "new",
            "people-file",
            "--dir",
            published.to_str().unwrap(),
        ],
        &base,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let manifest = std::fs::read_to_string(published.join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains(&format!("idgard-sdk = \"{}\"", idgard_sdk::VERSION)),
        "{manifest}"
    );
    assert!(!manifest.contains(root.to_str().unwrap()), "{manifest}");

    // Built here (offline) against this tree's SDK.
    let sdk = root.join("sdk");
    let out = agent(
        &[
            "connector",
            "new",
            "people-file",
            "--dir",
            dir.to_str().unwrap(),
            "--sdk-path",
            sdk.to_str().unwrap(),
        ],
        &base,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    let cargo = |args: &[&str]| {
        let out = Command::new("cargo")
            .args(args)
            .arg("--offline")
            .current_dir(&dir)
            .env("CARGO_TARGET_DIR", base.join("target"))
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cargo {args:?}: {}",
            text(&out.stderr)
        );
        out
    };
    let out = cargo(&["test"]);
    assert!(
        text(&out.stdout).contains("2 passed"),
        "{}",
        text(&out.stdout)
    );
    cargo(&["build", "--release", "--target", "wasm32-wasip2"]);
    // The manifest points at the crate's own target folder (the component must lie inside the
    // package); the test builds into a shared one, so the component is copied where it points.
    let built = base.join("target/wasm32-wasip2/release/people_file.wasm");
    let wasm = dir.join("target/wasm32-wasip2/release/people_file.wasm");
    std::fs::create_dir_all(wasm.parent().unwrap()).unwrap();
    std::fs::copy(&built, &wasm).unwrap();
    let work = dir.join("work");
    let out = agent(
        &[
            "connector",
            "run",
            ".",
            "export",
            "--config",
            "example-connection.toml",
            "--work",
            work.to_str().unwrap(),
        ],
        &dir,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().count(), 2);
    assert!(
        text(&out.stderr).contains("2 people exported"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn nothing_a_connector_sends_reaches_the_terminal_raw() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path().to_str().unwrap();
    let conn = work.path().join("hostile.toml");
    std::fs::write(
        &conn,
        "name = \"hostile\"\n[settings]\nmode = \"log-escape\"\n",
    )
    .unwrap();
    let out = agent(
        &[
            "connector",
            "run",
            idgard_tests::packages::GUEST_HOSTILE,
            "export",
            "--config",
            conn.to_str().unwrap(),
            "--work",
            w,
            "--format",
            "table",
        ],
        work.path(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    for (what, printed) in [("stdout", &stdout), ("stderr", &stderr)] {
        assert!(
            !printed.contains('\x1b') && !printed.contains('\x07') && !printed.contains('\r'),
            "{what} carries raw control characters: {printed:?}"
        );
    }
    // Each forged line stays inside the line that carried it.
    assert!(
        !stderr
            .lines()
            .any(|l| l.starts_with("exported 5000 entries")),
        "{stderr}"
    );
    assert!(stdout.contains("\\u{1b}[2Jcell"), "{stdout}");
    assert!(
        stderr.contains("\\u{1b}]0;pwned\\u{7}forged\\nexported"),
        "{stderr}"
    );
}

#[test]
fn enrol_works_as_printed_in_an_empty_folder() {
    let dir = tempfile::tempdir().unwrap();
    let out = agent(
        &["enrol", "--server", "http://127.0.0.1:9", "--token", "t"],
        dir.path(),
    );
    // No server listens there: the enrolment itself fails, but not for want of a file.
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(!err.contains("cannot read"), "{err}");
    assert!(err.contains("cannot reach http://127.0.0.1:9"), "{err}");
    assert!(err.contains("wrote a starter"), "{err}");
    let config = std::fs::read_to_string(dir.path().join("agent.toml")).unwrap();
    assert!(config.contains("connections = \"connections\""), "{config}");
    for d in ["work", "runtime", "connections"] {
        assert!(dir.path().join(d).is_dir(), "{d}/");
    }
}

#[test]
fn connector_run_leaves_the_current_folder_alone_and_names_a_missing_incremental_export() {
    let cwd = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_idgard-agent"))
            .args(args)
            .current_dir(cwd.path())
            .env("HOME", home.path())
            .env_remove("XDG_CACHE_HOME")
            .output()
            .unwrap()
    };
    let demo = demo();
    let out = run(&[
        "connector",
        "run",
        idgard_tests::packages::CONNECTOR_CSV,
        "export",
        "--config",
        demo.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_dir(cwd.path()).unwrap().count(),
        0,
        "nothing written in the current folder"
    );
    assert!(
        home.path()
            .join(".cache/idgard/connector-run/cache")
            .is_dir()
    );

    let data = cwd.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let conn = home.path().join("slow.toml");
    std::fs::write(
        &conn,
        format!(
            "name = \"slow\"\nconnector = \"misbehave\"\n[settings]\nmode = \"slow\"\ncount = 3\n\
             [grants.folders.data]\npath = \"{}\"\naccess = \"read-write\"\n",
            data.display()
        ),
    )
    .unwrap();
    let out = run(&[
        "connector",
        "run",
        idgard_tests::packages::GUEST_MISBEHAVE,
        "export",
        "--incremental",
        "--config",
        conn.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("has no incremental export"), "{err}");
    assert!(!err.contains("run a full export first"), "{err}");
}
