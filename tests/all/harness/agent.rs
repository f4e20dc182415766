//! An agent process with its folders, and an agent played by hand over the API.

use super::{Server, bin, terminate};
use idgard_protocol::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

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

    /// An agent with the default connections and `extra`, reaching the server at `url` (a
    /// proxy in front of it, say).
    pub fn start_via(server: &Server, name: &str, extra: &[(&str, String)], url: &str) -> Agent {
        Self::start_full(server, name, extra, None, url, true)
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

    /// SIGTERM, without waiting for the agent to exit.
    pub fn signal(&self) {
        terminate(self.child.as_ref().expect("the agent runs"));
    }

    /// Waits up to `max` for the agent to exit; whether it did.
    pub fn exited_within(&mut self, max: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < max {
            let c = self.child.as_mut().expect("the agent runs");
            if c.try_wait().unwrap().is_some() {
                self.child = None;
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Adds lines to the agent's configuration file (read when it starts).
    pub fn configure(&self, lines: &str) {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join("agent.toml"))
            .unwrap();
        f.write_all(lines.as_bytes()).unwrap();
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
