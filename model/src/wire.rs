//! The idgard entry format: how exported entries cross from a connector to the host.
//!
//! A batch is a sequence of entries, each laid out as (all integers little-endian `u32`):
//!
//! ```text
//! entry := op:u8 (1 = upsert, 2 = delete) | str entity-type | str key | n:u32 | attribute{n}
//! attribute := str name | m:u32 | str{m}
//! str := len:u32 | UTF-8 bytes
//! ```
//!
//! A delete carries no attributes. The host validates every batch with [`decode`] before it
//! keeps a byte of it, so a connector that writes garbage is stopped with a clear error.
//!
//! Besides the layout, [`decode`] refuses what no managed system can mean and what would hurt
//! whoever reads the entries later (a database, a terminal): a key longer than [`MAX_KEY_BYTES`];
//! control characters (U+0000–U+001F, U+007F) in an entity type, a key or an attribute name;
//! NUL in a value (PostgreSQL cannot store it, no directory means it; other control characters,
//! such as a line break in an address, are kept); the same attribute name twice in one entry.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest key an entry may have, in bytes. Distinguished names of deep directory trees stay
/// far below it; a connector that sends megabytes as a key is broken or hostile.
pub const MAX_KEY_BYTES: usize = 4096;

/// Whether an entry is (re)written or removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum EntryOp {
    /// The entry exists with these attributes (inserted or changed).
    Upsert,
    /// The entry no longer exists in the managed system.
    Delete,
}

impl EntryOp {
    fn tag(self) -> u8 {
        match self {
            EntryOp::Upsert => 1,
            EntryOp::Delete => 2,
        }
    }
}

/// One exported entry, owned. Connectors usually write entries straight into an
/// [`crate::Exporter`] instead; this type is what tests and tools read back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Entry {
    /// Upsert or delete.
    pub op: EntryOp,
    /// The entity type, as declared in the connector's schema.
    pub entity_type: String,
    /// The entry's key in its entity type.
    pub key: String,
    /// Attribute names with their values, in the order the connector wrote them.
    pub attributes: Vec<(String, Vec<String>)>,
}

impl Entry {
    /// The first value of an attribute, if the entry has it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.first())
            .map(String::as_str)
    }
}

/// Appends entries to a buffer in the entry format.
#[derive(Debug, Default)]
pub struct BatchBuffer {
    bytes: Vec<u8>,
    entries: u32,
}

impl BatchBuffer {
    /// An empty buffer with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(capacity),
            entries: 0,
        }
    }

    /// Entries written since the last [`BatchBuffer::clear`].
    pub fn entries(&self) -> u32 {
        self.entries
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Forgets the content and keeps the allocation.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.entries = 0;
    }

    /// Starts an entry; returns the offset of its attribute count, for [`BatchBuffer::end_entry`].
    #[inline]
    pub fn begin_entry(&mut self, op: EntryOp, entity_type: &str, key: &str) -> usize {
        self.bytes.push(op.tag());
        self.put_str(entity_type);
        self.put_str(key);
        let at = self.bytes.len();
        self.bytes.extend_from_slice(&0u32.to_le_bytes());
        at
    }

    /// Writes one attribute of the entry being built.
    pub fn attribute<'v>(&mut self, name: &str, values: impl IntoIterator<Item = &'v str>) {
        self.put_str(name);
        let at = self.bytes.len();
        self.bytes.extend_from_slice(&0u32.to_le_bytes());
        let mut n = 0u32;
        for value in values {
            self.put_str(value);
            n += 1;
        }
        self.bytes[at..at + 4].copy_from_slice(&n.to_le_bytes());
    }

    /// Writes a single-valued attribute of the entry being built.
    #[inline]
    pub fn attribute1(&mut self, name: &str, value: &str) {
        self.put_str(name);
        self.bytes.extend_from_slice(&1u32.to_le_bytes());
        self.put_str(value);
    }

    /// Closes the entry started at `at` with its number of attributes.
    #[inline]
    pub fn end_entry(&mut self, at: usize, attributes: u32) {
        self.bytes[at..at + 4].copy_from_slice(&attributes.to_le_bytes());
        self.entries += 1;
    }

    /// Writes a whole owned entry.
    pub fn push(&mut self, entry: &Entry) {
        let at = self.begin_entry(entry.op, &entry.entity_type, &entry.key);
        for (name, values) in &entry.attributes {
            self.attribute(name, values.iter().map(String::as_str));
        }
        self.end_entry(at, entry.attributes.len() as u32);
    }

    #[inline]
    fn put_str(&mut self, s: &str) {
        self.bytes
            .extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(s.as_bytes());
    }
}

