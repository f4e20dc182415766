//! An export's upload is a sequence of frames, one per batch the connector emitted:
//! `[entries: u32 LE][length: u32 LE][batch: length bytes]`, the batch in the connector wire
//! format ([`crate::wire`]).

/// Bytes before each batch.
pub const HEADER: usize = 8;

/// The header of a frame.
pub fn header(entries: u32, length: u32) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[..4].copy_from_slice(&entries.to_le_bytes());
    h[4..].copy_from_slice(&length.to_le_bytes());
    h
}

/// Reads frames from an upload that arrives in pieces (chunks stored apart): push bytes as they
/// come, take every whole frame, and at the end check that nothing was left inside a frame.
#[derive(Debug, Default)]
pub struct Reader {
    buf: Vec<u8>,
    /// Where the next frame starts in `buf`.
    at: usize,
    /// Bytes consumed before `buf` (for offsets in errors).
    consumed: u64,
}

impl Reader {
    /// A reader with nothing pushed yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the next piece of the upload.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.drain(..self.at);
        self.consumed += self.at as u64;
        self.at = 0;
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame, `(entries, batch)`, if the bytes pushed so far hold one.
    pub fn next_frame(&mut self) -> Option<(u32, &[u8])> {
        let h = self.buf.get(self.at..self.at + HEADER)?;
        let entries = u32::from_le_bytes(h[..4].try_into().expect("4 bytes"));
        let len = u32::from_le_bytes(h[4..].try_into().expect("4 bytes")) as usize;
        let start = self.at + HEADER;
        let end = start.checked_add(len)?;
        if self.buf.len() < end {
            return None;
        }
        self.at = end;
        Some((entries, &self.buf[start..end]))
    }

    /// Bytes pushed and not yet taken as frames (a frame still arriving).
    pub fn pending(&self) -> usize {
        self.buf.len() - self.at
    }

    /// At the end of the upload: `Err` with the offset of a frame that was cut short.
    pub fn finish(&self) -> Result<(), u64> {
        if self.at == self.buf.len() {
            Ok(())
        } else {
            Err(self.consumed + self.at as u64)
        }
    }
}

/// Splits a whole upload into `(entries, batch)` frames; `Err` names the offset of the first
/// frame that does not fit.
pub fn split(bytes: &[u8]) -> Result<Vec<(u32, &[u8])>, u64> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let Some(h) = bytes.get(at..at + HEADER) else {
            return Err(at as u64);
        };
        let entries = u32::from_le_bytes(h[..4].try_into().expect("4 bytes"));
        let len = u32::from_le_bytes(h[4..].try_into().expect("4 bytes")) as usize;
        let Some(batch) = bytes.get(at + HEADER..at + HEADER + len) else {
            return Err(at as u64);
        };
        out.push((entries, batch));
        at += HEADER + len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload(batches: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, b) in batches.iter().enumerate() {
            out.extend_from_slice(&header(i as u32, b.len() as u32));
            out.extend_from_slice(b);
        }
        out
    }

    #[test]
    fn frames_come_out_whole_whatever_the_pieces() {
        let batches: [&[u8]; 3] = [b"first", b"", b"third batch"];
        let bytes = upload(&batches);
        for piece in [1, 3, 8, 13, bytes.len()] {
            let mut r = Reader::new();
            let mut got: Vec<(u32, Vec<u8>)> = Vec::new();
            for chunk in bytes.chunks(piece) {
                r.push(chunk);
                while let Some((n, b)) = r.next_frame() {
                    got.push((n, b.to_vec()));
                }
            }
            assert_eq!(r.finish(), Ok(()), "pieces of {piece}");
            let want: Vec<(u32, Vec<u8>)> = batches
                .iter()
                .enumerate()
                .map(|(i, b)| (i as u32, b.to_vec()))
                .collect();
            assert_eq!(got, want, "pieces of {piece}");
            assert_eq!(split(&bytes).unwrap().len(), 3);
        }
    }

    #[test]
    fn a_frame_cut_short_is_named_by_its_offset() {
        let bytes = upload(&[b"first", b"second"]);
        let cut = &bytes[..bytes.len() - 2];
        let mut r = Reader::new();
        for chunk in cut.chunks(4) {
            r.push(chunk);
            while r.next_frame().is_some() {}
        }
        assert_eq!(r.finish(), Err(13));
        assert_eq!(split(cut).unwrap_err(), 13);
    }
}
