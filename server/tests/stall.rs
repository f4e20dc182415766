//! SQLite has one writer. While a large synchronize holds it, an agent's heartbeat, a poll
//! that finds nothing and an API read must still be answered (from a read connection and the
//! kept renewals), and the renewal must reach the database once the writer is free.

mod support;

use idgard_server::identity::repo::Checked;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_polls_and_reads_are_answered_during_a_long_synchronize() {
    let dir = tempfile::tempdir().unwrap();
    let config = idgard_server::config::Config {
        data_dir: dir.path().to_owned(),
        ..Default::default()
    };
    let e = idgard_server::open(&config).await.unwrap();
    e.queue.add_agent("a").await.unwrap();
    let agent = e.queue.agent_id("a").await.unwrap();
    let content = support::hr_export(60_000);
    let (upload, task, fence) = support::upload(&e, "a", agent, "hr", &content).await;

    let sync = {
        let e = e.clone();
        tokio::spawn(async move { e.synchronize("hr", upload, false, None, None).await })
    };
    // Wait until the synchronize holds the writer: busy for 50 ms in a row, since the writer
    // also looks busy for an instant while the upload's connection goes back to the pool.
    let mut busy_since: Option<std::time::Instant> = None;
    loop {
        assert!(
            !sync.is_finished(),
            "the synchronize ended before it was seen running"
        );
        match e.queue.db.pool.try_acquire() {
            Some(_) => busy_since = None,
            None => {
                let since = *busy_since.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() >= std::time::Duration::from_millis(50) {
                    break;
                }
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let answer = e
        .queue
        .heartbeat(agent, task, fence, Some((7, Some(9))))
        .await;
    assert!(answer.is_ok(), "heartbeat refused: {answer:?}");
    assert!(e.queue.claim(agent, 4).await.unwrap().is_empty());
    assert!(e.queue.cancelled_for(agent).await.unwrap().is_empty());
    let view = e.queue.task(task).await.unwrap();
    assert!(
        !sync.is_finished(),
        "the synchronize ended before the calls were answered: make the export larger"
    );
    // A stale lease is refused even while the writer is busy.
    let stale = e
        .queue
        .heartbeat(agent, task, fence + 1, None)
        .await
        .unwrap_err();
    assert_eq!(stale.code, idgard_server::error::ErrorCode::StaleLease);
    assert_eq!(
        view.progress, None,
        "progress is kept until the writer is free"
    );

    let Checked::Done(report) = sync.await.unwrap().unwrap() else {
        panic!("no threshold was set")
    };
    assert_eq!(report.inserted, 60_000);
    assert_eq!(e.queue.flush_beats().await.unwrap(), 1);
    assert_eq!(
        e.queue.task(task).await.unwrap().progress,
        Some((7, Some(9)))
    );
}
