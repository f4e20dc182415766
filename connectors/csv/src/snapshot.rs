//! Snapshots: what the last export saw, row by row (key and a hash of the row), kept in the
//! connection's collection folder so that an incremental export sends only what changed.
//!
//! Snapshot `N` is `snapshot-N.bin`; the cursor of an export names the snapshot it wrote. Each
//! export writes the next generation and keeps the [`KEPT`] latest: the server starts an
//! incremental export from the last export it synchronized, so a cursor must outlive the
//! exports nobody synchronized since (a failed upload, an export run by hand, a dry run).

use idgard_sdk::{Cursor, Error};
use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// Generations kept: the latest export and the seven before it.
pub const KEPT: u64 = 8;

/// The cursor format of this connector.
pub const FORMAT: &str = "csv-snapshot/1";
const MAGIC: &[u8; 8] = b"IDGSNAP1";

pub fn path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("snapshot-{generation}.bin"))
}

pub fn cursor(generation: u64) -> Cursor {
    Cursor {
        format: FORMAT.into(),
        data: generation.to_le_bytes().to_vec(),
    }
}

pub fn generation(cursor: &Cursor) -> Result<u64, Error> {
    if cursor.format != FORMAT {
        return Err(Error::invalid_cursor(format!(
            "cursor format `{}` is not {FORMAT}",
            cursor.format
        )));
    }
    let bytes: [u8; 8] = cursor
        .data
        .as_slice()
        .try_into()
        .map_err(|_| Error::invalid_cursor("cursor is not 8 bytes"))?;
    Ok(u64::from_le_bytes(bytes))
}

/// The highest generation present in the folder (0 when none).
pub fn latest(dir: &Path) -> Result<u64, Error> {
    let entries = std::fs::read_dir(dir).map_err(|e| idgard_sdk::fs::io_error(dir, "list", e))?;
    let mut max = 0;
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name
            .strip_prefix("snapshot-")
            .and_then(|s| s.strip_suffix(".bin"))
        {
            max = max.max(n.parse().unwrap_or(0));
        }
    }
    Ok(max)
}

/// Removes generations older than `keep_from`.
pub fn prune(dir: &Path, keep_from: u64) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            let old = name
                .strip_prefix("snapshot-")
                .and_then(|s| {
                    s.strip_suffix(".bin")
                        .or_else(|| s.strip_suffix(".bin.tmp"))
                })
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|n| n < keep_from);
            if old {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// Reads a snapshot into key → row hash.
pub fn load(dir: &Path, generation: u64) -> Result<HashMap<Box<str>, u64>, Error> {
    let p = path(dir, generation);
    let f = std::fs::File::open(&p).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::invalid_cursor(format!(
            "snapshot {generation} is gone from the collection folder; run a full export"
        )),
        _ => idgard_sdk::fs::io_error(&p, "read", e),
    })?;
    let mut r = BufReader::with_capacity(256 * 1024, f);
    let corrupt = || {
        Error::invalid_cursor(format!(
            "snapshot {generation} is damaged; run a full export"
        ))
    };
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic).map_err(|_| corrupt())?;
    if &magic != MAGIC {
        return Err(corrupt());
    }
    let mut map = HashMap::new();
    let mut len = [0u8; 4];
    loop {
        match r.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(_) => return Err(corrupt()),
        }
        let n = u32::from_le_bytes(len) as usize;
        if n > 64 * 1024 {
            return Err(corrupt());
        }
        let mut key = vec![0u8; n];
        let mut hash = [0u8; 8];
        r.read_exact(&mut key).map_err(|_| corrupt())?;
        r.read_exact(&mut hash).map_err(|_| corrupt())?;
        let key = String::from_utf8(key).map_err(|_| corrupt())?;
        map.insert(key.into_boxed_str(), u64::from_le_bytes(hash));
    }
    Ok(map)
}

/// Writes a snapshot as rows come; becomes visible under its name only when finished.
pub struct Writer {
    out: BufWriter<std::fs::File>,
    tmp: PathBuf,
    path: PathBuf,
}

impl Writer {
    pub fn create(dir: &Path, generation: u64) -> Result<Self, Error> {
        let path = path(dir, generation);
        let tmp = idgard_sdk::fs::temporary_beside(&path);
        let f =
            std::fs::File::create(&tmp).map_err(|e| idgard_sdk::fs::io_error(&tmp, "create", e))?;
        let mut out = BufWriter::with_capacity(256 * 1024, f);
        out.write_all(MAGIC)
            .map_err(|e| idgard_sdk::fs::io_error(&tmp, "write", e))?;
        Ok(Self { out, tmp, path })
    }

    pub fn row(&mut self, key: &str, hash: u64) -> Result<(), Error> {
        let w = &mut self.out;
        w.write_all(&(key.len() as u32).to_le_bytes())
            .and_then(|_| w.write_all(key.as_bytes()))
            .and_then(|_| w.write_all(&hash.to_le_bytes()))
            .map_err(|e| idgard_sdk::fs::io_error(&self.tmp, "write", e))
    }

    pub fn finish(self) -> Result<(), Error> {
        let f = self
            .out
            .into_inner()
            .map_err(|e| idgard_sdk::fs::io_error(&self.tmp, "write", e.into_error()))?;
        f.sync_all()
            .map_err(|e| idgard_sdk::fs::io_error(&self.tmp, "write", e))?;
        std::fs::rename(&self.tmp, &self.path)
            .map_err(|e| idgard_sdk::fs::io_error(&self.path, "write", e))
    }
}
