//! The connector's settings (`connector.toml` lists them), with each dialect's defaults.

use idgard_sdk::{Error, Settings};
use serde::Deserialize;

/// The directory's kind: what it keys entries by, how passwords and disabling work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dialect {
    /// OpenLDAP and other RFC 4512 directories.
    Openldap,
    /// Microsoft Active Directory (and Samba AD).
    ActiveDirectory,
}

/// The settings as a connection gives them; unset values take the dialect's defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    endpoint: String,
    dialect: Dialect,
    bind_dn: String,
    password_secret: String,
    page_size: i64,
    accounts_base: String,
    accounts_filter: Option<String>,
    account_object_classes: Option<Vec<String>>,
    account_rdn: Option<String>,
    groups_base: Option<String>,
    groups_filter: Option<String>,
    group_object_classes: Option<Vec<String>>,
    member_attribute: Option<String>,
    member_range: Option<i64>,
    key_attribute: Option<String>,
    attributes: Option<Vec<String>>,
    binary_attributes: Option<Vec<String>>,
}

/// The settings, complete.
#[derive(Debug, Clone)]
pub struct Config {
    /// The granted endpoint to connect to.
    pub endpoint: String,
    pub dialect: Dialect,
    /// Who the connector binds as (a DN; on Active Directory also a UPN).
    pub bind_dn: String,
    /// The connection secret holding the bind password.
    pub password_secret: String,
    /// Entries per page of a search.
    pub page_size: i32,
    pub accounts: EntityConfig,
    /// Groups, when the connection manages them.
    pub groups: Option<EntityConfig>,
    /// The attribute of a group that lists its members (by DN).
    pub member_attribute: String,
    /// Members asked for at a time (Active Directory's range retrieval); none: as many as the
    /// directory gives at once.
    pub member_range: Option<u32>,
    /// The attribute entries are keyed by.
    pub key_attribute: String,
    /// Attributes exported (besides the key and `dn`); empty: all user attributes.
    pub attributes: Vec<String>,
    /// Attributes whose values are bytes: exported and written as base64.
    pub binary_attributes: Vec<String>,
}

/// Where one entity type lives and how a new entry of it is made.
#[derive(Debug, Clone)]
pub struct EntityConfig {
    pub base: String,
    pub filter: String,
    pub object_classes: Vec<String>,
    /// The attribute that names a new entry (its RDN) when the order gives no `dn`.
    pub rdn: String,
}

/// Attributes that hold bytes in every directory this connector knows.
const BINARY: &[&str] = &[
    "objectGUID",
    "objectSid",
    "jpegPhoto",
    "photo",
    "thumbnailPhoto",
    "userCertificate",
    "userCertificate;binary",
    "cACertificate",
    "msExchMailboxGuid",
];

impl Config {
    /// Reads and completes the settings.
    pub fn load(settings: &Settings) -> Result<Self, Error> {
        let r: Raw = settings.parse()?;
        let ad = r.dialect == Dialect::ActiveDirectory;
        let pick = |given: Option<String>, openldap: &str, active_directory: &str| {
            given.unwrap_or_else(|| if ad { active_directory } else { openldap }.to_owned())
        };
        let classes = |given: Option<Vec<String>>, openldap: &[&str], ad_classes: &[&str]| {
            given.unwrap_or_else(|| {
                let d = if ad { ad_classes } else { openldap };
                d.iter().map(|s| (*s).to_owned()).collect()
            })
        };
        if !(1..=100_000).contains(&r.page_size) {
            return Err(Error::configuration(format!(
                "page_size {} must be between 1 and 100000",
                r.page_size
            )));
        }
        if r.accounts_base.trim().is_empty() {
            return Err(Error::configuration("accounts_base must be a DN"));
        }
        let accounts = EntityConfig {
            base: r.accounts_base,
            filter: pick(
                r.accounts_filter,
                "(objectClass=inetOrgPerson)",
                "(&(objectClass=user)(objectCategory=person))",
            ),
            object_classes: classes(
                r.account_object_classes,
                &["top", "person", "organizationalPerson", "inetOrgPerson"],
                &["top", "person", "organizationalPerson", "user"],
            ),
            rdn: pick(r.account_rdn, "uid", "cn"),
        };
        let groups = r.groups_base.map(|base| EntityConfig {
            base,
            filter: pick(
                r.groups_filter.clone(),
                "(objectClass=groupOfNames)",
                "(objectClass=group)",
            ),
            object_classes: classes(
                r.group_object_classes.clone(),
                &["top", "groupOfNames"],
                &["top", "group"],
            ),
            rdn: "cn".into(),
        });
        let member_range = match r.member_range {
            None => None,
            Some(_) if !ad => {
                return Err(Error::configuration(
                    "member_range is Active Directory's range retrieval: it needs dialect = \"active-directory\"",
                ));
            }
            Some(n @ 1..=1_000_000) => Some(n as u32),
            Some(n) => {
                return Err(Error::configuration(format!(
                    "member_range {n} must be between 1 and 1000000"
                )));
            }
        };
        let mut binary: Vec<String> = BINARY.iter().map(|s| (*s).to_owned()).collect();
        binary.extend(r.binary_attributes.unwrap_or_default());
        Ok(Config {
            endpoint: r.endpoint,
            dialect: r.dialect,
            bind_dn: r.bind_dn,
            password_secret: r.password_secret,
            page_size: r.page_size as i32,
            accounts,
            groups,
            member_attribute: r.member_attribute.unwrap_or_else(|| "member".into()),
            member_range,
            key_attribute: pick(r.key_attribute, "entryUUID", "objectGUID"),
            attributes: r.attributes.unwrap_or_default(),
            binary_attributes: binary,
        })
    }

    /// Whether an attribute's values are bytes.
    pub fn is_binary(&self, attribute: &str) -> bool {
        self.binary_attributes
            .iter()
            .any(|b| b.eq_ignore_ascii_case(attribute))
    }

    /// The entity types this connection manages, with their configuration.
    pub fn entities(&self) -> Vec<(&'static str, &EntityConfig)> {
        let mut out = vec![(ACCOUNT, &self.accounts)];
        if let Some(g) = &self.groups {
            out.push((GROUP, g));
        }
        out
    }

    /// The configuration of an entity type.
    pub fn entity(&self, entity_type: &str) -> Option<&EntityConfig> {
        match entity_type {
            ACCOUNT => Some(&self.accounts),
            GROUP => self.groups.as_ref(),
            _ => None,
        }
    }
}

/// The entity type of accounts.
pub const ACCOUNT: &str = "account";
/// The entity type of groups.
pub const GROUP: &str = "group";
