//! A connector reaches nothing it was not granted: no path escape, no symlink escape, no write to
//! a read-only grant, no other connection's folder, no environment, no network unless granted.

use crate::support::*;
use idgard_host::Outcome;

fn guest(s: &Scratch, settings: &str, extra: &str) -> Captured {
    s.mkdir("data");
    s.mkdir("ro");
    let conn = s.connection(&format!(
        "name = \"guest\"\n[settings]\n{settings}\n{extra}\n\
         [grants.folders.data]\npath = \"data\"\naccess = \"read-write\"\n\
         [grants.folders.ro]\npath = \"ro\"\naccess = \"read-only\"\n"
    ));
    let (out, cap) = s.run(misbehave(), &conn, full());
    assert!(matches!(out, Ok(Outcome::Exported(_))), "{out:?}");
    cap
}

fn read(s: &Scratch, path: &str) -> Result<String, String> {
    guest(s, &format!("mode = \"read\"\npath = {path:?}"), "").result()
}

#[test]
fn granted_folders_are_readable() {
    let s = Scratch::new();
    s.write("data/in.txt", "hello");
    assert_eq!(read(&s, "/grants/data/in.txt"), Ok("hello".into()));
}

#[test]
fn dot_dot_and_absolute_paths_do_not_escape() {
    let s = Scratch::new();
    s.write("outside.txt", "SECRET");
    for path in [
        "/grants/data/../outside.txt",
        "/grants/data/../../outside.txt",
        "/etc/passwd",
        "../outside.txt",
        "/grants/../outside.txt",
    ] {
        let r = read(&s, path);
        assert!(r.is_err(), "{path} was readable: {r:?}");
    }
}

