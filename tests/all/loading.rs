//! Loading a package: bad files and contract mismatches give clear errors naming the file; the
//! compiled-artifact cache refuses what it did not make.

use crate::support::*;
use idgard_host::{CacheUse, Error, Runtime, RuntimeOptions};
use std::path::{Path, PathBuf};

/// A copy of a package whose manifest or component a test may then spoil.
fn copy_package(from: &str, to: &Path) -> PathBuf {
    std::fs::create_dir_all(to).unwrap();
    for f in std::fs::read_dir(from).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), to.join(f.file_name())).unwrap();
    }
    to.to_owned()
}

fn load_err(dir: &Path) -> String {
    runtime().load(dir).map(|_| ()).unwrap_err().to_string()
}

#[test]
fn a_file_that_is_not_a_component_is_named_in_the_error() {
    let s = Scratch::new();
    let pkg = copy_package(idgard_tests::packages::CONNECTOR_CSV, &s.path("pkg"));
    let wasm = pkg.join("idgard_connector_csv.wasm");

    std::fs::write(&wasm, "this is not wasm").unwrap();
    let msg = load_err(&pkg);
    assert!(
        msg.contains("idgard_connector_csv.wasm") && msg.contains("not a WebAssembly file"),
        "{msg}"
    );

    std::fs::write(
        &wasm,
        wat::parse_str("(module (func (export \"f\")))").unwrap(),
    )
    .unwrap();
    let msg = load_err(&pkg);
    assert!(
        msg.contains("idgard_connector_csv.wasm")
            && msg.contains("core WebAssembly module, not a component"),
        "{msg}"
    );

    let good = std::fs::read(
        Path::new(idgard_tests::packages::CONNECTOR_CSV).join("idgard_connector_csv.wasm"),
    )
    .unwrap();
    std::fs::write(&wasm, &good[..good.len() / 2]).unwrap();
    let msg = load_err(&pkg);
    assert!(
        msg.contains("idgard_connector_csv.wasm") && msg.contains("malformed"),
        "{msg}"
    );

    std::fs::remove_file(&wasm).unwrap();
    let msg = load_err(&pkg);
    assert!(
        msg.contains("idgard_connector_csv.wasm") && msg.contains("No such file"),
        "{msg}"
    );
}

