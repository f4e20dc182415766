//! One granted service as the host reaches it: a pooled client trusting the grant's CA (or the
//! system's), the credentials it adds, and the OAuth 2.0 access token it keeps.

use super::grant::{HttpAuth, HttpGrant};
use base64::Engine as _;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime_wasi_http::Error as HttpError;

/// How long an unused connection stays open.
const IDLE: Duration = Duration::from_secs(60);
/// Kept from an access token's lifetime: it is fetched again this long before it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(30);
/// An access token's lifetime when the authorisation server does not say.
const TOKEN_DEFAULT_LIFE: Duration = Duration::from_secs(300);
/// The longest an access token is kept, whatever the authorisation server says.
const TOKEN_MAX_LIFE: Duration = Duration::from_secs(24 * 3600);

/// Credentials, with the secrets read.
#[derive(Clone)]
enum Credentials {
    /// A ready `Authorization` value.
    Header(http::HeaderValue),
    OAuth2 {
        token_url: String,
        client_id: String,
        client_secret: String,
        scope: Option<String>,
        token: Arc<tokio::sync::Mutex<Option<Token>>>,
    },
}

struct Token {
    header: http::HeaderValue,
    until: Instant,
}

/// A service's client and what it adds to requests.
#[derive(Clone)]
pub(super) struct Service {
    pub(super) client: reqwest::Client,
    /// For OAuth 2.0: the client of the token endpoint, which trusts the system's authorities
    /// besides the grant's CA (an identity provider is often public when the service is not).
    token_client: Option<reqwest::Client>,
    credentials: Option<Credentials>,
    pub(super) timeout: Duration,
    pub(super) max_response: usize,
}

fn secret<'a>(secrets: &'a BTreeMap<String, String>, name: &str) -> Result<&'a str, String> {
    secrets
        .get(name)
        .map(String::as_str)
        .ok_or_else(|| format!("the secret `{name}` its credentials name is not set"))
}

fn sensitive(value: String) -> Result<http::HeaderValue, String> {
    let mut v = http::HeaderValue::try_from(value)
        .map_err(|_| "its credentials are not a valid header value".to_owned())?;
    v.set_sensitive(true);
    Ok(v)
}

impl Service {
    pub(super) fn build(
        grant: &HttpGrant,
        secrets: &BTreeMap<String, String>,
    ) -> Result<Self, String> {
        let credentials = match &grant.auth {
            None => None,
            Some(HttpAuth::Bearer(name)) => Some(Credentials::Header(sensitive(format!(
                "Bearer {}",
                secret(secrets, name)?
            ))?)),
            Some(HttpAuth::Basic { username, password }) => {
                let pair = format!("{username}:{}", secret(secrets, password)?);
                let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
                Some(Credentials::Header(sensitive(format!("Basic {encoded}"))?))
            }
            Some(HttpAuth::OAuth2 {
                token_url,
                client_id,
                client_secret,
                scope,
            }) => Some(Credentials::OAuth2 {
                token_url: token_url.clone(),
                client_id: client_id.clone(),
                client_secret: secret(secrets, client_secret)?.to_owned(),
                scope: scope.clone(),
                token: Arc::default(),
            }),
        };
        let client = client(grant, false)?;
        let token_client = match (&credentials, &grant.ca) {
            (Some(Credentials::OAuth2 { .. }), Some(_)) => Some(self::client(grant, true)?),
            _ => None,
        };
        Ok(Service {
            client,
            token_client,
            credentials,
            timeout: Duration::from_secs(grant.timeout_s.into()),
            max_response: (grant.max_response_mib as usize) << 20,
        })
    }