#[test]
fn symlinks_made_by_the_host_do_not_lead_out() {
    let s = Scratch::new();
    s.write("outside.txt", "SECRET");
    s.mkdir("data");
    std::os::unix::fs::symlink(s.path("outside.txt"), s.path("data/abs")).unwrap();
    std::os::unix::fs::symlink("../outside.txt", s.path("data/rel")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", s.path("data/passwd")).unwrap();
    for link in ["abs", "rel", "passwd"] {
        let r = read(&s, &format!("/grants/data/{link}"));
        assert!(r.is_err(), "followed {link}: {r:?}");
    }
}

#[test]
fn symlinks_made_by_the_guest_do_not_lead_out() {
    let s = Scratch::new();
    s.write("outside.txt", "SECRET");
    for target in [
        "../outside.txt",
        "/etc/passwd",
        "../../../../../../etc/passwd",
    ] {
        let r = guest(
            &s,
            &format!("mode = \"symlink\"\npath = \"evil\"\ntarget = {target:?}"),
            "",
        )
        .result();
        assert!(r.is_err(), "read through a guest link to {target}: {r:?}");
        let _ = std::fs::remove_file(s.path("data/evil"));
    }
}

#[test]
fn a_read_only_grant_cannot_be_written() {
    let s = Scratch::new();
    s.write("ro/file.txt", "original");
    let r = guest(
        &s,
        "mode = \"write\"\npath = \"/grants/ro/file.txt\"\ncontent = \"changed\"",
        "",
    )
    .result();
    assert!(r.is_err(), "{r:?}");
    assert_eq!(
        std::fs::read_to_string(s.path("ro/file.txt")).unwrap(),
        "original"
    );
    let r = guest(
        &s,
        "mode = \"write\"\npath = \"/grants/ro/new.txt\"\ncontent = \"x\"",
        "",
    )
    .result();
    assert!(r.is_err() && !s.path("ro/new.txt").exists(), "{r:?}");

    let r = guest(
        &s,
        "mode = \"write\"\npath = \"/grants/data/new.txt\"\ncontent = \"written\"",
        "",
    )
    .result();
    assert_eq!(r, Ok("written".into()));
    assert_eq!(
        std::fs::read_to_string(s.path("data/new.txt")).unwrap(),
        "written"
    );
}

#[test]
fn another_connections_folders_and_the_orders_folder_are_out_of_reach_of_an_export() {
    let s = Scratch::new();
    s.write("collect-other/secret.txt", "OTHER");
    s.write("orders/pending.json", "{}");
    for path in [
        "/collect/../collect-other/secret.txt",
        "/orders/pending.json",
    ] {
        let r = read(&s, path);
        assert!(r.is_err(), "{path}: {r:?}");
    }
}

#[test]
fn no_environment_no_arguments() {
    // SAFETY: set before the run reads it; tests in this binary do not read this variable.
    unsafe { std::env::set_var("IDGARD_TEST_LEAK", "leak") };
    let s = Scratch::new();
    let cap = guest(&s, "mode = \"env\"", "");
    let e = cap.entries().into_iter().find(|e| e.key == "env").unwrap();
    assert_eq!(e.get("vars"), Some("0"));
    assert_eq!(e.get("args"), Some("0"));
}

#[test]
fn the_network_is_closed_unless_an_endpoint_is_granted() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let other_addr = other.local_addr().unwrap().to_string();
    let s = Scratch::new();
    let r = guest(&s, &format!("mode = \"connect\"\ntarget = {addr:?}"), "").result();
    assert!(r.is_err(), "connected without a grant: {r:?}");

    let grant = format!("[grants.endpoints.target]\naddress = {addr:?}\ntls = \"none\"");
    let r = guest(
        &s,
        &format!("mode = \"connect\"\ntarget = {addr:?}"),
        &grant,
    )
    .result();
    assert_eq!(r, Ok("connected".into()));
    let r = guest(
        &s,
        &format!("mode = \"connect\"\ntarget = {other_addr:?}"),
        &grant,
    )
    .result();
    assert!(r.is_err(), "connected to an endpoint not granted: {r:?}");
    // A name is not looked up, even one that resolves to the granted address: a look-up of a
    // made-up name would carry data out through DNS.
    let port = addr.rsplit(':').next().unwrap();
    let r = guest(
        &s,
        &format!("mode = \"connect\"\ntarget = \"localhost:{port}\""),
        &grant,
    )
    .result();
    assert!(r.is_err(), "looked a name up: {r:?}");
    // The same port on another address of this machine is not the granted endpoint, even with
    // something listening there.
    let _v6 = std::net::TcpListener::bind(format!("[::1]:{port}"));
    let r = guest(
        &s,
        &format!("mode = \"connect\"\ntarget = \"[::1]:{port}\""),
        &grant,
    )
    .result();
    assert!(r.is_err(), "reached ::1: {r:?}");
}

#[test]
fn secrets_by_name_only_those_of_the_connection() {
    let s = Scratch::new();
    s.write("pw.txt", "from-a-file\n");
    let secrets = "[secrets]\npw = { value = \"hunter2\" }\nfiled = { file = \"pw.txt\" }";
    assert_eq!(
        guest(&s, "mode = \"secret\"\npath = \"pw\"", secrets).result(),
        Ok("hunter2".into())
    );
    assert_eq!(
        guest(&s, "mode = \"secret\"\npath = \"filed\"", secrets).result(),
        Ok("from-a-file".into())
    );
    assert!(
        guest(&s, "mode = \"secret\"\npath = \"root\"", secrets)
            .result()
            .is_err()
    );
}

#[test]
fn grants_not_asked_for_are_not_given_and_said_so() {
    let s = Scratch::new();
    s.write("extra/x.txt", "x");
    let cap = guest(
        &s,
        "mode = \"read\"\npath = \"/grants/extra/x.txt\"",
        "[grants.folders.extra]\npath = \"extra\"\naccess = \"read-only\"",
    );
    assert!(cap.result().is_err());
    assert!(
        cap.logged("grants folder `extra`, which the connector does not ask for"),
        "{:?}",
        cap.logs()
    );
}
