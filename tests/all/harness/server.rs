//! A server process: its data folder, its environment, its API as the administrator sees it.

use super::{Backend, bin, postgres_database, postgres_url, rt, shared_keys, terminate};
use idgard_protocol::*;
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    child: Option<Child>,
    pub data: PathBuf,
    pub database_url: String,
    pub port: u16,
    pub url: String,
    pub fingerprint: String,
    pub admin: String,
    env: Vec<(String, String)>,
    http: reqwest::Client,
    /// Drop the PostgreSQL database at the end (replicas share their first server's).
    owns_database: bool,
    /// The process's descriptor limit, when a test lowers it.
    nofile: Option<u32>,
    /// A network namespace it runs in, the address it listens on there, and the address the
    /// test process reaches it at.
    netns: Option<(String, String, String)>,
    /// A configuration file it reads (`--config`).
    config: Option<PathBuf>,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts a server with short timings (lease 3 s, ack 1 s, backoff 100 ms).
    pub fn start(backend: Backend) -> Server {
        Self::start_with(backend, &[])
    }

    pub fn start_with(backend: Backend, env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let database_url = match backend {
            Backend::Sqlite => format!(
                "sqlite://{}",
                dir.path().join("data").join("idgard.db").display()
            ),
            Backend::Postgres => postgres_database(),
        };
        let mut s = Self::start_on(dir, database_url, env, None, None);
        s.owns_database = matches!(backend, Backend::Postgres);
        s
    }

    /// A server on SQLite that also reads the configuration file `toml` (its `[ui]` section,
    /// say).
    pub fn start_configured(env: &[(&str, &str)], toml: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let database_url = format!(
            "sqlite://{}",
            dir.path().join("data").join("idgard.db").display()
        );
        Self::start_on(dir, database_url, env, None, Some(toml))
    }

    /// Another server process on the same database (PostgreSQL): a replica, sharing the
    /// first server's key ring and rules.
    pub fn replica(&self) -> Server {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .filter(|(k, _)| {
                k.starts_with("IDGARD_QUEUE")
                    || k.starts_with("IDGARD_LIMITS")
                    || *k == "IDGARD_KEYRING"
                    || *k == "IDGARD_RULES"
            })
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        Self::start_on(
            tempfile::tempdir().unwrap(),
            self.database_url.clone(),
            &env,
            Some(self.admin.clone()),
            None,
        )
    }

    fn start_on(
        dir: tempfile::TempDir,
        database_url: String,
        env: &[(&str, &str)],
        admin: Option<String>,
        config: Option<&str>,
    ) -> Server {
        let data = dir.path().join("data");
        let config = config.map(|text| {
            let path = dir.path().join("idgard-server.toml");
            std::fs::write(&path, text).unwrap();
            path
        });
        let keys = shared_keys();
        let mut all: Vec<(&str, &str)> = vec![
            ("IDGARD_QUEUE_LEASE_MS", "3000"),
            ("IDGARD_QUEUE_ACK_MS", "1000"),
            ("IDGARD_QUEUE_BACKOFF_MS", "100"),
            ("IDGARD_QUEUE_REAP_EVERY_MS", "100"),
            ("IDGARD_QUEUE_POLL_WAIT_MS", "5000"),
            ("IDGARD_QUEUE_POLL_RECHECK_MS", "1000"),
            ("IDGARD_LIMITS_CHUNK_MIB", "1"),
        ];
        // Later values win.
        all.retain(|(k, _)| !env.iter().any(|(e, _)| e == k));
        all.extend_from_slice(env);
        let mut env: Vec<(String, String)> = all
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env.push((
            "IDGARD_SIGNING_KEY".into(),
            keys.join("dev-signing-key.pem").display().to_string(),
        ));
        env.push((
            "IDGARD_TLS_CERT".into(),
            keys.join("dev-cert.pem").display().to_string(),
        ));
        env.push((
            "IDGARD_TLS_KEY".into(),
            keys.join("dev-cert.key").display().to_string(),
        ));
        // One key ring for every test server (making a key pair takes a while), unless a
        // test gives its own.
        if !env.iter().any(|(k, _)| k == "IDGARD_KEYRING") {
            env.push((
                "IDGARD_KEYRING".into(),
                keys.join("keys").display().to_string(),
            ));
        }
        let http = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .build()
            .unwrap();
        let mut s = Server {
            child: None,
            data,
            database_url,
            port: 0,
            url: String::new(),
            fingerprint: String::new(),
            admin: String::new(),
            env,
            http,
            owns_database: false,
            nofile: None,
            netns: None,
            config,
            _dir: dir,
        };
        // A port asked for (`IDGARD_LISTEN`) is kept: the listen flag would override it.
        if let Some((_, listen)) = s.env.iter().find(|(k, _)| k == "IDGARD_LISTEN") {
            s.port = listen.rsplit(':').next().unwrap().parse().unwrap();
        }
        s.spawn();
        s.admin = admin.unwrap_or_else(|| {
            std::fs::read_to_string(s.data.join("admin-token"))
                .unwrap()
                .trim()
                .to_owned()
        });
        s
    }

    /// A server on SQLite in network namespace `ns`, listening on all its addresses; the test
    /// process reaches it at `reach` (an address of that namespace).
    pub fn start_in(ns: &str, reach: &str, env: &[(&str, &str)]) -> Server {
        let mut s = Self::start_with(Backend::Sqlite, env);
        s.stop();
        s.netns = Some((ns.to_owned(), "0.0.0.0".to_owned(), reach.to_owned()));
        s.spawn();
        s
    }

    /// The server's URL as seen from an address of its namespace (`ip`).
    pub fn url_at(&self, ip: &str) -> String {
        format!("https://{ip}:{}", self.port)
    }

    /// Runs the server with a descriptor limit of `nofile` (soft and hard).
    pub fn with_descriptor_limit(mut self, nofile: u32) -> Server {
        self.stop();
        self.nofile = Some(nofile);
        self.spawn();
        self
    }

    /// Runs an administration command (`idgard-server ARGS`) on this server's database.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        self.command().args(args).output().unwrap()
    }

    fn command(&self) -> Command {
        let ns = self.netns.as_ref().map(|n| n.0.as_str());
        let mut c = match self.nofile {
            None => idgard_tests::netns::command_in(ns, bin("idgard-server")),
            Some(n) => {
                let mut c = Command::new("sh");
                c.args(["-c", &format!("ulimit -n {n} && exec \"$0\" \"$@\"")])
                    .arg(bin("idgard-server"));
                c
            }
        };
        c.arg("--data-dir")
            .arg(&self.data)
            .arg("--database-url")
            .arg(&self.database_url)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env_remove("IDGARD_CONFIG");
        if let Some(config) = &self.config {
            c.arg("--config").arg(config);
        }
        c
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data.with_extension("log"))
            .unwrap();
        let host = self.netns.as_ref().map_or("127.0.0.1", |n| n.1.as_str());
        let mut child = self
            .command()
            .args(["--listen", &format!("{host}:{}", self.port)])
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(
            line.contains("listening on https://"),
            "server did not start: {line}\n{}",
            self.log()
        );
        let url = line.split_whitespace().nth(3).unwrap().to_owned();
        self.port = url.rsplit(':').next().unwrap().parse().unwrap();
        self.fingerprint = line
            .split("sha256 ")
            .nth(1)
            .unwrap()
            .trim()
            .trim_end_matches(')')
            .to_owned();
        self.url = match &self.netns {
            Some((_, _, reach)) => self.url_at(reach),
            None => url,
        };
        self.child = Some(child);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.with_extension("log")).unwrap_or_default()
    }

    /// Stops (SIGTERM) and starts again on the same port and database.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            terminate(&c);
            let _ = c.wait();
        }
    }

    /// SIGKILL: the process ends at once, holding what it held.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGKILL, then a new process on the same port and database.
    pub fn kill_and_start(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
        self.spawn();
    }

    /// Creates an agent; returns its enrolment token.
    pub fn add_agent(&self, name: &str) -> String {
        let a: NewAgentAnswer = self
            .admin(
                Method::POST,
                "/api/v1/agents",
                Some(&NewAgent { name: name.into() }),
            )
            .unwrap();
        a.enrolment_token
    }

    /// An administrator's call.
    pub fn admin<B: Serialize, R: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<R, (StatusCode, Value)> {
        let (status, v) = self.raw(method, path, Some(&self.admin), body.map(|b| json!(b)));
        if status.is_success() {
            Ok(serde_json::from_value(v).unwrap())
        } else {
            Err((status, v))
        }
    }

    /// Any call: status and JSON answer (`Value::Null` when not JSON).
    pub fn raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.raw_bytes(
            method,
            path,
            token,
            body.map(|b| b.to_string().into_bytes()),
            "application/json",
        )
    }

    /// Downloads `path` as an administrator, reading the answer piece by piece: its status,
    /// length and SHA-256.
    pub fn download(&self, path: &str) -> (StatusCode, u64, String) {
        use sha2::Digest;
        rt().block_on(async {
            let mut resp = self
                .http
                .get(format!("{}{path}", self.url))
                .bearer_auth(&self.admin)
                .send()
                .await
                .unwrap();
            let status = resp.status();
            let (mut len, mut sha) = (0u64, sha2::Sha256::new());
            while let Some(piece) = resp.chunk().await.unwrap() {
                len += piece.len() as u64;
                sha.update(&piece);
            }
            (status, len, hex::encode(sha.finalize()))
        })
    }

    /// `GET path` with `token`: the status, the content type and the text of the answer.
    pub fn get_text(&self, path: &str, token: Option<&str>) -> (StatusCode, String, String) {
        rt().block_on(async {
            let mut r = self.http.get(format!("{}{path}", self.url));
            if let Some(t) = token {
                r = r.bearer_auth(t);
            }
            let resp = r.send().await.unwrap();
            let status = resp.status();
            let kind = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            (status, kind, resp.text().await.unwrap())
        })
    }

    /// The server process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn raw_bytes(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
        content_type: &str,
    ) -> (StatusCode, Value) {
        rt().block_on(async {
            let mut r = self.http.request(method, format!("{}{path}", self.url));
            if let Some(t) = token {
                r = r.bearer_auth(t);
            }
            if let Some(b) = body {
                r = r.header("content-type", content_type).body(b);
            }
            let resp = r.send().await.unwrap();
            let status = resp.status();
            let text = resp.text().await.unwrap();
            (status, serde_json::from_str(&text).unwrap_or(Value::Null))
        })
    }

    pub fn task(&self, id: i64) -> TaskView {
        self.admin::<(), _>(Method::GET, &format!("/api/v1/tasks/{id}"), None)
            .unwrap()
    }

    pub fn job(&self, id: i64) -> JobView {
        self.admin::<(), _>(Method::GET, &format!("/api/v1/jobs/{id}"), None)
            .unwrap()
    }

    pub fn enqueue(&self, agent: &str, specs: Vec<TaskSpec>) -> Vec<i64> {
        let c: CreatedTasks = self
            .admin(
                Method::POST,
                "/api/v1/tasks",
                Some(&NewTasks {
                    agent: agent.into(),
                    tasks: specs,
                }),
            )
            .unwrap();
        c.ids
    }

    pub fn create_job(&self, agent: &str, steps: Vec<Vec<TaskSpec>>) -> JobView {
        self.admin(
            Method::POST,
            "/api/v1/jobs",
            Some(&NewJob {
                agent: agent.into(),
                name: None,
                steps,
                start: None,
            }),
        )
        .unwrap()
    }

    /// Waits until a job ends; panics with the logs after `secs`.
    pub fn wait_job(&self, id: i64, secs: u64) -> JobView {
        let until = Instant::now() + Duration::from_secs(secs);
        loop {
            let j = self.job(id);
            if !matches!(j.state, JobState::Pending | JobState::Running) {
                return j;
            }
            assert!(
                Instant::now() < until,
                "job {id} still {:?} after {secs} s: {j:#?}\n--- server log\n{}",
                j.state,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn wait_task(&self, id: i64, secs: u64, done: impl Fn(&TaskView) -> bool) -> TaskView {
        let until = Instant::now() + Duration::from_secs(secs);
        loop {
            let t = self.task(id);
            if done(&t) {
                return t;
            }
            assert!(
                Instant::now() < until,
                "task {id} not there after {secs} s: {t:#?}\n--- server log\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Server {
    /// The server's key ring: administration commands need it to open its database.
    pub fn keyring(&self) -> PathBuf {
        match self.env.iter().find(|(k, _)| k == "IDGARD_KEYRING") {
            Some((_, dir)) => PathBuf::from(dir),
            None => self.data.join("keys"),
        }
    }

    /// The first column of every row `sql` selects, read straight from the server's database
    /// (an embedded one opened with its key, as the server opens it).
    pub fn column<T>(&self, sql: &str) -> Vec<T>
    where
        T: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any> + Send + Unpin,
    {
        use sqlx::{Executor, Row};
        sqlx::any::install_default_drivers();
        let key = idgard_server::db::sqlite_file(&self.database_url).and_then(|db| {
            let ring = idgard_vault::Keyring::open(&self.keyring()).unwrap();
            idgard_server::db::DatabaseKey::load(&ring, &db).unwrap()
        });
        rt().block_on(async {
            let mut c = <sqlx::AnyConnection as sqlx::Connection>::connect(&self.database_url)
                .await
                .unwrap();
            if let Some(key) = key {
                c.execute(key.statement().as_str()).await.unwrap();
            }
            sqlx::query(sql)
                .fetch_all(&mut c)
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<T, _>(0))
                .collect()
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if self.owns_database
            && let Some(name) = self.database_url.rsplit('/').next()
        {
            let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            rt().block_on(async {
                if let Ok(mut conn) =
                    <sqlx::AnyConnection as sqlx::Connection>::connect(&postgres_url("postgres"))
                        .await
                {
                    use sqlx::Executor;
                    let _ = conn.execute(sql.as_str()).await;
                }
            });
        }
    }
}
