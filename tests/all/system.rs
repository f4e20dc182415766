//! The server and its agents as processes on loopback: the real binaries over HTTPS, on SQLite
//! and on PostgreSQL. Tests that play an agent by hand (to lose answers, replay completions,
//! send garbage) use the API like an agent would.

use idgard_protocol::*;
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

fn bin(name: &str) -> PathBuf {
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

fn postgres_url(db: &str) -> String {
    format!("postgres://postgres@127.0.0.1:5432/{db}")
}

/// A fresh PostgreSQL database for one test.
fn postgres_database() -> String {
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
        let mut s = Self::start_on(dir, database_url, env, None);
        s.owns_database = matches!(backend, Backend::Postgres);
        s
    }

    /// Another server process on the same database (PostgreSQL): a replica, sharing the
    /// first server's secrets key.
    pub fn replica(&self) -> Server {
        let key = self.data.join("secrets.key").display().to_string();
        let mut env: Vec<(&str, &str)> = self
            .env
            .iter()
            .filter(|(k, _)| k.starts_with("IDGARD_QUEUE") || k.starts_with("IDGARD_LIMITS"))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        env.push(("IDGARD_SECRETS_KEY", &key));
        Self::start_on(
            tempfile::tempdir().unwrap(),
            self.database_url.clone(),
            &env,
            Some(self.admin.clone()),
        )
    }

    fn start_on(
        dir: tempfile::TempDir,
        database_url: String,
        env: &[(&str, &str)],
        admin: Option<String>,
    ) -> Server {
        let data = dir.path().join("data");
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
            _dir: dir,
        };
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

fn terminate(c: &Child) {
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

/// A real agent process with its folders.
pub struct Agent {
    child: Option<Child>,
    pub dir: PathBuf,
    /// The network namespace it runs in, if not the test's.
    netns: Option<String>,
    _tmp: tempfile::TempDir,
}

impl Agent {
    /// Enrols an agent named `name` and starts it, serving the demo HR file (`demo-hr`) and a
    /// slow system (`slow`, 300 entries 10 ms apart).
    pub fn start(server: &Server, name: &str) -> Agent {
        Self::start_with(server, name, &[])
    }

    /// The same, with more connection files: (file name, TOML).
    pub fn start_with(server: &Server, name: &str, extra: &[(&str, String)]) -> Agent {
        Self::start_full(server, name, extra, None, &server.url, true)
    }

    /// An agent with only the connections given, in network namespace `ns`, reaching the
    /// server at `server_url`.
    pub fn start_in(
        server: &Server,
        name: &str,
        connections: &[(&str, String)],
        ns: &str,
        server_url: &str,
    ) -> Agent {
        Self::start_full(server, name, connections, Some(ns), server_url, false)
    }

    fn start_full(
        server: &Server,
        name: &str,
        extra: &[(&str, String)],
        ns: Option<&str>,
        server_url: &str,
        defaults: bool,
    ) -> Agent {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        let runtime = dir.join("runtime");
        let connections = dir.join("connections");
        std::fs::create_dir_all(&connections).unwrap();
        for (pkg, folder) in [
            (idgard_tests::packages::CONNECTOR_CSV, "csv"),
            (idgard_tests::packages::CONNECTOR_LDAP, "ldap"),
            (idgard_tests::packages::GUEST_MISBEHAVE, "misbehave"),
            (idgard_tests::packages::GUEST_HOSTILE, "hostile"),
            (idgard_tests::packages::GUEST_STALL, "stall"),
        ] {
            let to = runtime.join(folder);
            std::fs::create_dir_all(&to).unwrap();
            for f in std::fs::read_dir(pkg).unwrap() {
                let f = f.unwrap().path();
                std::fs::copy(&f, to.join(f.file_name().unwrap())).unwrap();
            }
        }
        if defaults {
            std::fs::write(
                connections.join("demo-hr.toml"),
                format!(
                    "name = \"demo-hr\"\nconnector = \"csv\"\n[settings]\nfile = \"hr.csv\"\nkey = \"employee_id\"\n\
                     [grants.folders.source]\npath = \"{}\"\naccess = \"read-only\"\n",
                    idgard_tests::root().join("connectors/csv/demo").display()
                ),
            )
            .unwrap();
            std::fs::create_dir_all(dir.join("slow-data")).unwrap();
            std::fs::write(
                connections.join("slow.toml"),
                format!(
                    "name = \"slow\"\nconnector = \"misbehave\"\n[settings]\nmode = \"slow\"\ncount = 300\n\
                     [grants.folders.data]\npath = \"{}\"\naccess = \"read-write\"\n",
                    dir.join("slow-data").display()
                ),
            )
            .unwrap();
            std::fs::create_dir_all(dir.join("accounts")).unwrap();
            std::fs::write(
                connections.join("accounts.toml"),
                format!(
                    "name = \"accounts\"\nconnector = \"csv\"\n[settings]\nfile = \"hr.csv\"\n\
                     [grants.folders.source]\npath = \"{}\"\naccess = \"read-only\"\n\
                     [grants.folders.accounts]\npath = \"{}\"\naccess = \"read-write\"\n",
                    idgard_tests::root().join("connectors/csv/demo").display(),
                    dir.join("accounts").display()
                ),
            )
            .unwrap();
        }
        for (file, text) in extra {
            std::fs::write(connections.join(file), text).unwrap();
        }
        std::fs::write(
            dir.join("agent.toml"),
            "work = \"work\"\nruntime = \"runtime\"\nconnections = \"connections\"\nmax_tasks = 2\nbatch_size = 16\n",
        )
        .unwrap();
        let token = server.add_agent(name);
        let out = idgard_tests::netns::command_in(ns, bin("idgard-agent"))
            .args(["enrol", "--config"])
            .arg(dir.join("agent.toml"))
            .args(["--server", server_url, "--token", &token, "--fingerprint"])
            .arg(&server.fingerprint)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "enrol: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut a = Agent {
            child: None,
            dir,
            netns: ns.map(str::to_owned),
            _tmp: tmp,
        };
        a.spawn();
        a
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("agent.log"))
            .unwrap();
        self.child = Some(
            idgard_tests::netns::command_in(self.netns.as_deref(), bin("idgard-agent"))
                .args(["run", "--config"])
                .arg(self.dir.join("agent.toml"))
                .env("IDGARD_LOG", "info")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// SIGTERM; returns how long the agent took to exit.
    pub fn terminate(&mut self) -> Duration {
        let started = Instant::now();
        if let Some(mut c) = self.child.take() {
            terminate(&c);
            let _ = c.wait();
        }
        started.elapsed()
    }

    /// The agent process's peak resident memory (VmHWM), in MiB.
    pub fn peak_rss_mib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap();
        kib / 1024
    }

    /// TCP sockets the agent process listens on (from /proc).
    pub fn listening_sockets(&self) -> usize {
        let pid = self.pid();
        let mut inodes = std::collections::HashSet::new();
        for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .flatten()
        {
            if let Ok(link) = std::fs::read_link(fd.path()) {
                let link = link.to_string_lossy().into_owned();
                if let Some(inode) = link
                    .strip_prefix("socket:[")
                    .and_then(|s| s.strip_suffix(']'))
                {
                    inodes.insert(inode.to_owned());
                }
            }
        }
        let mut n = 0;
        for table in ["tcp", "tcp6", "udp", "udp6"] {
            let text =
                std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
            for line in text.lines().skip(1) {
                let cols: Vec<&str> = line.split_whitespace().collect();
                // State 0A is LISTEN for TCP; any bound UDP socket counts as listening.
                let listening = if table.starts_with("tcp") {
                    cols.get(3) == Some(&"0A")
                } else {
                    true
                };
                if listening && cols.get(9).is_some_and(|i| inodes.contains(*i)) {
                    n += 1;
                }
            }
        }
        n
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An agent played by the test through the API (to do what a real agent would not).
pub struct Hand {
    pub token: String,
    pub id: i64,
}

impl Hand {
    pub fn enrol(server: &Server, name: &str) -> Hand {
        let token = server.add_agent(name);
        let (s, v) = server.raw(
            Method::POST,
            "/api/v1/enrol",
            None,
            Some(json!({ "token": token })),
        );
        assert_eq!(s, StatusCode::OK, "{v}");
        let e: EnrolAnswer = serde_json::from_value(v).unwrap();
        let (s, v) = server.raw(
            Method::POST,
            "/api/v1/agent/token",
            None,
            Some(json!({ "agent_id": e.agent_id, "client_secret": e.client_secret })),
        );
        assert_eq!(s, StatusCode::OK, "{v}");
        let t: TokenAnswer = serde_json::from_value(v).unwrap();
        Hand {
            token: t.access_token,
            id: e.agent_id,
        }
    }

    pub fn call(
        &self,
        server: &Server,
        method: Method,
        path: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        server.raw(method, path, Some(&self.token), Some(body))
    }

    pub fn poll(&self, server: &Server, wait_ms: u64) -> PollAnswer {
        let (s, v) = self.call(
            server,
            Method::POST,
            "/api/v1/agent/poll",
            json!({ "capacity": 8, "wait_ms": wait_ms }),
        );
        assert_eq!(s, StatusCode::OK, "{v}");
        serde_json::from_value(v).unwrap()
    }

    pub fn complete(
        &self,
        server: &Server,
        task: i64,
        fence: i64,
        result: Value,
    ) -> (StatusCode, Value) {
        self.call(
            server,
            Method::POST,
            &format!("/api/v1/agent/tasks/{task}/complete"),
            json!({ "fence": fence, "outcome": { "status": "succeeded", "result": result } }),
        )
    }
}

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn sqlite() {
                    super::$name(super::Backend::Sqlite)
                }
                #[test]
                fn postgres() {
                    super::$name(super::Backend::Postgres)
                }
            }
        )*
    };
}

