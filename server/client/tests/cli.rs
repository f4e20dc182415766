//! `idgard` without a server: what it says before any login. (Its work against a real server
//! is tested end to end in `tests/all/client.rs`; this test also makes `cargo test` build the
//! binary those tests run.)

use std::process::Command;

fn idgard(context: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_idgard"))
        .env("IDGARD_CONTEXT", context)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn without_a_login_every_command_says_how_to_log_in() {
    let dir = tempfile::tempdir().unwrap();
    let context = dir.path().join("context.toml");
    for args in [
        &["agent", "list"][..],
        &["identity", "show", "E1"],
        &["job", "run", "daily", "--wait"],
    ] {
        let out = idgard(&context, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("idgard login --server"), "{args:?}: {err}");
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing created"
    );
}

#[test]
fn help_lists_each_commands_own_options_and_the_situations() {
    let dir = tempfile::tempdir().unwrap();
    let out = idgard(&dir.path().join("c.toml"), &["links", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("linked, unlinked, unmatched, deleted"),
        "{help}"
    );
    assert!(!help.contains("--incremental"), "{help}");
}
