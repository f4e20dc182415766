//! Search result entries read in place. An export receives one `SearchResultEntry` message per
//! entry; decoding each into `ldap3_proto`'s message tree costs an allocation per element and
//! per value, which was most of the connector's time in a large export. This reads the entry's
//! DN, attribute names and values as slices of the received bytes instead (BER as LDAP uses it:
//! definite lengths, RFC 4511 §5.1). Every other message, and anything this reader does not
//! recognise, goes through the codec as before.

use ldap3_proto::proto::{LdapPartialAttribute, LdapSearchResultEntry};

/// An entry of a search result: its DN and its attributes, read in place from the received
/// bytes (checked once when the message was read, so reading them again cannot fail), or seen in
/// an entry the codec decoded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EntryRef<'a> {
    pub dn: &'a str,
    attributes: Form<'a, LdapPartialAttribute>,
}

/// One attribute of an [`EntryRef`]: its description and its values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttrRef<'a> {
    pub atype: &'a str,
    vals: Form<'a, Vec<u8>>,
}

/// A list as BER content (elements one after the other), or as decoded items.
#[derive(Debug, PartialEq)]
enum Form<'a, T> {
    Ber(&'a [u8]),
    Decoded(&'a [T]),
}

// Two slices: copied whatever `T` is (a derive would ask `T: Copy`).
impl<T> Clone for Form<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Form<'_, T> {}

impl<'a> EntryRef<'a> {
    /// A decoded entry, seen in place.
    pub fn of(e: &'a LdapSearchResultEntry) -> Self {
        EntryRef {
            dn: &e.dn,
            attributes: Form::Decoded(&e.attributes),
        }
    }

    /// The attributes, in the order the directory sent them.
    pub fn attributes(&self) -> impl Iterator<Item = AttrRef<'a>> + use<'a> {
        let mut form = self.attributes;
        std::iter::from_fn(move || match &mut form {
            Form::Ber(rest) => {
                let (attr, next) = element(rest, SEQUENCE)?;
                *rest = next;
                let (atype, after) = element(attr, OCTET_STRING)?;
                let (set, _) = element(after, SET)?;
                Some(AttrRef {
                    atype: std::str::from_utf8(atype).ok()?,
                    vals: Form::Ber(set),
                })
            }
            Form::Decoded(list) => {
                let (a, next) = list.split_first()?;
                *list = next;
                Some(AttrRef {
                    atype: &a.atype,
                    vals: Form::Decoded(&a.vals),
                })
            }
        })
    }

    /// The attribute `attribute` (its name compared without case), if the entry has it.
    pub fn attribute(&self, attribute: &str) -> Option<AttrRef<'a>> {
        self.attributes()
            .find(|a| a.atype.eq_ignore_ascii_case(attribute))
    }

    /// The entry, owned.
    pub fn owned(self) -> LdapSearchResultEntry {
        LdapSearchResultEntry {
            dn: self.dn.to_owned(),
            attributes: self
                .attributes()
                .map(|a| LdapPartialAttribute {
                    atype: a.atype.to_owned(),
                    vals: a.values().map(<[u8]>::to_vec).collect(),
                })
                .collect(),
        }
    }
}

impl<'a> AttrRef<'a> {
    /// The values, in the order the directory sent them.
    pub fn values(&self) -> impl Iterator<Item = &'a [u8]> + use<'a> {
        let mut form = self.vals;
        std::iter::from_fn(move || match &mut form {
            Form::Ber(rest) => {
                let (v, next) = element(rest, OCTET_STRING)?;
                *rest = next;
                Some(v)
            }
            Form::Decoded(list) => {
                let (v, next) = list.split_first()?;
                *list = next;
                Some(v.as_slice())
            }
        })
    }
}

/// The first value of an attribute (its name compared without case), whichever form the entry
/// is in.
pub trait FirstValue {
    fn first_value(&self, attribute: &str) -> Option<&[u8]>;
}

impl FirstValue for EntryRef<'_> {
    fn first_value(&self, attribute: &str) -> Option<&[u8]> {
        self.attribute(attribute)?.values().next()
    }
}

