//! The web UI against real peers: sign-in through a real slapd (LDAPS, the user searched
//! with an escaped filter, bound as; roles from groups), through a real OpenID Connect provider
//! (`oidc-provider` from npm, PKCE required), and the pages in headless Chromium.

use super::harness::rt;
use super::system::Server;
use idgard_tests::slapd::Slapd;
use reqwest::StatusCode;
use reqwest::header::{LOCATION, SET_COOKIE};
use std::collections::BTreeMap;

/// A browser without JavaScript: follows nothing by itself, keeps cookies by name.
pub struct Browser {
    http: reqwest::Client,
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

fn people(slapd: &Slapd) {
    let base = &slapd.base;
    slapd.ldapadd(&format!(
        "dn: uid=alice,ou=people,{base}\nobjectClass: inetOrgPerson\nuid: alice\ncn: Alice\nsn: A\nuserPassword: alice-pw\n\n\
         dn: uid=mallory,ou=people,{base}\nobjectClass: inetOrgPerson\nuid: mallory\ncn: Mallory\nsn: M\nuserPassword: mallory-pw\n\n\
         dn: uid=bob,ou=people,{base}\nobjectClass: inetOrgPerson\nuid: bob\ncn: Bob\nsn: B\nuserPassword: bob-pw\n\n\
         dn: cn=idm-admins,ou=groups,{base}\nobjectClass: groupOfNames\ncn: idm-admins\nmember: uid=alice,ou=people,{base}\n\n\
         dn: cn=idm-viewers,ou=groups,{base}\nobjectClass: groupOfNames\ncn: idm-viewers\nmember: uid=bob,ou=people,{base}\n"
    ));
}

#[test]
fn directory_accounts_sign_in_over_ldaps_with_roles_from_their_groups() {
    let mut slapd = Slapd::start();
    people(&slapd);
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &slapd.ca_pem).unwrap();
    let bind_pw = dir.path().join("bind.pw");
    std::fs::write(&bind_pw, format!("{}\n", slapd.writer_password)).unwrap();
    let server = Server::start_configured(
        &[],
        &format!(
            "[ui.ldap]\nurl = \"{}\"\nca = \"{}\"\nuser_base = \"ou=people,{base}\"\n\
             group_base = \"ou=groups,{base}\"\nbind_dn = \"{}\"\nbind_password_file = \"{}\"\n\
             [ui.roles]\nadministrator = [\"idm-admins\"]\nviewer = [\"IDM-Viewers\"]\n",
            slapd.ldaps_url,
            ca.display(),
            slapd.writer_dn,
            bind_pw.display(),
            base = slapd.base
        ),
    );
    let mut b = Browser::new(&server.url);
    // Right password: a session, the dashboard, and the roles the group gives.
    let p = b.sign_in("ldap", "alice", "alice-pw");
    assert_eq!(
        p.status,
        StatusCode::SEE_OTHER,
        "{}\n{}",
        p.body,
        server.log()
    );
    assert_eq!(p.location.as_deref(), Some("/dashboard"));
    let p = b.get("/me");
    assert!(p.body.contains("Signed in as alice"), "{}", p.body);
    assert!(p.body.contains("administrator"), "{}", p.body);
    assert_eq!(
        b.get("/audit").status,
        StatusCode::OK,
        "administrators read the trail"
    );
    // A viewer (group matched without regard to case) may look but not read the trail.
    let mut v = Browser::new(&server.url);
    assert_eq!(
        v.sign_in("ldap", "bob", "bob-pw").status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(v.get("/dashboard").status, StatusCode::OK);
    assert_eq!(v.get("/audit").status, StatusCode::FORBIDDEN);
    // Wrong password, filter injection, unknown user: the same refusal.
    for (user, pw) in [
        ("alice", "wrong"),
        ("*", "alice-pw"),
        ("alice)(uid=*", "alice-pw"),
        ("al*", "alice-pw"),
        ("nobody", "x"),
    ] {
        let p = Browser::new(&server.url).sign_in("ldap", user, pw);
        assert_eq!(p.status, StatusCode::UNAUTHORIZED, "{user}: {}", p.body);
        assert!(
            p.body.contains("Wrong user name or password."),
            "{}",
            p.body
        );
    }
    // A person the directory knows but no group maps: signed in by nobody.
    let p = Browser::new(&server.url).sign_in("ldap", "mallory", "mallory-pw");
    assert_eq!(p.status, StatusCode::FORBIDDEN, "{}", p.body);
    assert!(p.body.contains("no role on this server"), "{}", p.body);
    // With the directory down, an empty password is still refused as wrong: it is refused
    // before the directory is asked (an empty password would be an unauthenticated bind).
    slapd.stop();
    let p = Browser::new(&server.url).sign_in("ldap", "alice", "");
    assert_eq!(p.status, StatusCode::UNAUTHORIZED, "{}", p.body);
    let p = Browser::new(&server.url).sign_in("ldap", "alice", "alice-pw");
    assert_eq!(p.status, StatusCode::SERVICE_UNAVAILABLE, "{}", p.body);
    assert!(
        p.body.contains("cannot be reached"),
        "directory down: {}",
        p.body
    );
    // The trail holds each attempt with its reason.
    let events: Vec<serde_json::Value> = server
        .admin(
            reqwest::Method::GET,
            "/api/v1/audit?action=signin.ldap",
            None::<&()>,
        )
        .unwrap();
    let outcome = |o: &str| events.iter().filter(|e| e["outcome"] == o).count();
    assert_eq!(outcome("done"), 2, "{events:#?}");
    assert!(outcome("refused") >= 8, "{events:#?}");
    assert!(
        events.iter().any(|e| e["detail"]
            .as_str()
            .unwrap_or("")
            .contains("empty password")),
        "{events:#?}"
    );
}

const RULES: &str = r#"
version = 1
[identities]
connection = "people"
[[targets]]
connection = "directory"
key = 'identity.first_name.lowerAscii() + "." + identity.last_name.lowerAscii()'
correlation = { identity = "key", account = "account.employee_id" }
[targets.attributes]
employee_id = "identity.key"
department = "identity.department"
[thresholds.people]
deletes = 1
[[jobs]]
name = "daily"
agent = "lyon"
connections = ["people", "directory"]
"#;

const HR: [&str; 5] = [
    "E1,Zoé,Martin,Sales,active",
    "E2,Paul,Durand,IT,active",
    "E3,Ana,Lopez,Legal,active",
    "E4,Li,Wang,HR,active",
    "E5,Sam,Berg,IT,active",
];

/// `idgard-server hash-password` of `password`.
fn hash_password(password: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new(crate::harness::bin("idgard-server"))
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
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

#[test]
fn a_day_in_the_browser() {
    let web = browser_tools();
    let tmp = tempfile::tempdir().unwrap();
    let (hr, target) = (tmp.path().join("hr"), tmp.path().join("directory"));
    std::fs::create_dir_all(&hr).unwrap();
    std::fs::create_dir_all(&target).unwrap();
    crate::pipeline::write_hr(&hr, &HR);
    std::fs::write(
        target.join("accounts.csv"),
        "login,employee_id,department\n",
    )
    .unwrap();
    let rules = tmp.path().join("rules.toml");
    std::fs::write(&rules, RULES).unwrap();
    let slapd = Slapd::start();
    let bind_pw = tmp.path().join("bind.pw");
    std::fs::write(&bind_pw, &slapd.writer_password).unwrap();
    people(&slapd);
    slapd.ldapadd(&format!(
        "dn: cn=idm-approvers,ou=groups,{b}\nobjectClass: groupOfNames\ncn: idm-approvers\nmember: uid=alice,ou=people,{b}\n",
        b = slapd.base
    ));
    let server = Server::start_configured(
        &[("IDGARD_RULES", rules.to_str().unwrap())],
        &format!(
            "[ui.dev_password]\nuser = \"oper\"\nhash = \"{}\"\nroles = [\"operator\"]\n\
             [ui.ldap]\nurl = \"{}\"\nstarttls = false\nuser_base = \"ou=people,{b}\"\ngroup_base = \"ou=groups,{b}\"\n\
             bind_dn = \"{}\"\nbind_password_file = \"{}\"\n\
             [ui.roles]\napprover = [\"idm-approvers\"]\n",
            hash_password("oper-pw"),
            slapd.url,
            slapd.writer_dn,
            bind_pw.display(),
            b = slapd.base
        ),
    );
    let agent = crate::system::Agent::start_with(
        &server,
        "lyon",
        &[
            ("people.toml", crate::pipeline::people_connection(&hr)),
            (
                "directory.toml",
                crate::pipeline::accounts_file_connection(&target),
            ),
        ],
    );
    let started = std::time::Instant::now();
    while !server
        .raw(
            reqwest::Method::GET,
            "/api/v1/agents/lyon",
            Some(&server.admin),
            None,
        )
        .1
        .to_string()
        .contains("directory")
    {
        assert!(started.elapsed().as_secs() < 30, "{}", agent.log());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let after: String = std::iter::once("employee_id,first_name,last_name,department,status")
        .chain(HR[..3].iter().copied())
        .map(|l| format!("{l}\n"))
        .collect();
    let shots = idgard_tests::root().join("target/ui-screenshots");
    let out = std::process::Command::new("node")
        .arg(web.join("ui-flow.mjs"))
        .env("IDGARD_URL", &server.url)
        .env("OPERATOR_USER", "oper")
        .env("OPERATOR_PASSWORD", "oper-pw")
        .env("APPROVER_USER", "alice")
        .env("APPROVER_PASSWORD", "alice-pw")
        .env("JOB", "daily")
        .env("HR_CSV", hr.join("hr.csv"))
        .env("HR_AFTER", after)
        .env("SHOTS_DIR", &shots)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ui-flow.mjs failed:\n{}\n{}\n--- server log\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
}

/// A real OpenID Connect provider (`tests/web/oidc.mjs`, npm `oidc-provider`) on loopback.
struct Provider {
    child: std::process::Child,
    issuer: String,
}

impl Provider {
    fn start(redirect: &str, users: serde_json::Value) -> Provider {
        Self::start_on(0, "", redirect, users)
    }

    /// On `port` (0: any), its ID tokens altered as `deviate` says (`""`: none).
    fn start_on(port: u16, deviate: &str, redirect: &str, users: serde_json::Value) -> Provider {
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
    fn through_provider(&mut self, mut location: String, login: &str, password: &str) -> String {
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

#[test]
fn single_sign_on_through_a_real_openid_connect_provider() {
    let dir = tempfile::tempdir().unwrap();
    // The server's address is known once it listens: start it once to learn its port, then
    // start the provider with that redirect, then the server again with the provider.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let redirect = format!("https://127.0.0.1:{port}/signin/oidc/callback");
    let provider = Provider::start(
        &redirect,
        serde_json::json!({
            "alice": { "password": "alice-pw", "groups": ["idm-admins"] },
            "mallory": { "password": "mallory-pw", "groups": ["staff"] }
        }),
    );
    let secret = dir.path().join("client-secret");
    std::fs::write(&secret, "client-secret\n").unwrap();
    let server = Server::start_configured(
        &[("IDGARD_LISTEN", &format!("127.0.0.1:{port}"))],
        &format!(
            "[ui.oidc]\nissuer = \"{}\"\nclient_id = \"idgard\"\nclient_secret_file = \"{}\"\n\
             redirect_url = \"{redirect}\"\nlabel = \"Staff sign-on\"\n\
             [ui.roles]\nadministrator = [\"idm-admins\"]\n",
            provider.issuer,
            secret.display()
        ),
    );
    assert_eq!(server.port, port);
    // The sign-in page offers the provider's button.
    let mut b = Browser::new(&server.url);
    assert!(b.get("/signin").body.contains("Staff sign-on"));
    // Off to the provider with PKCE; back with a code; a session with the mapped role.
    let start = b.get("/signin/oidc");
    assert_eq!(start.status, StatusCode::SEE_OTHER, "{}", start.body);
    let auth = start.location.unwrap();
    assert!(auth.starts_with(&provider.issuer), "{auth}");
    assert!(
        auth.contains("code_challenge_method=S256") && auth.contains("nonce="),
        "{auth}"
    );
    let callback = b.through_provider(auth, "alice", "alice-pw");
    assert!(callback.contains("/signin/oidc/callback?"), "{callback}");
    // Someone else's browser cannot finish this flow (the state is bound to this browser).
    let stolen = Browser::new(&server.url).get(&callback);
    assert_eq!(stolen.status, StatusCode::UNAUTHORIZED, "{}", stolen.body);
    let p = b.get(&callback);
    assert_eq!(
        p.status,
        StatusCode::SEE_OTHER,
        "{}\n{}",
        p.body,
        server.log()
    );
    assert_eq!(p.location.as_deref(), Some("/dashboard"));
    let me = b.get("/me");
    assert!(
        me.body.contains("Signed in as alice") && me.body.contains("administrator"),
        "{}",
        me.body
    );
    // The same answer again (a replayed code and state): refused.
    let mut again = Browser::new(&server.url);
    again.cookies = b.cookies.clone();
    again.cookies.remove("__Host-idgard");
    let replay = again.get(&callback);
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED, "{}", replay.body);
    // A tampered state: refused.
    let mut t = Browser::new(&server.url);
    let auth = t.get("/signin/oidc").location.unwrap();
    let callback = t.through_provider(auth, "alice", "alice-pw");
    let tampered = callback.replace("state=", "state=x");
    assert_eq!(t.get(&tampered).status, StatusCode::UNAUTHORIZED);
    // An error answer from the provider: refused, said so.
    let err = t.get("/signin/oidc/callback?error=access_denied&error_description=no");
    assert_eq!(err.status, StatusCode::UNAUTHORIZED);
    // Known to the provider, mapped to no role: no session.
    let mut m = Browser::new(&server.url);
    let auth = m.get("/signin/oidc").location.unwrap();
    let callback = m.through_provider(auth, "mallory", "mallory-pw");
    let p = m.get(&callback);
    assert_eq!(p.status, StatusCode::FORBIDDEN, "{}", p.body);
    assert!(!m.cookies.contains_key("__Host-idgard"));
    // The provider down: the sign-in says the service cannot be reached.
    drop(provider);
    let down = Browser::new(&server.url).get("/signin/oidc");
    assert!(
        down.status == StatusCode::SEE_OTHER || down.status == StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        down.status
    );
    let events: Vec<serde_json::Value> = server
        .admin(
            reqwest::Method::GET,
            "/api/v1/audit?action=signin.oidc",
            None::<&()>,
        )
        .unwrap();
    assert!(
        events
            .iter()
            .any(|e| e["outcome"] == "done" && e["user"] == "alice"),
        "{events:#?}"
    );
    assert!(
        events.iter().filter(|e| e["outcome"] == "refused").count() >= 4,
        "{events:#?}"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn id_tokens_that_do_not_hold_are_refused_and_new_keys_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let (port, idp) = (free_port(), free_port());
    let redirect = format!("https://127.0.0.1:{port}/signin/oidc/callback");
    let users =
        serde_json::json!({ "alice": { "password": "alice-pw", "groups": ["idm-admins"] } });
    let secret = dir.path().join("client-secret");
    std::fs::write(&secret, "client-secret\n").unwrap();
    let server = Server::start_configured(
        &[("IDGARD_LISTEN", &format!("127.0.0.1:{port}"))],
        &format!(
            "[ui.oidc]\nissuer = \"http://127.0.0.1:{idp}\"\nclient_id = \"idgard\"\n\
             client_secret_file = \"{}\"\nredirect_url = \"{redirect}\"\n\
             [ui.roles]\nadministrator = [\"idm-admins\"]\n",
            secret.display()
        ),
    );
    // Each provider below is a new process with a new signing key (a new `kid`): the server
    // reads the keys again when a token names one it has not seen.
    for deviate in [
        "",
        "wrong-issuer",
        "wrong-audience",
        "wrong-nonce",
        "expired",
        "bad-signature",
        "",
    ] {
        let provider = Provider::start_on(idp, deviate, &redirect, users.clone());
        let mut b = Browser::new(&server.url);
        let auth = b.get("/signin/oidc").location.unwrap();
        let callback = b.through_provider(auth, "alice", "alice-pw");
        let p = b.get(&callback);
        if deviate.is_empty() {
            assert_eq!(
                p.status,
                StatusCode::SEE_OTHER,
                "a valid token: {}\n{}",
                p.body,
                server.log()
            );
            assert!(b.cookies.contains_key("__Host-idgard"));
        } else {
            assert_eq!(p.status, StatusCode::UNAUTHORIZED, "{deviate}: {}", p.body);
            assert!(!b.cookies.contains_key("__Host-idgard"), "{deviate}");
        }
        drop(provider);
    }
    let events: Vec<serde_json::Value> = server
        .admin(
            reqwest::Method::GET,
            "/api/v1/audit?action=signin.oidc&outcome=refused",
            None::<&()>,
        )
        .unwrap();
    let details: Vec<&str> = events.iter().filter_map(|e| e["detail"].as_str()).collect();
    assert_eq!(details.len(), 5, "{details:#?}");
    assert!(
        details.iter().all(|d| d.contains("ID token refused")),
        "{details:#?}"
    );
}
