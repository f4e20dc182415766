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