impl FirstValue for LdapSearchResultEntry {
    fn first_value(&self, attribute: &str) -> Option<&[u8]> {
        self.attributes
            .iter()
            .find(|a| a.atype.eq_ignore_ascii_case(attribute))?
            .vals
            .first()
            .map(Vec::as_slice)
    }
}

/// What the start of the received bytes holds.
#[derive(Debug, PartialEq)]
pub enum Peek<'a> {
    /// Not a whole message yet: read more.
    Incomplete,
    /// A search result entry for request `id`, `len` bytes long.
    Entry {
        id: i32,
        len: usize,
        entry: EntryRef<'a>,
    },
    /// Another message (or one this reader leaves to the codec).
    Other,
}

/// Looks at the message at the start of `buf`.
pub fn peek(buf: &[u8]) -> Peek<'_> {
    let Some((tag, header, len)) = header(buf) else {
        return if header_incomplete(buf) {
            Peek::Incomplete
        } else {
            Peek::Other
        };
    };
    if tag != SEQUENCE {
        return Peek::Other;
    }
    let Some(body) = buf.get(header..header + len) else {
        return Peek::Incomplete;
    };
    match entry_message(body) {
        Some((id, entry)) => Peek::Entry {
            id,
            len: header + len,
            entry,
        },
        None => Peek::Other,
    }
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const OCTET_STRING: u8 = 0x04;
/// `[APPLICATION 4]` constructed: searchResEntry.
const SEARCH_RESULT_ENTRY: u8 = 0x64;

/// The tag, the header's size and the content's length of the element at the start of `b`;
/// `None` when the header is not all there or is not one LDAP sends (indefinite or over 4
/// length bytes).
fn header(b: &[u8]) -> Option<(u8, usize, usize)> {
    let tag = *b.first()?;
    let first = *b.get(1)?;
    if first < 0x80 {
        return Some((tag, 2, first as usize));
    }
    let n = (first & 0x7f) as usize;
    if n == 0 || n > 4 {
        return None;
    }
    let bytes = b.get(2..2 + n)?;
    let len = bytes.iter().fold(0usize, |l, &x| (l << 8) | x as usize);
    Some((tag, 2 + n, len))
}

/// Whether a header that does not parse is only cut short.
fn header_incomplete(b: &[u8]) -> bool {
    match b.get(1) {
        None => true,
        Some(&f) if f < 0x80 => false,
        Some(&f) => {
            let n = (f & 0x7f) as usize;
            (1..=4).contains(&n) && b.len() < 2 + n
        }
    }
}

/// The next element of `b` if it has tag `want`: its content, and what follows it.
fn element(b: &[u8], want: u8) -> Option<(&[u8], &[u8])> {
    let (tag, header, len) = header(b)?;
    if tag != want {
        return None;
    }
    let content = b.get(header..header + len)?;
    Some((content, &b[header + len..]))
}

