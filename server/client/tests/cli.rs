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

/// The `idgard` commands of docs/deployment.md, with their placeholders filled, are ones this
/// binary takes (a renamed command or flag fails here, not in a reader's shell).
#[test]
fn the_documented_commands_are_accepted_as_written() {
    let docs = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/deployment.md");
    let text = std::fs::read_to_string(docs).unwrap();
    let mut lines = Vec::new();
    let mut joined = String::new();
    for line in text.lines() {
        let line = line.split(" # ").next().unwrap().trim_end();
        if joined.is_empty() && !line.starts_with("idgard ") {
            continue;
        }
        joined.push_str(line.trim_end_matches('\\'));
        joined.push(' ');
        if !line.ends_with('\\') {
            lines.push(std::mem::take(&mut joined));
        }
    }
    assert!(lines.len() >= 10, "the commands were found: {lines:?}");
    let dir = tempfile::tempdir().unwrap();
    for line in lines {
        let filled = line.replace(
            "<the certificate's sha256, printed by the server when it starts>",
            &"ab".repeat(32),
        );
        let args: Vec<&str> = filled.split_whitespace().skip(1).collect();
        let mut with_help = args.clone();
        with_help.push("--help");
        let out = idgard(&dir.path().join("c.toml"), &with_help);
        assert!(
            out.status.success(),
            "`{filled}` is not taken: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
