//! Export of an HR-style CSV file: full, or incremental against the previous snapshot.

use crate::Config;
use crate::snapshot;
use idgard_sdk::{Cursor, Error, ExportMode, Exporter};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// Counts the line breaks of what the CSV reader reads, so that a row is reported with the line
/// it starts on: the CSV reader's own count is off by one on files with CRLF line endings.
struct Lines<R> {
    inner: R,
    offset: u64,
    breaks: Rc<RefCell<VecDeque<u64>>>,
}

impl<R: Read> Read for Lines<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut breaks = self.breaks.borrow_mut();
        for i in memchr::memchr_iter(b'\n', &buf[..n]) {
            breaks.push_back(self.offset + i as u64);
        }
        self.offset += n as u64;
        Ok(n)
    }
}

/// Answers "which line is byte N on" for increasing N, forgetting the breaks it has passed.
struct LineIndex {
    breaks: Rc<RefCell<VecDeque<u64>>>,
    passed: u64,
}

impl LineIndex {
    fn line_at(&mut self, byte: u64) -> u64 {
        let mut breaks = self.breaks.borrow_mut();
        // A record read after a CRLF starts, for the CSV reader, on the CRLF's `\n`: that break
        // still ends the previous line.
        while breaks.front().is_some_and(|&b| b <= byte) {
            breaks.pop_front();
            self.passed += 1;
        }
        self.passed + 1
    }
}

/// An open CSV file with its header row read.
pub struct Source {
    reader: csv::Reader<Lines<std::fs::File>>,
    lines: LineIndex,
    headers: Vec<String>,
    key: String,
    path: PathBuf,
}

/// A file name from the settings, inside a granted folder: no absolute path, no `..`.
pub fn resolve(folder: &Path, name: &str, setting: &str) -> Result<PathBuf, Error> {
    let p = Path::new(name);
    if name.is_empty() || p.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(Error::configuration(format!(
            "{setting} `{name}` must be a relative path inside its folder (no `..`, no leading `/`)"
        )));
    }
    Ok(folder.join(p))
}

impl Source {
    pub fn open(config: &Config) -> Result<Self, Error> {
        let file = config
            .file
            .as_deref()
            .ok_or_else(|| Error::configuration("setting `file` is required"))?;
        let path = resolve(&idgard_sdk::fs::granted("source")?, file, "file")?;
        let f =
            std::fs::File::open(&path).map_err(|e| idgard_sdk::fs::io_error(&path, "open", e))?;
        let breaks = Rc::new(RefCell::new(VecDeque::new()));
        let f = Lines {
            inner: f,
            offset: 0,
            breaks: breaks.clone(),
        };
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(config.delimiter_byte()?)
            .has_headers(true)
            .flexible(true)
            .buffer_capacity(256 * 1024)
            .from_reader(f);
        let headers = reader
            .headers()
            .map_err(|e| {
                Error::invalid_data(format!(
                    "{}: cannot read the header row: {e}",
                    path.display()
                ))
            })?
            .iter()
            .map(str::to_owned)
            .collect::<Vec<_>>();
        if headers.is_empty() || headers.iter().all(String::is_empty) {
            return Err(Error::invalid_data(format!(
                "{}: the header row is empty",
                path.display()
            )));
        }
        Ok(Self {
            reader,
            lines: LineIndex { breaks, passed: 0 },
            headers,
            key: config.key.clone(),
            path,
        })
    }

    pub fn headers(&self) -> &[String] {
        &self.headers
    }

    pub fn key_index(&self) -> Result<usize, Error> {
        self.headers
            .iter()
            .position(|h| *h == self.key)
            .ok_or_else(|| {
                Error::configuration(format!(
                    "{}: no key column `{}` (columns: {})",
                    self.path.display(),
                    self.key,
                    self.headers.join(", ")
                ))
            })
    }
}

/// Why a row cannot be exported, if it cannot.
fn check_row(
    record: &csv::StringRecord,
    headers: &[String],
    key: usize,
    line: u64,
) -> Option<String> {
    if record.len() != headers.len() {
        return Some(format!(
            "line {line}: {} fields where the header has {}; row skipped",
            record.len(),
            headers.len()
        ));
    }
    if record[key].is_empty() {
        return Some(format!(
            "line {line}: the key column `{}` is empty; row skipped",
            headers[key]
        ));
    }
    None
}

