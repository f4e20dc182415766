//! Incremental export on Active Directory: the directory-synchronisation control (DirSync,
//! 1.2.840.113556.1.4.841) from the cookie of the previous export.
//!
//! DirSync reads the whole naming context and tells, for each object changed since the cookie,
//! only what changed, deletions included (as tombstones: `isDeleted`). So the export asks for
//! the keys of what changed, then reads each changed object whole under each entity type's base
//! and filter (as a full export would); an object no entity type holds any more (deleted, moved
//! out of the bases, no longer matching a filter) is exported as deleted under every type (the
//! server ignores the deletion of a key it does not hold).

use crate::client::{self, Session, error, unexpected};
use crate::entry::EntryRef;
use crate::export::{key_of, search_request, write};
use crate::settings::{Config, Dialect, GROUP};
use idgard_sdk::{Cursor, Error, Exporter};
use ldap3_proto::control::LdapControl;
use ldap3_proto::proto::{LdapFilter, LdapOp, LdapResultCode, LdapSearchResultEntry};
use std::collections::BTreeSet;

/// The format of these cursors: a DirSync cookie, as the directory gave it.
pub const CURSOR_FORMAT: &str = "ad-dirsync-cookie-v1";

/// Bytes of changes the directory sends per round.
const MAX_BYTES: i64 = 1 << 20;

/// Whether this connection can export incrementally: Active Directory keyed by objectGUID.
pub fn supported(config: &Config) -> bool {
    config.dialect == Dialect::ActiveDirectory
        && config.key_attribute.eq_ignore_ascii_case("objectGUID")
}

/// The cursor of "now", taken at the start of a full export: a DirSync of a filter nothing
/// matches, whose cookie covers every change so far.
pub fn starting_cursor(session: &mut Session) -> Result<Option<Cursor>, Error> {
    let context = naming_context(session)?;
    let nothing = ldap3_proto::parse_ldap_filter_str("(&(objectClass=top)(!(objectClass=top)))")
        .map_err(|e| Error::internal(format!("{e:?}")))?;
    let cookie = rounds(session, &context, nothing, vec!["1.1".into()], None, |_| {
        Ok(())
    })?;
    Ok(Some(Cursor {
        format: CURSOR_FORMAT.into(),
        data: cookie,
    }))
}

/// Exports what changed since `cursor`.
pub fn since(
    config: &Config,
    cursor: &Cursor,
    out: &mut Exporter,
) -> Result<Option<Cursor>, Error> {
    if cursor.format != CURSOR_FORMAT {
        return Err(Error::invalid_cursor(format!(
            "a cursor of format `{}` is not this connector's",
            cursor.format
        )));
    }
    let mut session = Session::open(config)?;
    let context = naming_context(&mut session)?;
    let mut changed: BTreeSet<String> = BTreeSet::new();
    let every = LdapFilter::Present("objectClass".into());
    // DirSync returns an object when one of the attributes asked for changed: all of them.
    let attrs = vec!["*".into(), "isDeleted".into()];
    let next = rounds(
        &mut session,
        &context,
        every,
        attrs,
        Some(cursor.data.clone()),
        |entry| {
            if let Some(key) = key_of(config, &entry) {
                changed.insert(key);
            }
            Ok(())
        },
    )?;
    let mut held: BTreeSet<String> = BTreeSet::new();
    let mut groups = Vec::new();
    for (entity_type, entity) in config.entities() {
        let mut request =
            search_request(config, &entity.base, &entity.filter, entity_type == GROUP)?;
        request.scope = ldap3_proto::proto::LdapSearchScope::Base;
        let base = crate::dn::normal(&entity.base);
        for key in &changed {
            request.base = format!("<GUID={key}>");
            session.search(&request, None, |entry| {
                let dn = crate::dn::normal(&entry.dn);
                if !dn.ends_with(&format!(",{base}")) {
                    return Ok(());
                }
                held.insert(key.clone());
                if entity_type == GROUP {
                    groups.push(entry);
                } else {
                    write(config, out, entity_type, key, &EntryRef::of(&entry), None);
                }
                Ok(())
            })?;
        }
    }
    crate::incremental::write_groups(&mut session, config, out, groups)?;
    let gone: Vec<&String> = changed.difference(&held).collect();
    for key in &gone {
        for (entity_type, _) in config.entities() {
            out.delete(entity_type, key);
        }
    }
    idgard_sdk::log::info(&format!(
        "{} objects changed in the directory since the last export: {} exported, {} gone from the bases",
        changed.len(),
        held.len(),
        gone.len()
    ));
    Ok(Some(Cursor {
        format: CURSOR_FORMAT.into(),
        data: next,
    }))
}

/// The domain's naming context (DirSync reads from its root), from the root DSE.
fn naming_context(session: &mut Session) -> Result<String, Error> {
    let mut context = None;
    let request = client::entry_at("", vec!["defaultNamingContext".into()]);
    session.search(&request, None, |e| {
        context = e
            .attributes
            .into_iter()
            .find(|a| a.atype.eq_ignore_ascii_case("defaultNamingContext"))
            .and_then(|a| a.vals.into_iter().next())
            .map(|v| String::from_utf8_lossy(&v).into_owned());
        Ok(())
    })?;
    context.ok_or_else(|| Error::invalid_data("the directory names no defaultNamingContext"))
}

/// DirSync rounds from `cookie` until the directory has no more; returns the last cookie.
fn rounds(
    session: &mut Session,
    context: &str,
    filter: LdapFilter,
    attrs: Vec<String>,
    mut cookie: Option<Vec<u8>>,
    mut each: impl FnMut(LdapSearchResultEntry) -> Result<(), Error>,
) -> Result<Vec<u8>, Error> {
    let request = client::subtree(context, filter, attrs);
    loop {
        let control = LdapControl::AdDirsync {
            flags: 0,
            max_bytes: MAX_BYTES,
            cookie: cookie.take(),
        };
        let id = session.send(LdapOp::SearchRequest(request.clone()), vec![control])?;
        let (more, next) = loop {
            let msg = session.receive(id)?;
            match msg.op {
                LdapOp::SearchResultEntry(e) => each(e)?,
                LdapOp::SearchResultReference(_) => {}
                LdapOp::SearchResultDone(res) => {
                    if res.code != LdapResultCode::Success {
                        return Err(error("directory synchronisation (DirSync)", &res));
                    }
                    let answer = msg.ctrl.into_iter().find_map(|c| match c {
                        LdapControl::AdDirsync { flags, cookie, .. } => Some((flags, cookie)),
                        _ => None,
                    });
                    let Some((more, Some(next))) = answer else {
                        return Err(Error::invalid_data(
                            "the directory answered a DirSync search without its cookie",
                        ));
                    };
                    break (more != 0, next);
                }
                other => return Err(unexpected(&other)),
            }
        };
        if !more {
            return Ok(next);
        }
        cookie = Some(next);
    }
}
