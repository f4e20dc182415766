//! A browser without JavaScript for the UI's tests (cookies kept by name, redirects not
//! followed), the real OpenID Connect provider they sign in through, and where the Node tools of
//! `tests/web` are.

use super::rt;
use reqwest::StatusCode;
use reqwest::header::{LOCATION, SET_COOKIE};
use std::collections::BTreeMap;

/// A browser without JavaScript: follows nothing by itself, keeps cookies by name.
pub struct Browser {
    pub http: reqwest::Client,
    pub base: String,
    pub cookies: BTreeMap<String, String>,
}

/// An answer, read.
pub struct Page {
    pub status: StatusCode,
    pub location: Option<String>,
    pub body: String,
}

impl Browser {
    pub fn new(base: &str) -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .danger_accept_invalid_certs(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: base.to_owned(),
            cookies: BTreeMap::new(),
        }
    }

    fn keep(&mut self, r: &reqwest::Response) {
        for v in r.headers().get_all(SET_COOKIE) {
            let v = v.to_str().unwrap();
            let pair = v.split(';').next().unwrap();
            let (k, val) = pair.split_once('=').unwrap();
            if val.is_empty() || v.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), val.to_owned());
            }
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn read(&mut self, r: reqwest::RequestBuilder) -> Page {
        let r = rt().block_on(r.send()).unwrap();
        self.keep(&r);
        let status = r.status();
        let location = r
            .headers()
            .get(LOCATION)
            .map(|v| v.to_str().unwrap().to_owned());
        Page {
            status,
            location,
            body: rt().block_on(r.text()).unwrap(),
        }
    }

    /// GET `url` (a path on the server, or a full address).
    pub fn get(&mut self, url: &str) -> Page {
        let full = if url.starts_with('/') {
            format!("{}{url}", self.base)
        } else {
            url.to_owned()
        };
        let r = self.http.get(full).header("cookie", self.cookie_header());
        self.read(r)
    }

    /// A form post as a browser on the server's own pages sends it.
    pub fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .header("sec-fetch-site", "same-origin")
            .form(form);
        self.read(r)
    }

    /// The sign-in form's token (from the sign-in page's cookie).
    pub fn signin_token(&mut self) -> String {
        let p = self.get("/signin");
        assert_eq!(p.status, StatusCode::OK, "{}", p.body);
        self.cookies["__Host-idgard-pre"].clone()
    }

    /// Signs in with a form of the sign-in page (`ldap` or `password`).
    pub fn sign_in(&mut self, method: &str, user: &str, password: &str) -> Page {
        let csrf = self.signin_token();
        self.post(
            &format!("/signin/{method}"),
            &[("csrf", &csrf), ("user", user), ("password", password)],
        )
    }
}

/// Node and Chromium, as `scripts/setup.sh` installs them; a test that needs them fails
/// (never skips) when they are missing, saying how to get them.
pub fn browser_tools() -> std::path::PathBuf {
    let web = idgard_tests::root().join("tests/web");
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists()
            && web.join("node_modules/playwright-core").exists(),
        "Chromium and tests/web/node_modules are needed: run `bash scripts/setup.sh`"
    );
    web
}

/// A real OpenID Connect provider (`tests/web/oidc.mjs`, npm `oidc-provider`) on loopback.
pub struct Provider {
    child: std::process::Child,
    pub issuer: String,
}

impl Provider {
    pub fn start(redirect: &str, users: serde_json::Value) -> Provider {
        Self::start_on(0, "", redirect, users)
    }

    /// On `port` (0: any), its ID tokens altered as `deviate` says (`""`: none).
    pub fn start_on(
        port: u16,
        deviate: &str,
        redirect: &str,
        users: serde_json::Value,
    ) -> Provider {
        use std::io::BufRead;
        let web = browser_tools();
        let mut child = std::process::Command::new("node")
            .arg(web.join("oidc.mjs"))
            .env("OIDC_PORT", port.to_string())
            .env("OIDC_DEVIATE", deviate)
            .env("OIDC_CLIENT_ID", "idgard")
            .env("OIDC_CLIENT_SECRET", "client-secret")
            .env("OIDC_REDIRECT_URI", redirect)
            .env("OIDC_USERS", users.to_string())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("node");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let issuer = line
            .strip_prefix("ready ")
            .unwrap_or_else(|| panic!("oidc.mjs did not start: {line}"))
            .trim()
            .to_owned();
        Provider { child, issuer }
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    /// Follows redirects from `location` (the provider's pages), filling the provider's login
    /// form with `login`/`password` when it shows; stops at the first address on the idgard
    /// server and answers it without following it.
    pub fn through_provider(
        &mut self,
        mut location: String,
        login: &str,
        password: &str,
    ) -> String {
        for _ in 0..20 {
            if location.starts_with(&self.base) {
                return location;
            }
            let p = self.get(&location);
            match p.location {
                Some(next) => {
                    location = if next.starts_with('/') {
                        let origin: String = location
                            .splitn(4, '/')
                            .take(3)
                            .collect::<Vec<_>>()
                            .join("/");
                        format!("{origin}{next}")
                    } else {
                        next
                    };
                }
                None => {
                    let action = p
                        .body
                        .split("action=\"")
                        .nth(1)
                        .and_then(|a| a.split('"').next())
                        .unwrap_or_else(|| panic!("no form on the provider's page: {}", p.body))
                        .replace("&amp;", "&");
                    let origin: String = location
                        .splitn(4, '/')
                        .take(3)
                        .collect::<Vec<_>>()
                        .join("/");
                    let target = if action.starts_with('/') {
                        format!("{origin}{action}")
                    } else {
                        action
                    };
                    let r = self
                        .http
                        .post(&target)
                        .header("cookie", self.cookie_header())
                        .form(&[("login", login), ("password", password)]);
                    let answer = self.read(r);
                    location = answer.location.unwrap_or_else(|| {
                        panic!("the provider refused the login: {}", answer.body)
                    });
                    if location.starts_with('/') {
                        location = format!("{origin}{location}");
                    }
                }
            }
        }
        panic!("no way back from the provider");
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
