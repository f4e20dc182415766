//! Clients that hold the server's connections without using them: silent, stopped in the TLS
//! handshake, stopped after it, stopped in the middle of a header, idle after an answer, or
//! more of them than one address may open. With a descriptor limit of 256 the server closes
//! them (and a request whose body stops) all within their timeouts, refuses what is over the limits, says so in its log, and
//! keeps answering health checks and its agent (whose held polls are longer than the idle
//! timeout, and are not cut).

use super::system::{Agent, Backend, Server, noop, shared_keys};
use idgard_protocol::TaskState;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TCP connection to the server from `from` (another loopback address than the tests').
fn connect_from(from: &str, port: u16) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let local: SocketAddr = SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0);
    socket.bind(&local.into()).unwrap();
    let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    socket.connect(&server.into()).unwrap();
    socket.into()
}

fn tls_client() -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(shared_keys().join("dev-cert.pem")).unwrap();
    for cert in rustls_pemfile::certs(&mut &pem[..]) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// A connection whose TLS handshake is done.
fn tls_from(from: &str, port: u16) -> Tls {
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(tls_client(), name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, connect_from(from, port));
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).unwrap();
    }
    tls
}

/// Whether the server has closed the connection (an end of stream or a reset), waiting until
/// `by` at most.
fn closed_by_server(stream: &mut impl Read, socket: &TcpStream, by: Instant) -> bool {
    let left = by.saturating_duration_since(Instant::now());
    socket
        .set_read_timeout(Some(left.max(Duration::from_millis(1))))
        .unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                );
            }
        }
    }
}

#[test]
fn held_connections_are_closed_and_never_lock_out_health_checks_or_agents() {
    let server = Server::start_with(
        Backend::Sqlite,
        &[
            ("IDGARD_LIMITS_HEADER_TIMEOUT_S", "2"),
            ("IDGARD_LIMITS_IDLE_TIMEOUT_S", "3"),
            ("IDGARD_LIMITS_CONNECTIONS_PER_PEER", "100"),
            ("IDGARD_LIMITS_BODY_TIMEOUT_S", "2"),
        ],
    )
    .with_descriptor_limit(256);
    let agent = Agent::start(&server, "a");
    let first = server.enqueue("a", vec![noop()])[0];
    server.wait_task(first, 30, |t| t.state == TaskState::Succeeded);
    let port = server.port;

    // More silent connections from one address than it may open.
    let mut silent: Vec<TcpStream> = (0..150).map(|_| connect_from("127.0.0.2", port)).collect();
    // The TLS handshake done, then nothing.
    let mut quiet: Vec<Tls> = (0..10).map(|_| tls_from("127.0.0.3", port)).collect();
    // Half a header.
    let mut half: Vec<Tls> = (0..10)
        .map(|_| {
            let mut t = tls_from("127.0.0.3", port);
            t.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
                .unwrap();
            t.flush().unwrap();
            t
        })
        .collect();
    // A body that stops.
    let mut stalled = tls_from("127.0.0.4", port);
    stalled
        .write_all(
            b"POST /api/v1/enrol HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
              Content-Length: 1000\r\n\r\n{\"token\": ",
        )
        .unwrap();
    stalled.flush().unwrap();
    // One request answered, then the connection kept open and idle.
    let mut kept = tls_from("127.0.0.4", port);
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut answer = [0u8; 15];
    kept.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200 OK");

    // While they are held: health checks and the agent are served.
    let mut health = tls_from("127.0.0.1", port);
    health
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    health.read_to_string(&mut text).ok();
    assert!(
        text.starts_with("HTTP/1.1 200 OK") && text.ends_with("ok"),
        "{text}"
    );
    let second = server.enqueue("a", vec![noop()])[0];
    server.wait_task(second, 30, |t| t.state == TaskState::Succeeded);

    // Every held connection is closed by the server, well within 20 s.
    let by = Instant::now() + Duration::from_secs(20);
    let mut silent_closed = 0;
    for s in silent.iter_mut() {
        let socket = s.try_clone().unwrap();
        silent_closed += closed_by_server(s, &socket, by) as usize;
    }
    assert_eq!(silent_closed, 150, "silent connections left open");
    for t in quiet.iter_mut().chain(half.iter_mut()) {
        let socket = t.sock.try_clone().unwrap();
        assert!(
            closed_by_server(t, &socket, by),
            "a connection after TLS left open"
        );
    }
    let socket = stalled.sock.try_clone().unwrap();
    assert!(
        closed_by_server(&mut stalled, &socket, by),
        "a stalled request body left open"
    );
    let socket = kept.sock.try_clone().unwrap();
    assert!(
        closed_by_server(&mut kept, &socket, by),
        "an idle keep-alive connection left open"
    );

    // The server said what it refused and closed.
    let log = server.log();
    assert!(
        log.contains("the limit of connections from one address"),
        "no refusal logged:\n{log}"
    );
    assert!(log.contains("sent no request within 2 s"), "{log}");
    // The agent's held polls (5 s) outlast the idle timeout (3 s) and are never cut (the
    // agent speaks HTTP/1.1; a request under way is exempt on HTTP/2 connections too).
    std::thread::sleep(Duration::from_secs(6));
    let third = server.enqueue("a", vec![noop()])[0];
    server.wait_task(third, 30, |t| t.state == TaskState::Succeeded);
    let agent_log = agent.log();
    assert!(
        !agent_log.contains("WARN") && !agent_log.contains("ERROR"),
        "the agent saw failures:\n{agent_log}"
    );
}
