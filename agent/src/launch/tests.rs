use super::*;
use jsonwebtoken::{EncodingKey, Header};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{EncodePublicKey, LineEnding};
use std::sync::OnceLock;

/// Now, seconds: the library checks expiry against the real clock.
fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

struct Keys {
    encoding: EncodingKey,
    public_pem: String,
    other: EncodingKey,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let make = || rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).unwrap();
        let (key, other) = (make(), make());
        let der = |k: &rsa::RsaPrivateKey| {
            EncodingKey::from_rsa_der(k.to_pkcs1_der().unwrap().as_bytes())
        };
        Keys {
            encoding: der(&key),
            public_pem: key
                .to_public_key()
                .to_public_key_pem(LineEnding::LF)
                .unwrap(),
            other: der(&other),
        }
    })
}

fn claims(id: &str) -> LaunchClaims {
    LaunchClaims {
        iss: LAUNCH_ISSUER.into(),
        aud: launch_audience(7),
        sub: "ada".into(),
        jti: id.into(),
        iat: now(),
        exp: now() + 60,
        job: "nightly".into(),
        incremental: false,
        dry_run: false,
    }
}

fn signed(c: &LaunchClaims, key: &EncodingKey) -> LaunchOffer {
    LaunchOffer {
        id: c.jti.clone(),
        token: jsonwebtoken::encode(&Header::new(Algorithm::RS256), c, key).unwrap(),
    }
}

fn checker() -> Launches {
    Launches::new(&keys().public_pem, 7, &["nightly".to_owned()]).unwrap()
}

fn refused_token(offer: &LaunchOffer) -> String {
    match checker().check(offer, now()) {
        Err(Refusal::Token(why)) => why,
        other => panic!("expected a token refusal, got {other:?}"),
    }
}

#[test]
fn a_good_launch_is_accepted_once_and_its_replay_refused() {
    let launches = checker();
    let offer = signed(&claims("l1"), &keys().encoding);
    let got = launches.check(&offer, now()).unwrap();
    assert_eq!((got.sub.as_str(), got.job.as_str()), ("ada", "nightly"));
    assert_eq!(
        launches.check(&offer, now() + 1),
        Err(Refusal::Replay("l1".into()))
    );
}

#[test]
fn a_job_off_the_allow_list_is_refused() {
    let mut c = claims("l2");
    c.job = "everything".into();
    let refused = checker().check(&signed(&c, &keys().encoding), now());
    assert_eq!(
        refused,
        Err(Refusal::NotAllowed {
            job: "everything".into(),
            user: "ada".into()
        })
    );
    assert!(refused.unwrap_err().to_string().contains("launchable"));
}

#[test]
fn tokens_for_another_agent_issuer_or_time_are_refused() {
    let mut other_agent = claims("l3");
    other_agent.aud = launch_audience(8);
    assert!(refused_token(&signed(&other_agent, &keys().encoding)).contains("Audience"));
    let mut other_issuer = claims("l4");
    other_issuer.iss = "someone-else".into();
    assert!(refused_token(&signed(&other_issuer, &keys().encoding)).contains("Issuer"));
    let mut expired = claims("l5");
    expired.iat = now() - 600;
    expired.exp = now() - LEEWAY_S - 1;
    assert!(refused_token(&signed(&expired, &keys().encoding)).contains("Expired"));
}

#[test]
fn forged_tokens_are_refused() {
    // Signed by another key.
    refused_token(&signed(&claims("l6"), &keys().other));
    // No signature at all (`alg: none`).
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let body = serde_json::to_string(&claims("l7")).unwrap();
    let none = LaunchOffer {
        id: "l7".into(),
        token: format!("{}.{}.", b64(r#"{"alg":"none","typ":"JWT"}"#), b64(&body)),
    };
    refused_token(&none);
    // HS256 keyed with the public key (the algorithm-confusion forgery).
    let hs = LaunchOffer {
        id: "l8".into(),
        token: jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims("l8"),
            &EncodingKey::from_secret(keys().public_pem.as_bytes()),
        )
        .unwrap(),
    };
    assert!(refused_token(&hs).contains("InvalidAlgorithm"));
    // A token whose id is not the offer's.
    let mut swapped = signed(&claims("l9"), &keys().encoding);
    swapped.id = "l10".into();
    assert!(refused_token(&swapped).contains("not l10"));
}

#[test]
fn an_agent_access_token_is_not_a_launch() {
    #[derive(serde::Serialize)]
    struct Access {
        sub: String,
        aud: String,
        iss: String,
        iat: u64,
        exp: u64,
    }
    let now = now();
    let access = Access {
        sub: "agent:7".into(),
        aud: "idgard-agent".into(),
        iss: LAUNCH_ISSUER.into(),
        iat: now,
        exp: now + 600,
    };
    let offer = LaunchOffer {
        id: "x".into(),
        token: jsonwebtoken::encode(&Header::new(Algorithm::RS256), &access, &keys().encoding)
            .unwrap(),
    };
    refused_token(&offer);
}
