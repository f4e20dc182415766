//! Network namespaces for tests of partitioned networks: a server's namespace with one link to
//! each partition's namespace and one to the test process, no forwarding between links (a new
//! namespace forwards nothing), so a partition reaches the server and nothing else, and nothing
//! reaches into a partition. Namespaces and links go when the [`Topology`] is dropped.
//!
//! Needs `ip` (iproute2) and the right to create namespaces (root in CI and here).

use std::process::{Command, Output};

/// The namespaces of one test, named after the process so that parallel test runs do not
/// meet.
pub struct Topology {
    /// The server's namespace.
    pub server: String,
    /// Each partition's namespace, in the order asked.
    pub partitions: Vec<String>,
    /// The server's address as the test process reaches it.
    pub server_from_test: String,
    /// The server's address as each partition reaches it.
    pub server_from: Vec<String>,
    /// Each partition's own address on its link to the server.
    pub partition_addresses: Vec<String>,
    /// Host-side link to the server's namespace.
    host_link: String,
}

fn ip(args: &[&str]) -> Output {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `ip` (iproute2): {e}"));
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `ip netns exec <ns> <program>`: a command that runs inside a namespace.
pub fn command_in(ns: Option<&str>, program: impl AsRef<std::ffi::OsStr>) -> Command {
    match ns {
        None => Command::new(program),
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(program);
            c
        }
    }
}

impl Topology {
    /// A server namespace and `n` partitions (at most 8). Addresses are in 10.<x>.<link>.0/30
    /// with `x` from the process id, so that two test processes use different ones.
    pub fn new(n: usize) -> Topology {
        assert!(n <= 8);
        let tag = std::process::id() % 100_000;
        let x = 100 + (std::process::id() % 100);
        let server = format!("idg{tag}s");
        let partitions: Vec<String> = (0..n).map(|i| format!("idg{tag}p{i}")).collect();
        // Leftovers of an earlier run of the same pid.
        for ns in std::iter::once(&server).chain(&partitions) {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        let host_link = format!("idg{tag}h");
        let _ = Command::new("ip")
            .args(["link", "del", &host_link])
            .output();
        for ns in std::iter::once(&server).chain(&partitions) {
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        let mut t = Topology {
            server,
            partitions,
            server_from_test: format!("10.{x}.0.1"),
            server_from: Vec::new(),
            partition_addresses: Vec::new(),
            host_link,
        };
        // The test process (the host's namespace) to the server.
        let inside = format!("idg{tag}hs");
        ip(&[
            "link",
            "add",
            &t.host_link,
            "type",
            "veth",
            "peer",
            "name",
            &inside,
        ]);
        ip(&["link", "set", &inside, "netns", &t.server]);
        ip(&[
            "addr",
            "add",
            &format!("10.{x}.0.2/30"),
            "dev",
            &t.host_link,
        ]);
        ip(&["link", "set", &t.host_link, "up"]);
        ip(&[
            "-n",
            &t.server,
            "addr",
            "add",
            &format!("10.{x}.0.1/30"),
            "dev",
            &inside,
        ]);
        ip(&["-n", &t.server, "link", "set", &inside, "up"]);
        // Each partition to the server.
        for (i, ns) in t.partitions.clone().iter().enumerate() {
            let (a, b) = (t.link(i), format!("idg{tag}p{i}s"));
            let link = i + 1;
            ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
            ip(&["link", "set", &a, "netns", &t.server]);
            ip(&["link", "set", &b, "netns", ns]);
            let server_side = format!("10.{x}.{link}.1");
            let partition_side = format!("10.{x}.{link}.2");
            ip(&[
                "-n",
                &t.server,
                "addr",
                "add",
                &format!("{server_side}/30"),
                "dev",
                &a,
            ]);
            ip(&["-n", &t.server, "link", "set", &a, "up"]);
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{partition_side}/30"),
                "dev",
                &b,
            ]);
            ip(&["-n", ns, "link", "set", &b, "up"]);
            t.server_from.push(server_side);
            t.partition_addresses.push(partition_side);
        }
        t
    }

    /// The server-side end of partition `i`'s link.
    fn link(&self, i: usize) -> String {
        format!("{}l{i}", self.server)
    }

    /// Cuts partition `i` off (its link goes down on the server's side).
    pub fn cut(&self, i: usize) {
        ip(&["-n", &self.server, "link", "set", &self.link(i), "down"]);
    }

    /// Heals partition `i`.
    pub fn heal(&self, i: usize) {
        ip(&["-n", &self.server, "link", "set", &self.link(i), "up"]);
    }

    /// Whether a TCP connection from namespace `ns` to `addr` (`ip:port`) succeeds within a
    /// second.
    pub fn reaches(ns: &str, addr: &str) -> bool {
        let (host, port) = addr.rsplit_once(':').expect("ip:port");
        command_in(Some(ns), "bash")
            .args([
                "-c",
                &format!("timeout 1 bash -c 'exec 3<>/dev/tcp/{host}/{port}' 2>/dev/null"),
            ])
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        // Deleting a namespace deletes the links in it (and their peers).
        for ns in std::iter::once(&self.server).chain(&self.partitions) {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_link])
            .output();
    }
}
