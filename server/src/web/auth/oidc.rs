//! Sign-in through an OpenID Connect provider: authorization code with PKCE. The state, nonce
//! and PKCE verifier stay on the server (table `web_flows`, keyed by the state's hash, used
//! once); the browser carries only the state, in the redirect and in a cookie that binds the
//! flow to it. The ID token's signature, issuer, audience, expiry and nonce are checked; keys
//! are read again once when a token names an unknown one. The HTTP client follows no redirect.

use super::{Refusal, Verified};
use crate::db::Db;
use crate::error::Result as DomainResult;
use crate::keys::hash_secret;
use crate::queue::Clock;
use crate::web::settings::OidcConfig;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreGenderClaim, CoreProviderMetadata,
};
use openidconnect::{
    AdditionalClaims, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
    UserInfoClaims,
};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::RwLock;

/// A flow not finished within this time is refused.
const FLOW_MS: i64 = 10 * 60 * 1000;

/// Claims this server reads besides the standard ones (the configured user and groups claims).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Extra(serde_json::Map<String, serde_json::Value>);
impl AdditionalClaims for Extra {}

/// The provider, its metadata (keys included) read once and again on an unknown key.
#[derive(Clone)]
pub struct Provider {
    cfg: OidcConfig,
    secret: Option<String>,
    http: reqwest::Client,
    metadata: Arc<RwLock<Option<CoreProviderMetadata>>>,
    db: Db,
    clock: Clock,
}

/// Where to send the browser, and the state to bind to it (in a cookie).
#[derive(Debug)]
pub struct Start {
    /// The provider's authorization address.
    pub url: String,
    /// The state.
    pub state: String,
}

