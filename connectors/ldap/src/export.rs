//! Full export: every account, then every group, a page at a time. Each entry is keyed by the key
//! attribute (entryUUID, objectGUID) and carries its DN as the attribute `dn`; a group's members
//! are exported as the keys of the accounts they name.

use crate::client::{self, Session};
use crate::dn;
use crate::entry::{EntryRef, FirstValue};
use crate::ranges;
use crate::settings::{Config, Dialect, GROUP};
use crate::values;
use idgard_sdk::{Cursor, Error, Exporter};
use ldap3_proto::proto::{LdapSearchRequest, LdapSearchResultEntry};
use std::borrow::Cow;
use std::collections::HashMap;

/// Members that name no exported account, reported once per run.
#[derive(Default)]
pub(crate) struct Unresolved {
    pub(crate) count: u64,
    pub(crate) sample: Option<String>,
}

impl Unresolved {
    pub(crate) fn report(self) {
        if self.count > 0 {
            idgard_sdk::log::warn(&format!(
                "{} group members name no exported account (such as `{}`): left out",
                self.count,
                self.sample.unwrap_or_default()
            ));
        }
    }
}

/// Exports every entry of every entity type the connection manages; returns where the next
/// incremental export starts, when the directory can tell changes since now.
pub fn full(config: &Config, out: &mut Exporter) -> Result<Option<Cursor>, Error> {
    let mut session = Session::open(config)?;
    // Taken before reading: what changes while the export runs comes again next time.
    let cursor = crate::incremental::starting_cursor(&mut session, config)?;
    // Normalised DN → key of every account, to turn a group's member DNs into keys.
    let mut keys: HashMap<String, String> = HashMap::new();
    let mut unresolved = Unresolved::default();
    // Groups whose members come in ranges: read whole once the search is over.
    let mut ranged: Vec<(String, LdapSearchResultEntry)> = Vec::new();
    for (entity_type, entity) in config.entities() {
        let request = search_request(config, &entity.base, &entity.filter, entity_type == GROUP)?;
        let mut done = 0u64;
        session.search_in_place(&request, Some(config.page_size), |entry| {
            let Some(key) = key_of(config, &entry) else {
                out.reject(&format!(
                    "`{}` has no `{}`: not exported",
                    entry.dn, config.key_attribute
                ));
                return Ok(());
            };
            if entity_type == GROUP && ranges::incomplete(&config.member_attribute, &entry) {
                ranged.push((key, entry.owned()));
            } else if entity_type == GROUP {
                write_group(config, out, &key, &entry, &keys, &mut unresolved);
            } else {
                if config.groups.is_some() {
                    keys.insert(dn::normal(entry.dn), key.clone());
                }
                write(config, out, entity_type, &key, &entry, None);
            }
            done += 1;
            if done.is_multiple_of(10_000) {
                idgard_sdk::progress(done, None, &format!("{entity_type} entries read"));
            }
            Ok(())
        })?;
        idgard_sdk::log::info(&format!(
            "{done} {entity_type} entries under `{}`",
            entity.base
        ));
    }
    for (key, mut entry) in ranged {
        ranges::complete(&mut session, config, &mut entry)?;
        write_group(
            config,
            out,
            &key,
            &EntryRef::of(&entry),
            &keys,
            &mut unresolved,
        );
    }
    unresolved.report();
    Ok(cursor)
}

/// A subtree search of `base` with `filter`, asking for the configured attributes, the key, and
/// (for groups) the member attribute.
pub fn search_request(
    config: &Config,
    base: &str,
    filter: &str,
    groups: bool,
) -> Result<LdapSearchRequest, Error> {
    let filter = ldap3_proto::parse_ldap_filter_str(filter)
        .map_err(|e| Error::configuration(format!("filter `{filter}`: {e:?}")))?;
    let mut attrs = if config.attributes.is_empty() {
        vec!["*".to_owned()]
    } else {
        config.attributes.clone()
    };
    attrs.push(config.key_attribute.clone());
    // `*` brings the member attribute, but not in ranges of the size the connection asks.
    if groups && (!config.attributes.is_empty() || config.member_range.is_some()) {
        attrs.push(crate::ranges::member_selection(config));
    }
    Ok(client::subtree(base, filter, attrs))
}

/// The entry's key, as text.
pub fn key_of(config: &Config, entry: &impl FirstValue) -> Option<String> {
    let raw = entry.first_value(&config.key_attribute)?;
    if config.dialect == Dialect::ActiveDirectory
        && config.key_attribute.eq_ignore_ascii_case("objectGUID")
    {
        values::guid_text(raw)
    } else {
        Some(values::to_text(
            config.is_binary(&config.key_attribute),
            raw,
        ))
    }
}

pub(crate) fn write_group(
    config: &Config,
    out: &mut Exporter,
    key: &str,
    entry: &EntryRef<'_>,
    keys: &HashMap<String, String>,
    unresolved: &mut Unresolved,
) {
    let mut members: Vec<String> = Vec::new();
    if let Some(attr) = entry.attribute(&config.member_attribute) {
        for v in attr.values() {
            let member = String::from_utf8_lossy(v);
            match keys.get(&dn::normal(&member)) {
                Some(k) => members.push(k.clone()),
                None => {
                    unresolved.count += 1;
                    unresolved.sample.get_or_insert_with(|| member.into_owned());
                }
            }
        }
    }
    write(config, out, GROUP, key, entry, Some(members));
}

/// Writes one entry: `dn`, then each attribute but the key (and, for a group, its members as
/// keys instead of DNs).
pub(crate) fn write(
    config: &Config,
    out: &mut Exporter,
    entity_type: &str,
    key: &str,
    entry: &EntryRef<'_>,
    members: Option<Vec<String>>,
) {
    let mut w = out.upsert(entity_type, key);
    w.attr("dn", entry.dn);
    for a in entry.attributes() {
        if a.atype.eq_ignore_ascii_case(&config.key_attribute)
            || (members.is_some() && a.atype.eq_ignore_ascii_case(&config.member_attribute))
        {
            continue;
        }
        let binary = config.is_binary(a.atype);
        if !binary && a.values().all(|v| std::str::from_utf8(v).is_ok()) {
            // Text as it came: nothing is copied but into the batch.
            w.values(
                a.atype,
                a.values()
                    .map(|v| std::str::from_utf8(v).unwrap_or_default()),
            );
        } else {
            let texts: Vec<Cow<'_, str>> = a.values().map(|v| values::text(binary, v)).collect();
            w.values(a.atype, texts.iter().map(AsRef::as_ref));
        }
    }
    if let Some(m) = &members {
        w.values(&config.member_attribute, m.iter().map(String::as_str));
    }
}
