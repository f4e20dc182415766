//! Values of a group's member attribute that Active Directory hands out in ranges (range
//! retrieval). A group with more members than the directory's `MaxValRange` (1,500 on Windows)
//! comes back as `member;range=0-1499` and no plain `member`; the rest is read from the entry
//! range by range (`member;range=1500-*`) until the directory answers with a range ending in `*`.
//! With the `member_range` setting the connector asks for ranges of that size itself, which the
//! directories that would otherwise send every value at once (Samba) honour too.

use crate::client::{self, Session};
use crate::entry::EntryRef;
use crate::settings::Config;
use idgard_sdk::Error;
use ldap3_proto::proto::{LdapPartialAttribute, LdapSearchResultEntry};

/// Where one range of values ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The last range: no values follow.
    Last,
    /// More values follow this index.
    At(u64),
}

/// The range an attribute description names, when it is `attribute` with a `range=` option:
/// `member;range=0-1499` → ends at 1,499; `member;range=1500-*` → the last. Other options
/// (`;binary`) may stand beside it.
fn range_of(description: &str, attribute: &str) -> Option<(u64, End)> {
    let mut parts = description.split(';');
    if !parts.next()?.eq_ignore_ascii_case(attribute) {
        return None;
    }
    let range = parts.find_map(|o| {
        o.get(..6)
            .filter(|p| p.eq_ignore_ascii_case("range="))
            .map(|_| &o[6..])
    })?;
    let (low, high) = range.split_once('-')?;
    let low = low.parse().ok()?;
    let end = match high {
        "*" => End::Last,
        n => End::At(n.parse().ok()?),
    };
    Some((low, end))
}

/// The attribute to ask for in a group search: the member attribute, or its first range when
/// the connection sets `member_range`.
pub fn member_selection(config: &Config) -> String {
    match config.member_range {
        Some(n) => format!("{};range=0-{}", config.member_attribute, n - 1),
        None => config.member_attribute.clone(),
    }
}

/// Whether some of the entry's values of `member` are still to be read.
pub fn incomplete(member: &str, entry: &EntryRef<'_>) -> bool {
    entry
        .attributes()
        .any(|a| matches!(range_of(a.atype, member), Some((_, End::At(_)))))
}

/// Reads the members of `entry` the directory held back, range by range, and leaves them all
/// under the plain member attribute. An entry without ranged members is left as it is.
pub fn complete(
    session: &mut Session,
    config: &Config,
    entry: &mut LdapSearchResultEntry,
) -> Result<(), Error> {
    let member = config.member_attribute.clone();
    let Some((mut values, mut end)) = take_ranged(entry, &member) else {
        return Ok(());
    };
    while let End::At(high) = end {
        let low = high + 1;
        let request = client::entry_at(&entry.dn, vec![format!("{member};range={low}-*")]);
        let mut next: Option<(Vec<Vec<u8>>, End)> = None;
        session.search(&request, None, |mut e| {
            next = take_ranged(&mut e, &member);
            Ok(())
        })?;
        // An entry gone meanwhile, or a directory that has no more to give: what was read stands.
        let Some((more, next_end)) = next else {
            break;
        };
        if let End::At(h) = next_end
            && h < low
        {
            return Err(Error::invalid_data(format!(
                "the directory answered the members of `{}` from {low} with a range ending at {h}",
                entry.dn
            )));
        }
        values.extend(more);
        end = next_end;
    }
    entry.attributes.push(LdapPartialAttribute {
        atype: member,
        vals: values,
    });
    Ok(())
}

/// Removes the member attribute from `entry`, in all its forms, and returns its values and where
/// they end, when it came in a range (a plain one beside it, which `*` may bring, is dropped:
/// the ranges say it all).
fn take_ranged(entry: &mut LdapSearchResultEntry, member: &str) -> Option<(Vec<Vec<u8>>, End)> {
    let mut found: Option<(Vec<Vec<u8>>, End)> = None;
    let mut plain = None;
    for a in std::mem::take(&mut entry.attributes) {
        if let Some((_, end)) = range_of(&a.atype, member) {
            let (values, e) = found.get_or_insert_with(|| (Vec::new(), end));
            values.extend(a.vals);
            *e = end;
        } else if a.atype.eq_ignore_ascii_case(member) {
            plain = Some(a);
        } else {
            entry.attributes.push(a);
        }
    }
    if found.is_none() {
        entry.attributes.extend(plain);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_options_are_read() {
        assert_eq!(
            range_of("member;range=0-1499", "member"),
            Some((0, End::At(1499)))
        );
        assert_eq!(
            range_of("Member;Range=1500-*", "member"),
            Some((1500, End::Last))
        );
        assert_eq!(
            range_of("member;binary;range=3-4", "member"),
            Some((3, End::At(4)))
        );
        assert_eq!(range_of("member", "member"), None);
        assert_eq!(range_of("memberOf;range=0-9", "member"), None);
        assert_eq!(range_of("member;range=x-9", "member"), None);
        assert_eq!(range_of("member;range=0", "member"), None);
    }

    fn entry(attrs: &[(&str, &[&str])]) -> LdapSearchResultEntry {
        LdapSearchResultEntry {
            dn: "cn=g".into(),
            attributes: attrs
                .iter()
                .map(|(t, v)| LdapPartialAttribute {
                    atype: (*t).into(),
                    vals: v.iter().map(|s| s.as_bytes().to_vec()).collect(),
                })
                .collect(),
        }
    }

    #[test]
    fn a_ranged_member_attribute_replaces_the_plain_one() {
        let mut e = entry(&[
            ("cn", &["g"]),
            ("member", &["a", "b", "c"]),
            ("member;range=0-1", &["a", "b"]),
        ]);
        let (values, end) = take_ranged(&mut e, "member").unwrap();
        assert_eq!(values, vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(end, End::At(1));
        assert_eq!(e.attributes.len(), 1, "only `cn` is left");

        let mut plain = entry(&[("cn", &["g"]), ("member", &["a"])]);
        assert!(take_ranged(&mut plain, "member").is_none());
        assert_eq!(plain.attributes.len(), 2, "a plain member attribute stays");
    }

    #[test]
    fn only_a_range_that_does_not_end_in_a_star_is_incomplete() {
        let incomplete = |e: LdapSearchResultEntry| incomplete("member", &EntryRef::of(&e));
        assert!(incomplete(entry(&[("member;range=0-1499", &["a"])])));
        assert!(!incomplete(entry(&[("member;range=0-*", &["a"])])));
        assert!(!incomplete(entry(&[("member", &["a"])])));
    }
}
