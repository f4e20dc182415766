//! SQL on the databases a connection grants, through the host.
//!
//! The host opens the database with credentials the connector never sees, checks every statement
//! against the grant (read-only, an allow-list of statements) and streams a query's rows in
//! batches, fetching the next batch while the connector works on the last one. Values are always
//! bound, never written into SQL text: placeholders are `$1` on PostgreSQL, `?` on MariaDB and
//! MySQL ([`placeholder`] writes the right one).
//!
//! ```ignore
//! use idgard_sdk::sql::{self, Value};
//! let mut rows = sql::query("hr", "SELECT id, name FROM people WHERE site = $1", &[Value::from("Lyon")])?;
//! rows.for_each(|row| {
//!     // row[0], row[1]: `Cell`s borrowed from the batch
//!     Ok(())
//! })?;
//! ```
//!
//! Columns of types the host does not read (arrays, JSON on PostgreSQL, geometry...) are refused
//! when the query starts, naming the column: cast them to text in the query. Dates and times
//! arrive as text (RFC 3339 when they carry a zone), decimals and UUIDs too.

use crate::Error;
pub use crate::bindings::idgard::connector::sql::{Database, Dialect, SqlError, Statement, Value};
pub use idgard_model::rows::{Cell, RowReader, RowsError};

/// The databases the connection grants.
pub fn databases() -> Vec<Database> {
    imp::databases()
}