on_both!(
    export_job_goes_up_and_is_stored,
    killed_agent_task_is_requeued_and_completed_once,
    lost_poll_answer_returns_after_the_ack_deadline,
    stale_holder_is_refused_and_nothing_is_recorded,
    replayed_completion_records_one_result,
    agents_restart_with_the_server_and_nothing_is_lost,
    an_agent_cannot_touch_another_agents_tasks,
    bad_input_gets_a_clear_4xx,
    cancellation_reaches_the_running_agent,
    uploads_resume_and_checksums_are_checked,
    fulfil_orders_go_down_and_results_come_back,
    a_newer_poll_replaces_the_held_one,
    lapses_end_lost_failed_or_timed_out,
);

fn export_job_goes_up_and_is_stored(b: Backend) {
    let server = Server::start(b);
    let agent = Agent::start(&server, "paris");
    let job = server.create_job(
        "paris",
        vec![vec![on("demo-hr", Operation::Export)], vec![noop()]],
    );
    let job = server.wait_job(job.id, 60);
    assert_eq!(job.state, JobState::Succeeded, "{job:#?}\n{}", agent.log());
    assert_eq!(job.tasks.len(), 2);
    let export = &job.tasks[0];
    let result = export.result.as_ref().unwrap();
    assert_eq!(result["entries"], 5000);
    let upload = result["upload_id"].as_i64().unwrap();
    let uploads: Vec<UploadView> = server
        .admin::<(), _>(
            Method::GET,
            &format!("/api/v1/tasks/{}/uploads", export.id),
            None,
        )
        .unwrap();
    assert_eq!(uploads.len(), 1);
    assert!(uploads[0].complete);
    assert_eq!(uploads[0].entries, Some(5000));
    assert_eq!(uploads[0].id, upload);
    // What is stored is what the connector emitted: every frame decodes, 5,000 people.
    let (status, _) = server.raw(
        Method::GET,
        &format!("/api/v1/uploads/{upload}/content"),
        Some(&server.admin),
        None,
    );
    assert_eq!(status, StatusCode::OK);
    // The task's log came up.
    let log: LogPage = server
        .admin::<(), _>(
            Method::GET,
            &format!("/api/v1/tasks/{}/log", export.id),
            None,
        )
        .unwrap();
    assert!(!log.more, "{} lines and more", log.lines.len());
    // The agent reported its connections and listens on nothing.
    let agents: Vec<AgentView> = server
        .admin::<(), _>(Method::GET, "/api/v1/agents", None)
        .unwrap();
    let names: Vec<&str> = agents[0]
        .connections
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["accounts", "demo-hr", "slow"]);
    // Work for a connection the agent does not have, or an operation its connector lacks, is
    // refused when it is asked for.
    for (spec, expected) in [
        (on("nope", Operation::Export), "has no connection `nope`"),
        (on("slow", Operation::Schema), "does not support schema"),
    ] {
        let e = server
            .admin::<_, JobView>(
                Method::POST,
                "/api/v1/jobs",
                Some(&NewJob {
                    agent: "paris".into(),
                    name: None,
                    steps: vec![vec![spec]],
                    start: None,
                }),
            )
            .unwrap_err();
        assert_eq!(e.0, StatusCode::BAD_REQUEST);
        assert!(
            e.1["error"]["message"].as_str().unwrap().contains(expected),
            "{}",
            e.1
        );
    }
    assert_eq!(agent.listening_sockets(), 0);
}

