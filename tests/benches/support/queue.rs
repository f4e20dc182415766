//! The queue benchmarks' side of a server: `idgard-server` in its own process,
//! reached over HTTPS on loopback, with simulated agents (no-op tasks).

use idgard_protocol::*;
use reqwest::Method;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// A server process (or, with no process, a way to it through a proxy).
pub struct Server {
    child: Option<Child>,
    /// `https://127.0.0.1:port`.
    pub url: String,
    /// An administrator's token.
    pub admin: String,
    /// The client (certificates not checked: a benchmark on loopback).
    pub http: reqwest::Client,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The server of the profile this benchmark was built in (`target/<profile>/idgard-server`;
/// `scripts/bench-queue.sh` builds the release one).
pub fn server_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("idgard-server");
    assert!(
        path.exists(),
        "build the server first: cargo build --release -p idgard-server (scripts/bench-queue.sh does), \
         or --profile dev with a benchmark built the same way ({} is missing)",
        path.display()
    );
    path
}

/// A new, empty PostgreSQL database `name` (dropped first if it exists); its URL.
pub fn create_database(name: &str) -> String {
    let admin = "postgres://postgres@127.0.0.1:5432/postgres";
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use sqlx::Executor;
        sqlx::any::install_default_drivers();
        let mut c = <sqlx::AnyConnection as sqlx::Connection>::connect(admin)
            .await
            .expect("PostgreSQL on 127.0.0.1:5432");
        let _ = c
            .execute(format!("DROP DATABASE IF EXISTS {name}").as_str())
            .await;
        c.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap();
    });
    format!("postgres://postgres@127.0.0.1:5432/{name}")
}

/// Starts the server on SQLite, or on the PostgreSQL database at `database`.
pub fn start(database: Option<String>) -> Server {
    start_as(database, None, &[])
}

/// [`start`], with the administrator's token given (a replica on a database that has one) and
/// more environment.
fn start_as(database: Option<String>, admin: Option<&str>, env: &[(&str, String)]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(server_binary());
    cmd.arg("--data-dir")
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:0"])
        .env("IDGARD_QUEUE_POLL_WAIT_MS", "60000")
        .env("IDGARD_QUEUE_POLL_RECHECK_MS", "30000")
        .env("IDGARD_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(url) = database {
        cmd.arg("--database-url").arg(url);
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .nth(3)
        .expect("listening")
        .to_owned();
    let admin = match admin {
        Some(a) => a.to_owned(),
        None => std::fs::read_to_string(dir.path().join("admin-token"))
            .unwrap()
            .trim()
            .to_owned(),
    };
    let http = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .pool_max_idle_per_host(usize::MAX)
        .http1_only()
        .build()
        .unwrap();
    Server {
        child: Some(child),
        url,
        admin,
        http,
        _dir: Some(dir),
    }
}

impl Server {
    /// The same server's API reached at `url` (a proxy in front of it); no process of its own.
    pub fn via(&self, url: &str) -> Server {
        Server {
            child: None,
            url: url.to_owned(),
            admin: self.admin.clone(),
            http: self.http.clone(),
            _dir: None,
        }
    }

    /// Another server on the same PostgreSQL `database`, sharing this one's signing and
    /// key ring, as replicas do.
    pub fn replica(&self, database: &str) -> Server {
        let data = self._dir.as_ref().expect("a server process").path();
        let env = [
            (
                "IDGARD_SIGNING_KEY",
                data.join("dev-signing-key.pem").display().to_string(),
            ),
            ("IDGARD_KEYRING", data.join("keys").display().to_string()),
        ];
        start_as(Some(database.to_owned()), Some(&self.admin), &env)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.url.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// An API call that must succeed; its JSON answer.
    pub async fn call(&self, method: Method, path: &str, token: &str, body: Value) -> Value {
        let r = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {v}");
        v
    }

    /// Creates, enrols and logs in `n` agents; returns their access tokens.
    pub async fn agents(self: &Arc<Self>, prefix: &str, n: usize) -> Vec<String> {
        let mut tokens = Vec::with_capacity(n);
        let mut set = tokio::task::JoinSet::new();
        let mut next = 0;
        while tokens.len() < n {
            while next < n && set.len() < 32 {
                let s = self.clone();
                let name = format!("{prefix}-{next}");
                next += 1;
                set.spawn(async move {
                    let a = s
                        .call(Method::POST, "/api/v1/agents", &s.admin, json!({ "name": name }))
                        .await;
                    let e = s
                        .call(
                            Method::POST,
                            "/api/v1/enrol",
                            "",
                            json!({ "token": a["enrolment_token"] }),
                        )
                        .await;
                    let t = s
                        .call(
                            Method::POST,
                            "/api/v1/agent/token",
                            "",
                            json!({ "agent_id": e["agent_id"], "client_secret": e["client_secret"] }),
                        )
                        .await;
                    t["access_token"].as_str().unwrap().to_owned()
                });
            }
            tokens.push(set.join_next().await.unwrap().unwrap());
        }
        tokens
    }

    /// Queues tasks; returns their ids.
    pub async fn enqueue(&self, agent: &str, specs: Vec<Value>) -> Vec<i64> {
        let mut ids = Vec::with_capacity(specs.len());
        for chunk in specs.chunks(2000) {
            let v = self
                .call(
                    Method::POST,
                    "/api/v1/tasks",
                    &self.admin,
                    json!({ "agent": agent, "tasks": chunk }),
                )
                .await;
            ids.extend(
                v["ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| i.as_i64().unwrap()),
            );
        }
        ids
    }

    /// The process's resident memory, in MiB.
    pub fn rss_mib(&self) -> f64 {
        let pid = self.child.as_ref().expect("a server process").id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let kib: f64 = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap();
        kib / 1024.0
    }
}

/// Claim → complete for `tasks` no-op tasks over `agents` agents named `prefix-N`; tasks/s.
pub async fn throughput(server: Arc<Server>, prefix: &str, tasks: usize, agents: usize) -> f64 {
    let tokens = server.agents(prefix, agents).await;
    for i in 0..agents {
        let n = tasks / agents + usize::from(i < tasks % agents);
        server
            .enqueue(
                &format!("{prefix}-{i}"),
                vec![json!({ "operation": "noop" }); n],
            )
            .await;
    }
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for token in tokens {
        let server = server.clone();
        let done = done.clone();
        set.spawn(async move {
            loop {
                let v = server
                    .call(
                        Method::POST,
                        "/api/v1/agent/poll",
                        &token,
                        json!({ "capacity": 32, "wait_ms": 200 }),
                    )
                    .await;
                let answer: PollAnswer = serde_json::from_value(v).unwrap();
                if answer.tasks.is_empty() {
                    return;
                }
                let mut completes = tokio::task::JoinSet::new();
                for t in answer.tasks {
                    let server = server.clone();
                    let token = token.clone();
                    completes.spawn(async move {
                        server
                            .call(
                                Method::POST,
                                &format!("/api/v1/agent/tasks/{}/complete", t.id),
                                &token,
                                json!({ "fence": t.fence, "outcome": { "status": "succeeded" } }),
                            )
                            .await;
                    });
                    if completes.len() >= 4 {
                        completes.join_next().await.unwrap().unwrap();
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
                while let Some(r) = completes.join_next().await {
                    r.unwrap();
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    let elapsed = started.elapsed();
    assert_eq!(
        done.load(Ordering::Relaxed) as usize,
        tasks,
        "every task completed once"
    );
    tasks as f64 / elapsed.as_secs_f64()
}