/// A granted database by name; `denied` when the connection grants none by that name.
pub fn database(name: &str) -> Result<Database, Error> {
    databases()
        .into_iter()
        .find(|d| d.name == name)
        .ok_or_else(|| {
            Error::denied(format!(
                "the connection grants no database `{name}` (granted: {})",
                databases()
                    .iter()
                    .map(|d| d.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
}

/// The placeholder of the `n`th parameter (from 1) in a dialect's SQL.
pub fn placeholder(dialect: Dialect, n: usize) -> String {
    match dialect {
        Dialect::Postgres => format!("${n}"),
        Dialect::Mysql => "?".to_owned(),
        Dialect::Mssql => format!("@P{n}"),
    }
}

/// Quotes an identifier (a table or column name) for a dialect; `None` for a name holding the
/// quote character or a NUL, which no connection should need.
pub fn quote(dialect: Dialect, name: &str) -> Option<String> {
    let (open, close) = match dialect {
        Dialect::Postgres => ('"', '"'),
        Dialect::Mysql => ('`', '`'),
        Dialect::Mssql => ('[', ']'),
    };
    if name.is_empty() || name.contains([open, close, '\0']) {
        return None;
    }
    Some(format!("{open}{name}{close}"))
}

/// Runs a query; read its rows with [`Query::for_each`].
pub fn query(database: &str, sql: &str, params: &[Value]) -> Result<Query, SqlError> {
    imp::query(database, sql, params)
}

/// Runs statements in order (in one transaction when `transaction`), and answers the rows each
/// one affected. A failed statement's error says which one (`statement`, from 0).
pub fn execute(
    database: &str,
    statements: &[Statement],
    transaction: bool,
) -> Result<Vec<u64>, SqlError> {
    imp::execute(database, statements, transaction)
}

/// A statement with its parameters.
pub fn statement(sql: impl Into<String>, params: Vec<Value>) -> Statement {
    Statement {
        sql: sql.into(),
        params,
    }
}

/// The rows of a running query.
#[derive(Debug)]
pub struct Query {
    columns: Vec<String>,
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    rows: imp::Rows,
}

impl Query {
    /// The names of the columns, in order.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// Where a column is, by name.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// Calls `f` with every row, in order, until the rows end or `f` fails; answers how many rows
    /// it read. Rows are borrowed from their batch: copy what must outlive the call.
    pub fn for_each(
        &mut self,
        mut f: impl FnMut(&[Cell<'_>]) -> Result<(), Error>,
    ) -> Result<u64, Error> {
        let mut count = 0;
        loop {
            let batch = imp::next(&self.rows)?;
            if batch.is_empty() {
                return Ok(count);
            }
            let mut reader = RowReader::new(&batch, self.columns.len());
            while let Some(row) = reader.next() {
                let row = row.map_err(|e| Error::internal(format!("rows from the host: {e}")))?;
                f(row)?;
                count += 1;
            }
        }
    }
}

impl From<SqlError> for Error {
    fn from(e: SqlError) -> Self {
        let code = e.code.map(|c| format!(" [{c}]")).unwrap_or_default();
        let at = e
            .statement
            .map(|s| format!(" (statement {})", s + 1))
            .unwrap_or_default();
        Error::new(e.kind, format!("{}{code}{at}", e.message))
    }
}

impl SqlError {
    /// Whether the database refused a duplicate (a unique or primary key).
    pub fn is_duplicate(&self) -> bool {
        matches!(
            self.code.as_deref(),
            Some("23505" | "23000" | "2627" | "2601")
        )
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Text(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Text(s)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Integer(i)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Boolean(b)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::{Query, SqlError, Statement, Value};
    use crate::bindings::idgard::connector::sql as host;
    pub(super) use host::Rows;

    pub(super) fn databases() -> Vec<super::Database> {
        host::databases()
    }

    pub(super) fn query(database: &str, sql: &str, params: &[Value]) -> Result<Query, SqlError> {
        let rows = host::query(database, sql, params)?;
        Ok(Query {
            columns: rows.columns(),
            rows,
        })
    }

    pub(super) fn next(rows: &Rows) -> Result<Vec<u8>, SqlError> {
        rows.next()
    }

    pub(super) fn execute(
        database: &str,
        statements: &[Statement],
        transaction: bool,
    ) -> Result<Vec<u64>, SqlError> {
        host::execute(database, statements, transaction)
    }
}

/// Native builds (unit tests) have no host and no database: test SQL connectors through the host
/// (idgard-host) against a real database.
#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::{Query, SqlError, Statement, Value};
    use crate::ErrorKind;

    #[derive(Debug)]
    pub(super) struct Rows;

    fn none() -> SqlError {
        SqlError {
            kind: ErrorKind::Unsupported,
            code: None,
            statement: None,
            message: "no database outside idgard: test SQL through idgard-host".into(),
        }
    }

    pub(super) fn databases() -> Vec<super::Database> {
        vec![]
    }

    pub(super) fn query(_: &str, _: &str, _: &[Value]) -> Result<Query, SqlError> {
        Err(none())
    }

    pub(super) fn next(_: &Rows) -> Result<Vec<u8>, SqlError> {
        Err(none())
    }

    pub(super) fn execute(_: &str, _: &[Statement], _: bool) -> Result<Vec<u64>, SqlError> {
        Err(none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn placeholders_and_quotes_follow_the_dialect() {
        assert_eq!(placeholder(Dialect::Postgres, 2), "$2");
        assert_eq!(placeholder(Dialect::Mysql, 2), "?");
        assert_eq!(
            quote(Dialect::Postgres, "first name").unwrap(),
            "\"first name\""
        );
        assert_eq!(quote(Dialect::Mysql, "order").unwrap(), "`order`");
        assert!(quote(Dialect::Postgres, "x\"; DROP TABLE t; --").is_none());
        assert!(quote(Dialect::Mysql, "").is_none());
    }

    #[test]
    fn errors_keep_their_code_and_statement() {
        let e = SqlError {
            kind: ErrorKind::InvalidData,
            code: Some("23505".into()),
            statement: Some(2),
            message: "duplicate key".into(),
        };
        assert!(e.is_duplicate());
        let e: Error = e.into();
        assert_eq!(e.message, "duplicate key [23505] (statement 3)");
        assert_eq!(Value::from(Some("x")), Value::Text("x".into()));
        assert_eq!(Value::from(None::<i64>), Value::Null);
    }
}