fn killed_agent_task_is_requeued_and_completed_once(b: Backend) {
    let server = Server::start(b);
    let mut agent = Agent::start(&server, "lyon");
    let id = server.enqueue("lyon", vec![on("slow", Operation::Export)])[0];
    server.wait_task(id, 30, |t| t.state == TaskState::Running);
    std::thread::sleep(Duration::from_millis(300));
    agent.kill();
    assert_eq!(server.task(id).state, TaskState::Running);
    agent.restart();
    let t = server.wait_task(id, 60, |t| t.state.is_final());
    assert_eq!(t.state, TaskState::Succeeded, "{t:#?}\n{}", agent.log());
    assert_eq!(t.attempts, 2, "the first attempt died with the agent");
    assert_eq!(t.result.as_ref().unwrap()["entries"], 300);
    let uploads: Vec<UploadView> = server
        .admin::<(), _>(Method::GET, &format!("/api/v1/tasks/{id}/uploads"), None)
        .unwrap();
    assert_eq!(
        uploads.iter().filter(|u| u.complete).count(),
        1,
        "{uploads:#?}"
    );
    assert_eq!(agent.listening_sockets(), 0);
}

fn lost_poll_answer_returns_after_the_ack_deadline(b: Backend) {
    let server = Server::start(b);
    let hand = Hand::enrol(&server, "nantes");
    let id = server.enqueue("nantes", vec![noop()])[0];
    // The answer is "lost": the agent never acknowledges it.
    let first = hand.poll(&server, 0);
    assert_eq!(first.tasks.len(), 1);
    assert_eq!(first.tasks[0].fence, 1);
    assert!(
        hand.poll(&server, 0).tasks.is_empty(),
        "claimed tasks are not handed out twice"
    );
    // After the ack deadline (1 s) it comes back, as a new attempt with a new fence.
    let again = hand.poll(&server, 5000);
    assert_eq!(again.tasks.len(), 1, "the task came back");
    assert_eq!(again.tasks[0].id, id);
    assert_eq!(again.tasks[0].attempt, 2);
    assert_eq!(again.tasks[0].fence, 2);
    let (s, v) = hand.complete(&server, id, 2, json!({}));
    assert_eq!(s, StatusCode::OK, "{v}");
}

