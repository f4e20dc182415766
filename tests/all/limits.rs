//! Every limit stops a misbehaving connector with an error naming the limit; the host then runs
//! the next connector normally.

use crate::support::*;
use idgard_host::model::{ErrorKind, Order, OrderKind, OrderOutcome};
use idgard_host::{Error, LimitHit, Outcome, Request};
use std::time::{Duration, Instant};

fn mode(s: &Scratch, mode: &str, limits: &str) -> idgard_host::Connection {
    s.connection(&format!(
        "name = \"bad\"\n[settings]\nmode = \"{mode}\"\ncount = 30000\n[limits]\n{limits}\n"
    ))
}

fn limit_of(out: Result<Outcome, Error>) -> (LimitHit, String) {
    match out {
        Err(e @ Error::Limit { limit, .. }) => (limit, e.to_string()),
        other => panic!("expected a limit, got {other:?}"),
    }
}

fn still_works(s: &Scratch) {
    let (out, cap) = s.run(misbehave(), &mode(s, "ok", ""), full());
    assert!(matches!(out.unwrap(), Outcome::Exported(x) if x.entries == 30000));
    assert_eq!(cap.entries().len(), 30000);
}

#[test]
fn an_infinite_loop_is_stopped_by_the_deadline() {
    let s = Scratch::new();
    let started = Instant::now();
    let (limit, msg) = limit_of(
        s.run(misbehave(), &mode(&s, "loop", "deadline_secs = 1"), full())
            .0,
    );
    assert_eq!(limit, LimitHit::Deadline);
    assert!(
        msg.contains("connector `misbehave` stopped: deadline exceeded"),
        "{msg}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    still_works(&s);
}

#[test]
fn a_memory_bomb_is_stopped_by_the_memory_limit() {
    let s = Scratch::new();
    let (limit, msg) = limit_of(
        s.run(
            misbehave(),
            &mode(&s, "memory-bomb", "memory_mib = 32"),
            full(),
        )
        .0,
    );
    assert_eq!(limit, LimitHit::Memory);
    assert!(msg.contains("32 MiB"), "{msg}");
    still_works(&s);
}

#[test]
fn endless_output_is_capped() {
    let s = Scratch::new();
    let (limit, msg) = limit_of(
        s.run(
            misbehave(),
            &mode(&s, "huge-output", "max_output_mib = 4"),
            full(),
        )
        .0,
    );
    assert_eq!(limit, LimitHit::Output);
    assert!(msg.contains("4 MiB"), "{msg}");
    still_works(&s);
}

#[test]
fn an_oversized_batch_is_refused() {
    let s = Scratch::new();
    let (limit, _) = limit_of(
        s.run(
            misbehave(),
            &mode(
                &s,
                "huge-batch",
                "max_batch_mib = 8\nmax_call_mib = 128\nmemory_mib = 256",
            ),
            full(),
        )
        .0,
    );
    assert_eq!(limit, LimitHit::Batch);
}

#[test]
fn a_malformed_batch_is_a_clear_failure() {
    let s = Scratch::new();
    match s.run(misbehave(), &mode(&s, "garbage", ""), full()).0 {
        Err(Error::Trap { message, .. }) => assert!(
            message.contains("malformed entry batch at byte"),
            "{message}"
        ),
        other => panic!("{other:?}"),
    }
    still_works(&s);
}

#[test]
fn a_log_flood_is_capped_and_the_run_goes_on() {
    let s = Scratch::new();
    let (out, cap) = s.run(
        misbehave(),
        &mode(&s, "log-flood", "max_log_kib = 64"),
        full(),
    );
    assert!(matches!(out.unwrap(), Outcome::Exported(x) if x.entries == 1));
    let logs = cap.logs();
    let kept: usize = logs.iter().map(|(_, m)| m.len()).sum();
    assert!(kept < 70 * 1024, "{kept} bytes of logs kept");
    assert!(
        cap.logged("log messages dropped"),
        "no notice of the dropped lines"
    );
}

#[test]
fn a_panic_is_reported_with_its_message() {
    let s = Scratch::new();
    let (out, cap) = s.run(misbehave(), &mode(&s, "panic", ""), full());
    match out {
        Err(Error::Trap { message, .. }) => {
            assert!(
                message.contains("gave up on purpose") || cap.logged("gave up on purpose"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    still_works(&s);
}

#[test]
fn a_connector_error_is_typed_not_a_trap() {
    let s = Scratch::new();
    match s
        .run(misbehave(), &mode(&s, "error", ""), full())
        .0
        .unwrap()
    {
        Outcome::Failed { kind, message } => {
            assert_eq!(kind, ErrorKind::Unavailable);
            assert!(message.contains("down (on purpose)"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn order_results_are_matched_to_orders() {
    let s = Scratch::new();
    let orders: Vec<Order> = (1..=3)
        .map(|i| Order {
            id: format!("o{i}"),
            entity_type: "account".into(),
            key: format!("k{i}"),
            kind: OrderKind::Delete,
        })
        .collect();
    let (out, _) = s.run(
        misbehave(),
        &mode(&s, "partial", ""),
        Request::Fulfill(orders.clone()),
    );
    let Outcome::Fulfilled(results) = out.unwrap() else {
        panic!()
    };
    assert_eq!(results.len(), 3);
    assert_eq!(
        results[0].outcome,
        OrderOutcome::Done,
        "the first result for an order is kept"
    );
    assert!(matches!(&results[1].outcome, OrderOutcome::Failed(m) if m.contains("no result")));
    assert!(matches!(&results[2].outcome, OrderOutcome::Failed(_)));

    let mut twice = orders.clone();
    twice.push(orders[0].clone());
    let msg = s
        .run(
            misbehave(),
            &mode(&s, "partial", ""),
            Request::Fulfill(twice),
        )
        .0
        .unwrap_err()
        .to_string();
    assert!(msg.contains("appears twice"), "{msg}");
}
