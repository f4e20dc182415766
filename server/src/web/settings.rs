//! The `[ui]` section of the server's configuration: how people sign in, how long sessions last,
//! and which groups or users hold which roles. See `docs/ui.md`.

use super::access::Role;
use anyhow::{Result, bail};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The web UI's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UiConfig {
    /// A session ends after this many seconds without a request.
    pub idle_s: u64,
    /// A session ends this many seconds after sign-in, used or not.
    pub max_s: u64,
    /// Whether the person who started a run may approve it.
    pub approve_own_runs: bool,
    /// Development only: one user and an argon2id hash of their password. Refused unless the
    /// server listens on a loopback address; every page then says so.
    pub dev_password: Option<DevPassword>,
    /// Sign-in by a bind to an LDAP directory or Active Directory.
    pub ldap: Option<LdapConfig>,
    /// Sign-in through an OpenID Connect provider.
    pub oidc: Option<OidcConfig>,
    /// Who holds which role.
    pub roles: RoleMap,
}

impl Default for UiConfig {
    fn default() -> Self {
        Self {
            idle_s: 30 * 60,
            max_s: 12 * 3600,
            approve_own_runs: true,
            dev_password: None,
            ldap: None,
            oidc: None,
            roles: RoleMap::default(),
        }
    }
}

/// The development password.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevPassword {
    /// The user's name.
    pub user: String,
    /// Its password's argon2id hash (`idgard-server hash-password` prints one).
    pub hash: String,
    /// Its roles (default: administrator and approver, which is every right).
    #[serde(default = "all_roles")]
    pub roles: Vec<Role>,
}

fn all_roles() -> Vec<Role> {
    vec![Role::Administrator, Role::Approver]
}

/// Sign-in by LDAP bind: the user is searched for (with the service account, if any), then
/// bound as with the password typed; their groups give their roles.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapConfig {
    /// `ldaps://host:636` or `ldap://host:389` (then StartTLS, unless the host is loopback).
    pub url: String,
    /// Use StartTLS on an `ldap://` address (default true).
    #[serde(default = "yes")]
    pub starttls: bool,
    /// A PEM file of the certificate authorities trusted for the directory (default: none, so
    /// TLS needs one).
    pub ca: Option<PathBuf>,
    /// Where users are searched.
    pub user_base: String,
    /// The attribute a login is matched against (`uid`; `sAMAccountName` on AD).
    #[serde(default = "uid")]
    pub user_attribute: String,
    /// The service account the search binds as (absent: an anonymous search).
    pub bind_dn: Option<String>,
    /// A file holding that account's password.
    pub bind_password_file: Option<PathBuf>,
    /// Where groups are searched (absent: no groups).
    pub group_base: Option<String>,
    /// The attribute of a group that lists its members' DNs (`member`).
    #[serde(default = "member")]
    pub member_attribute: String,
    /// The attribute naming a group (`cn`).
    #[serde(default = "cn")]
    pub group_name_attribute: String,
    /// Seconds for each directory operation.
    #[serde(default = "ten")]
    pub timeout_s: u64,
}

/// Sign-in through an OpenID Connect provider (authorization code with PKCE).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The issuer (its discovery document is read from `<issuer>/.well-known/openid-configuration`).
    pub issuer: String,
    /// This server's client id at the provider.
    pub client_id: String,
    /// A file holding the client secret (absent: a public client).
    pub client_secret_file: Option<PathBuf>,
    /// The address the provider sends people back to: `<public address>/signin/oidc/callback`.
    pub redirect_url: String,
    /// The claim naming the user.
    #[serde(default = "preferred_username")]
    pub user_claim: String,
    /// The claim listing the user's groups.
    #[serde(default = "groups")]
    pub groups_claim: String,
    /// Scopes asked for besides `openid`.
    #[serde(default = "scopes")]
    pub scopes: Vec<String>,
    /// A PEM file of certificate authorities trusted for the provider (besides none: the
    /// provider's address must be HTTPS unless it is loopback).
    pub ca: Option<PathBuf>,
    /// The label of the sign-in button.
    #[serde(default = "single_sign_on")]
    pub label: String,
}

/// Roles by group and by user. A person holds the union of what their groups and their name
/// give; nothing given, no entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoleMap {
    /// Groups whose members may look.
    pub viewer: Vec<String>,
    /// Groups whose members may also run jobs, retry orders and review accounts.
    pub operator: Vec<String>,
    /// Groups whose members may do everything but approve (unless also approvers).
    pub administrator: Vec<String>,
    /// Groups whose members may approve blocked runs.
    pub approver: Vec<String>,
    /// Roles given to users by name.
    pub users: BTreeMap<String, Vec<Role>>,
}