fn stale_holder_is_refused_and_nothing_is_recorded(b: Backend) {
    let server = Server::start(b);
    let hand = Hand::enrol(&server, "lille");
    let id = server.enqueue("lille", vec![noop()])[0];
    let old = hand.poll(&server, 0).tasks[0].fence;
    // Lapses (no acknowledgement), then is handed out again.
    let new = hand.poll(&server, 5000).tasks[0].fence;
    assert!(new > old);
    let (s, v) = hand.complete(&server, id, old, json!({ "from": "stale" }));
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "stale_lease");
    let (s, _) = hand.call(
        &server,
        Method::POST,
        &format!("/api/v1/agent/tasks/{id}/heartbeat"),
        json!({ "fence": old }),
    );
    assert_eq!(s, StatusCode::CONFLICT);
    let t = server.task(id);
    assert_eq!(t.state, TaskState::Claimed);
    assert!(t.result.is_none());
    let (s, _) = hand.complete(&server, id, new, json!({ "from": "current" }));
    assert_eq!(s, StatusCode::OK);
    assert_eq!(server.task(id).result.unwrap()["from"], "current");
}

fn replayed_completion_records_one_result(b: Backend) {
    let server = Server::start(b);
    let hand = Hand::enrol(&server, "brest");
    let job = server.create_job("brest", vec![vec![noop()], vec![noop()]]);
    let a = hand.poll(&server, 1000).tasks.remove(0);
    for _ in 0..5 {
        let (s, v) = hand.complete(&server, a.id, a.fence, json!({ "n": 1 }));
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["result"]["n"], 1);
    }
    // A replay that says something else still gets the first result.
    let (s, v) = hand.complete(&server, a.id, a.fence, json!({ "n": 2 }));
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["result"]["n"], 1);
    // The job moved on exactly once: one task for step 2.
    let j = server.job(job.id);
    assert_eq!(j.tasks.len(), 2, "{j:#?}");
    assert_eq!(j.step, 1);
}

fn agents_restart_with_the_server_and_nothing_is_lost(b: Backend) {
    let mut server = Server::start(b);
    let agent = Agent::start(&server, "rennes");
    let before = server.create_job("rennes", vec![vec![noop()]]);
    assert_eq!(server.wait_job(before.id, 30).state, JobState::Succeeded);
    // Queued while the server is down for the agent: enqueued, then the server restarts.
    let queued = server.enqueue("rennes", vec![noop(), noop(), noop()]);
    server.restart();
    let after = server.create_job("rennes", vec![vec![on("demo-hr", Operation::Export)]]);
    assert_eq!(
        server.wait_job(after.id, 60).state,
        JobState::Succeeded,
        "{}",
        agent.log()
    );
    for id in queued {
        let t = server.wait_task(id, 30, |t| t.state.is_final());
        assert_eq!(t.state, TaskState::Succeeded);
        assert_eq!(t.attempts, 1);
    }
    assert_eq!(agent.listening_sockets(), 0);
}

fn an_agent_cannot_touch_another_agents_tasks(b: Backend) {
    let server = Server::start(b);
    let a = Hand::enrol(&server, "agent-a");
    let other = Hand::enrol(&server, "agent-b");
    let id = server.enqueue("agent-a", vec![noop()])[0];
    assert!(other.poll(&server, 200).tasks.is_empty());
    let task = a.poll(&server, 0).tasks.remove(0);
    let fence = task.fence;
    for (path, body) in [
        (
            format!("/api/v1/agent/tasks/{id}/heartbeat"),
            json!({ "fence": fence }),
        ),
        (
            format!("/api/v1/agent/tasks/{id}/complete"),
            json!({ "fence": fence, "outcome": { "status": "succeeded" } }),
        ),
        (
            format!("/api/v1/agent/tasks/{id}/uploads"),
            json!({ "fence": fence, "name": "entries", "size": 1, "sha256": "00".repeat(32) }),
        ),
        (
            format!("/api/v1/agent/tasks/{id}/logs"),
            json!({ "fence": fence, "seq": 0, "lines": [] }),
        ),
    ] {
        let (s, v) = other.call(&server, Method::POST, &path, body);
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}: {v}");
    }
    // Agents' tokens do not open the administration API, and the reverse.
    let (s, _) = server.raw(Method::GET, "/api/v1/agents", Some(&a.token), None);
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = server.raw(
        Method::POST,
        "/api/v1/agent/poll",
        Some(&server.admin),
        Some(json!({ "capacity": 1 })),
    );
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = a.complete(&server, id, fence, json!({}));
    assert_eq!(s, StatusCode::OK);
}

