//! The idgard rows format: how the rows of a SQL query cross from the host to a connector
//! (`idgard:connector/sql`, `rows.next`).
//!
//! A batch is a sequence of rows; every row holds one value per column of the query, in order
//! (the columns come apart, from `rows.columns`). Integers are little-endian:
//!
//! ```text
//! value := 0                      null
//!        | 1 len:u32 UTF-8 bytes  text
//!        | 2 i64                  integer
//!        | 3 f64                  float
//!        | 4 u8 (0 or 1)          boolean
//!        | 5 len:u32 bytes        bytes
//! ```
//!
//! Rows cross as one buffer because copying bytes is far cheaper than lifting millions of small
//! values one by one; [`RowReader`] reads them back without copying.

use std::fmt;

const NULL: u8 = 0;
const TEXT: u8 = 1;
const INTEGER: u8 = 2;
const FLOAT: u8 = 3;
const BOOLEAN: u8 = 4;
const BYTES: u8 = 5;

/// One value of a row, borrowed from its batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    /// SQL NULL.
    Null,
    /// Text (also what the host sends for dates, times, decimals, UUIDs: see the SDK's guide).
    Text(&'a str),
    /// A whole number.
    Integer(i64),
    /// A floating-point number.
    Float(f64),
    /// true or false.
    Boolean(bool),
    /// Raw bytes.
    Bytes(&'a [u8]),
}

impl Cell<'_> {
    /// Whether the value is SQL NULL.
    pub fn is_null(&self) -> bool {
        matches!(self, Cell::Null)
    }
}

/// Appends rows to a buffer in the rows format.
#[derive(Debug, Default)]
pub struct RowsBuffer {
    bytes: Vec<u8>,
    rows: u32,
}

impl RowsBuffer {
    /// An empty buffer with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(capacity),
            rows: 0,
        }
    }

    /// A NULL value.
    pub fn null(&mut self) {
        self.bytes.push(NULL);
    }

    /// A text value.
    pub fn text(&mut self, value: &str) {
        self.prefixed(TEXT, value.as_bytes());
    }

    /// An integer value.
    pub fn integer(&mut self, value: i64) {
        self.bytes.push(INTEGER);
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }

    /// A floating-point value.
    pub fn float(&mut self, value: f64) {
        self.bytes.push(FLOAT);
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }

    /// A boolean value.
    pub fn boolean(&mut self, value: bool) {
        self.bytes.push(BOOLEAN);
        self.bytes.push(u8::from(value));
    }

    /// A bytes value.
    pub fn bytes(&mut self, value: &[u8]) {
        self.prefixed(BYTES, value);
    }

    fn prefixed(&mut self, tag: u8, value: &[u8]) {
        self.bytes.push(tag);
        self.bytes
            .extend_from_slice(&(value.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(value);
    }

    /// Ends a row (the caller wrote one value per column).
    pub fn end_row(&mut self) {
        self.rows += 1;
    }

    /// Rows written.
    pub fn rows(&self) -> u32 {
        self.rows
    }

    /// Bytes written.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The batch, leaving the buffer empty.
    pub fn take(&mut self) -> Vec<u8> {
        self.rows = 0;
        std::mem::take(&mut self.bytes)
    }
}

/// What is wrong with a batch of rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowsError {
    /// The row (from 1) where the batch went wrong.
    pub row: u64,
    /// What was wrong.
    pub message: String,
}

impl fmt::Display for RowsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "row {}: {}", self.row, self.message)
    }
}

impl std::error::Error for RowsError {}

/// Reads a batch row by row, without copying: each row is a slice of [`Cell`]s borrowed from the
/// batch, valid until the next call.
#[derive(Debug)]
pub struct RowReader<'a> {
    batch: &'a [u8],
    pos: usize,
    columns: usize,
    row: u64,
    cells: Vec<Cell<'a>>,
}

impl<'a> RowReader<'a> {
    /// A reader of `batch`, whose rows have `columns` values each.
    pub fn new(batch: &'a [u8], columns: usize) -> Self {
        Self {
            batch,
            pos: 0,
            columns,
            row: 0,
            cells: Vec::with_capacity(columns),
        }
    }

    /// The next row, `None` at the end of the batch.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Result<&[Cell<'a>], RowsError>> {
        if self.pos >= self.batch.len() {
            return None;
        }
        self.row += 1;
        self.cells.clear();
        for _ in 0..self.columns {
            match self.cell() {
                Ok(c) => self.cells.push(c),
                Err(message) => {
                    self.pos = self.batch.len();
                    return Some(Err(RowsError {
                        row: self.row,
                        message,
                    }));
                }
            }
        }
        Some(Ok(&self.cells))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.batch.len())
            .ok_or_else(|| "the batch ends inside a value".to_owned())?;
        let out = &self.batch[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], String> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    fn cell(&mut self) -> Result<Cell<'a>, String> {
        let [tag] = self.fixed::<1>()?;
        Ok(match tag {
            NULL => Cell::Null,
            TEXT | BYTES => {
                let len = u32::from_le_bytes(self.fixed()?) as usize;
                let raw = self.take(len)?;
                if tag == BYTES {
                    Cell::Bytes(raw)
                } else {
                    Cell::Text(
                        std::str::from_utf8(raw)
                            .map_err(|_| "text that is not UTF-8".to_owned())?,
                    )
                }
            }
            INTEGER => Cell::Integer(i64::from_le_bytes(self.fixed()?)),
            FLOAT => Cell::Float(f64::from_le_bytes(self.fixed()?)),
            BOOLEAN => match self.fixed::<1>()? {
                [0] => Cell::Boolean(false),
                [1] => Cell::Boolean(true),
                [b] => return Err(format!("boolean byte {b}")),
            },
            t => return Err(format!("unknown value tag {t}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_cross_unchanged() {
        let mut b = RowsBuffer::default();
        b.text("O'Brien");
        b.integer(-42);
        b.null();
        b.end_row();
        b.float(1.5);
        b.boolean(true);
        b.bytes(&[0, 255]);
        b.end_row();
        assert_eq!(b.rows(), 2);
        let batch = b.take();
        assert!(b.is_empty());
        let mut r = RowReader::new(&batch, 3);
        assert_eq!(
            r.next().unwrap().unwrap(),
            &[Cell::Text("O'Brien"), Cell::Integer(-42), Cell::Null]
        );
        assert_eq!(
            r.next().unwrap().unwrap(),
            &[
                Cell::Float(1.5),
                Cell::Boolean(true),
                Cell::Bytes(&[0, 255])
            ]
        );
        assert!(r.next().is_none());
    }

    #[test]
    fn malformed_batches_are_refused() {
        let mut b = RowsBuffer::default();
        b.text("abc");
        b.end_row();
        let batch = b.take();
        for cut in 1..batch.len() {
            let mut r = RowReader::new(&batch[..cut], 1);
            let e = r.next().unwrap().unwrap_err();
            assert_eq!(e.row, 1);
            assert!(e.message.contains("ends inside"), "{e}");
            assert!(r.next().is_none());
        }
        let e = RowReader::new(&[9], 1).next().unwrap().unwrap_err();
        assert!(e.to_string().contains("unknown value tag 9"));
        let e = RowReader::new(&[4, 2], 1).next().unwrap().unwrap_err();
        assert!(e.message.contains("boolean"));
        let e = RowReader::new(&[1, 1, 0, 0, 0, 0xff], 1)
            .next()
            .unwrap()
            .unwrap_err();
        assert!(e.message.contains("UTF-8"));
    }
}
