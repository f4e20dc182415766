//! Runs launched from the browser: the server hands the agent a signed launch token on its
//! poll; the agent checks it against the server key it pinned, against its own allow-list of
//! launchable jobs, and against the tokens it has answered already, logs who launched what, and
//! answers. The agent still opens no socket: the launch rides on the poll it holds.

use anyhow::{Context, Result};
use idgard_protocol::{LAUNCH_ISSUER, LaunchClaims, LaunchOffer, launch_audience};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rsa::pkcs8::DecodePublicKey;
use rsa::traits::PublicKeyParts;
use std::collections::HashMap;
use std::sync::Mutex;

/// Clock skew allowed between the server and the agent when checking expiry, in seconds.
const LEEWAY_S: u64 = 30;

/// Checks launch tokens for one agent.
pub struct Launches {
    key: DecodingKey,
    validation: Validation,
    allowed: Vec<String>,
    /// Launch ids answered already, with their expiry (s): a replayed token is refused.
    answered: Mutex<HashMap<String, u64>>,
}

impl Launches {
    /// A checker for agent `agent_id`, trusting the server's public key `pem` (pinned at
    /// enrolment) and launching only the jobs named in `allowed`.
    pub fn new(pem: &str, agent_id: i64, allowed: &[String]) -> Result<Self> {
        let key = rsa::RsaPublicKey::from_public_key_pem(pem)
            .context("the pinned server signing key is not an RSA public key in PEM")?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[launch_audience(agent_id)]);
        validation.set_issuer(&[LAUNCH_ISSUER]);
        validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        validation.leeway = LEEWAY_S;
        Ok(Self {
            key: DecodingKey::from_rsa_raw_components(
                &key.n().to_bytes_be(),
                &key.e().to_bytes_be(),
            ),
            validation,
            allowed: allowed.to_vec(),
            answered: Mutex::new(HashMap::new()),
        })
    }

    /// Decides on `offer` at `now_s`: the launch it carries when this agent may run it, or why
    /// not. Either way the launch counts as answered: the same token is refused from now on.
    pub fn check(&self, offer: &LaunchOffer, now_s: u64) -> Result<LaunchClaims, Refusal> {
        let claims =
            jsonwebtoken::decode::<LaunchClaims>(&offer.token, &self.key, &self.validation)
                .map_err(|e| Refusal::Token(e.to_string()))?
                .claims;
        if claims.jti != offer.id {
            return Err(Refusal::Token(format!(
                "the token is for launch {}, not {}",
                claims.jti, offer.id
            )));
        }
        {
            let mut answered = self.answered.lock().expect("answered");
            answered.retain(|_, exp| *exp + LEEWAY_S >= now_s);
            if answered.insert(claims.jti.clone(), claims.exp).is_some() {
                return Err(Refusal::Replay(claims.jti));
            }
        }
        if !self.allowed.contains(&claims.job) {
            return Err(Refusal::NotAllowed {
                job: claims.job,
                user: claims.sub,
            });
        }
        Ok(claims)
    }
}

/// Why the agent refuses a launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The token is not valid: signature, issuer, audience, expiry or form.
    Token(String),
    /// The token was answered already.
    Replay(String),
    /// The job is not on this agent's allow-list.
    NotAllowed {
        /// The job.
        job: String,
        /// Who launched it.
        user: String,
    },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Token(e) => write!(f, "the launch token is not valid ({e})"),
            Refusal::Replay(id) => write!(f, "launch {id} was answered already: a replay"),
            Refusal::NotAllowed { job, user } => write!(
                f,
                "job `{job}` (launched by {user}) is not in this agent's `launchable` list: it \
                 may not be launched from the web UI"
            ),
        }
    }
}

#[cfg(test)]
mod tests;

/// The server's signing key as this agent pinned it at enrolment. An agent enrolled before
/// agents pinned it asks for it once over its pinned connection and keeps it from then on.
pub(crate) async fn pinned_key(
    client: &crate::client::Client,
    creds: &mut crate::client::Credentials,
    ring: &idgard_vault::Keyring,
    path: &std::path::Path,
) -> Option<String> {
    if let Some(key) = &creds.signing_key {
        return Some(key.clone());
    }
    let answer = client
        .call::<(), idgard_protocol::SigningKeyAnswer>(
            reqwest::Method::GET,
            "/api/v1/agent/signing-key",
            None,
        )
        .await;
    match answer {
        Ok(a) => {
            creds.signing_key = Some(a.signing_key.clone());
            let saved = creds.save(ring, path);
            match saved {
                Ok(()) => tracing::info!("pinned the server's signing key in {}", path.display()),
                Err(e) => tracing::warn!("cannot save the server's signing key: {e:#}"),
            }
            Some(a.signing_key)
        }
        Err(e) => {
            tracing::warn!(
                "cannot read the server's signing key ({e}): launches from the web UI are refused until the agent restarts"
            );
            None
        }
    }
}

impl crate::daemon::Agent {
    /// Decides on a launch handed over on the poll, logs who launched what, and answers.
    pub(crate) async fn answer_launch(&self, offer: LaunchOffer) {
        let now_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let decision = match &self.launches {
            Some(launches) => launches.check(&offer, now_s),
            None => Err(Refusal::Token(
                "this agent has no pinned server signing key".into(),
            )),
        };
        let answer = match decision {
            Ok(c) => {
                tracing::info!(
                    launch = %offer.id, job = %c.job, user = %c.sub,
                    incremental = c.incremental, dry_run = c.dry_run,
                    "launch accepted: {} launched job `{}` from the web UI", c.sub, c.job
                );
                idgard_protocol::LaunchAnswer {
                    accept: true,
                    reason: None,
                }
            }
            Err(refusal) => {
                tracing::warn!(launch = %offer.id, "launch refused: {refusal}");
                idgard_protocol::LaunchAnswer {
                    accept: false,
                    reason: Some(refusal.to_string()),
                }
            }
        };
        let path = format!("/api/v1/agent/launches/{}", offer.id);
        let answered = self
            .client
            .call::<_, idgard_protocol::LaunchView>(reqwest::Method::POST, &path, Some(&answer))
            .await;
        match answered {
            Ok(view) if answer.accept => {
                tracing::info!(launch = %offer.id, run = view.job_id, "the server started the launched run")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(launch = %offer.id, "the server did not take the answer: {e}"),
        }
    }
}