fn bad_input_gets_a_clear_4xx(b: Backend) {
    let server = Server::start(b);
    let hand = Hand::enrol(&server, "metz");
    let poll = "/api/v1/agent/poll";
    // What, method, path, token, body, expected status.
    type Case<'a> = (
        &'a str,
        Method,
        String,
        Option<&'a str>,
        Vec<u8>,
        StatusCode,
    );
    let cases: Vec<Case> = vec![
        (
            "malformed JSON",
            Method::POST,
            poll.into(),
            Some(&hand.token),
            b"{\"capacity\": ".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "wrong shape",
            Method::POST,
            poll.into(),
            Some(&hand.token),
            b"{\"capacity\": \"many\"}".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "unknown field",
            Method::POST,
            poll.into(),
            Some(&hand.token),
            b"{\"capacity\": 1, \"x\": 1}".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "oversized body",
            Method::POST,
            poll.into(),
            Some(&hand.token),
            vec![b' '; 2 << 20],
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            "no token",
            Method::POST,
            poll.into(),
            None,
            b"{\"capacity\": 1}".to_vec(),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "forged token",
            Method::POST,
            poll.into(),
            Some("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhZ2VudDoxIn0.c2lnbmF0dXJl"),
            b"{\"capacity\": 1}".to_vec(),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "unknown task",
            Method::POST,
            "/api/v1/agent/tasks/999999/heartbeat".into(),
            Some(&hand.token),
            b"{\"fence\": 1}".to_vec(),
            StatusCode::NOT_FOUND,
        ),
        (
            "not an id",
            Method::POST,
            "/api/v1/agent/tasks/abc/heartbeat".into(),
            Some(&hand.token),
            b"{\"fence\": 1}".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "unknown upload",
            Method::GET,
            "/api/v1/agent/uploads/424242".into(),
            Some(&hand.token),
            vec![],
            StatusCode::NOT_FOUND,
        ),
        (
            "used enrolment token",
            Method::POST,
            "/api/v1/enrol".into(),
            None,
            b"{\"token\": \"0000\"}".to_vec(),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "wrong secret",
            Method::POST,
            "/api/v1/agent/token".into(),
            None,
            format!("{{\"agent_id\": {}, \"client_secret\": \"nope\"}}", hand.id).into_bytes(),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "unknown job",
            Method::GET,
            "/api/v1/jobs/77".into(),
            Some(&server.admin),
            vec![],
            StatusCode::NOT_FOUND,
        ),
        (
            "empty job",
            Method::POST,
            "/api/v1/jobs".into(),
            Some(&server.admin),
            b"{\"agent\": \"metz\", \"steps\": []}".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "unknown endpoint",
            Method::GET,
            "/api/v1/nothing".into(),
            Some(&server.admin),
            vec![],
            StatusCode::NOT_FOUND,
        ),
    ];
    for (what, method, path, token, body, expected) in cases {
        let (s, v) = server.raw_bytes(
            method,
            &path,
            token,
            (!body.is_empty()).then_some(body),
            "application/json",
        );
        assert_eq!(s, expected, "{what}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{what}: no message: {v}"
        );
    }
    assert!(!server.log().contains("panicked"));
}

fn cancellation_reaches_the_running_agent(b: Backend) {
    let server = Server::start(b);
    let agent = Agent::start(&server, "tours");
    let job = server.create_job(
        "tours",
        vec![vec![on("slow", Operation::Export)], vec![noop()]],
    );
    let task = job.tasks[0].id;
    server.wait_task(task, 30, |t| t.state == TaskState::Running);
    let started = Instant::now();
    let j: JobView = server
        .admin::<(), _>(
            Method::POST,
            &format!("/api/v1/jobs/{}/cancel", job.id),
            None,
        )
        .unwrap();
    assert_eq!(j.state, JobState::Cancelled);
    let t = server.wait_task(task, 30, |t| t.state.is_final());
    assert_eq!(t.state, TaskState::Cancelled, "{t:#?}\n{}", agent.log());
    // The slow export takes 3 s; the agent stopped it well before.
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    let j = server.job(job.id);
    assert_eq!(j.tasks.len(), 1, "the second step never ran");
}

