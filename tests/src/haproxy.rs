//! A real reverse proxy in front of server replicas: Debian's haproxy in TCP mode (TLS passes
//! through to the replicas, which share one certificate, so agents pin the same one), with
//! health checks every 300 ms and connections sent elsewhere when a replica is down.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running haproxy.
pub struct Proxy {
    child: Child,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    _dir: tempfile::TempDir,
}

/// The haproxy binary (`scripts/setup.sh` installs it).
fn binary() -> PathBuf {
    ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("haproxy"))
}

impl Proxy {
    /// Starts a proxy on `port` spreading connections over the replicas on `backends`, for up
    /// to 4,000 clients at once.
    pub fn start(port: u16, backends: &[u16]) -> Proxy {
        Self::start_for(port, backends, 4_000)
    }

    /// Starts a proxy on `port` spreading connections over the replicas on `backends`, for up
    /// to `clients` clients at once (haproxy's `maxconn`; it raises its own descriptor limit).
    pub fn start_for(port: u16, backends: &[u16], clients: usize) -> Proxy {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let servers: String = backends
            .iter()
            .enumerate()
            .map(|(i, p)| format!("    server replica{i} 127.0.0.1:{p} check\n"))
            .collect();
        let config = format!(
            "global\n    maxconn {clients}\n\
             defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 5m\n    \
             timeout server 5m\n    option redispatch\n    retries 3\n\
             frontend idgard\n    bind 127.0.0.1:{port}\n    default_backend replicas\n\
             backend replicas\n    balance roundrobin\n    \
             default-server inter 300ms fall 1 rise 2\n{servers}"
        );
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config).expect("cannot write haproxy.cfg");
        let check = Command::new(binary())
            .args(["-c", "-q", "-f"])
            .arg(&path)
            .output()
            .expect("haproxy is missing: scripts/setup.sh installs it");
        assert!(
            check.status.success(),
            "haproxy refuses its configuration: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let child = Command::new(binary())
            .args(["-db", "-f"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy cannot start");
        let until = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < until, "haproxy does not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Proxy {
            child,
            port,
            _dir: dir,
        }
    }

    /// `https://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
