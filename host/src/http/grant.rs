//! A granted HTTP service (`[grants.http.<name>]`): the base URL a connector may send requests
//! under, the credentials the host adds to them, and the limits of one request. Pure logic: the
//! check of a request's URL against the grants is here, unit-tested without a network.

use serde::Deserialize;
use std::path::PathBuf;
use url::Url;

/// A service the connection grants.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpGrant {
    /// `https://host[:port]/path/`: requests must go to this scheme, host and port, under this
    /// path. `http://` only when the connection writes it (no TLS).
    pub url: String,
    /// The credentials the host adds to every request (the connector cannot set its own).
    #[serde(default)]
    pub auth: Option<HttpAuth>,
    /// Certificate authorities to trust, a PEM file (relative: from the connection file); the
    /// system's by default.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Seconds to wait for a connection to open.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_s: u32,
    /// Seconds one request may take, from sending to the end of its response.
    #[serde(default = "default_timeout")]
    pub timeout_s: u32,
    /// Largest response body, in MiB; a larger one fails the request.
    #[serde(default = "default_max_response")]
    pub max_response_mib: u32,
}

/// Credentials for a service. Each names connection secrets, which the host reads and the
/// connector never can.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum HttpAuth {
    /// `Authorization: Bearer <token>`; the value names the secret holding the token.
    Bearer(String),
    /// `Authorization: Basic`, the password from a secret.
    Basic {
        /// The user name.
        username: String,
        /// The secret holding the password.
        password: String,
    },
    /// OAuth 2.0 client credentials (RFC 6749, 4.4): the host asks `token_url` for an access
    /// token, keeps it until shortly before it expires, and sends it as a bearer token.
    #[serde(rename = "oauth2")]
    OAuth2 {
        /// The authorisation server's token endpoint.
        token_url: String,
        /// The client's identifier.
        client_id: String,
        /// The secret holding the client's secret.
        client_secret: String,
        /// The scope asked for, if any.
        #[serde(default)]
        scope: Option<String>,
    },
}

impl HttpAuth {
    /// The secrets these credentials name.
    pub fn secrets(&self) -> Vec<&str> {
        match self {
            HttpAuth::Bearer(s) => vec![s],
            HttpAuth::Basic { password, .. } => vec![password],
            HttpAuth::OAuth2 { client_secret, .. } => vec![client_secret],
        }
    }

    fn shown(&self) -> &'static str {
        match self {
            HttpAuth::Bearer(_) => "bearer token",
            HttpAuth::Basic { .. } => "basic",
            HttpAuth::OAuth2 { .. } => "OAuth 2.0 client credentials",
        }
    }
}

fn default_connect_timeout() -> u32 {
    10
}

fn default_timeout() -> u32 {
    60
}

fn default_max_response() -> u32 {
    16
}

/// Where requests under a grant may go: scheme, host, port, and a path prefix ending in `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base {
    /// `http` or `https`.
    pub scheme: String,
    /// The host, lower-case (IPv6 without brackets).
    pub host: String,
    /// The port, explicit or the scheme's.
    pub port: u16,
    /// The path prefix, ending in `/`.
    pub path: String,
}

impl HttpGrant {
    /// Checks the grant; the base requests are matched against.
    pub fn check(&self, name: &str) -> Result<Base, String> {
        let bad = |m: String| format!("HTTP service `{name}`: {m}");
        if !crate::manifest::valid_name(name) {
            return Err(bad(
                "name: use lower-case letters, digits, `-` and `_`".into()
            ));
        }
        let base = base_of(&self.url).map_err(bad)?;
        if let Some(HttpAuth::OAuth2 { token_url, .. }) = &self.auth {
            let t =
                Url::parse(token_url).map_err(|e| bad(format!("token_url `{token_url}`: {e}")))?;
            // It carries the client's secret: plain HTTP only where the service itself is.
            if t.scheme() != "https" && !(t.scheme() == "http" && base.scheme == "http") {
                return Err(bad(format!(
                    "token_url `{token_url}` must be https:// (it carries the client secret)"
                )));
            }
        }
        if self.timeout_s == 0 || self.connect_timeout_s == 0 || self.max_response_mib == 0 {
            return Err(bad(
                "timeouts and `max_response_mib` must be at least 1".into()
            ));
        }
        Ok(base)
    }

    /// One line for people, without secrets.
    pub fn summary(&self, name: &str) -> String {
        let auth = self.auth.as_ref().map_or("no credentials", HttpAuth::shown);
        let tls = if self.url.starts_with("http://") {
            ", no TLS"
        } else {
            ""
        };
        format!("HTTP `{name}`: {} ({auth}{tls})", self.url)
    }
}

/// Parses a grant's base URL: `http(s)://host[:port]/path`, no user, query or fragment.
fn base_of(url: &str) -> Result<Base, String> {
    let u = Url::parse(url).map_err(|e| format!("url `{url}`: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!(
            "url `{url}`: only http:// and https:// are granted"
        ));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(format!(
            "url `{url}`: no credentials in the URL; name a secret in `auth`"
        ));
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err(format!("url `{url}`: no query or fragment in a base URL"));
    }
    let host = match u.host() {
        Some(url::Host::Domain(d)) => d.to_ascii_lowercase(),
        Some(url::Host::Ipv4(a)) => a.to_string(),
        Some(url::Host::Ipv6(a)) => a.to_string(),
        None => return Err(format!("url `{url}`: no host")),
    };
    let mut path = u.path().to_owned();
    if !path.ends_with('/') {
        path.push('/');
    }
    if unsafe_path(&path) {
        return Err(format!(
            "url `{url}`: its path must not hold `.`, `..` or encoded slashes"
        ));
    }
    Ok(Base {
        scheme: u.scheme().to_owned(),
        host,
        port: u.port_or_known_default().unwrap_or(443),
        path,
    })
}

