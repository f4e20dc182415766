//! Outgoing HTTP under grants, seen from a connector that sends whatever requests it is told
//! (`tests/guests/httpprobe`), against real HTTP servers on loopback: the host lets out only
//! requests under a granted base URL, adds the grant's credentials (which the connector can
//! neither read nor set), follows no redirect, caps responses and time, fetches and keeps OAuth
//! 2.0 tokens, and trusts only the grant's CA.

use crate::support::*;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::{any, get, post};
use idgard_host::{Connection, Outcome};
use idgard_sdk::wire::Entry;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

fn probe() -> &'static idgard_host::Loaded {
    static L: OnceLock<idgard_host::Loaded> = OnceLock::new();
    L.get_or_init(|| {
        runtime()
            .load(std::path::Path::new(
                idgard_tests::packages::GUEST_HTTPPROBE,
            ))
            .unwrap()
    })
}

/// What the servers saw.
#[derive(Default)]
struct Seen {
    /// Requests outside `/api/` on the granted port.
    admin: AtomicUsize,
    /// Requests to the other server.
    outside: AtomicUsize,
    /// Token requests.
    tokens: AtomicUsize,
}

/// A granted service on one loopback port and an outside one on another; both stop with the
/// test's runtime.
struct Servers {
    rt: tokio::runtime::Runtime,
    service: SocketAddr,
    outside: SocketAddr,
    seen: Arc<Seen>,
}

const CLIENT: &str = "Basic aWRnYXJkOmNsaWVudC1zM2NyZXQ="; // idgard:client-s3cret

async fn echo(headers: HeaderMap, uri: Uri, body: String) -> String {
    let auth = headers
        .get("authorization")
        .map_or("", |v| v.to_str().unwrap_or(""));
    format!("auth={auth};path={};body={body}", uri.path())
}

async fn token(
    State(seen): State<Arc<Seen>>,
    headers: HeaderMap,
    body: String,
) -> impl IntoResponse {
    let auth = headers
        .get("authorization")
        .map_or("", |v| v.to_str().unwrap_or(""));
    if auth != CLIENT || !body.contains("grant_type=client_credentials") {
        return (
            StatusCode::UNAUTHORIZED,
            "{\"error\":\"invalid_client\"}".to_owned(),
        );
    }
    let n = seen.tokens.fetch_add(1, Ordering::SeqCst) + 1;
    (
        StatusCode::OK,
        format!("{{\"access_token\":\"tok-{n}\",\"token_type\":\"Bearer\",\"expires_in\":3600}}"),
    )
}

impl Servers {
    fn start() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let seen = Arc::new(Seen::default());
        let (service, outside) = rt.block_on(async {
            let outside_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let outside = outside_l.local_addr().unwrap();
            let s = seen.clone();
            let outside_app = Router::new().fallback(any(move || {
                s.outside.fetch_add(1, Ordering::SeqCst);
                async { "outside" }
            }));
            tokio::spawn(async move { axum::serve(outside_l, outside_app).await });
            let service_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let service = service_l.local_addr().unwrap();
            let s = seen.clone();
            let app = Router::new()
                .route("/api/echo", any(echo))
                .route(
                    "/api/redirect",
                    get(move || async move {
                        (
                            StatusCode::FOUND,
                            [("location", format!("http://{outside}/stolen"))],
                        )
                    }),
                )
                .route("/api/big", get(|| async { vec![b'x'; 2 << 20] }))
                .route(
                    "/api/slow",
                    get(|| async {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        "late"
                    }),
                )
                .route("/token", post(token))
                .fallback(any(move || {
                    s.admin.fetch_add(1, Ordering::SeqCst);
                    async { "admin" }
                }))
                .with_state(seen.clone());
            tokio::spawn(async move { axum::serve(service_l, app).await });
            (service, outside)
        });
        Servers {
            rt,
            service,
            outside,
            seen,
        }
    }
}

/// A probe connection sending `requests`, granted `grant` (lines of `[grants.http.app]`).
fn connection(s: &Scratch, requests: &[String], extra: &str, grant: &str) -> Connection {
    let list: Vec<String> = requests.iter().map(|r| format!("{r:?}")).collect();
    s.connection(&format!(
        "name = \"probe\"\nconnector = \"httpprobe\"\n[settings]\nrequests = [{}]\n{extra}\n\
         [secrets]\nsvc_token = {{ value = \"s3cret-token\" }}\n\
         client_secret = {{ value = \"client-s3cret\" }}\nother = {{ value = \"x\" }}\n\
         [grants.http.app]\n{grant}\n",
        list.join(", ")
    ))
}

