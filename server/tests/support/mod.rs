//! What the server's tests and benchmarks share: a generated HR export and a way to store it
//! as a finished upload, through the queue as an agent would.
#![allow(dead_code)]

use idgard_model::wire::{BatchBuffer, EntryOp};
use idgard_protocol::{NewUpload, Operation, TaskSpec, frames};
use idgard_server::identity::Engine;
use sha2::Digest as _;

const DEPARTMENTS: &[&str] = &["Sales", "IT", "Finance", "Legal", "HR", "Support", "R&D"];

/// One person of the generated HR export (8 attributes); `generation` moves departments.
pub fn person(b: &mut BatchBuffer, i: u64, generation: u64) {
    let key = format!("E{i:07}");
    let at = b.begin_entry(EntryOp::Upsert, "person", &key);
    b.attribute1("employee_id", &key);
    b.attribute1("first_name", &format!("First{}", i % 5000));
    b.attribute1("last_name", &format!("Last{}", i / 5000));
    b.attribute1("department", DEPARTMENTS[((i + generation) % 7) as usize]);
    b.attribute1("site", ["Paris", "Lyon", "Nice"][(i % 3) as usize]);
    b.attribute1("title", "Analyst, level 2");
    b.attribute1("status", "active");
    b.attribute1("manager", &format!("E{:07}", i / 10));
    b.end_entry(at, 8);
}

/// Appends the batch as one frame of an upload, and empties it.
pub fn frame(out: &mut Vec<u8>, b: &mut BatchBuffer) {
    if b.entries() == 0 {
        return;
    }
    out.extend_from_slice(&frames::header(b.entries(), b.len() as u32));
    out.extend_from_slice(b.as_bytes());
    b.clear();
}

/// An export of `rows` generated people, in batches of 1,000.
pub fn hr_export(rows: u64) -> Vec<u8> {
    let mut content = Vec::new();
    let mut b = BatchBuffer::with_capacity(1 << 20);
    for i in 0..rows {
        person(&mut b, i, 0);
        if b.entries() == 1000 {
            frame(&mut content, &mut b);
        }
    }
    frame(&mut content, &mut b);
    content
}

/// Stores `content` as the finished `entries` upload of a new export task of `connection`
/// (claimed and acknowledged by `agent`, which is named `agent_name`). Returns the upload's
/// id and the task's id and fence.
pub async fn upload(
    e: &Engine,
    agent_name: &str,
    agent: i64,
    connection: &str,
    content: &[u8],
) -> (i64, i64, i64) {
    let ids = e
        .queue
        .enqueue(
            agent_name,
            &[TaskSpec {
                connection: connection.into(),
                operation: Operation::Export,
                args: serde_json::Value::Null,
                max_attempts: None,
                timeout_s: None,
                agent: None,
            }],
        )
        .await
        .unwrap();
    let claimed = e.queue.claim(agent, 1).await.unwrap();
    assert_eq!(claimed[0].id, ids[0]);
    let fence = claimed[0].fence;
    e.queue.heartbeat(agent, ids[0], fence, None).await.unwrap();
    let view = e
        .queue
        .open_upload(
            agent,
            ids[0],
            &NewUpload {
                fence,
                name: "entries".into(),
                size: content.len() as u64,
                sha256: hex::encode(sha2::Sha256::digest(content)),
            },
            u64::MAX,
        )
        .await
        .unwrap();
    for (i, chunk) in content.chunks(8 << 20).enumerate() {
        e.queue
            .put_chunk(agent, view.id, (i * (8 << 20)) as u64, chunk)
            .await
            .unwrap();
    }
    (view.id, ids[0], fence)
}

/// A fresh PostgreSQL database, dropped at the end.
pub struct Scratch {
    name: String,
}

const ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Runs one statement on the `postgres` database (not through `Db`, which would migrate it).
async fn admin(sql: &str) {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(ADMIN)
        .await
        .expect("PostgreSQL on 127.0.0.1:5432 (user postgres, trust) is needed by this test");
    sqlx::query(sql)
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

impl Scratch {
    /// A database named after the test (`what`) and the process.
    pub async fn new(what: &str) -> Self {
        let name = format!("idgard_{what}_{}", std::process::id());
        admin(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
        admin(&format!("CREATE DATABASE {name}")).await;
        Self { name }
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{}", self.name)
    }

    pub async fn drop(self) {
        admin(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .await;
    }
}

/// The HTTP layer's shared state over `engine`, with small limits, for `oneshot` tests.
pub fn app_state(
    engine: &Engine,
    signer: idgard_server::keys::Signer,
    web: idgard_server::web::Web,
) -> std::sync::Arc<idgard_server::http::AppState> {
    use std::time::Duration;
    let (_tx, stopping) = tokio::sync::watch::channel(false);
    std::sync::Arc::new(idgard_server::http::AppState {
        queue: engine.queue.clone(),
        engine: engine.clone(),
        signer,
        max_upload: 1 << 20,
        max_chunk: 1 << 16,
        stopping,
        verified: Default::default(),
        connections: idgard_server::http::conn::Connections::new(
            idgard_server::http::conn::Limits {
                max: 64,
                per_peer: 8,
                first_request: Duration::from_secs(10),
                idle: Duration::from_secs(10),
            },
        ),
        throttle: Default::default(),
        generations: Default::default(),
        // Every call reads the generation: a reset is seen by the next call.
        token_recheck: Duration::ZERO,
        web,
        metrics_token: None,
        agent_certificates: false,
    })
}