fn uploads_resume_and_checksums_are_checked(b: Backend) {
    use sha2::Digest;
    let server = Server::start(b);
    let hand = Hand::enrol(&server, "dijon");
    let id = server.enqueue("dijon", vec![on("hr", Operation::Export)])[0];
    let fence = hand.poll(&server, 0).tasks[0].fence;
    // Three batches of real entries, framed.
    let mut content = Vec::new();
    for b in 0..3 {
        let mut batch = idgard_sdk::wire::BatchBuffer::with_capacity(1024);
        for i in 0..100 {
            let at = batch.begin_entry(
                idgard_sdk::wire::EntryOp::Upsert,
                "person",
                &format!("p{b}-{i}"),
            );
            batch.attribute1("name", "Zoë");
            batch.end_entry(at, 1);
        }
        content.extend_from_slice(&frames::header(batch.entries(), batch.len() as u32));
        content.extend_from_slice(batch.as_bytes());
    }
    let sha = hex::encode(sha2::Sha256::digest(&content));
    let open = |sha: &str| {
        hand.call(
            &server,
            Method::POST,
            &format!("/api/v1/agent/tasks/{id}/uploads"),
            json!({ "fence": fence, "name": "entries", "size": content.len(), "sha256": sha }),
        )
    };
    let (s, v) = open(&sha);
    assert_eq!(s, StatusCode::OK, "{v}");
    let slot = v["id"].as_i64().unwrap();
    let put = |offset: usize, bytes: &[u8]| {
        server.raw_bytes(
            Method::PUT,
            &format!("/api/v1/agent/uploads/{slot}?offset={offset}"),
            Some(&hand.token),
            Some(bytes.to_vec()),
            "application/octet-stream",
        )
    };
    let half = content.len() / 2;
    let (s, v) = put(0, &content[..half]);
    assert_eq!(s, StatusCode::OK, "{v}");
    // A retry of the same chunk is refused with where to go on; asking again resumes.
    let (s, v) = put(0, &content[..half]);
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let (s, v) = open(&sha);
    assert_eq!(
        (s, v["received"].as_u64()),
        (StatusCode::OK, Some(half as u64))
    );
    // Completing before the upload is whole is refused.
    let (s, _) = hand.complete(&server, id, fence, json!({ "upload_id": slot }));
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, v) = put(half, &content[half..]);
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["complete"], true);
    assert_eq!(v["entries"], 300);
    let (s, v) = hand.complete(&server, id, fence, json!({ "upload_id": slot }));
    assert_eq!(s, StatusCode::OK, "{v}");

    // A wrong checksum: the whole upload is refused and the slot emptied.
    let id = server.enqueue("dijon", vec![on("hr", Operation::Export)])[0];
    let fence = hand.poll(&server, 0).tasks[0].fence;
    let (s, v) = hand.call(
        &server,
        Method::POST,
        &format!("/api/v1/agent/tasks/{id}/uploads"),
        json!({ "fence": fence, "name": "entries", "size": content.len(), "sha256": "ab".repeat(32) }),
    );
    assert_eq!(s, StatusCode::OK, "{v}");
    let slot = v["id"].as_i64().unwrap();
    let (s, v) = server.raw_bytes(
        Method::PUT,
        &format!("/api/v1/agent/uploads/{slot}?offset=0"),
        Some(&hand.token),
        Some(content.clone()),
        "application/octet-stream",
    );
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("checksum mismatch")
    );
    let (_, v) = hand.call(
        &server,
        Method::GET,
        &format!("/api/v1/agent/uploads/{slot}"),
        Value::Null,
    );
    assert_eq!(v["received"], 0);
    assert!(!server.log().contains("panicked"));
}