fn answers(s: &Scratch, conn: &Connection) -> (Vec<Entry>, Captured) {
    let (out, cap) = s.run(probe(), conn, full());
    assert!(
        matches!(out, Ok(Outcome::Exported(_))),
        "{out:?} {:?}",
        cap.logs()
    );
    let mut entries = cap.entries();
    entries.sort_by_key(|e| e.key.trim_start_matches("req-").parse::<u32>().unwrap_or(0));
    (entries, cap)
}

fn attr<'a>(e: &'a Entry, name: &str) -> &'a str {
    e.get(name).unwrap_or("")
}

#[test]
fn only_requests_under_a_granted_base_go_out_with_the_grants_credentials() {
    let sv = Servers::start();
    let s = Scratch::new();
    let a = sv.service;
    let b = sv.outside;
    let requests = [
        format!("GET http://{a}/api/echo"),
        format!("GET http://{a}/admin/x"),
        format!("GET http://{a}/api/../admin/x"),
        format!("GET http://{a}/api/%2e%2e/admin/x"),
        format!("GET http://{b}/api/echo"),
        format!("GET http://localhost:{}/api/echo", a.port()),
        format!("GET https://{a}/api/echo"),
        format!("GET http://{a}/api/redirect"),
        format!("POST http://{a}/api/echo"),
    ];
    let conn = connection(
        &s,
        &requests,
        "secret = \"svc_token\"\nbody = \"O'Brien\"",
        &format!("url = \"http://{a}/api\"\nauth = {{ bearer = \"svc_token\" }}"),
    );
    let (e, cap) = answers(&s, &conn);
    assert_eq!(e.len(), requests.len(), "{e:?}");
    assert_eq!(attr(&e[0], "status"), "200");
    assert!(
        attr(&e[0], "body").starts_with("auth=Bearer s3cret-token;path=/api/echo"),
        "{e:?}"
    );
    for refused in &e[1..7] {
        assert_eq!(attr(refused, "error_kind"), "Denied", "{refused:?}");
        assert!(attr(refused, "error").contains("outside the connection's HTTP grants"));
    }
    // A redirect is handed back, not followed.
    assert_eq!(attr(&e[7], "status"), "302");
    assert_eq!(attr(&e[7], "location"), format!("http://{b}/stolen"));
    assert!(attr(&e[8], "body").ends_with("body=O'Brien"), "{e:?}");
    assert_eq!(sv.seen.admin.load(Ordering::SeqCst), 0);
    assert_eq!(sv.seen.outside.load(Ordering::SeqCst), 0);
    // The run's log says what was refused and what is granted; the token is in no log, and the
    // connector cannot read it.
    assert!(
        cap.logged(&format!(
            "refused an HTTP request to http://127.0.0.1:{}/admin/x",
            a.port()
        )),
        "{:?}",
        cap.logs()
    );
    assert!(cap.logged(&format!("granted: http://127.0.0.1:{}/api/", a.port())));
    assert!(cap.logged("secret: none"));
    assert!(cap.logs().iter().all(|(_, l)| !l.contains("s3cret-token")));
    drop(sv.rt);
}

#[test]
fn a_connector_cannot_send_credentials_of_its_own() {
    let sv = Servers::start();
    let s = Scratch::new();
    let a = sv.service;
    let conn = connection(
        &s,
        &[format!("GET http://{a}/api/echo")],
        "header = \"Authorization: Bearer mine\"",
        &format!("url = \"http://{a}/api/\""),
    );
    let (e, _) = answers(&s, &conn);
    assert_eq!(attr(&e[0], "error_kind"), "Denied", "{e:?}");
    assert!(attr(&e[0], "error").contains("authorization"), "{e:?}");
    // Without credentials in the grant, the request goes out without any.
    let conn = connection(
        &s,
        &[format!("GET http://{a}/api/echo")],
        "",
        &format!("url = \"http://{a}/api/\""),
    );
    let (e, _) = answers(&s, &conn);
    assert!(attr(&e[0], "body").starts_with("auth=;"), "{e:?}");
}

#[test]
fn a_grant_caps_response_size_and_time_and_a_service_down_is_unavailable() {
    let sv = Servers::start();
    let s = Scratch::new();
    let a = sv.service;
    let down = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let conn = connection(
        &s,
        &[
            format!("GET http://{a}/api/big"),
            format!("GET http://{a}/api/slow"),
            format!("GET http://{a}/api/echo"),
        ],
        "",
        &format!("url = \"http://{a}/api/\"\nmax_response_mib = 1\ntimeout_s = 1"),
    );
    let (e, _) = answers(&s, &conn);
    assert_eq!(attr(&e[0], "error_kind"), "InvalidData", "{e:?}");
    assert!(attr(&e[0], "error").contains("larger than the grant allows"));
    assert_eq!(attr(&e[1], "error_kind"), "Unavailable", "{e:?}");
    assert!(attr(&e[1], "error").contains("timed out"), "{e:?}");
    assert_eq!(attr(&e[2], "status"), "200");
    // Nothing listens there: the listener that found the port is gone.
    let conn = connection(
        &s,
        &[format!("GET http://{down}/api/")],
        "",
        &format!("url = \"http://{down}/api/\""),
    );
    let (e, _) = answers(&s, &conn);
    assert_eq!(attr(&e[0], "error_kind"), "Unavailable", "{e:?}");
    assert!(
        attr(&e[0], "error").contains("refused the connection"),
        "{e:?}"
    );
}

