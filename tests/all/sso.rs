//! Single sign-on through a real OpenID Connect provider (`tests/web/oidc.mjs`, npm
//! `oidc-provider`): authorization code with PKCE, the state bound to the browser, replays and
//! tampering refused, ID tokens that do not hold refused, new provider keys read again.

use super::harness::browser::{Browser, Provider, free_port};
use super::system::Server;
use reqwest::StatusCode;

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
    let mut server = Server::start_configured(
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
    // The provider down, on a server that has not read its settings yet (a restart forgets
    // them): the sign-in says the service cannot be reached.
    drop(provider);
    server.restart();
    let down = Browser::new(&server.url).get("/signin/oidc");
    assert_eq!(
        down.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        down.body
    );
    assert!(down.body.contains("cannot be reached"), "{}", down.body);
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
        "alg-none",
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
    assert_eq!(details.len(), 6, "{details:#?}");
    assert!(
        details.iter().all(|d| d.contains("ID token refused")),
        "{details:#?}"
    );
}
