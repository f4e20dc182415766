//! A real SCIM 2.0 service for the tests and the benchmark: `scim2-server` (PyPI) run by
//! `tests/scim/serve.py` from the virtual environment `scripts/setup.sh` makes, on a free loopback
//! port, stopped when dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A running SCIM service.
pub struct ScimServer {
    child: Child,
    /// `http://127.0.0.1:port` (its endpoints answer at `/v2/Users`...).
    pub url: String,
    /// The bearer token it requires.
    pub token: String,
}

impl ScimServer {
    /// Starts the service requiring `token`; `throttle` > 0 answers every that-many-th request
    /// with 429 and `Retry-After: 1`.
    pub fn start(token: &str, throttle: u32) -> Self {
        let python = crate::python();
        let mut child = Command::new(&python)
            .arg(crate::root().join("tests/scim/serve.py"))
            .args([
                "--port",
                "0",
                "--token",
                token,
                "--throttle",
                &throttle.to_string(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "{} cannot start ({e}): scripts/setup.sh installs the test services there",
                    python.display()
                )
            });
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut line)
            .expect("the SCIM service's first line");
        let url = line
            .trim()
            .strip_prefix("ready ")
            .unwrap_or_else(|| panic!("the SCIM service did not start: {line:?}"))
            .to_owned();
        ScimServer {
            child,
            url,
            token: token.to_owned(),
        }
    }

    /// The SCIM base URL, as a connector's `url` setting gives it.
    pub fn base(&self) -> String {
        format!("{}/v2", self.url)
    }
}

impl Drop for ScimServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
