//! Tasks' logs: capped per attempt (the log says so), closed once the task ended, numbered
//! within a range, and read page by page.

mod support;

use idgard_protocol::{Completion, LogLine, Operation, TaskOutcome, TaskSpec};
use idgard_server::error::ErrorCode;

fn lines(n: usize, from: usize) -> Vec<LogLine> {
    (from..from + n)
        .map(|i| LogLine {
            at_ms: i as i64,
            level: "info".into(),
            message: format!("line {i}"),
        })
        .collect()
}

#[tokio::test]
async fn a_log_is_capped_closed_when_the_task_ends_and_read_page_by_page_sqlite() {
    a_log_is_capped_closed_when_the_task_ends_and_read_page_by_page(None).await;
}

#[tokio::test]
async fn a_log_is_capped_closed_when_the_task_ends_and_read_page_by_page_postgres() {
    let scratch = support::Scratch::new("logs").await;
    a_log_is_capped_closed_when_the_task_ends_and_read_page_by_page(Some(scratch.url())).await;
    scratch.drop().await;
}

async fn a_log_is_capped_closed_when_the_task_ends_and_read_page_by_page(database: Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = idgard_server::config::Config {
        data_dir: dir.path().to_owned(),
        database_url: database,
        ..Default::default()
    };
    config.queue.log_lines_per_task = 25;
    let e = idgard_server::open(&config).await.unwrap();
    let q = &e.queue;
    q.add_agent("a").await.unwrap();
    let agent = q.agent_id("a").await.unwrap();
    let spec = TaskSpec {
        connection: "hr".into(),
        operation: Operation::Noop,
        args: serde_json::Value::Null,
        max_attempts: None,
        timeout_s: None,
        agent: None,
    };
    let task = q.enqueue("a", &[spec]).await.unwrap()[0];
    let fence = q.claim(agent, 1).await.unwrap()[0].fence;

    // 10 + 10 lines are kept; the third chunk would pass the cap: a note takes its place.
    for seq in 0..4 {
        q.append_log(agent, task, fence, seq, &lines(10, seq as usize * 10))
            .await
            .unwrap();
    }
    // A chunk sent again is stored once.
    q.append_log(agent, task, fence, 0, &lines(10, 0))
        .await
        .unwrap();
    let too_far = q
        .append_log(agent, task, fence, 4_000_000_000, &lines(1, 0))
        .await
        .unwrap_err();
    assert_eq!(too_far.code, ErrorCode::Invalid);

    // Pages of whole chunks, about `limit` lines each.
    let first = q.task_log(task, None, 5).await.unwrap();
    assert_eq!((first.lines.len(), first.more), (10, true));
    assert_eq!(first.lines[0].message, "line 0");
    let second = q.task_log(task, Some(&first.next), 5).await.unwrap();
    assert_eq!((second.lines.len(), second.more), (10, true));
    assert_eq!(second.lines[0].message, "line 10");
    let last = q.task_log(task, Some(&second.next), 5).await.unwrap();
    assert_eq!((last.lines.len(), last.more), (1, false));
    assert!(
        last.lines[0].message.contains("reached the server's cap"),
        "{:?}",
        last.lines
    );
    let nothing = q.task_log(task, Some(&last.next), 5).await.unwrap();
    assert!(nothing.lines.is_empty() && !nothing.more);
    assert_eq!(nothing.next, last.next);
    let all = q.task_log(task, None, 10_000).await.unwrap();
    assert_eq!(all.lines.len(), 21);
    let bad = q.task_log(task, Some("x"), 5).await.unwrap_err();
    assert_eq!(bad.code, ErrorCode::Invalid);

    // The task ends: its log is closed.
    let done = Completion {
        fence,
        outcome: TaskOutcome::Succeeded {
            result: serde_json::json!({}),
        },
    };
    q.complete(agent, task, &done).await.unwrap();
    let late = q
        .append_log(agent, task, fence, 9, &lines(1, 0))
        .await
        .unwrap_err();
    assert_eq!(late.code, ErrorCode::Conflict, "{}", late.message);
}
