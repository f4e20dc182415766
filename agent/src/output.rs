//! How `connector run` shows what a connector produces: entries as JSON lines or a table on
//! stdout, logs and progress on stderr.

use clap::ValueEnum;
use idgard_host::{Level, Observer};
use idgard_sdk::wire::{EntryOp, decode};
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One JSON object per entry.
    Json,
    /// An aligned table (the first columns that fit).
    Table,
    /// No entries; the export's summary as JSON at the end.
    Summary,
}

/// Shown progress is refreshed at most this often.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// Widest table cell; longer values are cut.
const CELL: usize = 20;

pub struct Printer {
    format: Format,
    /// Entries still to print; `None` for all.
    remaining: Option<u64>,
    out: std::io::BufWriter<std::io::Stdout>,
    columns: Option<Vec<String>>,
    progress: Arc<Mutex<Progress>>,
}

struct Progress {
    tty: bool,
    started: Instant,
    last: Option<Instant>,
    shown: bool,
}

impl Progress {
    fn clear(&mut self) {
        if self.shown {
            eprint!("\r\x1b[2K");
            self.shown = false;
        }
    }
}

/// Finishes the progress line once the run is over.
pub struct Handle(Arc<Mutex<Progress>>);

impl Handle {
    pub fn finish(&self) {
        self.0.lock().expect("progress").clear();
    }
}

impl Printer {
    pub fn new(format: Format, limit: Option<u64>) -> Self {
        Self {
            format,
            remaining: limit,
            out: std::io::BufWriter::with_capacity(1 << 16, std::io::stdout()),
            columns: None,
            progress: Arc::new(Mutex::new(Progress {
                tty: std::io::stderr().is_terminal(),
                started: Instant::now(),
                last: None,
                shown: false,
            })),
        }
    }

    pub fn handle(&self) -> Handle {
        Handle(self.progress.clone())
    }

    fn table_row(&mut self, cells: &[&str]) -> std::io::Result<()> {
        let mut line = String::new();
        for c in cells {
            // Keys and values are the managed system's data, raw: a cell must not be able to
            // drive the terminal (clear it, retitle it, forge a line).
            let c = idgard_host::text::escape(c);
            let mut cell: String = c.chars().take(CELL).collect();
            if c.chars().count() > CELL {
                cell.pop();
                cell.push('…');
            }
            let pad = CELL + 1 - cell.chars().count();
            line.push_str(&cell);
            line.extend(std::iter::repeat_n(' ', pad));
        }
        writeln!(self.out, "{}", line.trim_end())
    }
}

impl Observer for Printer {
    fn log(&mut self, level: Level, message: &str) {
        self.progress.lock().expect("progress").clear();
        let tag = match level {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        };
        eprintln!("[{tag}] {message}");
    }

    fn progress(&mut self, done: u64, total: Option<u64>, message: &str) {
        let mut p = self.progress.lock().expect("progress");
        let now = Instant::now();
        let due = match p.last {
            None => now.duration_since(p.started) > Duration::from_secs(1),
            Some(last) => {
                now.duration_since(last)
                    >= if p.tty {
                        PROGRESS_EVERY
                    } else {
                        Duration::from_secs(5)
                    }
            }
        };
        if !due {
            return;
        }
        p.last = Some(now);
        let rate = done as f64 / now.duration_since(p.started).as_secs_f64().max(1e-9);
        let of = total.map(|t| format!(" of {t}")).unwrap_or_default();
        if p.tty {
            eprint!("\r\x1b[2K{done}{of} {message} ({rate:.0}/s)");
            p.shown = true;
        } else {
            eprintln!("{done}{of} {message} ({rate:.0}/s)");
        }
    }

    fn entries(&mut self, batch: &[u8], _count: u32) -> anyhow::Result<()> {
        if self.remaining == Some(0) {
            return Ok(());
        }
        let printed = self.print(batch);
        // A reader that went away (`| head`) ends the printing, not the export.
        match printed {
            Err(e)
                if e.downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
            {
                self.remaining = Some(0);
                Ok(())
            }
            other => other,
        }
    }
}

impl Printer {
    /// Whether one more entry may be printed (and counts it).
    fn take(&mut self) -> bool {
        match &mut self.remaining {
            None => true,
            Some(0) => false,
            Some(n) => {
                *n -= 1;
                true
            }
        }
    }

    fn print(&mut self, batch: &[u8]) -> anyhow::Result<()> {
        match self.format {
            Format::Summary => {}
            Format::Json => {
                for e in decode(batch) {
                    let e = e?;
                    if !self.take() {
                        break;
                    }
                    let attributes: serde_json::Map<String, serde_json::Value> = e
                        .attributes()
                        .map(|(n, v)| (n.to_owned(), v.into()))
                        .collect();
                    let op = match e.op {
                        EntryOp::Upsert => "upsert",
                        EntryOp::Delete => "delete",
                    };
                    serde_json::to_writer(
                        &mut self.out,
                        &serde_json::json!({ "op": op, "type": e.entity_type, "key": e.key, "attributes": attributes }),
                    )?;
                    self.out.write_all(b"\n")?;
                }
            }
            Format::Table => {
                for e in decode(batch) {
                    let e = e?;
                    if !self.take() {
                        break;
                    }
                    if self.columns.is_none() {
                        let names: Vec<String> =
                            e.attributes().map(|(n, _)| n.to_owned()).take(5).collect();
                        let mut header = vec!["op", "type", "key"];
                        header.extend(names.iter().map(String::as_str));
                        self.table_row(&header)?;
                        self.columns = Some(names);
                    }
                    let attrs: Vec<(&str, Vec<&str>)> = e.attributes().collect();
                    let columns = self.columns.clone().unwrap_or_default();
                    let values: Vec<String> = columns
                        .iter()
                        .map(|c| {
                            attrs
                                .iter()
                                .find(|(n, _)| n == c)
                                .map(|(_, v)| v.join("|"))
                                .unwrap_or_default()
                        })
                        .collect();
                    let op = if e.op == EntryOp::Upsert {
                        "upsert"
                    } else {
                        "delete"
                    };
                    let mut row = vec![op, e.entity_type, e.key];
                    row.extend(values.iter().map(String::as_str));
                    self.table_row(&row)?;
                }
            }
        }
        Ok(())
    }
}

impl Drop for Printer {
    fn drop(&mut self) {
        let _ = self.out.flush();
    }
}
