//! Signed connector packages delivered by the server: an author signs with `idgard-agent
//! connector sign`, an administrator publishes the bundle, the agent downloads it over its own
//! connection, checks it against the publishers it trusts and hot-loads it; an untrusted
//! publisher is refused with why, and a rollback is an explicit activation.

use crate::harness::{Hand, bin};
use crate::system::{Agent, Backend, Server, on};
use idgard_protocol::{AgentView, Operation, PackageView, Published, TaskState};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Runs `idgard-agent` with `args`; its standard output, after checking it succeeded.
fn agent_cli(args: &[&str]) -> String {
    let out = Command::new(bin("idgard-agent"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "idgard-agent {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A copy of the CSV connector's package as `version`, signed by `publisher`: its folder and
/// its bundle file.
fn signed_csv(root: &Path, version: &str, publisher: &str) -> (PathBuf, PathBuf) {
    let dir = root.join(format!("csv-{version}-{publisher}"));
    std::fs::create_dir_all(&dir).unwrap();
    for f in std::fs::read_dir(idgard_tests::packages::CONNECTOR_CSV).unwrap() {
        let f = f.unwrap().path();
        if f.file_name().unwrap() == "connector.sig" {
            continue;
        }
        std::fs::copy(&f, dir.join(f.file_name().unwrap())).unwrap();
    }
    let manifest = std::fs::read_to_string(dir.join("connector.toml")).unwrap();
    let manifest = manifest.replacen(
        "version = \"0.1.0\"",
        &format!("version = \"{version}\""),
        1,
    );
    assert!(
        manifest.contains(version),
        "the manifest's version line moved"
    );
    std::fs::write(dir.join("connector.toml"), manifest).unwrap();
    let bundle = root.join(format!("csv-{version}-{publisher}.tar"));
    let key = root.join("keys").join(format!("{publisher}.key"));
    let out = agent_cli(&[
        "connector",
        "sign",
        dir.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--publisher",
        publisher,
        "--bundle",
        bundle.to_str().unwrap(),
    ]);
    assert!(out.contains(&format!("signed by {publisher}")), "{out}");
    (dir, bundle)
}

fn publish(server: &Server, bundle: Vec<u8>) -> (StatusCode, Value) {
    server.raw_bytes(
        Method::POST,
        "/api/v1/packages",
        Some(&server.admin),
        Some(bundle),
        "application/x-tar",
    )
}

fn digest_of(dir: &Path) -> String {
    idgard_signing::Package::read_dir(dir).unwrap().digest_hex()
}

/// Waits until the agent's view passes `ok`; the last view.
fn wait_agent(
    server: &Server,
    name: &str,
    what: &str,
    ok: impl Fn(&AgentView) -> bool,
) -> AgentView {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let view: AgentView = server
            .admin::<(), _>(Method::GET, &format!("/api/v1/agents/{name}"), None)
            .unwrap();
        if ok(&view) {
            return view;
        }
        assert!(Instant::now() < until, "{what}: {view:#?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn served_by(view: &AgentView, connection: &str) -> Option<String> {
    view.connections
        .iter()
        .find(|c| c.name == connection)
        .and_then(|c| c.package.clone())
}

mod signed_packages_are_delivered_checked_hot_loaded_and_rolled_back {
    #[test]
    fn sqlite() {
        super::signed_packages_are_delivered_checked_hot_loaded_and_rolled_back(
            super::Backend::Sqlite,
        )
    }
    #[test]
    fn postgres() {
        super::signed_packages_are_delivered_checked_hot_loaded_and_rolled_back(
            super::Backend::Postgres,
        )
    }
}

fn signed_packages_are_delivered_checked_hot_loaded_and_rolled_back(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    for publisher in ["acme", "mallory"] {
        agent_cli(&[
            "connector",
            "keygen",
            publisher,
            "--dir",
            root.join("keys").to_str().unwrap(),
        ]);
    }
    let (v1, v1_bundle) = signed_csv(root, "1.0.0", "acme");
    let (v2, v2_bundle) = signed_csv(root, "1.1.0", "acme");
    let (_, evil_bundle) = signed_csv(root, "2.0.0", "mallory");
    // What agents trusting acme hold: acme's public key only.
    let trusted = root.join("trusted");
    std::fs::create_dir(&trusted).unwrap();
    std::fs::copy(root.join("keys/acme.pem"), trusted.join("acme.pem")).unwrap();
    let out = agent_cli(&[
        "connector",
        "verify",
        v1.to_str().unwrap(),
        "--trusted",
        trusted.to_str().unwrap(),
    ]);
    assert!(out.contains("signed by acme (ed25519)"), "{out}");

    let server = Server::start(backend);
    // The server takes only signed bundles whose signature names their files' digest.
    let (status, body) = publish(&server, b"not a tar file".repeat(40));
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let mut unsigned = idgard_signing::Package::read_dir(&v1).unwrap();
    unsigned.signature = None;
    let (status, body) = publish(&server, idgard_signing::bundle::write(&unsigned));
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.to_string().contains("not signed"), "{body}");
    let mut tampered = idgard_signing::Package::read_dir(&v1).unwrap();
    tampered.component.push(0);
    let (status, body) = publish(&server, idgard_signing::bundle::write(&tampered));
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body.to_string().contains("sign the package again"),
        "{body}"
    );

    let (status, body) = publish(&server, std::fs::read(&v1_bundle).unwrap());
    assert_eq!(status, StatusCode::OK, "{body}");
    let p: Published = serde_json::from_value(body).unwrap();
    assert_eq!(
        (p.outcome.as_str(), p.package.publisher.as_str()),
        ("active", "acme")
    );
    assert_eq!(p.package.digest, digest_of(&v1));
    // Published again: nothing changes; the same version with other files: refused.
    let (_, body) = publish(&server, std::fs::read(&v1_bundle).unwrap());
    assert_eq!(body["outcome"], "unchanged", "{body}");
    let mut other = idgard_signing::Package::read_dir(&v2).unwrap();
    other.manifest = std::fs::read(v1.join("connector.toml")).unwrap();
    other.manifest.extend_from_slice(b"\n# changed\n");
    let key = idgard_signing::SigningKey::load(&root.join("keys/acme.key")).unwrap();
    other.signature = Some(key.sign("acme", &other).unwrap().to_file().into_bytes());
    let (status, body) = publish(&server, idgard_signing::bundle::write(&other));
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // An agent trusting nobody loads its own unsigned packages, and no package from the server.
    let mut agent = Agent::start(&server, "lyon");
    let view = wait_agent(&server, "lyon", "the offer refused", |v| {
        !v.refused_packages.is_empty()
    });
    assert_eq!(
        view.refused_packages[0].code, "package.no_trusted_publisher",
        "{view:#?}"
    );
    let local = served_by(&view, "demo-hr").expect("demo-hr served by the runtime folder's csv");
    assert_ne!(local, digest_of(&v1));

    // Trusting acme: the runtime folder's unsigned csv is refused, the server's v1 serves.
    std::fs::create_dir_all(agent.dir.join("publishers")).unwrap();
    std::fs::copy(
        trusted.join("acme.pem"),
        agent.dir.join("publishers/acme.pem"),
    )
    .unwrap();
    agent.restart();
    let v1_digest = digest_of(&v1);
    let view = wait_agent(&server, "lyon", "v1 delivered", |v| {
        served_by(v, "demo-hr").as_deref() == Some(v1_digest.as_str())
    });
    let report = view
        .connections
        .iter()
        .find(|c| c.name == "demo-hr")
        .unwrap();
    assert_eq!(report.publisher.as_deref(), Some("acme"));
    assert!(view.refused_packages.is_empty(), "{view:#?}");
    assert!(
        view.refused.iter().any(|r| r.reason.contains("not signed")),
        "unsigned local packages are refused, naming why: {view:#?}"
    );
    let task = server.enqueue("lyon", vec![on("demo-hr", Operation::Export)])[0];
    let t = server.wait_task(task, 60, |t| t.state.is_final());
    assert_eq!(t.state, TaskState::Succeeded, "{t:#?}\n{}", agent.log());

    // A newer version is hot-loaded: same process, new package.
    let pid = agent.pid();
    let (status, body) = publish(&server, std::fs::read(&v2_bundle).unwrap());
    assert_eq!(
        (status, body["outcome"].as_str()),
        (StatusCode::OK, Some("active"))
    );
    let v2_digest = digest_of(&v2);
    wait_agent(&server, "lyon", "v2 hot-loaded", |v| {
        served_by(v, "demo-hr").as_deref() == Some(v2_digest.as_str())
    });
    assert_eq!(agent.pid(), pid);

    // An untrusted publisher's newer package is offered, refused with why; v2 keeps serving.
    let (status, body) = publish(&server, std::fs::read(&evil_bundle).unwrap());
    assert_eq!(
        (status, body["outcome"].as_str()),
        (StatusCode::OK, Some("active"))
    );
    let view = wait_agent(&server, "lyon", "mallory's package refused", |v| {
        v.refused_packages.iter().any(|r| r.version == "2.0.0")
    });
    let refused = &view.refused_packages[0];
    assert_eq!(refused.code, "package.untrusted_publisher", "{refused:?}");
    assert!(refused.reason.contains("mallory"), "{refused:?}");
    assert_eq!(
        served_by(&view, "demo-hr").as_deref(),
        Some(v2_digest.as_str())
    );

    // Rolling back is explicit: activating 1.0.0 brings v1 back.
    let p: PackageView = server
        .admin(
            Method::POST,
            "/api/v1/packages/csv/active",
            Some(&json!({ "version": "1.0.0" })),
        )
        .unwrap();
    assert!(p.active);
    let view = wait_agent(&server, "lyon", "rolled back to v1", |v| {
        served_by(v, "demo-hr").as_deref() == Some(v1_digest.as_str())
    });
    assert!(view.refused_packages.is_empty(), "{view:#?}");
    let list: Vec<PackageView> = server
        .admin::<(), _>(Method::GET, "/api/v1/packages", None)
        .unwrap();
    let offered: Vec<&str> = list
        .iter()
        .filter(|p| p.active)
        .map(|p| p.version.as_str())
        .collect();
    assert_eq!(offered, ["1.0.0"], "{list:#?}");
    assert_eq!(list.len(), 3);
    let (status, _) = server.raw(
        Method::POST,
        "/api/v1/packages/csv/active",
        Some(&server.admin),
        Some(json!({ "version": "9.9.9" })),
    );
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The same files signed again: the new signature replaces the old one, and agents fetch
    // the package again (here refusing mallory's signature, v1 as acme signed it serving on).
    let mut resigned = idgard_signing::Package::read_dir(&v1).unwrap();
    let mallory = idgard_signing::SigningKey::load(&root.join("keys/mallory.key")).unwrap();
    resigned.signature = Some(
        mallory
            .sign("mallory", &resigned)
            .unwrap()
            .to_file()
            .into_bytes(),
    );
    let (status, body) = publish(&server, idgard_signing::bundle::write(&resigned));
    assert_eq!(
        (status, body["outcome"].as_str()),
        (StatusCode::OK, Some("re-signed")),
        "{body}"
    );
    let view = wait_agent(&server, "lyon", "v1 signed by mallory refused", |v| {
        v.refused_packages
            .iter()
            .any(|r| r.version == "1.0.0" && r.code == "package.untrusted_publisher")
    });
    assert_eq!(
        served_by(&view, "demo-hr").as_deref(),
        Some(v1_digest.as_str())
    );
    let (_, body) = publish(&server, std::fs::read(&v1_bundle).unwrap());
    assert_eq!(body["outcome"], "re-signed", "{body}");
    wait_agent(&server, "lyon", "v1 signed by acme again", |v| {
        v.refused_packages.is_empty()
    });

    // The delivered package is kept: a restart serves it before the server is asked.
    agent.restart();
    let task = server.enqueue("lyon", vec![on("demo-hr", Operation::Export)])[0];
    let t = server.wait_task(task, 60, |t| t.state.is_final());
    assert_eq!(t.state, TaskState::Succeeded, "{t:#?}");
    let active = std::fs::read_to_string(agent.dir.join("work/packages/active.json")).unwrap();
    assert!(active.contains(&v1_digest), "{active}");
}

#[test]
fn an_agent_downloads_only_packages_offered_to_it() {
    let server = Server::start(Backend::Sqlite);
    let hand = Hand::enrol(&server, "nimes");
    let (status, _) = hand.call(
        &server,
        Method::GET,
        &format!("/api/v1/agent/packages/{}", "0".repeat(64)),
        Value::Null,
    );
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Administrators' package endpoints are not an agent's.
    let (status, _) = hand.call(&server, Method::GET, "/api/v1/packages", Value::Null);
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