/// A hash of the row's fields and their boundaries, for change detection. One-shot hashes: the
/// streaming hasher's set-up costs more than hashing a typical row.
fn row_hash(record: &csv::StringRecord, lengths: &mut Vec<u8>) -> u64 {
    lengths.clear();
    for field in record {
        lengths.extend_from_slice(&(field.len() as u32).to_le_bytes());
    }
    let fields = xxh3_64(record.as_slice().as_bytes());
    xxh3_64_with_seed(lengths, fields)
}

/// Exports the file; returns the cursor of the snapshot written.
pub fn run(config: &Config, mode: &ExportMode, out: &mut Exporter) -> Result<Cursor, Error> {
    let mut source = Source::open(config)?;
    let key = source.key_index()?;
    let collect = idgard_sdk::fs::collect_dir();
    let latest = snapshot::latest(&collect)?;
    let mut previous = match mode {
        ExportMode::Full => None,
        ExportMode::Incremental(cursor) => {
            Some(snapshot::load(&collect, snapshot::generation(cursor)?)?)
        }
    };
    let generation = latest + 1;
    let mut snap = snapshot::Writer::create(&collect, generation)?;
    let headers = std::mem::take(&mut source.headers);
    let entity_type = config.entity_type.as_str();
    let mut record = csv::StringRecord::new();
    let mut lengths = Vec::with_capacity(4 * headers.len());
    let mut unidentified = 0u64;
    loop {
        let problem = match source.reader.read_record(&mut record) {
            Ok(true) => {
                let line = source
                    .lines
                    .line_at(record.position().map_or(0, |p| p.byte()));
                check_row(&record, &headers, key, line)
            }
            Ok(false) => break,
            Err(e) => match e.kind() {
                csv::ErrorKind::Utf8 { pos, .. } => {
                    let line = source.lines.line_at(pos.as_ref().map_or(0, |p| p.byte()));
                    record.clear();
                    Some(format!("line {line}: not valid UTF-8; row skipped"))
                }
                csv::ErrorKind::Io(_) => {
                    return Err(Error::unavailable(format!(
                        "{}: {e}",
                        source.path.display()
                    )));
                }
                _ => {
                    return Err(Error::invalid_data(format!(
                        "{}: {e}",
                        source.path.display()
                    )));
                }
            },
        };
        if let Some(problem) = problem {
            if config.strict {
                return Err(Error::invalid_data(format!(
                    "{}: {problem}",
                    source.path.display()
                )));
            }
            out.reject(&problem);
            // A row we cannot read must not look deleted: keep what the last export saw of it.
            match record.get(key).filter(|k| !k.is_empty()) {
                Some(k) => {
                    if let Some(h) = previous.as_mut().and_then(|p| p.remove(k)) {
                        snap.row(k, h)?;
                    }
                }
                None => unidentified += 1,
            }
            continue;
        }
        let k = &record[key];
        let hash = row_hash(&record, &mut lengths);
        let changed = match previous.as_mut() {
            None => true,
            Some(p) => p.remove(k) != Some(hash),
        };
        snap.row(k, hash)?;
        if changed {
            let mut w = out.upsert(entity_type, k);
            for (name, v) in headers.iter().zip(record.iter()) {
                if v.is_empty() {
                    w.values(name, []);
                } else {
                    w.attr(name, v);
                }
            }
        }
    }
    if let Some(gone) = previous {
        if unidentified > 0 && !gone.is_empty() {
            idgard_sdk::log::warn(&format!(
                "{} deletions held back: {unidentified} rows could not be read, and a row that cannot \
                 be read is not proof that a person left; fix the rows and export again",
                gone.len()
            ));
            for (k, h) in &gone {
                snap.row(k, *h)?;
            }
        } else {
            for k in gone.keys() {
                out.delete(entity_type, k);
            }
        }
    }
    snap.finish()?;
    snapshot::prune(&collect, generation.saturating_sub(snapshot::KEPT - 1));
    Ok(snapshot::cursor(generation))
}
