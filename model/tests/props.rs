//! Property tests of the parsers that read what comes from outside the server: the entry wire
//! format (connectors' output, uploaded by agents) and the upload frames around it. Whatever
//! the bytes, they answer with entries or an error, never a panic; and what is written reads
//! back the same, however it is cut into chunks.

use idgard_model::frames;
use idgard_model::wire::{self, BatchBuffer, Entry, EntryOp};
use proptest::prelude::*;

/// A name or a key: not empty, no control character (the format's rules).
fn text() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z0-9_.-]{1,12}", "\\PC{1,12}"]
}

fn entry() -> impl Strategy<Value = Entry> {
    (
        prop_oneof![Just(EntryOp::Upsert), Just(EntryOp::Delete)],
        "[a-z]{1,8}",
        text(),
        // Attribute names are unique within an entry.
        prop::collection::btree_map(text(), prop::collection::vec(any::<String>(), 0..4), 0..6),
    )
        // A delete carries no attributes (the format refuses one that does).
        .prop_map(|(op, entity_type, key, attributes)| Entry {
            op,
            entity_type,
            key,
            attributes: match op {
                EntryOp::Delete => vec![],
                EntryOp::Upsert => attributes.into_iter().collect(),
            },
        })
}

fn batch(entries: &[Entry]) -> Vec<u8> {
    let mut b = BatchBuffer::with_capacity(1024);
    for e in entries {
        b.push(e);
    }
    b.as_bytes().to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn entries_read_back_as_written(entries in prop::collection::vec(entry(), 0..20)) {
        let bytes = batch(&entries);
        let back: Vec<Entry> = wire::decode(&bytes)
            .map(|e| e.map(|e| e.to_owned()))
            .collect::<Result<_, _>>()
            .map_err(|e| TestCaseError::fail(format!("{e}")))?;
        prop_assert_eq!(back, entries);
    }

    #[test]
    fn any_bytes_decode_to_entries_or_an_error(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        for e in wire::decode(&bytes).flatten() {
            let _ = e.attributes().count();
        }
    }

    #[test]
    fn a_damaged_batch_never_panics(
        entries in prop::collection::vec(entry(), 1..8),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = batch(&entries);
        let i = at.index(bytes.len());
        bytes[i] = byte;
        let end = cut.index(bytes.len() + 1);
        for e in wire::decode(&bytes[..end]).flatten() {
            let _ = e.to_owned();
        }
    }

    #[test]
    fn frames_read_the_same_in_any_chunks(
        payloads in prop::collection::vec((any::<u32>(), prop::collection::vec(any::<u8>(), 0..64)), 0..10),
        chunk in 1usize..40,
    ) {
        let mut stream = Vec::new();
        for (entries, p) in &payloads {
            stream.extend_from_slice(&frames::header(*entries, p.len() as u32));
            stream.extend_from_slice(p);
        }
        let whole = frames::split(&stream).map_err(|at| TestCaseError::fail(format!("at {at}")))?;
        prop_assert_eq!(whole.len(), payloads.len());
        let mut reader = frames::Reader::new();
        let mut read = Vec::new();
        for piece in stream.chunks(chunk) {
            reader.push(piece);
            while let Some((n, p)) = reader.next_frame() {
                read.push((n, p.to_vec()));
            }
        }
        prop_assert!(reader.finish().is_ok());
        let expected: Vec<(u32, Vec<u8>)> = whole.iter().map(|(n, p)| (*n, p.to_vec())).collect();
        prop_assert_eq!(read, expected);
    }

    #[test]
    fn any_bytes_split_into_frames_or_an_error(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(frames) = frames::split(&bytes) {
            let total: usize = frames.iter().map(|(_, p)| p.len() + frames::HEADER).sum();
            prop_assert_eq!(total, bytes.len());
        }
    }
}
