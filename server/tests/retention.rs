//! Uploads are not kept for ever: once their task has ended longer ago than the retention,
//! their content is removed (the row stays, marked), a download says so, and a synchronize of
//! such an upload is refused instead of reading it as empty.

mod support;

use idgard_protocol::{Completion, TaskOutcome};
use idgard_server::error::ErrorCode;
use idgard_server::page::Page;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

#[tokio::test]
async fn uploads_past_their_retention_are_removed_and_never_read_as_empty() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = idgard_server::config::Config {
        data_dir: dir.path().to_owned(),
        ..Default::default()
    };
    config.queue.upload_retention_h = 24;
    let mut e = idgard_server::open(&config).await.unwrap();
    let clock = Arc::new(AtomicI64::new(1_800_000_000_000));
    let c = clock.clone();
    e.queue.clock = Arc::new(move || c.load(Ordering::SeqCst));
    e.queue.add_agent("a").await.unwrap();
    let agent = e.queue.agent_id("a").await.unwrap();
    let (upload, task, fence) =
        support::upload(&e, "a", agent, "hr", &support::hr_export(100)).await;
    let done = Completion {
        fence,
        outcome: TaskOutcome::Succeeded {
            result: serde_json::json!({ "upload_id": upload }),
        },
    };
    e.queue.complete(agent, task, &done).await.unwrap();

    // Within the retention: kept.
    clock.fetch_add(23 * 3_600_000, Ordering::SeqCst);
    assert_eq!(e.queue.prune_uploads().await.unwrap(), 0);
    assert!(!e.queue.upload_pruned(upload).await.unwrap());
    // Past it: removed, once.
    clock.fetch_add(2 * 3_600_000, Ordering::SeqCst);
    assert_eq!(e.queue.prune_uploads().await.unwrap(), 1);
    assert_eq!(e.queue.prune_uploads().await.unwrap(), 0);
    assert!(e.queue.upload_pruned(upload).await.unwrap());
    let refused = e
        .synchronize("hr", upload, false, None, None)
        .await
        .err()
        .expect("a removed upload is not synchronized");
    assert_eq!(refused.code, ErrorCode::Conflict);
    assert!(refused.message.contains("retention"), "{}", refused.message);
    // Nothing was recorded: the connection holds no entry (it is even unknown).
    match e.entries("hr", None, &Page::first(10)).await {
        Ok(entries) => assert!(entries.is_empty(), "{entries:?}"),
        Err(e) => assert_eq!(e.code, ErrorCode::NotFound, "{e}"),
    }
}
