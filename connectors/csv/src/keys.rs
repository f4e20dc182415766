//! The keys of the accounts file, kept beside it (`.<file>.idgard-keys`, in the same granted
//! folder), so that a batch of creates appends its rows to the file instead of rewriting it:
//! what fulfilment writes follows the batch, not the file.
//!
//! The index holds a magic, the length and modification time of the accounts file it
//! describes, then each key (length-prefixed). Appends go in this order: rows to the accounts
//! file, keys to the index, then the new length and time. A crash in between, or anyone else
//! editing the file, leaves a length or time that does not match: the index is then not used,
//! and the next batch rewrites the file and the index whole.

use idgard_sdk::Error;
use std::collections::HashSet;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"IDGKEYS1";
const HEADER: u64 = 8 + 8 + 16;

fn path(accounts: &Path) -> PathBuf {
    let name = accounts
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    accounts.with_file_name(format!(".{name}.idgard-keys"))
}

/// The length and modification time (ns) of the accounts file.
fn stamp(accounts: &Path) -> Option<(u64, u128)> {
    let m = std::fs::metadata(accounts).ok()?;
    let t = m
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    Some((m.len(), t.as_nanos()))
}

fn io(p: &Path, action: &str) -> impl Fn(std::io::Error) -> Error {
    let p = p.to_owned();
    let action = action.to_owned();
    move |e| idgard_sdk::fs::io_error(&p, &action, e)
}

/// Whether any of `wanted` is a key of `accounts`, read from the index without keeping it
/// (a scan of the index, no key copied); `None` when the index does not describe the file as
/// it is now.
pub fn any_known(accounts: &Path, wanted: &HashSet<&str>) -> Option<bool> {
    let now = stamp(accounts)?;
    let bytes = std::fs::read(path(accounts)).ok()?;
    if bytes.len() < HEADER as usize || &bytes[..8] != MAGIC {
        return None;
    }
    let len = u64::from_le_bytes(bytes[8..16].try_into().ok()?);
    let time = u128::from_le_bytes(bytes[16..32].try_into().ok()?);
    if (len, time) != now {
        return None;
    }
    let mut at = HEADER as usize;
    while at < bytes.len() {
        let n = u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?) as usize;
        let key = std::str::from_utf8(bytes.get(at + 4..at + 4 + n)?).ok()?;
        if wanted.contains(key) {
            return Some(true);
        }
        at += 4 + n;
    }
    Some(false)
}

fn record(out: &mut Vec<u8>, key: &str) {
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key.as_bytes());
}

fn header(accounts: &Path) -> Result<Vec<u8>, Error> {
    let (len, time) = stamp(accounts)
        .ok_or_else(|| Error::internal(format!("{}: no length or time", accounts.display())))?;
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&time.to_le_bytes());
    Ok(out)
}

/// The keys of a file being written, as index records.
#[derive(Default)]
pub struct Records(Vec<u8>);

impl Records {
    /// One more key.
    pub fn push(&mut self, key: &str) {
        record(&mut self.0, key);
    }

    /// Writes the index of `accounts` whole (after the file was written again).
    pub fn save(self, accounts: &Path) -> Result<(), Error> {
        let mut out = header(accounts)?;
        out.extend_from_slice(&self.0);
        idgard_sdk::fs::write_atomic(&path(accounts), &out)
    }
}

/// Adds `keys` to the index after rows were appended to `accounts`.
pub fn append<'a>(accounts: &Path, keys: impl Iterator<Item = &'a str>) -> Result<(), Error> {
    let p = path(accounts);
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&p)
        .map_err(io(&p, "open"))?;
    let mut records = Vec::new();
    for k in keys {
        record(&mut records, k);
    }
    f.seek(SeekFrom::End(0)).map_err(io(&p, "seek"))?;
    f.write_all(&records).map_err(io(&p, "write"))?;
    f.sync_data().map_err(io(&p, "write"))?;
    let head = header(accounts)?;
    f.seek(SeekFrom::Start(0)).map_err(io(&p, "seek"))?;
    f.write_all(&head).map_err(io(&p, "write"))?;
    f.sync_data().map_err(io(&p, "write"))
}