impl RoleMap {
    /// The roles `user` with `groups` holds.
    pub fn roles_of(&self, user: &str, groups: &[String]) -> Vec<Role> {
        let mut out: Vec<Role> = self.users.get(user).cloned().unwrap_or_default();
        for (role, wanted) in [
            (Role::Viewer, &self.viewer),
            (Role::Operator, &self.operator),
            (Role::Administrator, &self.administrator),
            (Role::Approver, &self.approver),
        ] {
            if groups
                .iter()
                .any(|g| wanted.iter().any(|w| w.eq_ignore_ascii_case(g)))
            {
                out.push(role);
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

impl UiConfig {
    /// Refuses settings that would be unsafe: the development password on a listener others
    /// can reach, an LDAP or OIDC address in clear to another machine.
    pub fn check(&self, listen: std::net::SocketAddr) -> Result<()> {
        if let Some(dev) = &self.dev_password {
            if !listen.ip().is_loopback() {
                bail!(
                    "ui.dev_password is for development only and needs a loopback listener (listen = \"127.0.0.1:...\"), not {listen}"
                );
            }
            if !dev.hash.starts_with("$argon2id$") {
                bail!(
                    "ui.dev_password.hash must be an argon2id hash: run `idgard-server hash-password`"
                );
            }
        }
        if let Some(l) = &self.ldap {
            let url = url::Url::parse(&l.url)
                .map_err(|e| anyhow::anyhow!("ui.ldap.url `{}`: {e}", l.url))?;
            let loopback = super::auth::is_loopback(&url);
            match url.scheme() {
                "ldaps" => {}
                "ldap" if l.starttls || loopback => {}
                "ldap" => bail!(
                    "ui.ldap: passwords would cross the network in clear: use ldaps:// or starttls = true (plain ldap:// is only for a loopback directory)"
                ),
                other => bail!("ui.ldap.url: unknown scheme `{other}` (ldap or ldaps)"),
            }
        }
        if let Some(o) = &self.oidc {
            let url = url::Url::parse(&o.issuer)
                .map_err(|e| anyhow::anyhow!("ui.oidc.issuer `{}`: {e}", o.issuer))?;
            if url.scheme() != "https" && !super::auth::is_loopback(&url) {
                bail!("ui.oidc.issuer must be https:// (plain http only on loopback)");
            }
        }
        if self.idle_s == 0 || self.max_s == 0 {
            bail!("ui.idle_s and ui.max_s must be above 0");
        }
        Ok(())
    }
}

fn yes() -> bool {
    true
}
fn uid() -> String {
    "uid".into()
}
fn member() -> String {
    "member".into()
}
fn cn() -> String {
    "cn".into()
}
fn ten() -> u64 {
    10
}
fn preferred_username() -> String {
    "preferred_username".into()
}
fn groups() -> String {
    "groups".into()
}
fn scopes() -> Vec<String> {
    vec!["profile".into(), "groups".into()]
}
fn single_sign_on() -> String {
    "Single sign-on".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_come_from_groups_and_names_and_nothing_else() {
        let map: RoleMap = toml::from_str(
            r#"
            operator = ["idm-ops"]
            approver = ["Approvers"]
            [users]
            alice = ["administrator"]
            "#,
        )
        .unwrap();
        assert_eq!(
            map.roles_of("bob", &["approvers".into(), "idm-ops".into()]),
            vec![Role::Operator, Role::Approver]
        );
        assert_eq!(map.roles_of("alice", &[]), vec![Role::Administrator]);
        assert!(map.roles_of("mallory", &["staff".into()]).is_empty());
    }

    #[test]
    fn the_development_password_needs_loopback_and_ldap_needs_tls() {
        let ui: UiConfig = toml::from_str(
            "[dev_password]\nuser = \"dev\"\nhash = \"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA\"\n",
        )
        .unwrap();
        ui.check("127.0.0.1:8443".parse().unwrap()).unwrap();
        let err = ui.check("0.0.0.0:8443".parse().unwrap()).unwrap_err();
        assert!(err.to_string().contains("loopback"), "{err}");
        let ui: UiConfig = toml::from_str(
            "[ldap]\nurl = \"ldap://dc.example.org\"\nstarttls = false\nuser_base = \"dc=example\"\n",
        )
        .unwrap();
        let err = ui.check("0.0.0.0:8443".parse().unwrap()).unwrap_err();
        assert!(err.to_string().contains("in clear"), "{err}");
    }
}