/// The agent picks up a new connection without a restart; a broken file is refused with a log
/// line and the previous version keeps serving.
#[test]
fn connections_reload_without_a_restart() {
    let server = Server::start(Backend::Sqlite);
    let agent = Agent::start(&server, "caen");
    let listed = |server: &Server| -> Vec<String> {
        let agents: Vec<AgentView> = server
            .admin::<(), _>(Method::GET, "/api/v1/agents", None)
            .unwrap();
        agents[0]
            .connections
            .iter()
            .map(|c| c.name.clone())
            .collect()
    };
    let wait_for = |what: &str, ok: &dyn Fn() -> bool| {
        let until = Instant::now() + Duration::from_secs(30);
        while !ok() {
            assert!(
                Instant::now() < until,
                "{what}\n--- agent log\n{}",
                agent.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_for("the agent reports its connections", &|| {
        listed(&server).len() == 3
    });
    let demo = std::fs::read_to_string(agent.dir.join("connections/demo-hr.toml")).unwrap();
    let extra = agent.dir.join("connections/extra.toml");
    std::fs::write(
        &extra,
        demo.replace("name = \"demo-hr\"", "name = \"extra\""),
    )
    .unwrap();
    wait_for("the new connection is reported", &|| {
        listed(&server).contains(&"extra".to_owned())
    });

    std::fs::write(
        &extra,
        "name = \"extra\"\nconnector = \"csv\"\n[settings]\nfile = 42\n",
    )
    .unwrap();
    wait_for("the broken file is refused in the log", &|| {
        agent.log().contains("connection refused")
            && agent.log().contains("keeping its previous version")
    });
    assert!(listed(&server).contains(&"extra".to_owned()));
    let job = server.create_job("caen", vec![vec![on("extra", Operation::Export)]]);
    let job = server.wait_job(job.id, 60);
    assert_eq!(job.state, JobState::Succeeded, "{job:#?}\n{}", agent.log());
    assert_eq!(job.tasks[0].result.as_ref().unwrap()["entries"], 5000);
}

fn fulfil_orders_go_down_and_results_come_back(b: Backend) {
    let server = Server::start(b);
    let agent = Agent::start(&server, "nice");
    let orders = json!([
        { "id": "o1", "entity-type": "account", "key": "jdoe", "kind": "create", "attributes": { "name": ["Jeanne Doé"] } },
        { "id": "o2", "entity-type": "account", "key": "asmith", "kind": "create", "attributes": { "name": ["Al Smith"] } },
        { "id": "o3", "entity-type": "account", "key": "jdoe", "kind": "disable" },
        { "id": "o4", "entity-type": "account", "key": "asmith", "kind": "set-password", "password": "not-logged-1" },
    ]);
    let mut spec = on("accounts", Operation::Fulfill);
    spec.args = json!({ "orders": orders });
    let job = server.create_job("nice", vec![vec![spec]]);
    let job = server.wait_job(job.id, 60);
    assert_eq!(job.state, JobState::Succeeded, "{job:#?}\n{}", agent.log());
    let task = &job.tasks[0];
    let results = task.result.as_ref().unwrap()["results"]
        .as_array()
        .unwrap()
        .clone();
    let outcomes: Vec<(&str, &str)> = results
        .iter()
        .map(|r| (r["id"].as_str().unwrap(), r["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("o1", "done"),
            ("o2", "done"),
            ("o3", "done"),
            ("o4", "failed")
        ]
    );
    let file = std::fs::read_to_string(agent.dir.join("accounts/accounts.csv")).unwrap();
    assert!(
        file.contains("jdoe") && file.contains("Jeanne Doé") && file.contains("asmith"),
        "{file}"
    );
    // The password is in no log, and on no file of the agent's: orders reach the connector as
    // the call's argument only.
    assert!(!agent.log().contains("not-logged-1") && !server.log().contains("not-logged-1"));
    assert_eq!(
        files_holding(&agent.dir.join("work"), b"not-logged-1"),
        [] as [PathBuf; 0]
    );
    // Nor in the server's database, its WAL, or any file of its data folder: it is sealed.
    assert_eq!(
        files_holding(&server.data, b"not-logged-1"),
        [] as [PathBuf; 0]
    );
    let args: Vec<String> = rt().block_on(async {
        use sqlx::Row;
        sqlx::any::install_default_drivers();
        let mut c = <sqlx::AnyConnection as sqlx::Connection>::connect(&server.database_url)
            .await
            .unwrap();
        sqlx::query("SELECT args FROM tasks")
            .fetch_all(&mut c)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String, _>(0))
            .collect()
    });
    assert!(args.iter().any(|a| a.contains("sealed:v1:")), "{args:?}");
    assert!(!args.iter().any(|a| a.contains("not-logged-1")), "{args:?}");
}

/// Files under `dir` whose bytes hold `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut folders = vec![dir.to_owned()];
    while let Some(dir) = folders.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else if std::fs::read(&path)
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle)
            {
                found.push(path);
            }
        }
    }
    found
}

fn a_newer_poll_replaces_the_held_one(b: Backend) {
    let server = Server::start(b);
    let hand = std::sync::Arc::new(Hand::enrol(&server, "pau"));
    let server = std::sync::Arc::new(server);
    let held = {
        let (server, hand) = (server.clone(), hand.clone());
        std::thread::spawn(move || hand.poll(&server, 5000))
    };
    std::thread::sleep(Duration::from_millis(300));
    let id = {
        let newer = {
            let (server, hand) = (server.clone(), hand.clone());
            std::thread::spawn(move || hand.poll(&server, 5000))
        };
        let first = held.join().unwrap();
        assert!(first.superseded, "{first:?}");
        assert!(first.tasks.is_empty());
        let id = server.enqueue("pau", vec![noop()])[0];
        let second = newer.join().unwrap();
        assert!(!second.superseded);
        assert_eq!(second.tasks.iter().map(|t| t.id).collect::<Vec<_>>(), [id]);
        id
    };
    assert_eq!(server.task(id).state, TaskState::Claimed);
}