/// Why a batch could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    /// Byte offset in the batch where reading failed.
    pub offset: usize,
    /// What was wrong there.
    pub reason: &'static str,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "malformed entry batch at byte {}: {}",
            self.offset, self.reason
        )
    }
}

impl std::error::Error for WireError {}

/// One entry read from a batch, borrowing its strings from the batch.
#[derive(Debug, Clone, Copy)]
pub struct EntryRef<'a> {
    /// Upsert or delete.
    pub op: EntryOp,
    /// The entity type.
    pub entity_type: &'a str,
    /// The key.
    pub key: &'a str,
    attributes: u32,
    body: &'a [u8],
}

impl<'a> EntryRef<'a> {
    /// Number of attributes.
    pub fn attribute_count(&self) -> u32 {
        self.attributes
    }

    /// The attributes with their values. The batch was validated when this entry was read.
    pub fn attributes(&self) -> impl Iterator<Item = (&'a str, Vec<&'a str>)> + 'a {
        let mut r = Reader {
            bytes: self.body,
            pos: 0,
        };
        (0..self.attributes).map(move |_| {
            let name = r.str().expect("validated");
            let n = r.u32().expect("validated");
            let values = (0..n).map(|_| r.str().expect("validated")).collect();
            (name, values)
        })
    }

    /// Copies the entry into an owned [`Entry`].
    pub fn to_owned(&self) -> Entry {
        Entry {
            op: self.op,
            entity_type: self.entity_type.to_owned(),
            key: self.key.to_owned(),
            attributes: self
                .attributes()
                .map(|(n, v)| (n.to_owned(), v.into_iter().map(str::to_owned).collect()))
                .collect(),
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    #[cold]
    fn err(&self, reason: &'static str) -> WireError {
        WireError {
            offset: self.pos,
            reason,
        }
    }

    #[inline]
    fn u8(&mut self) -> Result<u8, WireError> {
        let b = *self
            .bytes
            .get(self.pos)
            .ok_or_else(|| self.err("truncated entry"))?;
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    fn u32(&mut self) -> Result<u32, WireError> {
        let b = self
            .bytes
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| self.err("truncated length"))?;
        self.pos += 4;
        Ok(u32::from_le_bytes(b.try_into().expect("4 bytes")))
    }

    #[inline]
    fn str(&mut self) -> Result<&'a str, WireError> {
        let len = self.u32()? as usize;
        let end = self
            .pos
            .checked_add(len)
            .ok_or_else(|| self.err("length overflows"))?;
        let b = self
            .bytes
            .get(self.pos..end)
            .ok_or_else(|| self.err("string runs past the batch"))?;
        let s = if b.is_ascii() {
            // SAFETY: ASCII is UTF-8. Checked apart because most identity data is ASCII and
            // `is_ascii` inlines, where `from_utf8` is a call per string.
            unsafe { std::str::from_utf8_unchecked(b) }
        } else {
            std::str::from_utf8(b).map_err(|_| self.err("string is not UTF-8"))?
        };
        self.pos = end;
        Ok(s)
    }
}

