//! Runs launched from the browser, on both databases: recorded for the agent that owns the job,
//! delivered once with a token signed for that agent, answered once (a replay is refused),
//! started in the launcher's name when accepted, and "not picked up" once the token expired.

use idgard_protocol::{
    ErrorCode, LAUNCH_ISSUER, LaunchAnswer, LaunchClaims, LaunchState, RunJob, launch_audience,
};
use std::sync::atomic::Ordering;
mod support;
#[macro_use]
mod world;
use world::World;

const RULES: &str = r#"
version = 1
[identities]
connection = "hr"
[[targets]]
connection = "accounts"
key = 'identity.key.lowerAscii()'
correlation = { account = "account.employee_id" }
[targets.attributes]
employee_id = "identity.key"
[[jobs]]
name = "nightly"
agent = "a"
connections = ["hr", "accounts"]
[[jobs]]
name = "elsewhere"
agent = "b"
connections = ["hr"]
"#;

on_both!(a_launch_is_delivered_once_answered_once_and_runs_in_the_launchers_name);
on_both!(a_launch_nobody_answers_in_time_was_not_picked_up);

fn nightly() -> RunJob {
    RunJob {
        job: "nightly".into(),
        incremental: true,
        dry_run: false,
    }
}

fn accept() -> LaunchAnswer {
    LaunchAnswer {
        accept: true,
        reason: None,
    }
}

async fn enrol(w: &World, name: &str) -> i64 {
    let q = &w.q.queue;
    if q.agent_id(name).await.is_err() {
        q.add_agent(name).await.unwrap();
    }
    let token = q.reset_agent(name).await.unwrap().enrolment_token;
    q.enrol(&token).await.unwrap().agent_id
}

async fn a_launch_is_delivered_once_answered_once_and_runs_in_the_launchers_name(w: World) {
    // An agent that has not enrolled cannot pick anything up: said at once.
    w.q.queue.add_agent("b").await.unwrap();
    let refused =
        w.q.launch_declared(
            &RunJob {
                job: "elsewhere".into(),
                incremental: false,
                dry_run: false,
            },
            "ada",
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::Conflict, "{}", refused.message);
    let agent = enrol(&w, "a").await;
    let other = enrol(&w, "b").await;

    let launch = w.q.launch_declared(&nightly(), "ada").await.unwrap();
    assert_eq!(launch.agent_id, agent);
    assert_eq!(launch.view.state, LaunchState::Waiting);
    assert_eq!(launch.view.user, "ada");
    // Delivered to its agent only, and once.
    assert!(w.q.queue.deliver_launches(other).await.unwrap().is_empty());
    let delivered = w.q.queue.deliver_launches(agent).await.unwrap();
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].view.state, LaunchState::Delivered);
    assert!(w.q.queue.deliver_launches(agent).await.unwrap().is_empty());

    // The token says what, who and for whom, signed with the server's key.
    let dir = tempfile::tempdir().unwrap();
    let signer =
        idgard_server::keys::Signer::load(None, None, &dir.path().join("dev.pem"), 900).unwrap();
    let token = signer.launch_token(agent, &delivered[0].view).unwrap();
    let mut check = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    check.set_audience(&[launch_audience(agent)]);
    check.set_issuer(&[LAUNCH_ISSUER]);
    check.validate_exp = false; // the world's clock is not the wall clock
    let key = {
        use rsa::pkcs8::DecodePublicKey;
        use rsa::traits::PublicKeyParts;
        let k = rsa::RsaPublicKey::from_public_key_pem(&signer.public_pem).unwrap();
        jsonwebtoken::DecodingKey::from_rsa_raw_components(
            &k.n().to_bytes_be(),
            &k.e().to_bytes_be(),
        )
    };
    let claims = jsonwebtoken::decode::<LaunchClaims>(&token, &key, &check)
        .unwrap()
        .claims;
    assert_eq!(
        (
            claims.sub.as_str(),
            claims.job.as_str(),
            claims.jti.as_str()
        ),
        ("ada", "nightly", launch.view.id.as_str())
    );
    assert!(claims.incremental && !claims.dry_run);
    assert_eq!(
        claims.exp as i64 * 1000,
        launch.view.expires_ms / 1000 * 1000
    );
    // Another agent's audience does not take it.
    check.set_audience(&[launch_audience(other)]);
    assert!(jsonwebtoken::decode::<LaunchClaims>(&token, &key, &check).is_err());

    // Another agent cannot answer it.
    let e =
        w.q.answer_launch(other, &launch.view.id, &accept())
            .await
            .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound, "{}", e.message);
    // Its agent accepts: the run starts in Ada's name.
    let accepted =
        w.q.answer_launch(agent, &launch.view.id, &accept())
            .await
            .unwrap();
    assert_eq!(accepted.view.state, LaunchState::Accepted);
    let run = accepted.view.job_id.expect("the run it started");
    assert_eq!(w.q.started_by(run).await.unwrap().as_deref(), Some("ada"));
    let stored = w.q.queue.launch(&launch.view.id).await.unwrap();
    assert_eq!(stored.view.job_id, Some(run));
    // A replayed answer is refused and starts nothing.
    let pending = || {
        w.q.queue
            .jobs_in_state(idgard_protocol::JobState::Pending, 100)
    };
    let runs = pending().await.unwrap().len();
    for answer in [
        accept(),
        LaunchAnswer {
            accept: false,
            reason: None,
        },
    ] {
        let e =
            w.q.answer_launch(agent, &launch.view.id, &answer)
                .await
                .unwrap_err();
        assert_eq!(e.code, ErrorCode::Conflict, "{}", e.message);
        assert!(e.message.contains("answered already"), "{}", e.message);
    }
    assert_eq!(pending().await.unwrap().len(), runs);

    // A refusal keeps the agent's reason and starts nothing.
    let second = w.q.launch_declared(&nightly(), "bob").await.unwrap();
    w.q.queue.deliver_launches(agent).await.unwrap();
    let refused =
        w.q.answer_launch(
            agent,
            &second.view.id,
            &LaunchAnswer {
                accept: false,
                reason: Some("job `nightly` is not in this agent's `launchable` list".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(refused.view.state, LaunchState::Refused);
    assert_eq!(refused.view.job_id, None);
    assert!(refused.view.reason.unwrap().contains("launchable"));
    // Unknown launches are not found.
    let e = w.q.queue.launch("nope").await.unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
}

async fn a_launch_nobody_answers_in_time_was_not_picked_up(w: World) {
    let agent = enrol(&w, "a").await;
    let ttl = w.q.queue.cfg.launch_ttl_ms as i64;
    // Never delivered: the agent did not poll in time.
    let idle = w.q.launch_declared(&nightly(), "ada").await.unwrap();
    // Delivered, never answered.
    w.clock.fetch_add(1_000, Ordering::SeqCst);
    let silent = w.q.launch_declared(&nightly(), "ada").await.unwrap();
    w.q.queue.deliver_launches(agent).await.unwrap();
    w.clock.fetch_add(ttl, Ordering::SeqCst);
    for l in [&idle, &silent] {
        let now = w.q.queue.launch(&l.view.id).await.unwrap();
        assert_eq!(now.view.state, LaunchState::NotPickedUp, "{}", l.view.id);
    }
    // Too late to deliver or to answer.
    assert!(w.q.queue.deliver_launches(agent).await.unwrap().is_empty());
    let e =
        w.q.answer_launch(agent, &silent.view.id, &accept())
            .await
            .unwrap_err();
    assert_eq!(e.code, ErrorCode::Conflict);
    assert!(e.message.contains("expired"), "{}", e.message);
}
