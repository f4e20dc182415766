//! What each driver supplies (how it reads columns and binds parameters), and the query and
//! execute loops written once over it.

use super::error::{from_sqlx, host};
use crate::bindings::sql::{SqlError, Statement, Value};
use crate::bindings::wit::ErrorKind;
use futures_util::TryStreamExt;
use idgard_model::rows::RowsBuffer;
use sqlx::{Column, Executor, IntoArguments, Pool, Statement as _};
use tokio::sync::{mpsc, oneshot};

/// A database the host speaks to, as the query and execute loops need it.
pub(crate) trait Dialect: sqlx::Database {
    /// How one column is read.
    type Read: Copy + Send + Sync + 'static;
    /// How to read a column of this type, or why the host cannot.
    fn reader(column: &str, ty: &Self::TypeInfo) -> Result<Self::Read, String>;
    /// Writes one row into the batch.
    fn encode(
        row: &Self::Row,
        readers: &[Self::Read],
        out: &mut RowsBuffer,
    ) -> Result<(), sqlx::Error>;
    /// Binds the connector's values as the statement's parameters (`types`, when the database
    /// said them).
    fn bind(
        params: Vec<Value>,
        types: &[Self::TypeInfo],
    ) -> Result<Self::Arguments<'static>, String>;
    /// The rows a statement affected.
    fn affected(result: &Self::QueryResult) -> u64;
}

/// Why the host cannot read a column, and how the connection can fix it.
pub(crate) fn unreadable(column: &str, ty: &str, cast: &str) -> String {
    format!(
        "column `{}` has type {ty}, which the host does not read: cast it to text in the query \
         (`{}{cast}`)",
        crate::text::shown(column, 64),
        crate::text::shown(column, 64)
    )
}

/// How the rows of a query are cut into batches.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Batching {
    /// Rows per batch, at most.
    pub(crate) rows: u32,
    /// Bytes after which a batch is sent.
    pub(crate) bytes: usize,
    /// The most bytes one batch may hold (one row larger than this stops the query).
    pub(crate) max_bytes: usize,
}

/// What a prepared statement says: column names and readers, parameter types.
struct Prepared<DB: Dialect> {
    names: Vec<String>,
    readers: Vec<DB::Read>,
    types: Vec<DB::TypeInfo>,
}

async fn prepare<DB: Dialect>(
    conn: &mut DB::Connection,
    sql: &str,
    given: usize,
) -> Result<Prepared<DB>, SqlError>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    let stmt = (&mut *conn).prepare(sql).await.map_err(from_sqlx)?;
    let mut readers = Vec::with_capacity(stmt.columns().len());
    let mut names = Vec::with_capacity(stmt.columns().len());
    for c in stmt.columns() {
        readers.push(
            DB::reader(c.name(), c.type_info()).map_err(|m| host(ErrorKind::Configuration, m))?,
        );
        names.push(c.name().to_owned());
    }
    let (types, expected) = match stmt.parameters() {
        Some(sqlx::Either::Left(types)) => (types.to_vec(), Some(types.len())),
        Some(sqlx::Either::Right(n)) => (vec![], Some(n)),
        None => (vec![], None),
    };
    if let Some(n) = expected.filter(|&n| n != given) {
        return Err(host(
            ErrorKind::Configuration,
            format!("the statement takes {n} parameters and {given} were given"),
        ));
    }
    Ok(Prepared {
        names,
        readers,
        types,
    })
}

/// Runs one query: says its columns through `columns` (or why it cannot run), then sends its
/// rows batch by batch until they end (an empty batch), an error stops them, or the receiver is
/// gone.
pub(crate) async fn query<DB: Dialect>(
    pool: Pool<DB>,
    sql: String,
    params: Vec<Value>,
    batching: Batching,
    columns: oneshot::Sender<Result<Vec<String>, SqlError>>,
    batches: mpsc::Sender<Result<Vec<u8>, SqlError>>,
) where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'static>: IntoArguments<'q, DB>,
{
    let started = async {
        let mut conn = pool.acquire().await.map_err(from_sqlx)?;
        let p = prepare::<DB>(&mut conn, &sql, params.len()).await?;
        let args = DB::bind(params, &p.types).map_err(|m| host(ErrorKind::InvalidData, m))?;
        Ok::<_, SqlError>((conn, p, args))
    };
    let (mut conn, p, args) = match started.await {
        Ok(x) => x,
        Err(e) => {
            let _ = columns.send(Err(e));
            return;
        }
    };
    if columns.send(Ok(p.names)).is_err() {
        return;
    }
    let mut stream = sqlx::query_with(&sql, args).fetch(&mut *conn);
    let mut buf = RowsBuffer::with_capacity(batching.bytes + (64 << 10));
    loop {
        let row = match stream.try_next().await {
            Ok(Some(row)) => row,
            Ok(None) => break,
            Err(e) => {
                let _ = batches.send(Err(from_sqlx(e))).await;
                return;
            }
        };
        if let Err(e) = DB::encode(&row, &p.readers, &mut buf) {
            let _ = batches.send(Err(from_sqlx(e))).await;
            return;
        }
        if buf.len() > batching.max_bytes {
            let message = format!(
                "a row of more than {} bytes: the batch limit of this connection",
                batching.max_bytes
            );
            let _ = batches
                .send(Err(host(ErrorKind::InvalidData, message)))
                .await;
            return;
        }
        if (buf.rows() >= batching.rows || buf.len() >= batching.bytes)
            && batches.send(Ok(buf.take())).await.is_err()
        {
            return;
        }
    }
    if !buf.is_empty() && batches.send(Ok(buf.take())).await.is_err() {
        return;
    }
    // The end, said: a query that stops without it (a bug, a panic) is an error, never a short
    // result that an export would take for every row.
    let _ = batches.send(Ok(Vec::new())).await;
}

/// Runs statements in order on one connection, in one transaction when asked.
pub(crate) async fn execute<DB: Dialect>(
    pool: &Pool<DB>,
    statements: Vec<Statement>,
    transaction: bool,
) -> Result<Vec<u64>, SqlError>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'static>: IntoArguments<'q, DB>,
{
    let mut conn = pool.acquire().await.map_err(from_sqlx)?;
    if !transaction {
        return each::<DB>(&mut conn, statements).await;
    }
    let mut tx = sqlx::Connection::begin(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    let counts = each::<DB>(&mut tx, statements).await?;
    tx.commit().await.map_err(from_sqlx)?;
    Ok(counts)
}

async fn each<DB: Dialect>(
    conn: &mut DB::Connection,
    statements: Vec<Statement>,
) -> Result<Vec<u64>, SqlError>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'static>: IntoArguments<'q, DB>,
{
    let mut counts = Vec::with_capacity(statements.len());
    for (i, s) in statements.into_iter().enumerate() {
        let at = |mut e: SqlError| {
            e.statement = Some(i as u32);
            e
        };
        let p = prepare::<DB>(conn, &s.sql, s.params.len())
            .await
            .map_err(at)?;
        let args = DB::bind(s.params, &p.types).map_err(|m| at(host(ErrorKind::InvalidData, m)))?;
        let done = sqlx::query_with(&s.sql, args)
            .execute(&mut *conn)
            .await
            .map_err(|e| at(from_sqlx(e)))?;
        counts.push(DB::affected(&done));
    }
    Ok(counts)
}