/// Whether text holds a C0 control character or DEL.
fn has_control(s: &str) -> bool {
    s.bytes().any(|b| b < 0x20 || b == 0x7f)
}

impl<'a> Reader<'a> {
    /// A name (entity type, attribute): not empty, no control characters.
    fn name(&mut self, what: &'static str) -> Result<&'a str, WireError> {
        let at = self.pos;
        let s = self.str()?;
        let reason = if s.is_empty() {
            match what {
                "entity type" => "empty entity type",
                _ => "empty attribute name",
            }
        } else if has_control(s) {
            match what {
                "entity type" => "control character in an entity type",
                _ => "control character in an attribute name",
            }
        } else {
            return Ok(s);
        };
        Err(WireError { offset: at, reason })
    }
}

/// Reads and validates a batch, entry by entry. Every string is checked to be UTF-8 and within
/// the batch; entity types and keys must not be empty; deletes carry no attributes.
pub fn decode(batch: &[u8]) -> impl Iterator<Item = Result<EntryRef<'_>, WireError>> {
    let mut r = Reader {
        bytes: batch,
        pos: 0,
    };
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || r.pos >= r.bytes.len() {
            return None;
        }
        let entry = read_entry(&mut r);
        failed = entry.is_err();
        Some(entry)
    })
}