/// An LDAPMessage's content if it is a search result entry: the message id and the entry.
fn entry_message(body: &[u8]) -> Option<(i32, EntryRef<'_>)> {
    let (id, rest) = element(body, INTEGER)?;
    if id.is_empty() || id.len() > 4 {
        return None;
    }
    let id = id
        .iter()
        .fold(if id[0] & 0x80 != 0 { -1i32 } else { 0 }, |v, &x| {
            (v << 8) | x as i32
        });
    // Controls may follow the operation; an entry's are of no use here.
    let (op, _controls) = element(rest, SEARCH_RESULT_ENTRY)?;
    let (dn, rest) = element(op, OCTET_STRING)?;
    let (attributes, _) = element(rest, SEQUENCE)?;
    // Checked whole now, so that reading the attributes later cannot fail.
    let mut list = attributes;
    while !list.is_empty() {
        let (attr, next) = element(list, SEQUENCE)?;
        let (atype, rest) = element(attr, OCTET_STRING)?;
        std::str::from_utf8(atype).ok()?;
        let (mut set, _) = element(rest, SET)?;
        while !set.is_empty() {
            set = element(set, OCTET_STRING)?.1;
        }
        list = next;
    }
    Some((
        id,
        EntryRef {
            dn: std::str::from_utf8(dn).ok()?,
            attributes: Form::Ber(attributes),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use ldap3_proto::LdapCodec;
    use ldap3_proto::proto::{LdapMsg, LdapOp, LdapResult, LdapResultCode};
    use tokio_util::codec::{Decoder, Encoder};

    fn encoded(id: i32, op: LdapOp) -> Vec<u8> {
        let mut out = BytesMut::new();
        LdapCodec::new(Some(64 << 20), None)
            .encode(LdapMsg::new(id, op), &mut out)
            .unwrap();
        out.to_vec()
    }

    fn sample(values: usize) -> LdapSearchResultEntry {
        LdapSearchResultEntry {
            dn: "uid=zoë,ou=people,dc=example,dc=org".into(),
            attributes: vec![
                LdapPartialAttribute {
                    atype: "cn".into(),
                    vals: vec!["Zoë O'Brien".into()],
                },
                LdapPartialAttribute {
                    atype: "member;range=0-*".into(),
                    vals: (0..values)
                        .map(|i| format!("uid=u{i}").into_bytes())
                        .collect(),
                },
                LdapPartialAttribute {
                    atype: "objectGUID".into(),
                    vals: vec![vec![0, 0x80, 0xff, 0x30, 0x04]],
                },
                LdapPartialAttribute {
                    atype: "empty".into(),
                    vals: vec![],
                },
            ],
        }
    }

    #[test]
    fn an_entry_reads_as_the_codec_decodes_it() {
        // Short and long lengths (a value list over 127 and over 65,535 bytes), ids of 1 to 4
        // bytes, and a negative one.
        for (id, values) in [(1, 0), (300, 20), (70_000, 10_000), (-5, 1)] {
            let e = sample(values);
            let bytes = encoded(id, LdapOp::SearchResultEntry(e.clone()));
            let Peek::Entry {
                id: got,
                len,
                entry,
            } = peek(&bytes)
            else {
                panic!("not read: {values}")
            };
            assert_eq!((got, len), (id, bytes.len()));
            let decoded = LdapCodec::new(Some(64 << 20), None)
                .decode(&mut BytesMut::from(&bytes[..]))
                .unwrap()
                .unwrap();
            let LdapOp::SearchResultEntry(by_codec) = decoded.op else {
                panic!()
            };
            assert_eq!(entry.owned(), by_codec);
            assert_eq!(entry.owned(), e);
            assert_eq!(EntryRef::of(&e).owned(), e);
            let member = entry
                .attribute("MEMBER;range=0-*")
                .expect("found without case");
            assert_eq!(member.values().count(), values);
            assert_eq!(entry.first_value("cn"), Some("Zoë O'Brien".as_bytes()));
            assert_eq!(EntryRef::of(&e).first_value("cn"), e.first_value("cn"));
        }
    }

    #[test]
    fn a_message_cut_short_asks_for_more_and_others_go_to_the_codec() {
        let bytes = encoded(7, LdapOp::SearchResultEntry(sample(2_000)));
        for cut in [0, 1, 2, 3, 5, 100, bytes.len() - 1] {
            assert_eq!(peek(&bytes[..cut]), Peek::Incomplete, "cut at {cut}");
        }
        let mut two = bytes.clone();
        two.extend_from_slice(&bytes);
        assert!(matches!(peek(&two), Peek::Entry { len, .. } if len == bytes.len()));
        let done = encoded(
            7,
            LdapOp::SearchResultDone(LdapResult {
                code: LdapResultCode::Success,
                matcheddn: String::new(),
                message: String::new(),
                referral: vec![],
            }),
        );
        assert_eq!(peek(&done), Peek::Other);
        assert_eq!(peek(&[0x30, 0x80, 0, 0, 0, 0]), Peek::Other, "indefinite");
        assert_eq!(
            peek(&[0x04, 0x01, 0, 0, 0, 0]),
            Peek::Other,
            "not a message"
        );
    }

    #[test]
    fn a_malformed_entry_is_left_to_the_codec() {
        let mut bytes = encoded(9, LdapOp::SearchResultEntry(sample(3)));
        // The DN's length made longer than the operation.
        let at = bytes
            .iter()
            .position(|&b| b == SEARCH_RESULT_ENTRY)
            .unwrap();
        bytes[at + 3] = 0x7f;
        assert_eq!(peek(&bytes), Peek::Other);
    }
}
