//! The browser side of safety: cookies, the same-origin check of unsafe requests, and the
//! headers every page carries.

use axum::http::{HeaderMap, HeaderValue, header};

/// The session cookie's name. `__Host-` makes the browser refuse it unless it is Secure, set
/// by this host for `/`, with no Domain: no other site or subdomain can plant or read it.
pub const SESSION: &str = "__Host-idgard";
/// The cookie that carries the sign-in forms' token before there is a session.
pub const PRE: &str = "__Host-idgard-pre";
/// The cookie that binds an OpenID Connect flow to the browser that started it.
pub const FLOW: &str = "__Host-idgard-flow";

/// The policy: scripts, styles and everything else from this server only; no inline script or
/// style; no framing; forms post only here.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// A cookie's value from a request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// A `Set-Cookie` value: HttpOnly, Secure, SameSite=Lax, Path=/, ending after `max_age_s`
/// (0: removes it).
pub fn set_cookie(name: &str, value: &str, max_age_s: u64) -> HeaderValue {
    let c = cookie::Cookie::build((name, value))
        .path("/")
        .secure(true)
        .http_only(true)
        .same_site(cookie::SameSite::Lax)
        .max_age(cookie::time::Duration::seconds(max_age_s as i64))
        .build();
    HeaderValue::from_str(&c.to_string()).expect("cookie values are tokens")
}

/// Refuses an unsafe request another site made the browser send: by `Sec-Fetch-Site` where
/// the browser sends it, else by `Origin` against `Host`. A request with neither (a script, not
/// a browser) goes on to the token check.
pub fn same_origin(headers: &HeaderMap) -> Result<(), String> {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return match site {
            "same-origin" | "none" => Ok(()),
            other => Err(format!("a {other} request")),
        };
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let origin_host = origin
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    if origin != "null" && !host.is_empty() && origin_host.eq_ignore_ascii_case(host) {
        Ok(())
    } else {
        Err(format!("origin {origin} is not this server ({host})"))
    }
}

/// Compares two tokens in time that does not depend on where they differ.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The headers of every answer of the UI. Pages are never stored (they hold personal data,
/// and Back after sign-out must not show them); assets are named by their content and stored
/// for good.
pub fn protect(headers: &mut HeaderMap, https: bool, asset: bool) {
    let fixed = [
        ("content-security-policy", CSP),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cross-origin-opener-policy", "same-origin"),
    ];
    for (k, v) in fixed {
        headers.insert(k, HeaderValue::from_static(v));
    }
    if https {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    if !asset {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn cross_site_unsafe_requests_are_told_apart() {
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-origin")])).is_ok());
        assert!(same_origin(&headers(&[("sec-fetch-site", "cross-site")])).is_err());
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-site")])).is_err());
        let h = headers(&[
            ("origin", "https://idm.example:8443"),
            ("host", "idm.example:8443"),
        ]);
        assert!(same_origin(&h).is_ok());
        let h = headers(&[
            ("origin", "https://evil.example"),
            ("host", "idm.example:8443"),
        ]);
        assert!(same_origin(&h).is_err());
        assert!(same_origin(&headers(&[("origin", "null"), ("host", "x")])).is_err());
    }

    #[test]
    fn cookies_are_read_by_exact_name() {
        let h = headers(&[("cookie", "a=1; __Host-idgard-pre=p; __Host-idgard=s")]);
        assert_eq!(cookie(&h, SESSION), Some("s"));
        assert_eq!(cookie(&h, PRE), Some("p"));
        assert_eq!(cookie(&h, FLOW), None);
        let set = set_cookie(SESSION, "v", 60).to_str().unwrap().to_owned();
        for part in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/", "Max-Age=60"] {
            assert!(set.contains(part), "{set}");
        }
        assert!(same_token("abc", "abc") && !same_token("abc", "abd") && !same_token("a", "ab"));
    }
}