fn read_entry<'a>(r: &mut Reader<'a>) -> Result<EntryRef<'a>, WireError> {
    let op = match r.u8()? {
        1 => EntryOp::Upsert,
        2 => EntryOp::Delete,
        _ => {
            return Err(WireError {
                offset: r.pos - 1,
                reason: "unknown entry operation",
            });
        }
    };
    let entity_type = r.name("entity type")?;
    let key_at = r.pos;
    let key = r.str()?;
    if key.is_empty() {
        return Err(r.err("empty key"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(WireError {
            offset: key_at,
            reason: "key longer than 4096 bytes",
        });
    }
    if has_control(key) {
        return Err(WireError {
            offset: key_at,
            reason: "control character in a key",
        });
    }
    let attributes = r.u32()?;
    if op == EntryOp::Delete && attributes != 0 {
        return Err(r.err("a delete carries attributes"));
    }
    let start = r.pos;
    // Names seen in this entry, to refuse a repeated one. Entries have a handful of attributes:
    // comparing with the earlier ones is cheaper than hashing, and the first 16 need no
    // allocation.
    let mut first: [&str; 16] = [""; 16];
    let mut more: Vec<&str> = Vec::new();
    for i in 0..attributes as usize {
        let at = r.pos;
        let name = r.name("attribute name")?;
        if first[..i.min(16)].contains(&name) || more.contains(&name) {
            return Err(WireError {
                offset: at,
                reason: "the same attribute name twice in one entry",
            });
        }
        match first.get_mut(i) {
            Some(slot) => *slot = name,
            None => more.push(name),
        }
        let n = r.u32()?;
        for _ in 0..n {
            let at = r.pos;
            if r.str()?.as_bytes().contains(&0) {
                return Err(WireError {
                    offset: at,
                    reason: "NUL character in a value",
                });
            }
        }
    }
    Ok(EntryRef {
        op,
        entity_type,
        key,
        attributes,
        body: &r.bytes[start..r.pos],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Entry {
        Entry {
            op: EntryOp::Upsert,
            entity_type: "person".into(),
            key: "E001".into(),
            attributes: vec![
                ("name".into(), vec!["Zoë Ångström".into()]),
                ("groups".into(), vec!["a".into(), "b".into()]),
                ("empty".into(), vec![]),
            ],
        }
    }

    #[test]
    fn round_trip() {
        let mut b = BatchBuffer::default();
        b.push(&sample());
        let del = Entry {
            op: EntryOp::Delete,
            entity_type: "person".into(),
            key: "E2".into(),
            attributes: vec![],
        };
        b.push(&del);
        let back: Vec<Entry> = decode(b.as_bytes())
            .map(|e| e.unwrap().to_owned())
            .collect();
        assert_eq!(back, vec![sample(), del]);
        assert_eq!(b.entries(), 2);
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let mut b = BatchBuffer::default();
        b.push(&sample());
        let bytes = b.as_bytes();
        for cut in 1..bytes.len() {
            let r: Result<Vec<_>, _> = decode(&bytes[..cut]).collect();
            assert!(r.is_err(), "cut at {cut} accepted");
        }
    }

    #[test]
    fn rejects_bad_utf8_and_huge_lengths() {
        let mut b = BatchBuffer::default();
        b.push(&sample());
        let mut bytes = b.as_bytes().to_vec();
        // The key "E001" starts after op (1), entity type (4 + 6) and its own length (4).
        bytes[15] = 0xff;
        let err = decode(&bytes).next().unwrap().unwrap_err();
        assert_eq!(err.reason, "string is not UTF-8");

        let mut huge = vec![1u8];
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        let err = decode(&huge).next().unwrap().unwrap_err();
        assert_eq!(err.reason, "string runs past the batch");
    }

    /// The first error decoding one upsert entry gives, or "accepted".
    fn first_error(entity_type: &str, key: &str, attributes: &[(&str, &str)]) -> &'static str {
        let mut b = BatchBuffer::default();
        let at = b.begin_entry(EntryOp::Upsert, entity_type, key);
        for (name, value) in attributes {
            b.attribute1(name, value);
        }
        b.end_entry(at, attributes.len() as u32);
        decode(b.as_bytes())
            .find_map(Result::err)
            .map_or("accepted", |e| e.reason)
    }

    #[test]
    fn refuses_what_no_managed_system_means() {
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        let longest = "k".repeat(MAX_KEY_BYTES);
        type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: [Case; 9] = [
            (
                "p",
                "k",
                &[("a", "1"), ("b", "2"), ("a", "3")],
                "the same attribute name twice in one entry",
            ),
            ("p", "a\0b", &[], "control character in a key"),
            ("p", "l1\nl2", &[], "control character in a key"),
            ("p", "\x1b[2J", &[], "control character in a key"),
            ("p\x7f", "k", &[], "control character in an entity type"),
            (
                "p",
                "k",
                &[("a\tb", "1")],
                "control character in an attribute name",
            ),
            ("p", "k", &[("a", "x\0y")], "NUL character in a value"),
            ("p", &long, &[], "key longer than 4096 bytes"),
            (
                "p",
                &longest,
                &[("addr", "line 1\nline 2\tend")],
                "accepted",
            ),
        ];
        for (entity_type, key, attributes, expected) in cases {
            assert_eq!(
                first_error(entity_type, key, attributes),
                expected,
                "{key:.20}"
            );
        }
        // Past the first 16 attributes, repeats are still found.
        let names: Vec<String> = (0..40).map(|i| format!("a{i}")).collect();
        let mut attributes: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
        assert_eq!(first_error("p", "k", &attributes), "accepted");
        attributes.push(("a30", "again"));
        assert_eq!(
            first_error("p", "k", &attributes),
            "the same attribute name twice in one entry"
        );
    }

    #[test]
    fn rejects_empty_key_and_attributes_on_delete() {
        let mut b = BatchBuffer::default();
        let at = b.begin_entry(EntryOp::Upsert, "person", "");
        b.end_entry(at, 0);
        assert_eq!(
            decode(b.as_bytes()).next().unwrap().unwrap_err().reason,
            "empty key"
        );

        let mut b = BatchBuffer::default();
        let at = b.begin_entry(EntryOp::Delete, "person", "k");
        b.attribute1("x", "y");
        b.end_entry(at, 1);
        assert_eq!(
            decode(b.as_bytes()).next().unwrap().unwrap_err().reason,
            "a delete carries attributes"
        );
    }
}
