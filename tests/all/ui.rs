//! The web UI against real peers: sign-in through a real slapd (LDAPS, the user searched with
//! an escaped filter, bound as; roles from groups), and a day of work in headless Chromium
//! (`tests/web/ui-flow.mjs`). Single sign-on is `sso.rs`.

use super::harness::browser::{Browser, Provider, browser_tools, free_port};
use super::system::Server;
use idgard_tests::slapd::Slapd;
use reqwest::StatusCode;

pub(crate) fn people(slapd: &Slapd) {
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
search = "last_name"
[[targets]]
connection = "directory"
key = 'identity.first_name.lowerAscii() + "." + identity.last_name.lowerAscii()'
correlation = { identity = "key", account = "account.employee_id", link = "review" }
max_attempts = 1
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

/// A directory whose export reads `accounts.csv` while orders are written to `written.csv`:
/// an order for an account that only the export shows fails (`no account`), as an order does
/// when a target lost an account behind the identity manager's back.
fn split_directory(target: &std::path::Path) -> String {
    std::fs::write(target.join("written.csv"), "login,employee_id,department\n").unwrap();
    format!(
        "name = \"directory\"\nconnector = \"csv\"\n[settings]\nfile = \"accounts.csv\"\nkey = \"login\"\n\
         entity_type = \"account\"\naccounts_file = \"written.csv\"\naccounts_key = \"login\"\n\
         [grants.folders.source]\npath = \"{0}\"\naccess = \"read-only\"\n\
         [grants.folders.accounts]\npath = \"{0}\"\naccess = \"read-write\"\n",
        target.display()
    )
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
        "login,employee_id,department\npaul.durand,E2,Old\n",
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
    // A real OpenID Connect provider, for the third sign-in method; it must know the server's
    // callback, so the server's port is chosen first.
    let port = free_port();
    let redirect = format!("https://127.0.0.1:{port}/signin/oidc/callback");
    let provider = Provider::start(
        &redirect,
        serde_json::json!({ "carol": { "password": "carol-pw", "groups": ["idm-viewers"] } }),
    );
    let secret = tmp.path().join("client-secret");
    std::fs::write(&secret, "client-secret\n").unwrap();
    let server = Server::start_configured(
        &[
            ("IDGARD_RULES", rules.to_str().unwrap()),
            ("IDGARD_LISTEN", &format!("127.0.0.1:{port}")),
        ],
        &format!(
            "[ui.dev_password]\nuser = \"oper\"\nhash = \"{}\"\nroles = [\"operator\"]\n\
             [ui.ldap]\nurl = \"{}\"\nstarttls = false\nuser_base = \"ou=people,{b}\"\ngroup_base = \"ou=groups,{b}\"\n\
             bind_dn = \"{}\"\nbind_password_file = \"{}\"\n\
             [ui.oidc]\nissuer = \"{}\"\nclient_id = \"idgard\"\nclient_secret_file = \"{}\"\n\
             redirect_url = \"{redirect}\"\nlabel = \"Staff sign-on\"\n\
             [ui.roles]\napprover = [\"idm-approvers\"]\nviewer = [\"idm-viewers\"]\n",
            hash_password("oper-pw"),
            slapd.url,
            slapd.writer_dn,
            bind_pw.display(),
            provider.issuer,
            secret.display(),
            b = slapd.base
        ),
    );
    let mut agent = crate::system::Agent::start_with(
        &server,
        "lyon",
        &[
            ("people.toml", crate::pipeline::people_connection(&hr)),
            ("directory.toml", split_directory(&target)),
        ],
    );
    // Runs are launched from the browser through the agent: it must allow this job.
    agent.configure("launchable = [\"daily\"]\n");
    agent.restart();
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
        .env("VIEWER_USER", "carol")
        .env("VIEWER_PASSWORD", "carol-pw")
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