/// Two servers on one PostgreSQL: a task queued through one wakes the poll held by the other.
#[test]
fn replicas_wake_each_others_polls() {
    // The held poll re-reads the database only after 60 s, so only a wake-up can answer it.
    let a = Server::start_with(
        Backend::Postgres,
        &[
            ("IDGARD_QUEUE_POLL_RECHECK_MS", "60000"),
            ("IDGARD_QUEUE_POLL_WAIT_MS", "20000"),
        ],
    );
    let b = std::sync::Arc::new(a.replica());
    let hand = std::sync::Arc::new(Hand::enrol(&a, "vannes"));
    let held = {
        let (b, hand) = (b.clone(), hand.clone());
        std::thread::spawn(move || {
            let started = Instant::now();
            (hand.poll(&b, 20000), started.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let id = a.enqueue("vannes", vec![noop()])[0];
    let (answer, waited) = held.join().unwrap();
    assert_eq!(
        answer.tasks.iter().map(|t| t.id).collect::<Vec<_>>(),
        [id],
        "after {waited:?}"
    );
    // Completed through the other replica.
    let (s, v) = hand.complete(&a, id, answer.tasks[0].fence, json!({}));
    assert_eq!(s, StatusCode::OK, "{v}");
}

/// A result the agent could not deliver survives its restart and is delivered once.
#[test]
fn a_spooled_result_survives_an_agent_restart() {
    let mut server = Server::start_with(Backend::Sqlite, &[("IDGARD_QUEUE_LEASE_MS", "120000")]);
    let mut agent = Agent::start(&server, "quimper");
    let id = server.enqueue("quimper", vec![on("slow", Operation::Export)])[0];
    server.wait_task(id, 30, |t| t.state == TaskState::Running);
    // The server goes away while the export runs; the agent finishes and cannot deliver.
    server.stop();
    let spool = agent.dir.join("work/spool");
    let until = Instant::now() + Duration::from_secs(30);
    let spooled = loop {
        let found = std::fs::read_dir(&spool)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "json"));
        if let Some(p) = found
            && std::fs::read_to_string(&p).unwrap().contains("succeeded")
        {
            break p;
        }
        assert!(Instant::now() < until, "no spooled result\n{}", agent.log());
        std::thread::sleep(Duration::from_millis(50));
    };
    agent.kill();
    assert!(spooled.exists());
    server.restart();
    agent.restart();
    let t = server.wait_task(id, 60, |t| t.state.is_final());
    assert_eq!(t.state, TaskState::Succeeded, "{t:#?}\n{}", agent.log());
    assert_eq!(t.attempts, 1, "delivered from the spool, not run again");
    assert_eq!(t.result.as_ref().unwrap()["entries"], 300);
    let until = Instant::now() + Duration::from_secs(10);
    while spooled.exists() {
        assert!(
            Instant::now() < until,
            "the spool entry stays after delivery"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn lapses_end_lost_failed_or_timed_out(b: Backend) {
    let server = Server::start(b);
    let hand = Hand::enrol(&server, "arles");
    let mut fulfil = on("accounts", Operation::Fulfill);
    fulfil.args = json!({ "orders": [] });
    let mut once = noop();
    once.max_attempts = Some(1);
    let mut short = noop();
    short.timeout_s = Some(1);
    let ids = server.enqueue("arles", vec![fulfil, once, short]);
    let claimed = hand.poll(&server, 0).tasks;
    assert_eq!(claimed.len(), 3);
    let beat = |t: &Assignment| {
        hand.call(
            &server,
            Method::POST,
            &format!("/api/v1/agent/tasks/{}/heartbeat", t.id),
            json!({ "fence": t.fence }),
        )
    };
    // The fulfil is acknowledged, then its agent goes silent: it may have half-run, so it is
    // not repeated.
    assert_eq!(beat(&claimed[0]).0, StatusCode::OK);
    // The short task keeps beating but runs past its time.
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(2500) {
        let (s, v) = beat(&claimed[2]);
        if s != StatusCode::OK {
            assert_eq!(s, StatusCode::CONFLICT, "{v}");
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let lost = server.wait_task(ids[0], 30, |t| t.state.is_final());
    assert_eq!(lost.state, TaskState::Lost, "{lost:#?}");
    assert!(
        lost.error.as_ref().unwrap().contains("not repeated"),
        "{lost:#?}"
    );
    let failed = server.wait_task(ids[1], 30, |t| t.state.is_final());
    assert_eq!(failed.state, TaskState::Failed);
    assert!(
        failed.error.as_ref().unwrap().contains("no attempt left"),
        "{failed:#?}"
    );
    let timed_out = server.wait_task(ids[2], 30, |t| t.state.is_final());
    assert_eq!(timed_out.state, TaskState::Failed);
    assert!(
        timed_out.error.as_ref().unwrap().contains("timed out"),
        "{timed_out:#?}"
    );
    // None of them comes back.
    assert!(hand.poll(&server, 1500).tasks.is_empty());
}