/// Whether a path could mean another path to a server: dot segments (plain or percent-encoded,
/// or before a `;` parameter, which some servers drop), encoded slashes or backslashes,
/// backslashes, an encoded `%` (a server decoding twice would see `%2e`).
fn unsafe_path(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    if ["%2f", "%5c", "%25", "\\"]
        .iter()
        .any(|p| lower.contains(p))
    {
        return true;
    }
    lower.split('/').any(|seg| {
        let seg = seg.split(';').next().unwrap_or("");
        matches!(seg.replace("%2e", ".").as_str(), "." | "..")
    })
}

/// A request's target, as the host checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<'a> {
    /// `http` or `https`.
    pub scheme: &'a str,
    /// The host as the request names it.
    pub host: &'a str,
    /// The port, explicit or the scheme's.
    pub port: u16,
    /// The path, without the query.
    pub path: &'a str,
}

impl Target<'_> {
    /// For messages.
    pub fn shown(&self) -> String {
        format!("{}://{}:{}{}", self.scheme, self.host, self.port, self.path)
    }
}

impl Base {
    /// Whether a request to `t` falls under this base.
    pub fn admits(&self, t: &Target<'_>) -> bool {
        let host = t.host.trim_start_matches('[').trim_end_matches(']');
        self.scheme == t.scheme
            && self.host.eq_ignore_ascii_case(host)
            && self.port == t.port
            && (t.path.starts_with(&self.path) || format!("{}/", t.path) == self.path)
            && !unsafe_path(t.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(toml_text: &str) -> HttpGrant {
        toml::from_str(toml_text).unwrap()
    }

    fn target(url: &str) -> (String, String, u16, String) {
        let u = Url::parse(url).unwrap();
        (
            u.scheme().into(),
            u.host_str().unwrap().into(),
            u.port_or_known_default().unwrap(),
            u.path().into(),
        )
    }

    fn admits(base: &Base, url: &str) -> bool {
        let (s, h, p, path) = target(url);
        base.admits(&Target {
            scheme: &s,
            host: &h,
            port: p,
            path: &path,
        })
    }

    #[test]
    fn a_base_admits_its_own_paths_only() {
        let b = grant("url = \"https://App.example.com/scim/v2\"")
            .check("app")
            .unwrap();
        assert_eq!(b.path, "/scim/v2/");
        assert_eq!(b.host, "app.example.com");
        assert_eq!(b.port, 443);
        assert!(admits(&b, "https://app.example.com/scim/v2/Users?x=1"));
        assert!(admits(&b, "https://APP.example.com:443/scim/v2"));
        assert!(!admits(&b, "https://app.example.com/scim/v20/Users"));
        assert!(!admits(&b, "https://app.example.com/admin"));
        assert!(!admits(&b, "http://app.example.com/scim/v2/Users"));
        assert!(!admits(&b, "https://app.example.com:8443/scim/v2/Users"));
        assert!(!admits(
            &b,
            "https://app.example.com.evil.net/scim/v2/Users"
        ));
        assert!(!admits(&b, "https://evil.net/scim/v2/Users"));
    }

    #[test]
    fn dot_segments_and_encoded_slashes_never_pass() {
        let b = grant("url = \"https://app/api/\"").check("app").unwrap();
        let t = |path: &'static str| Target {
            scheme: "https",
            host: "app",
            port: 443,
            path,
        };
        for path in [
            "/api/../admin",
            "/api/%2e%2e/admin",
            "/api/%2E./admin",
            "/api/a%2fb",
            "/api/a%5C..",
            "/api/a\\b",
            "/api/./x",
            "/api/..;/admin",
            "/api/.;x/y",
            "/api/%252e%252e/admin",
        ] {
            assert!(!b.admits(&t(path)), "{path}");
        }
        assert!(b.admits(&t("/api/v1/users.json")));
        assert!(b.admits(&t("/api/..x")));
    }

    #[test]
    fn grants_are_checked() {
        let err = |t: &str| grant(t).check("app").unwrap_err();
        assert!(err("url = \"ftp://app/\"").contains("only http"));
        assert!(err("url = \"https://u:p@app/\"").contains("no credentials"));
        assert!(err("url = \"https://app/?q=1\"").contains("no query"));
        // Dot segments in a base are resolved as the URL is read.
        assert_eq!(
            grant("url = \"https://app/a/../b\"")
                .check("app")
                .unwrap()
                .path,
            "/b/"
        );
        let ok = grant(
            "url = \"http://127.0.0.1:8080/\"\n\
             auth = { basic = { username = \"svc\", password = \"pw\" } }",
        );
        assert_eq!(ok.check("app").unwrap().port, 8080);
        assert_eq!(ok.auth.as_ref().unwrap().secrets(), ["pw"]);
        assert!(ok.summary("app").contains("basic, no TLS"));
        let oauth = grant(
            "url = \"https://app/\"\n\
             [auth.oauth2]\n\
             token_url = \"https://login/token\"\n\
             client_id = \"idgard\"\n\
             client_secret = \"app-secret\"",
        );
        assert_eq!(oauth.auth.unwrap().secrets(), ["app-secret"]);
        assert!(
            toml::from_str::<HttpGrant>("url = \"https://app/\"\nauth = { digest = \"x\" }")
                .is_err()
        );
    }
}
