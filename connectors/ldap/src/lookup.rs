//! Finding entries by key: the DN (and, on Active Directory, the account control flags) of each
//! key of a batch, with a few searches rather than one per key.

use crate::client::{self, Session};
use crate::export::key_of;
use crate::settings::{Config, Dialect, EntityConfig};
use idgard_sdk::Error;
use ldap3_proto::proto::LdapFilter;
use std::collections::HashMap;

/// Keys per search (an OR of equality filters).
const KEYS_PER_SEARCH: usize = 100;

/// What a lookup finds of an entry.
#[derive(Debug, Clone)]
pub struct Found {
    pub dn: String,
    /// Active Directory's `userAccountControl`, when read.
    pub account_control: Option<u32>,
}

/// The entries of `keys` under `entity`'s base, by key; keys not found are absent.
pub fn by_key(
    session: &mut Session,
    config: &Config,
    entity: &EntityConfig,
    keys: &[&str],
) -> Result<HashMap<String, Found>, Error> {
    let mut found = HashMap::new();
    let guid_keys = config.dialect == Dialect::ActiveDirectory
        && config.key_attribute.eq_ignore_ascii_case("objectGUID");
    let mut attrs = vec![config.key_attribute.clone()];
    if config.dialect == Dialect::ActiveDirectory {
        attrs.push("userAccountControl".into());
    }
    let mut keep = |entry: ldap3_proto::proto::LdapSearchResultEntry| {
        if let Some(key) = key_of(config, &entry) {
            let account_control = entry
                .attributes
                .iter()
                .find(|a| a.atype.eq_ignore_ascii_case("userAccountControl"))
                .and_then(|a| a.vals.first())
                .and_then(|v| std::str::from_utf8(v).ok()?.parse::<i64>().ok())
                .map(|v| v as u32);
            found.insert(
                key,
                Found {
                    dn: entry.dn,
                    account_control,
                },
            );
        }
        Ok(())
    };
    if guid_keys {
        // A binary GUID cannot go into a text filter; AD names an entry by `<GUID=...>`,
        // wherever it is: only a key in the GUID form is looked up, and only an entry of this
        // entity type under its base is kept.
        let base = crate::dn::normal(&entity.base);
        let filter = ldap3_proto::parse_ldap_filter_str(&entity.filter)
            .map_err(|e| Error::configuration(format!("filter `{}`: {e:?}", entity.filter)))?;
        for key in keys.iter().filter(|k| is_guid(k)) {
            let mut request = client::entry_at(&format!("<GUID={key}>"), attrs.clone());
            request.filter = filter.clone();
            session.search(&request, None, |entry| {
                let dn = crate::dn::normal(&entry.dn);
                if dn.len() > base.len() && dn.ends_with(&format!(",{base}")) {
                    keep(entry)?;
                }
                Ok(())
            })?;
        }
        return Ok(found);
    }
    for chunk in keys.chunks(KEYS_PER_SEARCH) {
        let filter = LdapFilter::Or(
            chunk
                .iter()
                .map(|k| LdapFilter::Equality(config.key_attribute.clone(), (*k).to_owned()))
                .collect(),
        );
        let request = client::subtree(&entity.base, filter, attrs.clone());
        session.search(&request, Some(config.page_size), &mut keep)?;
    }
    Ok(found)
}

/// Whether a key is a GUID as Windows writes it (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`).
fn is_guid(key: &str) -> bool {
    let groups: Vec<&str> = key.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The keys of the accounts at these DNs, by normalised DN; DNs of no account are absent.
pub fn keys_of_dns(
    session: &mut Session,
    config: &Config,
    dns: &[String],
) -> Result<HashMap<String, String>, Error> {
    // OpenLDAP names an entry's DN `entryDN`; Active Directory `distinguishedName`.
    let dn_attribute = match config.dialect {
        Dialect::Openldap => "entryDN",
        Dialect::ActiveDirectory => "distinguishedName",
    };
    let mut keys = HashMap::new();
    for chunk in dns.chunks(KEYS_PER_SEARCH) {
        let filter = LdapFilter::Or(
            chunk
                .iter()
                .map(|d| LdapFilter::Equality(dn_attribute.into(), d.clone()))
                .collect(),
        );
        let request = client::subtree(
            &config.accounts.base,
            filter,
            vec![config.key_attribute.clone()],
        );
        session.search(&request, Some(config.page_size), |entry| {
            if let Some(key) = key_of(config, &entry) {
                keys.insert(crate::dn::normal(&entry.dn), key);
            }
            Ok(())
        })?;
    }
    Ok(keys)
}

/// The key of the entry at `dn` (after a create).
pub fn key_at(session: &mut Session, config: &Config, dn: &str) -> Result<Option<String>, Error> {
    let mut key = None;
    let request = client::entry_at(dn, vec![config.key_attribute.clone()]);
    session.search(&request, None, |entry| {
        key = key_of(config, &entry);
        Ok(())
    })?;
    Ok(key)
}