#[test]
fn oauth2_client_credentials_are_fetched_once_and_kept_across_runs() {
    let sv = Servers::start();
    let s = Scratch::new();
    let a = sv.service;
    let grant = format!(
        "url = \"http://{a}/api/\"\n[grants.http.app.auth.oauth2]\n\
         token_url = \"http://{a}/token\"\nclient_id = \"idgard\"\nclient_secret = \"client_secret\""
    );
    let echo = format!("GET http://{a}/api/echo");
    let conn = connection(
        &s,
        &[echo.clone(), echo.clone(), echo],
        "secret = \"client_secret\"",
        &grant,
    );
    for _ in 0..2 {
        let (e, cap) = answers(&s, &conn);
        assert!(
            e.iter()
                .all(|e| attr(e, "body").starts_with("auth=Bearer tok-1;")),
            "{e:?}"
        );
        assert!(cap.logged("secret: none"));
    }
    assert_eq!(sv.seen.tokens.load(Ordering::SeqCst), 1);
    // A wrong client secret: the token endpoint refuses, the request is denied.
    let grant = grant.replace("client_secret\"", "other\"");
    let conn = connection(&s, &[format!("GET http://{a}/api/echo")], "", &grant);
    let (e, _) = answers(&s, &conn);
    assert_eq!(attr(&e[0], "error_kind"), "Denied", "{e:?}");
}

/// A self-signed certificate for `127.0.0.1` and its PEM.
fn certificate() -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".into()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

#[test]
fn https_trusts_the_grants_ca_and_nothing_else() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (cert, key) = certificate();
    let (other, _) = certificate();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let addr = rt.block_on(async {
        let config =
            axum_server::tls_rustls::RustlsConfig::from_pem(cert.clone().into(), key.into())
                .await
                .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route("/api/echo", any(echo));
        let server = axum_server::from_tcp_rustls(listener, config);
        tokio::spawn(async move { server.serve(app.into_make_service()).await });
        addr
    });
    let s = Scratch::new();
    s.write("ca.pem", &cert);
    s.write("other.pem", &other);
    let request = [format!("GET https://{addr}/api/echo")];
    for (ca, expected) in [("ca.pem", "200"), ("other.pem", "Unavailable")] {
        let conn = connection(
            &s,
            &request,
            "",
            &format!("url = \"https://{addr}/api/\"\nca = \"{ca}\""),
        );
        let (e, _) = answers(&s, &conn);
        let got = e[0].get("status").or(e[0].get("error_kind")).unwrap_or("");
        assert_eq!(got, expected, "{ca}: {e:?}");
        if expected != "200" {
            assert!(attr(&e[0], "error").contains("not trusted"), "{e:?}");
        }
    }
    drop(rt);
}

#[test]
fn a_connection_without_http_grants_sends_nothing() {
    let sv = Servers::start();
    let s = Scratch::new();
    let conn = s.connection(&format!(
        "name = \"probe\"\nconnector = \"httpprobe\"\n[settings]\nrequests = [\"GET http://{}/api/echo\"]\n",
        sv.service
    ));
    let (e, cap) = answers(&s, &conn);
    assert_eq!(attr(&e[0], "error_kind"), "Denied", "{e:?}");
    assert!(
        cap.logged("the connection grants no HTTP service"),
        "{:?}",
        cap.logs()
    );
    assert_eq!(sv.seen.admin.load(Ordering::SeqCst), 0);
}

#[test]
fn a_run_sends_more_requests_than_it_may_hold_handles() {
    // Every request's resources are released when the connector is done with it: a run of 300
    // requests stays under the 256 handles a run may hold.
    let sv = Servers::start();
    let s = Scratch::new();
    let a = sv.service;
    let requests: Vec<String> = (0..300)
        .map(|_| format!("GET http://{a}/api/echo"))
        .collect();
    let conn = connection(&s, &requests, "", &format!("url = \"http://{a}/api/\""));
    let (e, _) = answers(&s, &conn);
    assert_eq!(e.len(), 300);
    assert!(
        e.iter().all(|e| attr(e, "status") == "200"),
        "{:?}",
        e.last()
    );
}