    /// The `Authorization` value for the next request, fetching an access token when needed.
    pub(super) async fn authorization(
        &self,
        service: &str,
    ) -> Result<Option<http::HeaderValue>, HttpError> {
        match &self.credentials {
            None => Ok(None),
            Some(Credentials::Header(v)) => Ok(Some(v.clone())),
            Some(Credentials::OAuth2 {
                token_url,
                client_id,
                client_secret,
                scope,
                token,
            }) => {
                let mut kept = token.lock().await;
                if let Some(t) = kept.as_ref().filter(|t| t.until > Instant::now()) {
                    return Ok(Some(t.header.clone()));
                }
                let fresh = self
                    .fetch_token(
                        service,
                        token_url,
                        client_id,
                        client_secret,
                        scope.as_deref(),
                    )
                    .await?;
                let header = fresh.header.clone();
                *kept = Some(fresh);
                Ok(Some(header))
            }
        }
    }

    /// Forgets the access token `sent` (the service refused it), unless another request has
    /// already replaced it; whether a fresh token is worth a second try.
    pub(super) async fn forget_token(&self, sent: Option<&http::HeaderValue>) -> bool {
        let Some(Credentials::OAuth2 { token, .. }) = &self.credentials else {
            return false;
        };
        let mut kept = token.lock().await;
        if kept.as_ref().map(|t| &t.header) == sent {
            *kept = None;
        }
        true
    }

    async fn fetch_token(
        &self,
        service: &str,
        token_url: &str,
        client_id: &str,
        client_secret: &str,
        scope: Option<&str>,
    ) -> Result<Token, HttpError> {
        #[derive(serde::Deserialize)]
        struct Answer {
            access_token: String,
            /// A number, or a number in a string (some servers write it so).
            #[serde(default)]
            expires_in: Option<serde_json::Value>,
        }
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(s) = scope {
            form.push(("scope", s));
        }
        let failed = |message: String, code: HttpError| {
            tracing::warn!(service, "OAuth 2.0 token from {token_url}: {message}");
            code
        };
        let answer = self
            .token_client
            .as_ref()
            .unwrap_or(&self.client)
            .post(token_url)
            .basic_auth(client_id, Some(client_secret))
            .form(&form)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| failed(idgard_model::errors::chain(&e), super::send::code(&e)))?;
        let status = answer.status();
        if !status.is_success() {
            let code = if matches!(status.as_u16(), 400 | 401 | 403) {
                HttpError::HttpRequestDenied
            } else {
                HttpError::DestinationUnavailable
            };
            return Err(failed(format!("answered {status}"), code));
        }
        let body: Answer = answer.json().await.map_err(|e| {
            failed(
                format!("not a token answer: {e}"),
                HttpError::HttpProtocolError,
            )
        })?;
        let life = body
            .expires_in
            .and_then(|v| v.as_u64().or_else(|| v.as_str()?.trim().parse().ok()))
            .map_or(TOKEN_DEFAULT_LIFE, Duration::from_secs)
            .min(TOKEN_MAX_LIFE);
        let header = sensitive(format!("Bearer {}", body.access_token))
            .map_err(|e| failed(e, HttpError::HttpProtocolError))?;
        Ok(Token {
            header,
            until: Instant::now() + life.saturating_sub(TOKEN_MARGIN.min(life / 2)),
        })
    }
}

/// A client for a grant: its CA (or the system's authorities; both with `system`), no
/// redirects, no proxy.
fn client(grant: &HttpGrant, system: bool) -> Result<reqwest::Client, String> {
    let tls = tls_config(grant.ca.as_deref(), system)?;
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(grant.connect_timeout_s.into()))
        .pool_idle_timeout(IDLE)
        .user_agent(concat!("idgard-agent/", env!("CARGO_PKG_VERSION")))
        .no_proxy()
        .build()
        .map_err(|e| format!("its client cannot be built: {e}"))
}

/// TLS for a service: the grant's CA, or the system's certificate authorities (and both when
/// `system` is set).
fn tls_config(ca: Option<&std::path::Path>, system: bool) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    if system && ca.is_some() {
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    }
    match ca {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| format!("its CA {} cannot be read: {e}", path.display()))?;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| format!("its CA {}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("its CA {}: {e}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("its CA {} holds no certificate", path.display()));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
