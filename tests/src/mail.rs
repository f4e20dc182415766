//! A real SMTP server for the mail notification tests: aiosmtpd (PyPI) run by
//! `tests/mail/serve.py` from the tests' virtual environment, on a loopback port, with its own CA
//! and certificate, STARTTLS or implicit TLS, and a required login. Stopped when dropped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How the test server protects its port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    /// STARTTLS, required before anything else.
    Starttls,
    /// TLS from the first byte.
    Implicit,
}

/// The user and password the server requires.
pub const USER: &str = "idgard-notify";
/// See [`USER`].
pub const PASSWORD: &str = "smtp-Pa55word!";

/// A running SMTP server.
pub struct SmtpServer {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Where it writes what it receives.
    pub out: PathBuf,
    /// The CA (PEM file) its certificate is signed by, for `mail.ca`.
    pub ca: PathBuf,
    /// How it protects its port.
    pub tls: Tls,
    /// A file holding [`PASSWORD`], for `mail.password_file`.
    pub password_file: PathBuf,
}

/// The `IDGARD_MAIL_*` settings that send a server's mail to a test server on `port` with
/// `tls`, whose CA and password file are in `dir` (as [`SmtpServer::start`] writes them), to
/// `iam@example.org`, checking every second, with `period_s` between two mails of a kind.
pub fn server_env(dir: &Path, port: u16, tls: Tls, period_s: u64) -> Vec<(&'static str, String)> {
    certificates(dir);
    let tls = match tls {
        Tls::Starttls => "starttls",
        Tls::Implicit => "implicit",
    };
    vec![
        ("IDGARD_MAIL_HOST", "localhost".into()),
        ("IDGARD_MAIL_PORT", port.to_string()),
        ("IDGARD_MAIL_TLS", tls.into()),
        ("IDGARD_MAIL_CA", dir.join("ca.pem").display().to_string()),
        ("IDGARD_MAIL_USERNAME", USER.into()),
        (
            "IDGARD_MAIL_PASSWORD_FILE",
            dir.join("smtp-password").display().to_string(),
        ),
        ("IDGARD_MAIL_FROM", "idgard <idgard@example.org>".into()),
        (
            "IDGARD_MAIL_TO",
            "iam@example.org, audit@example.org".into(),
        ),
        ("IDGARD_MAIL_PERIOD_S", period_s.to_string()),
        ("IDGARD_MAIL_CHECK_S", "1".into()),
        ("IDGARD_MAIL_RETRY_S", "1".into()),
    ]
}

/// A CA, a certificate for `localhost` and the password file in `dir`, made once.
fn certificates(dir: &Path) {
    if !dir.join("server.pem").exists() {
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        crate::slapd::server_certificates(dir, names, "localhost");
        std::fs::write(dir.join("smtp-password"), format!("{PASSWORD}\n"))
            .expect("cannot write the password file");
    }
}

impl SmtpServer {
    /// Starts a server on `port` that writes into `dir/out` (its certificates go in `dir`).
    pub fn start(dir: &Path, port: u16, tls: Tls) -> Self {
        let out = dir.join("out");
        std::fs::create_dir_all(&out).expect("cannot create the mail folder");
        certificates(dir);
        let python = crate::python();
        let mut command = Command::new(&python);
        command
            .arg(crate::root().join("tests/mail/serve.py"))
            .args(["--port", &port.to_string(), "--out"])
            .arg(&out)
            .arg("--cert")
            .arg(dir.join("server.pem"))
            .arg("--key")
            .arg(dir.join("server.key"))
            .args(["--user", USER, "--password", PASSWORD]);
        if tls == Tls::Implicit {
            command.arg("--implicit");
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "{} cannot start ({e}): scripts/setup.sh installs aiosmtpd there",
                    python.display()
                )
            });
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut line)
            .expect("the SMTP server's first line");
        assert!(
            line.starts_with("ready "),
            "the SMTP server did not start: {line:?}"
        );
        SmtpServer {
            child,
            port,
            out,
            ca: dir.join("ca.pem"),
            tls,
            password_file: dir.join("smtp-password"),
        }
    }

    /// The messages received so far, oldest first, each as its text (with the X-Test-* lines
    /// the server adds: envelope, user, TLS).
    pub fn messages(&self) -> Vec<String> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.out)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        names.retain(|p| p.extension().is_some_and(|e| e == "eml"));
        names.sort();
        names
            .iter()
            .map(|p| std::fs::read_to_string(p).expect("a readable message"))
            .collect()
    }

    /// Waits until `done` holds for the messages, `secs` at most; the messages then.
    pub fn wait(&self, secs: u64, done: impl Fn(&[String]) -> bool) -> Vec<String> {
        let until = Instant::now() + Duration::from_secs(secs);
        loop {
            let m = self.messages();
            if done(&m) {
                return m;
            }
            assert!(
                Instant::now() < until,
                "the SMTP server did not receive what was expected within {secs} s; it has: {m:#?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A received message with its quoted-printable encoding undone (soft line breaks and `=XX`
/// bytes), for reading its text.
pub fn decoded(message: &str) -> String {
    let joined = message.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'=', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
