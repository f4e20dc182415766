//! The real binaries as processes for the end-to-end tests: a server (on SQLite or
//! PostgreSQL, on loopback or in a network namespace), agents with their folders, and an agent
//! played by hand over the API.

mod agent;
pub mod browser;
mod server;
pub use agent::{Agent, Hand};
pub use server::Server;

use idgard_protocol::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub(crate) fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

pub(crate) fn bin(name: &str) -> PathBuf {
    // Tests run from target/<profile>/deps; the binaries sit one folder up.
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace's binaries first (cargo test --workspace builds them)",
        path.display()
    );
    path
}

/// One signing key and certificate for every test server (RSA key generation is slow).
pub fn shared_keys() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        // A first server start generates them; later servers read them.
        let out = Command::new(bin("idgard-server"))
            .arg("--data-dir")
            .arg(&dir)
            .args(["agent", "list"])
            .output()
            .unwrap();
        assert!(out.status.success());
        let mut child = Command::new(bin("idgard-server"))
            .arg("--data-dir")
            .arg(&dir)
            .args(["--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(dir.join("dev-signing-key.pem").exists(), "{line}");
        dir
    })
}

pub(crate) fn postgres_url(db: &str) -> String {
    format!("postgres://postgres@127.0.0.1:5432/{db}")
}

/// A fresh PostgreSQL database for one test.
pub(crate) fn postgres_database() -> String {
    let name = format!(
        "idgard_test_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    rt().block_on(async {
        use sqlx::Executor;
        sqlx::any::install_default_drivers();
        let mut conn =
            <sqlx::AnyConnection as sqlx::Connection>::connect(&postgres_url("postgres"))
                .await
                .expect(
                    "PostgreSQL on 127.0.0.1:5432 (user postgres, trust) is needed by these tests",
                );
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap();
    });
    postgres_url(&name)
}

pub(crate) fn terminate(c: &Child) {
    let pid = rustix::process::Pid::from_raw(c.id() as i32).unwrap();
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
}

pub fn noop() -> TaskSpec {
    TaskSpec {
        connection: String::new(),
        operation: Operation::Noop,
        args: Value::Null,
        max_attempts: None,
        timeout_s: None,
        agent: None,
    }
}

pub fn on(connection: &str, operation: Operation) -> TaskSpec {
    TaskSpec {
        connection: connection.into(),
        operation,
        args: Value::Null,
        max_attempts: None,
        timeout_s: None,
        agent: None,
    }
}
