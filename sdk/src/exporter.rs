//! Streams exported entries to the host in bounded batches.

use crate::wire::{BatchBuffer, Entry, EntryOp};

/// A batch is sent to the host when it holds this many bytes, whatever the batch size: memory
/// on both sides stays bounded even when entries are large.
const MAX_BATCH_BYTES: usize = 1 << 20;
/// Used when the host asks for a batch size of 0.
const DEFAULT_BATCH_SIZE: u32 = 1024;

/// Where an export writes its entries. Entries are encoded straight into a buffer that is handed
/// to the host when full, so an export of any size holds one batch in memory at a time.
#[derive(Debug)]
pub struct Exporter {
    buf: BatchBuffer,
    batch_size: u32,
    emitted: u64,
    rejected: u64,
}

impl Exporter {
    pub(crate) fn new(batch_size: u32) -> Self {
        let batch_size = if batch_size == 0 {
            DEFAULT_BATCH_SIZE
        } else {
            batch_size
        };
        Self {
            buf: BatchBuffer::with_capacity(64 * 1024),
            batch_size,
            emitted: 0,
            rejected: 0,
        }
    }

    /// Starts an entry that exists (inserted or changed); add its attributes on the writer.
    /// The entry is complete when the writer is dropped.
    #[inline]
    pub fn upsert(&mut self, entity_type: &str, key: &str) -> EntryWriter<'_> {
        let at = self.buf.begin_entry(EntryOp::Upsert, entity_type, key);
        EntryWriter {
            out: self,
            at,
            attributes: 0,
        }
    }

    /// Writes an entry that no longer exists.
    pub fn delete(&mut self, entity_type: &str, key: &str) {
        let at = self.buf.begin_entry(EntryOp::Delete, entity_type, key);
        self.buf.end_entry(at, 0);
        self.entry_done();
    }

    /// Writes a whole owned entry.
    pub fn push(&mut self, entry: &Entry) {
        self.buf.push(entry);
        self.entry_done();
    }

    /// Counts a source record that could not be read and logs why (with its position, so
    /// that someone can fix the source). The export goes on.
    pub fn reject(&mut self, reason: &str) {
        self.rejected += 1;
        crate::log::warn(reason);
    }

    /// Entries written so far.
    pub fn entries(&self) -> u64 {
        self.emitted + u64::from(self.buf.entries())
    }

    /// Records rejected so far.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    #[inline]
    fn entry_done(&mut self) {
        if self.buf.entries() >= self.batch_size || self.buf.len() >= MAX_BATCH_BYTES {
            self.flush();
        }
    }

    /// Sends the pending batch to the host now.
    pub fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        crate::host::emit(self.buf.as_bytes());
        self.emitted += u64::from(self.buf.entries());
        self.buf.clear();
        crate::host::progress(self.emitted, None, "entries exported");
    }

    pub(crate) fn finish(mut self) -> (u64, u64) {
        self.flush();
        (self.emitted, self.rejected)
    }
}

/// Adds attributes to the entry being written; the entry ends when this is dropped.
#[derive(Debug)]
pub struct EntryWriter<'a> {
    out: &'a mut Exporter,
    at: usize,
    attributes: u32,
}

impl EntryWriter<'_> {
    /// Adds a single-valued attribute.
    #[inline]
    pub fn attr(&mut self, name: &str, value: &str) -> &mut Self {
        self.out.buf.attribute1(name, value);
        self.attributes += 1;
        self
    }

    /// Adds a multi-valued attribute.
    #[inline]
    pub fn values<'v>(
        &mut self,
        name: &str,
        values: impl IntoIterator<Item = &'v str>,
    ) -> &mut Self {
        self.out.buf.attribute(name, values);
        self.attributes += 1;
        self
    }
}

impl Drop for EntryWriter<'_> {
    #[inline]
    fn drop(&mut self) {
        self.out.buf.end_entry(self.at, self.attributes);
        self.out.entry_done();
    }
}
