//! `idgard-agent enrol`: trading a one-time token for the agent's credentials.

use crate::client::Credentials;
use crate::config::AgentConfig;
use anyhow::{Context, Result, bail};
use idgard_protocol::{EnrolAnswer, EnrolRequest};

/// Enrols: trades the one-time token for credentials and stores them with the pinned
/// certificate fingerprint.
pub async fn enrol(
    config: &AgentConfig,
    server: &str,
    token: &str,
    fingerprint: Option<&str>,
) -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // The key ring first: the token is spent by the call below, and the credentials it brings
    // are sealed with the ring.
    let ring = crate::sealed::keyring(config)?;
    let http = crate::client::http_client(server, fingerprint, config.tls_identity()?.as_ref())?;
    let url = format!("{}/api/v1/enrol", server.trim_end_matches('/'));
    let response = http
        .post(&url)
        .json(&EnrolRequest {
            token: token.to_owned(),
        })
        .send()
        .await
        .with_context(|| format!("cannot reach {server}"))?;
    if !response.status().is_success() {
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<idgard_protocol::ErrorBody>(&text)
            .map(|b| b.error.message)
            .unwrap_or(text);
        bail!("enrolment refused ({status}): {message}");
    }
    let answer: EnrolAnswer = response.json().await?;
    let creds = Credentials {
        server: server.trim_end_matches('/').to_owned(),
        fingerprint: fingerprint.map(|f| f.replace(':', "").to_ascii_lowercase()),
        agent_id: answer.agent_id,
        agent_name: answer.agent_name.clone(),
        client_secret: answer.client_secret,
        signing_key: answer.signing_key,
    };
    let path = config.credentials_path();
    creds.save(&ring, &path)?;
    println!(
        "enrolled as agent `{}`; credentials sealed in {} (readable by this user only)",
        answer.agent_name,
        path.display()
    );
    Ok(())
}
