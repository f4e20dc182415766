//! Incremental export on OpenLDAP: RFC 4533 content synchronisation (syncrepl, refresh only)
//! from the cookie of the previous export. Changed entries come whole, deleted ones by entryUUID
//! (the directory's session log lists them); when the directory can no longer list the
//! deletions since the cookie (it restarted, its session log is too short), the export answers
//! `invalid-cursor` and the next one is full.
//!
//! A deletion names only the entryUUID, not what the entry was: the directory reports it to the
//! synchronisation of every entity type, and so does the export (the server ignores the deletion
//! of a key it does not hold); but an entry that changed under one type, reported "deleted" to
//! the others, is not exported as deleted.

use crate::client::{self, Session, Sync};
use crate::entry::EntryRef;
use crate::export::{Unresolved, key_of, search_request, write, write_group};
use crate::lookup;
use crate::settings::{Config, Dialect, GROUP};
use idgard_sdk::{Cursor, Error, Exporter};
use ldap3_proto::proto::LdapResultCode;
use std::collections::HashSet;

/// The format of this connector's cursors: an RFC 4533 cookie, as the directory gave it.
pub const CURSOR_FORMAT: &str = "ldap-sync-cookie-v1";

/// Whether this connection can export incrementally: OpenLDAP keyed by entryUUID (deletions
/// come as entryUUIDs).
fn supported(config: &Config) -> bool {
    config.dialect == Dialect::Openldap && config.key_attribute.eq_ignore_ascii_case("entryUUID")
}

/// The cursor of "now", taken at the start of a full export; `None` when the connection or the
/// directory cannot export incrementally (said once in the log).
pub fn starting_cursor(session: &mut Session, config: &Config) -> Result<Option<Cursor>, Error> {
    if crate::dirsync::supported(config) {
        return crate::dirsync::starting_cursor(session);
    }
    if !supported(config) {
        return Ok(None);
    }
    // A refresh of the base entry alone: one entry, and the directory's cookie.
    let request = client::entry_at(&config.accounts.base, vec!["1.1".into()]);
    match session.sync_refresh(&request, None, |_| Ok(())) {
        Ok(Some(cookie)) => Ok(Some(Cursor {
            format: CURSOR_FORMAT.into(),
            data: cookie,
        })),
        Ok(None) => {
            idgard_sdk::log::warn(
                "the directory gave no synchronisation cookie: incremental exports will not be possible",
            );
            Ok(None)
        }
        Err(e)
            if e.message.contains(&format!(
                "result {}",
                LdapResultCode::UnavailableCriticalExtension as i64
            )) =>
        {
            idgard_sdk::log::warn(
                "the directory does not offer content synchronisation (the syncprov overlay): \
                 only full exports are possible",
            );
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Exports what changed since `cursor`.
pub fn since(
    config: &Config,
    cursor: &Cursor,
    out: &mut Exporter,
) -> Result<Option<Cursor>, Error> {
    if crate::dirsync::supported(config) {
        return crate::dirsync::since(config, cursor, out);
    }
    if !supported(config) {
        return Err(Error::unsupported(
            "incremental export (OpenLDAP with key_attribute = entryUUID, or Active Directory with objectGUID)",
        ));
    }
    if cursor.format != CURSOR_FORMAT {
        return Err(Error::invalid_cursor(format!(
            "a cursor of format `{}` is not this connector's",
            cursor.format
        )));
    }
    let mut session = Session::open(config)?;
    let mut next: Option<Vec<u8>> = None;
    let mut groups = Vec::new();
    // Keys changed under any entity type, and deletions by type: the directory tells a
    // synchronisation of "deleted" for every entry that changed outside its search (it may have
    // left it), so a deletion of a key that changed under another type is no deletion.
    let mut changed: HashSet<String> = HashSet::new();
    let mut deleted: Vec<(&str, String)> = Vec::new();
    for (entity_type, entity) in config.entities() {
        let is_group = entity_type == GROUP;
        let request = search_request(config, &entity.base, &entity.filter, is_group)?;
        let mut stale = false;
        // The directory may tell of one change twice (from its session log and from its
        // change sequence numbers): each key is exported once.
        let mut seen: HashSet<String> = HashSet::new();
        let cookie = session.sync_refresh(&request, Some(cursor.data.clone()), |event| {
            match event {
                Sync::Changed(entry) => match key_of(config, &entry) {
                    Some(key) if !seen.insert(key.clone()) => {}
                    Some(key) if is_group => {
                        changed.insert(key);
                        groups.push(entry);
                    }
                    Some(key) => {
                        changed.insert(key.clone());
                        write(config, out, entity_type, &key, &EntryRef::of(&entry), None);
                    }
                    None => {
                        out.reject(&format!("`{}` has no `{}`", entry.dn, config.key_attribute))
                    }
                },
                Sync::Deleted(uuids) => {
                    let fresh = uuids.into_iter().filter(|u| seen.insert(u.clone()));
                    deleted.extend(fresh.map(|u| (entity_type, u)));
                }
                Sync::Present => stale = true,
            }
            Ok(())
        })?;
        if stale {
            return Err(Error::invalid_cursor(
                "the directory can no longer list what changed since the last export (it \
                 restarted, or its session log is too short): a full export is needed",
            ));
        }
        // The earliest cookie: what changed between the searches comes again next time.
        next = next.or(cookie);
    }
    write_groups(&mut session, config, out, groups)?;
    for (entity_type, key) in deleted {
        if !changed.contains(&key) {
            out.delete(entity_type, &key);
        }
    }
    Ok(Some(Cursor {
        format: CURSOR_FORMAT.into(),
        data: next.unwrap_or_else(|| cursor.data.clone()),
    }))
}

/// Writes changed groups, their member DNs looked up as account keys.
pub(crate) fn write_groups(
    session: &mut Session,
    config: &Config,
    out: &mut Exporter,
    mut groups: Vec<ldap3_proto::proto::LdapSearchResultEntry>,
) -> Result<(), Error> {
    if groups.is_empty() {
        return Ok(());
    }
    for g in &mut groups {
        crate::ranges::complete(session, config, g)?;
    }
    let mut dns: Vec<String> = groups
        .iter()
        .flat_map(|g| g.attributes.iter())
        .filter(|a| a.atype.eq_ignore_ascii_case(&config.member_attribute))
        .flat_map(|a| {
            a.vals
                .iter()
                .map(|v| String::from_utf8_lossy(v).into_owned())
        })
        .collect();
    dns.sort_unstable();
    dns.dedup();
    let keys = lookup::keys_of_dns(session, config, &dns)?;
    let mut unresolved = Unresolved::default();
    for g in groups {
        if let Some(key) = key_of(config, &g) {
            write_group(config, out, &key, &EntryRef::of(&g), &keys, &mut unresolved);
        }
    }
    unresolved.report();
    Ok(())
}
