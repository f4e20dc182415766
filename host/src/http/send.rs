//! Sending one checked request with the host's client, and handing its response back to the
//! guest with the grant's size cap.

use super::service::Service;
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody};

/// Largest request body a connector sends (bodies are collected before sending).
const MAX_REQUEST: usize = 16 << 20;

/// Sends `request` to `service`: the body collected (capped), the credentials added, the
/// guest's headers kept but for `Host` (the client's own) and `Content-Length` (recomputed).
pub(super) async fn forward(
    name: String,
    service: Service,
    request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> Result<
    (
        http::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ),
    HttpError,
> {
    let (parts, body) = request.into_parts();
    let body = Limited::new(body, MAX_REQUEST)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<LengthLimitError>() {
                HttpError::HttpRequestBodySize(Some(MAX_REQUEST as u64))
            } else {
                HttpError::HttpRequestDenied
            }
        })?
        .to_bytes();
    let mut timeout = service.timeout;
    if let Some(t) = options.and_then(|o| o.first_byte_timeout) {
        timeout = timeout.min(t);
    }
    let url = parts.uri.to_string();
    let send = |auth: Option<http::HeaderValue>| {
        let mut builder = service
            .client
            .request(parts.method.clone(), &url)
            .timeout(timeout)
            .body(body.clone());
        for (k, v) in &parts.headers {
            if *k != http::header::HOST && *k != http::header::CONTENT_LENGTH {
                builder = builder.header(k, v);
            }
        }
        if let Some(auth) = auth {
            builder = builder.header(http::header::AUTHORIZATION, auth);
        }
        let name = &name;
        async move {
            builder.send().await.map_err(|e| {
                tracing::warn!(service = %name, "HTTP request failed: {}", idgard_model::errors::chain(&e));
                code(&e)
            })
        }
    };
    let auth = service.authorization(&name).await?;
    let mut response = send(auth.clone()).await?;
    // An access token the service no longer takes: once more with a fresh one.
    if response.status() == http::StatusCode::UNAUTHORIZED
        && service.forget_token(auth.as_ref()).await
    {
        response = send(service.authorization(&name).await?).await?;
    }
    let max = service.max_response;
    if response.content_length().is_some_and(|n| n > max as u64) {
        tracing::warn!(service = %name, "response of {:?} bytes refused: the grant allows {max}", response.content_length());
        return Err(HttpError::HttpResponseBodySize(response.content_length()));
    }
    let response: http::Response<reqwest::Body> = response.into();
    let response = response.map(move |body| {
        Limited::new(body, max)
            .map_err(move |e| {
                if e.is::<LengthLimitError>() {
                    HttpError::HttpResponseBodySize(Some(max as u64))
                } else if let Some(e) = e.downcast_ref::<reqwest::Error>() {
                    code(e)
                } else {
                    HttpError::HttpResponseIncomplete
                }
            })
            .map_frame(|f| f.map_data(Bytes::from))
            .boxed_unsync()
    });
    Ok((response, Box::new(async { Ok(()) })))
}

/// What the guest is told of a failed request.
pub(super) fn code(e: &reqwest::Error) -> HttpError {
    let text = idgard_model::errors::chain(e).to_ascii_lowercase();
    if e.is_timeout() {
        if e.is_connect() {
            HttpError::ConnectionTimeout
        } else {
            HttpError::HttpResponseTimeout
        }
    } else if text.contains("certificate") || text.contains("unknownissuer") {
        HttpError::TlsCertificateError
    } else if e.is_connect() {
        if text.contains("dns error") || text.contains("failed to lookup") {
            HttpError::DnsError {
                rcode: Some("name does not resolve".into()),
                info_code: None,
            }
        } else if text.contains("refused") {
            HttpError::ConnectionRefused
        } else if text.contains("tls") || text.contains("handshake") {
            HttpError::TlsProtocolError
        } else {
            HttpError::DestinationUnavailable
        }
    } else if e.is_body() || e.is_decode() {
        HttpError::HttpResponseIncomplete
    } else {
        HttpError::HttpProtocolError
    }
}
