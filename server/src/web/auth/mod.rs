//! Signing people in: each method proves who someone is and which groups they are in; the
//! role map turns that into roles. A method's failure is a [`Refusal`] with a reason for the
//! audit trail and a message that tells the person nothing an attacker could use.

pub mod ldap;
pub mod oidc;
pub mod password;

/// Who someone proved to be.
#[derive(Debug, Clone)]
pub struct Verified {
    /// Their name.
    pub user: String,
    /// Their groups, as the method reported them.
    pub groups: Vec<String>,
}

/// Why a sign-in failed.
#[derive(Debug, Clone)]
pub enum Refusal {
    /// Wrong or missing credentials (counted against the address and the login).
    Credentials(String),
    /// The method's peer could not be asked (directory or provider down or misconfigured).
    Unavailable(String),
    /// The answer did not hold (a state, a nonce, a signature, an issuer...).
    Invalid(String),
}

impl Refusal {
    /// What the audit trail and the log keep.
    pub fn reason(&self) -> &str {
        match self {
            Refusal::Credentials(r) | Refusal::Unavailable(r) | Refusal::Invalid(r) => r,
        }
    }

    /// What the person is told.
    pub fn message(&self) -> &'static str {
        match self {
            Refusal::Credentials(_) => "Wrong user name or password.",
            Refusal::Unavailable(_) => {
                "The sign-in service cannot be reached now. Try again later or tell your administrator."
            }
            Refusal::Invalid(_) => "The sign-in did not complete. Start again.",
        }
    }
}

/// Whether `url`'s host is a loopback address (where TLS may be left out).
pub fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        // A scheme the URL standard does not know (`ldap:`) leaves an address as a name.
        Some(url::Host::Domain(d)) => {
            d.eq_ignore_ascii_case("localhost")
                || d.trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        None => false,
    }
}

/// A TLS client configuration trusting the certificate authorities in `ca` (PEM).
pub fn tls_trusting(ca: &std::path::Path) -> anyhow::Result<rustls::ClientConfig> {
    use anyhow::Context;
    let pem = std::fs::read(ca).with_context(|| format!("cannot read {}", ca.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots
            .add(cert.with_context(|| format!("{}: not a PEM certificate", ca.display()))?)
            .with_context(|| format!("{}: certificate refused", ca.display()))?;
    }
    if roots.is_empty() {
        anyhow::bail!("{}: no certificate found", ca.display());
    }
    Ok(rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_addresses_are_told_apart_whatever_the_scheme() {
        for (u, want) in [
            ("ldap://127.0.0.1:389", true),
            ("ldap://[::1]:389", true),
            ("ldap://localhost", true),
            ("https://127.0.0.1:9000", true),
            ("ldap://10.0.0.1", false),
            ("ldap://127.0.0.1.example.org", false),
            ("https://idp.example.org", false),
        ] {
            assert_eq!(
                super::is_loopback(&url::Url::parse(u).unwrap()),
                want,
                "{u}"
            );
        }
    }
}
