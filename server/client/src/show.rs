//! How `idgard` prints: tables with headers for people (`-o table`, `-o wide` with more
//! columns), JSON for programs (`-o json`), times in UTC or as "3 min ago". A reader that goes
//! away (`| head`) ends the command quietly.

use std::io::Write as _;

/// `-o`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Columns with headers.
    Table,
    /// Columns with headers, and more of them.
    Wide,
    /// The API's JSON.
    Json,
}

/// Writes a line on standard output; a closed pipe ends the process quietly.
pub fn line(text: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{text}") {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to standard output: {e}");
        std::process::exit(2);
    }
}

/// Prints a value as pretty JSON.
pub fn json<T: serde::Serialize>(value: &T) {
    line(&serde_json::to_string_pretty(value).expect("API values serialise"));
}

/// A table printed once every row is known, each column as wide as its widest cell.
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these headers.
    pub fn new(headers: &[&str]) -> Self {
        Self {
            rows: vec![headers.iter().map(|h| h.to_string()).collect()],
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Prints it (the last column is not padded).
    pub fn print(&self) {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for r in &self.rows {
            let mut text = String::new();
            for (c, cell) in r.iter().enumerate() {
                if c + 1 == r.len() {
                    text.push_str(cell);
                } else {
                    text.push_str(cell);
                    let pad = widths[c] - cell.chars().count() + 2;
                    text.extend(std::iter::repeat_n(' ', pad));
                }
            }
            line(text.trim_end());
        }
    }
}

/// A time for people, in UTC.
pub fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// How long ago, for people ("12 s ago", "3 min ago", "2 h ago", "5 d ago").
pub fn ago(ms: i64, now_ms: i64) -> String {
    let s = (now_ms - ms).max(0) / 1000;
    match s {
        0..60 => format!("{s} s ago"),
        60..3600 => format!("{} min ago", s / 60),
        3600..172_800 => format!("{} h ago", s / 3600),
        _ => format!("{} d ago", s / 86_400),
    }
}

/// Now, ms since the epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// An optional value, `-` when absent.
pub fn or_dash(v: Option<&str>) -> String {
    v.unwrap_or("-").to_owned()
}

/// Attributes on one line: `name=value; other=a,b`.
pub fn attrs(a: &idgard_protocol::Attributes) -> String {
    a.iter()
        .map(|(k, v)| format!("{k}={}", v.join(",")))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_as_people_say_them() {
        let now = 10_000_000_000;
        assert_eq!(ago(now - 5_000, now), "5 s ago");
        assert_eq!(ago(now - 180_000, now), "3 min ago");
        assert_eq!(ago(now - 7_200_000, now), "2 h ago");
        assert_eq!(ago(now - 5 * 86_400_000, now), "5 d ago");
        assert_eq!(ago(now + 5_000, now), "0 s ago");
    }
}
