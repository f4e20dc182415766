//! Sign-in by LDAP bind (OpenLDAP, Active Directory): the user is found by a search whose
//! filter escapes what they typed, then bound as with their password; their groups are the
//! groups listing their DN. An empty password is refused before the directory is asked: a bind
//! with a DN and no password is an unauthenticated bind, which some directories answer with
//! success (RFC 4513 §5.1.2).

use super::{Refusal, Verified};
use crate::web::settings::LdapConfig;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry, ldap_escape};
use std::sync::Arc;
use std::time::Duration;

/// Longest login accepted (a directory's names are shorter).
const LOGIN_MAX: usize = 256;

/// Checks `login` and `password` against the directory.
pub async fn verify(cfg: &LdapConfig, login: &str, password: &str) -> Result<Verified, Refusal> {
    if password.is_empty() {
        return Err(Refusal::Credentials(
            "empty password (never sent to the directory)".into(),
        ));
    }
    if login.is_empty() || login.len() > LOGIN_MAX || login.chars().any(char::is_control) {
        return Err(Refusal::Credentials(
            "a login that cannot be a user name".into(),
        ));
    }
    let timeout = Duration::from_secs(cfg.timeout_s.max(1));
    let mut ldap = connect(cfg, timeout).await?;
    let result = find_and_bind(&mut ldap, cfg, login, password, timeout).await;
    let _ = ldap.unbind().await;
    result
}

async fn connect(cfg: &LdapConfig, timeout: Duration) -> Result<Ldap, Refusal> {
    let url = url::Url::parse(&cfg.url).map_err(|e| Refusal::Unavailable(e.to_string()))?;
    let starttls = url.scheme() == "ldap" && cfg.starttls;
    let mut settings = LdapConnSettings::new()
        .set_conn_timeout(timeout)
        .set_starttls(starttls);
    if let Some(ca) = &cfg.ca {
        let tls = super::tls_trusting(ca).map_err(|e| Refusal::Unavailable(format!("{e:#}")))?;
        settings = settings.set_config(Arc::new(tls));
    }
    let (conn, ldap) = LdapConnAsync::with_settings(settings, &cfg.url)
        .await
        .map_err(|e| Refusal::Unavailable(format!("cannot reach {}: {e}", cfg.url)))?;
    tokio::spawn(async move {
        if let Err(e) = conn.drive().await {
            tracing::debug!("directory connection ended: {e}");
        }
    });
    Ok(ldap)
}

async fn find_and_bind(
    ldap: &mut Ldap,
    cfg: &LdapConfig,
    login: &str,
    password: &str,
    timeout: Duration,
) -> Result<Verified, Refusal> {
    let down = |e: ldap3::LdapError| Refusal::Unavailable(format!("{}: {e}", cfg.url));
    if let Some(dn) = &cfg.bind_dn {
        let pw = match &cfg.bind_password_file {
            Some(p) => std::fs::read_to_string(p)
                .map_err(|e| Refusal::Unavailable(format!("{}: {e}", p.display())))?
                .trim_end_matches(['\r', '\n'])
                .to_owned(),
            None => String::new(),
        };
        ldap.with_timeout(timeout)
            .simple_bind(dn, &pw)
            .await
            .and_then(|r| r.success())
            .map_err(|e| Refusal::Unavailable(format!("the service account's bind: {e}")))?;
    }
    let filter = format!("({}={})", cfg.user_attribute, ldap_escape(login));
    let (found, _) = ldap
        .with_timeout(timeout)
        .search(&cfg.user_base, Scope::Subtree, &filter, vec!["1.1"])
        .await
        .and_then(|r| r.success())
        .map_err(down)?;
    let dn = match found.as_slice() {
        [one] => SearchEntry::construct(one.clone()).dn,
        [] => return Err(Refusal::Credentials(format!("no user `{login}`"))),
        _ => {
            return Err(Refusal::Credentials(format!(
                "`{login}` names several entries"
            )));
        }
    };
    ldap.with_timeout(timeout)
        .simple_bind(&dn, password)
        .await
        .map_err(down)?
        .success()
        .map_err(|e| Refusal::Credentials(format!("bind as {dn} refused: {e}")))?;
    let groups = groups_of(ldap, cfg, &dn, timeout).await.map_err(down)?;
    Ok(Verified {
        user: login.to_owned(),
        groups,
    })
}

async fn groups_of(
    ldap: &mut Ldap,
    cfg: &LdapConfig,
    dn: &str,
    timeout: Duration,
) -> Result<Vec<String>, ldap3::LdapError> {
    let Some(base) = &cfg.group_base else {
        return Ok(Vec::new());
    };
    let filter = format!("({}={})", cfg.member_attribute, ldap_escape(dn));
    let (found, _) = ldap
        .with_timeout(timeout)
        .search(
            base,
            Scope::Subtree,
            &filter,
            vec![cfg.group_name_attribute.as_str()],
        )
        .await?
        .success()?;
    Ok(found
        .into_iter()
        .map(SearchEntry::construct)
        .filter_map(|e| {
            e.attrs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(&cfg.group_name_attribute))
                .and_then(|(_, v)| v.first().cloned())
        })
        .collect())
}