impl Provider {
    /// The provider of `cfg`; nothing is fetched until the first sign-in.
    pub fn new(cfg: OidcConfig, db: Db, clock: Clock) -> anyhow::Result<Self> {
        use anyhow::Context;
        let secret = match &cfg.client_secret_file {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read {}", p.display()))?
                    .trim_end_matches(['\r', '\n'])
                    .to_owned(),
            ),
            None => None,
        };
        let mut http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .use_rustls_tls();
        if let Some(ca) = &cfg.ca {
            let pem = std::fs::read(ca).with_context(|| format!("cannot read {}", ca.display()))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)? {
                http = http.add_root_certificate(cert);
            }
        }
        Ok(Self {
            cfg,
            secret,
            http: http.build()?,
            metadata: Default::default(),
            db,
            clock,
        })
    }

    /// The label of its button.
    pub fn label(&self) -> &str {
        &self.cfg.label
    }

    async fn metadata(&self, again: bool) -> Result<CoreProviderMetadata, Refusal> {
        if !again && let Some(m) = self.metadata.read().await.as_ref() {
            return Ok(m.clone());
        }
        let issuer = IssuerUrl::new(self.cfg.issuer.clone())
            .map_err(|e| Refusal::Unavailable(format!("issuer: {e}")))?;
        let m = CoreProviderMetadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| Refusal::Unavailable(format!("discovery at {}: {e}", self.cfg.issuer)))?;
        *self.metadata.write().await = Some(m.clone());
        Ok(m)
    }

    fn client(
        &self,
        m: CoreProviderMetadata,
    ) -> Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        Refusal,
    > {
        let redirect = RedirectUrl::new(self.cfg.redirect_url.clone())
            .map_err(|e| Refusal::Unavailable(format!("redirect_url: {e}")))?;
        Ok(CoreClient::from_provider_metadata(
            m,
            ClientId::new(self.cfg.client_id.clone()),
            self.secret.clone().map(ClientSecret::new),
        )
        .set_redirect_uri(redirect))
    }

    /// Starts a sign-in: records the flow and says where to send the browser.
    pub async fn start(&self) -> Result<Start, Refusal> {
        let client = self.client(self.metadata(false).await?)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for s in &self.cfg.scopes {
            request = request.add_scope(Scope::new(s.clone()));
        }
        let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
        self.remember(state.secret(), nonce.secret(), verifier.secret())
            .await
            .map_err(|e| Refusal::Unavailable(e.message))?;
        Ok(Start {
            url: url.to_string(),
            state: state.secret().clone(),
        })
    }

    async fn remember(&self, state: &str, nonce: &str, verifier: &str) -> DomainResult<()> {
        let now = (self.clock)();
        sqlx::query("DELETE FROM web_flows WHERE created_ms < $1")
            .bind(now - FLOW_MS)
            .execute(&self.db.pool)
            .await?;
        sqlx::query(
            "INSERT INTO web_flows (state_hash, nonce, verifier, created_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(hash_secret(state))
        .bind(nonce)
        .bind(verifier)
        .bind(now)
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }

    /// Takes the flow named by `state` (once: a second answer for it finds nothing).
    async fn take(&self, state: &str) -> DomainResult<Option<(String, String)>> {
        let hash = hash_secret(state);
        let row =
            sqlx::query("SELECT nonce, verifier, created_ms FROM web_flows WHERE state_hash = $1")
                .bind(&hash)
                .fetch_optional(&self.db.pool)
                .await?;
        let done = sqlx::query("DELETE FROM web_flows WHERE state_hash = $1")
            .bind(&hash)
            .execute(&self.db.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        if done.rows_affected() == 0 || row.try_get::<i64, _>(2)? < (self.clock)() - FLOW_MS {
            return Ok(None);
        }
        Ok(Some((row.try_get(0)?, row.try_get(1)?)))
    }

    /// Finishes a sign-in from the provider's answer. `bound` is the state the browser's
    /// cookie holds: it must be the one in the answer.
    pub async fn finish(
        &self,
        code: &str,
        state: &str,
        bound: Option<&str>,
    ) -> Result<Verified, Refusal> {
        if bound != Some(state) {
            return Err(Refusal::Invalid(
                "the state does not match this browser's".into(),
            ));
        }
        let (nonce, verifier) = self
            .take(state)
            .await
            .map_err(|e| Refusal::Unavailable(e.message))?
            .ok_or_else(|| Refusal::Invalid("unknown, used or expired state".into()))?;
        let client = self.client(self.metadata(false).await?)?;
        let token = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| Refusal::Unavailable(format!("token endpoint: {e}")))?
            .set_pkce_verifier(PkceCodeVerifier::new(verifier))
            .request_async(&self.http)
            .await
            .map_err(|e| Refusal::Invalid(format!("code exchange refused: {e}")))?;
        let id_token = token
            .id_token()
            .ok_or_else(|| Refusal::Invalid("the provider sent no ID token".into()))?;
        let nonce = Nonce::new(nonce);
        let subject = match id_token.claims(&client.id_token_verifier(), &nonce) {
            Ok(c) => c.subject().clone(),
            Err(first) => {
                // A key the provider rotated in since the keys were read: read them once more.
                let client = self.client(self.metadata(true).await?)?;
                id_token
                    .claims(&client.id_token_verifier(), &nonce)
                    .map_err(|e| {
                        Refusal::Invalid(format!(
                            "ID token refused: {first}; again with fresh keys: {e}"
                        ))
                    })?
                    .subject()
                    .clone()
            }
        };
        let info: UserInfoClaims<Extra, CoreGenderClaim> = client
            .user_info(token.access_token().clone(), Some(subject.clone()))
            .map_err(|e| Refusal::Unavailable(format!("userinfo: {e}")))?
            .request_async(&self.http)
            .await
            .map_err(|e| Refusal::Invalid(format!("userinfo refused: {e}")))?;
        let user = self
            .user_of(&info)
            .unwrap_or_else(|| subject.as_str().to_owned());
        let groups = match info.additional_claims().0.get(&self.cfg.groups_claim) {
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            Some(serde_json::Value::String(s)) => vec![s.clone()],
            _ => Vec::new(),
        };
        Ok(Verified { user, groups })
    }

    fn user_of(&self, info: &UserInfoClaims<Extra, CoreGenderClaim>) -> Option<String> {
        match self.cfg.user_claim.as_str() {
            "preferred_username" => info.preferred_username().map(|u| u.to_string()),
            "email" => info.email().map(|e| e.to_string()),
            "sub" => Some(info.subject().to_string()),
            other => info
                .additional_claims()
                .0
                .get(other)
                .and_then(|v| v.as_str())
                .map(str::to_owned),
        }
    }
}