fn edit_manifest(pkg: &Path, from: &str, to: &str) {
    let m = pkg.join("connector.toml");
    let text = std::fs::read_to_string(&m).unwrap();
    assert!(text.contains(from));
    std::fs::write(&m, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn contract_version_mismatches_are_refused_before_instantiation() {
    let s = Scratch::new();
    let pkg = copy_package(idgard_tests::packages::CONNECTOR_CSV, &s.path("pkg"));
    edit_manifest(&pkg, "contract = \"0.3.0\"", "contract = \"0.4.0\"");
    let e = runtime().load(&pkg).unwrap_err();
    assert!(matches!(e, Error::Contract { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("connector.toml") && msg.contains("contract version 0.4.0 is not supported"),
        "{msg}"
    );

    edit_manifest(&pkg, "contract = \"0.4.0\"", "contract = \"0.1.0\"");
    let msg = load_err(&pkg);
    assert!(
        msg.contains("idgard_connector_csv.wasm")
            && msg.contains("implements contract 0.3.0 but its manifest says 0.1.0"),
        "{msg}"
    );
}

#[test]
fn a_manifest_that_promises_more_than_the_component_is_refused() {
    let s = Scratch::new();
    let pkg = copy_package(idgard_tests::packages::GUEST_MISBEHAVE, &s.path("pkg"));
    edit_manifest(&pkg, "\"fulfill\"]", "\"fulfill\", \"schema\"]");
    let msg = load_err(&pkg);
    assert!(
        msg.contains("lists `schema` but the component does not support it"),
        "{msg}"
    );

    let pkg2 = copy_package(idgard_tests::packages::GUEST_MISBEHAVE, &s.path("pkg2"));
    edit_manifest(&pkg2, "name = \"misbehave\"", "name = \"impostor\"");
    let msg = load_err(&pkg2);
    assert!(
        msg.contains("describes itself as `misbehave` but its manifest names `impostor`"),
        "{msg}"
    );

    let pkg3 = copy_package(idgard_tests::packages::GUEST_MISBEHAVE, &s.path("pkg3"));
    edit_manifest(&pkg3, "[capabilities]", "surprise = true\n[capabilities]");
    let msg = load_err(&pkg3);
    assert!(
        msg.contains("connector.toml") && msg.contains("surprise"),
        "{msg}"
    );
}

#[test]
fn the_cache_serves_its_own_entries_and_refuses_tampered_or_foreign_ones() {
    let s = Scratch::new();
    let cache = s.path("cache");
    let rt = Runtime::new(RuntimeOptions {
        cache_dir: Some(cache.clone()),
        ..Default::default()
    })
    .unwrap();
    let pkg = Path::new(idgard_tests::packages::GUEST_MISBEHAVE);
    assert_eq!(rt.load(pkg).unwrap().cache, CacheUse::Miss);
    assert_eq!(rt.load(pkg).unwrap().cache, CacheUse::Hit);

    let entry = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .unwrap();
    // Flip one byte of the compiled code: refused, recompiled, and the fresh entry serves again.
    let mut bytes = std::fs::read(&entry).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x55;
    std::fs::write(&entry, &bytes).unwrap();
    assert_eq!(rt.load(pkg).unwrap().cache, CacheUse::Refused);
    assert_eq!(rt.load(pkg).unwrap().cache, CacheUse::Hit);

    // An entry made by another agent (another key) is refused too.
    let other_dir = s.path("other-cache");
    let other = Runtime::new(RuntimeOptions {
        cache_dir: Some(other_dir.clone()),
        ..Default::default()
    })
    .unwrap();
    other.load(pkg).unwrap();
    let name = entry.file_name().unwrap();
    std::fs::copy(other_dir.join(name), &entry).unwrap();
    assert_eq!(rt.load(pkg).unwrap().cache, CacheUse::Refused);

    // And the loaded connector runs.
    let conn = s.connection("name = \"c\"\n[settings]\nmode = \"ok\"\ncount = 3\n");
    let loaded = rt.load(pkg).unwrap();
    let out = rt
        .run(
            &loaded,
            &conn,
            &idgard_host::RunFolders::default(),
            idgard_host::Request::TestConnection,
            Box::new(Captured::default()),
        )
        .unwrap();
    assert_eq!(out, idgard_host::Outcome::Tested);
}

#[test]
fn a_cache_folder_others_can_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let s = Scratch::new();
    let dir = s.mkdir("shared-cache");
    std::fs::write(dir.join("cache.key"), [0u8; 32]).unwrap();
    std::fs::set_permissions(
        dir.join("cache.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let e = Runtime::new(RuntimeOptions {
        cache_dir: Some(dir),
        ..Default::default()
    })
    .map(|_| ())
    .unwrap_err();
    assert!(
        e.to_string().contains("readable by the agent's user only"),
        "{e}"
    );
}

#[test]
fn the_manifests_component_must_be_a_file_of_the_package() {
    let s = Scratch::new();
    let pkg = copy_package(idgard_tests::packages::CONNECTOR_CSV, &s.path("pkg"));
    let manifest = pkg.join("connector.toml");
    let original = std::fs::read_to_string(&manifest).unwrap();
    let fifo = pkg.join("fifo.wasm");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
        0,
    )
    .unwrap();
    std::os::unix::fs::symlink("/etc/passwd", pkg.join("passwd.wasm")).unwrap();
    for (component, expected) in [
        ("/dev/zero", "a file inside the package folder"),
        ("../../../etc/shadow", "a file inside the package folder"),
        ("fifo.wasm", "is not a regular file"),
        ("passwd.wasm", "is a symbolic link"),
    ] {
        let started = std::time::Instant::now();
        std::fs::write(
            &manifest,
            original.replace(
                "component = \"idgard_connector_csv.wasm\"",
                &format!("component = {component:?}"),
            ),
        )
        .unwrap();
        let msg = load_err(&pkg);
        assert!(msg.contains(expected), "{component}: {msg}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{component} hung"
        );
    }
}

#[test]
fn a_connector_built_against_the_frozen_0_1_0_contract_still_loads_and_runs() {
    a_frozen_connector_still_loads_and_runs("0.1.0");
}

#[test]
fn a_connector_built_against_the_frozen_0_2_0_contract_still_loads_and_runs() {
    a_frozen_connector_still_loads_and_runs("0.2.0");
}

/// The CSV connector as built against an older contract (`tests/fixtures/csv-<version>`) exports
/// what today's does, and fulfils.
fn a_frozen_connector_still_loads_and_runs(version: &str) {
    use idgard_host::model::{Order, OrderKind, OrderOutcome};
    use idgard_host::{Outcome, Request};
    let frozen = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(format!("csv-{version}"));
    let old = runtime().load(&frozen).unwrap();
    assert_eq!(old.manifest.contract, version);
    let s = Scratch::new();
    s.write("source/hr.csv", "id,name\nE1,Zoë\nE2,Bob\n");
    let conn = s.connection(
        "name = \"hr\"\n[settings]\nfile = \"hr.csv\"\nkey = \"id\"\n\
         [grants.folders.source]\npath = \"source\"\naccess = \"read-only\"\n\
         [grants.folders.accounts]\npath = \"accounts\"\naccess = \"read-write\"\n",
    );
    s.mkdir("accounts");
    // The same export through the frozen contract and through today's.
    let mut seen = Vec::new();
    for loaded in [&old, csv()] {
        let (out, cap) = s.run(loaded, &conn, full());
        assert!(matches!(out, Ok(Outcome::Exported(_))), "{out:?}");
        seen.push(cap.entries());
    }
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[0][0].get("name"), Some("Zoë"));
    let (out, _) = s.run(&old, &conn, Request::Schema);
    let Ok(Outcome::Schema(schema)) = out else {
        panic!("{out:?}")
    };
    assert!(schema[0].attributes.iter().all(|a| a.references.is_none()));
    let create = Order {
        id: "o1".into(),
        entity_type: "account".into(),
        key: "zoe".into(),
        kind: OrderKind::Create {
            attributes: [("name".to_owned(), vec!["Zoë".to_owned()])].into(),
        },
    };
    let (out, _) = s.run(&old, &conn, Request::Fulfill(vec![create]));
    let Ok(Outcome::Fulfilled(results)) = out else {
        panic!("{out:?}")
    };
    assert_eq!(results[0].outcome, OrderOutcome::Done);
    let accounts = std::fs::read_to_string(s.path("accounts/accounts.csv")).unwrap();
    assert!(accounts.contains("zoe"), "{accounts}");
}
