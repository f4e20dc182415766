//! The server's memory does not grow with an upload's size: a large export upload is checked
//! (checksum, frames, entries) and downloaded chunk by chunk. The peak resident set of the
//! server process is printed beside the upload's size (2026-11-27: 21 MiB at start, 103 MiB
//! after 128 MiB, 107 MiB after 384 MiB: the page cache, then flat).

use super::system::{Backend, Hand, Server, on};
use idgard_protocol::{Operation, frames};
use reqwest::{Method, StatusCode};
use serde_json::json;

/// Upload size, MiB (`IDGARD_TEST_UPLOAD_MIB` for more, e.g. 1024).
fn upload_mib() -> usize {
    std::env::var("IDGARD_TEST_UPLOAD_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(192)
}

/// The process's peak resident set, KiB.
fn peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// About `mib` MiB of framed entries, 1 MiB per batch.
fn export(mib: usize) -> Vec<u8> {
    let mut content = Vec::with_capacity((mib + 1) << 20);
    let mut n = 0u64;
    while content.len() < mib << 20 {
        let mut batch = idgard_sdk::wire::BatchBuffer::with_capacity(1 << 20);
        while batch.len() < (1 << 20) - 200 {
            let at = batch.begin_entry(
                idgard_sdk::wire::EntryOp::Upsert,
                "person",
                &format!("E{n:09}"),
            );
            batch.attribute1("name", "Someone with a long enough name, for the size");
            batch.attribute1("department", "Department of Large Uploads");
            batch.end_entry(at, 2);
            n += 1;
        }
        content.extend_from_slice(&frames::header(batch.entries(), batch.len() as u32));
        content.extend_from_slice(batch.as_bytes());
    }
    content
}

#[test]
fn an_upload_is_checked_and_downloaded_without_holding_it_in_memory() {
    use sha2::Digest;
    let mib = upload_mib();
    let server = Server::start(Backend::Sqlite);
    let hand = Hand::enrol(&server, "big");
    let content = export(mib);
    let id = server.enqueue("big", vec![on("hr", Operation::Export)])[0];
    let fence = hand.poll(&server, 0).tasks[0].fence;
    let beat = || {
        let (s, v) = hand.call(
            &server,
            Method::POST,
            &format!("/api/v1/agent/tasks/{id}/heartbeat"),
            json!({ "fence": fence }),
        );
        assert_eq!(s, StatusCode::OK, "{v}");
    };
    beat();
    let sha = hex::encode(sha2::Sha256::digest(&content));
    let (s, v) = hand.call(
        &server,
        Method::POST,
        &format!("/api/v1/agent/tasks/{id}/uploads"),
        json!({ "fence": fence, "name": "entries", "size": content.len(), "sha256": sha }),
    );
    assert_eq!(s, StatusCode::OK, "{v}");
    let slot = v["id"].as_i64().unwrap();
    let before = peak_kib(server.pid());
    // Chunks of 1 MiB, the test server's limit.
    let mut last = serde_json::Value::Null;
    for (i, piece) in content.chunks(1 << 20).enumerate() {
        if i % 8 == 0 {
            beat();
        }
        let (s, v) = server.raw_bytes(
            Method::PUT,
            &format!("/api/v1/agent/uploads/{slot}?offset={}", i << 20),
            Some(&hand.token),
            Some(piece.to_vec()),
            "application/octet-stream",
        );
        assert_eq!(s, StatusCode::OK, "{v}");
        last = v;
    }
    assert_eq!(last["complete"], true, "{last}");
    assert!(last["entries"].as_u64().unwrap() > 0);
    let (s, len, downloaded) = server.download(&format!("/api/v1/uploads/{slot}/content"));
    assert_eq!(
        (s, len, downloaded),
        (StatusCode::OK, content.len() as u64, sha)
    );
    let after = peak_kib(server.pid());
    eprintln!(
        "server peak resident set: {} MiB before, {} MiB after a {mib} MiB upload and its download",
        before >> 10,
        after >> 10
    );
    // The writer's page cache (64 MiB while it writes an upload, whatever `database.cache_mib`
    // gives large work) fills once; beyond it, nothing may grow with the upload.
    assert!(
        after - before < (u64::from(idgard_server::db::CACHE_MIB) + 48) << 10,
        "the server's peak grew by {} MiB for a {mib} MiB upload",
        (after - before) >> 10
    );
}
