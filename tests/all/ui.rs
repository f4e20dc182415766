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
