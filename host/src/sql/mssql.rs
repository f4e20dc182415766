//! SQL Server, through tiberius (TDS 7.3+, TLS by rustls with the grant's CA). sqlx does not speak
//! TDS, so this driver has its own small pool and its own query and execute loops; they follow the
//! same rules as the others (columns first, batches, an explicit end, errors by kind).
//!
//! Read-only grants are enforced by the host (no `execute`); SQL Server has no read-only session
//! to back it, so a query with side effects is the database account's to refuse.

use super::dialect::Batching;
use super::error::host;
use super::grant::{DatabaseGrant, DatabaseTls};
use super::values as v;
use crate::bindings::sql::{SqlError, Statement, Value};
use crate::bindings::wit::ErrorKind;
use futures_util::TryStreamExt;
use idgard_model::rows::RowsBuffer;
use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tiberius::{AuthMethod, Client, ColumnData, Config, EncryptionLevel, FromSql, ToSql};
use tokio::sync::{mpsc, oneshot};
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

type Conn = Client<Compat<tokio::net::TcpStream>>;

/// Idle connections kept per grant.
const MAX_IDLE: usize = 4;

/// Connections to one SQL Server database, reused across runs.
#[derive(Clone)]
pub(crate) struct Mssql {
    config: Config,
    connect: Duration,
    idle: Arc<Mutex<Vec<Conn>>>,
}

impl Mssql {
    /// The pool for a grant (`mssql://user@host:port/database`); no connection yet.
    pub(crate) fn open(grant: &DatabaseGrant, password: Option<&str>) -> Result<Self, String> {
        let url = url::Url::parse(&grant.url).map_err(|e| format!("url: {e}"))?;
        let mut config = Config::new();
        config.host(url.host_str().unwrap_or_default());
        config.port(url.port().unwrap_or(1433));
        let database = url.path().trim_start_matches('/');
        if !database.is_empty() {
            config.database(database);
        }
        config.application_name("idgard-agent");
        config.authentication(AuthMethod::sql_server(
            url.username(),
            password.unwrap_or_default(),
        ));
        match (&grant.tls, &grant.ca) {
            (DatabaseTls::Required, Some(ca)) => {
                config.encryption(EncryptionLevel::Required);
                config.trust_cert_ca(ca.display());
            }
            _ => config.encryption(EncryptionLevel::NotSupported),
        }
        Ok(Self {
            config,
            connect: Duration::from_secs(grant.connect_timeout_s.into()),
            idle: Arc::default(),
        })
    }

    async fn acquire(&self) -> Result<Conn, SqlError> {
        if let Some(c) = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            return Ok(c);
        }
        let connect = async {
            let tcp = tokio::net::TcpStream::connect(self.config.get_addr())
                .await
                .map_err(tiberius::error::Error::from)?;
            tcp.set_nodelay(true)
                .map_err(tiberius::error::Error::from)?;
            Client::connect(self.config.clone(), tcp.compat_write()).await
        };
        match tokio::time::timeout(self.connect, connect).await {
            Ok(c) => c.map_err(from_tiberius),
            Err(_) => Err(host(
                ErrorKind::Unavailable,
                "no connection to the database opened in time",
            )),
        }
    }

    /// Keeps a connection that ended its work cleanly.
    fn release(&self, conn: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }
}

/// A SQL Server error in the contract's terms; `code` is the error number.
fn from_tiberius(e: tiberius::error::Error) -> SqlError {
    use ErrorKind as K;
    match e {
        tiberius::error::Error::Server(t) => {
            let kind = match t.code() {
                18456 | 229 | 230 | 262 | 3906 => K::Denied,
                1205 | 10054 | 40613 => K::Unavailable,
                102 | 156 | 207 | 208 | 2812 | 4060 => K::Configuration,
                515 | 547 | 2601 | 2627 | 8152 | 245 => K::InvalidData,
                _ => K::Internal,
            };
            SqlError {
                kind,
                code: Some(t.code().to_string()),
                statement: None,
                message: t.message().to_owned(),
            }
        }
        tiberius::error::Error::Io { message, .. } => host(
            K::Unavailable,
            format!("cannot reach the database: {message}"),
        ),
        tiberius::error::Error::Tls(m) => {
            host(K::Unavailable, format!("TLS with the database failed: {m}"))
        }
        other => host(K::Internal, other.to_string()),
    }
}

/// A bound value as SQL Server takes it (`@P1`, `@P2`...).
struct Param(Value);

impl ToSql for Param {
    fn to_sql(&self) -> ColumnData<'_> {
        match &self.0 {
            Value::Null => ColumnData::String(None),
            Value::Text(s) => ColumnData::String(Some(Cow::Borrowed(s))),
            Value::Integer(i) => ColumnData::I64(Some(*i)),
            Value::Float(f) => ColumnData::F64(Some(*f)),
            Value::Boolean(b) => ColumnData::Bit(Some(*b)),
            Value::Bytes(b) => ColumnData::Binary(Some(Cow::Borrowed(b))),
        }
    }
}

/// One value into the batch: numbers and booleans as such, dates and times as text.
fn encode(data: &ColumnData<'static>, out: &mut RowsBuffer) -> Result<(), tiberius::error::Error> {
    use ColumnData as D;
    match data {
        D::U8(x) => v::put(out, *x, |o, x| o.integer(x.into())),
        D::I16(x) => v::put(out, *x, |o, x| o.integer(x.into())),
        D::I32(x) => v::put(out, *x, |o, x| o.integer(x.into())),
        D::I64(x) => v::put(out, *x, RowsBuffer::integer),
        D::F32(x) => v::put(out, *x, |o, x| o.float(x.into())),
        D::F64(x) => v::put(out, *x, RowsBuffer::float),
        D::Bit(x) => v::put(out, *x, RowsBuffer::boolean),
        D::String(x) => v::put(out, x.as_deref(), RowsBuffer::text),
        D::Guid(x) => v::put(out, *x, |o, x| o.text(&x.to_string())),
        D::Binary(x) => v::put(out, x.as_deref(), RowsBuffer::bytes),
        D::Numeric(x) => v::put(out, *x, |o, x| o.text(&x.to_string())),
        D::Xml(x) => v::put(out, x.as_deref(), |o, x| o.text(x.as_ref())),
        D::DateTimeOffset(_) => v::put(
            out,
            chrono::DateTime::<chrono::Utc>::from_sql(data)?,
            v::timestamp_tz,
        ),
        D::Date(_) => v::put(out, chrono::NaiveDate::from_sql(data)?, v::date),
        D::Time(_) => v::put(out, chrono::NaiveTime::from_sql(data)?, v::time),
        D::DateTime(_) | D::SmallDateTime(_) | D::DateTime2(_) => {
            v::put(out, chrono::NaiveDateTime::from_sql(data)?, v::timestamp)
        }
    }
    Ok(())
}

/// Runs one query, as the other drivers' loop does: columns, batches, then an empty batch.
pub(crate) async fn query(
    pool: Mssql,
    sql: String,
    params: Vec<Value>,
    batching: Batching,
    columns: oneshot::Sender<Result<Vec<String>, SqlError>>,
    batches: mpsc::Sender<Result<Vec<u8>, SqlError>>,
) {
    let mut conn = match pool.acquire().await {
        Ok(c) => c,
        Err(e) => {
            let _ = columns.send(Err(e));
            return;
        }
    };
    let params: Vec<Param> = params.into_iter().map(Param).collect();
    let refs: Vec<&dyn ToSql> = params.iter().map(|p| p as &dyn ToSql).collect();
    let started = async {
        let mut stream = if refs.is_empty() {
            conn.simple_query(sql.as_str()).await?
        } else {
            conn.query(sql.as_str(), &refs).await?
        };
        let names = stream
            .columns()
            .await?
            .map(|cs| cs.iter().map(|c| c.name().to_owned()).collect())
            .unwrap_or_default();
        Ok::<_, tiberius::error::Error>((stream, names))
    };
    let (stream, names) = match started.await {
        Ok(x) => x,
        Err(e) => {
            let _ = columns.send(Err(from_tiberius(e)));
            return;
        }
    };
    if columns.send(Ok(names)).is_err() {
        return;
    }
    let mut rows = stream.into_row_stream();
    let mut buf = RowsBuffer::with_capacity(batching.bytes + (64 << 10));
    loop {
        let row = match rows.try_next().await {
            Ok(Some(row)) => row,
            Ok(None) => break,
            Err(e) => {
                let _ = batches.send(Err(from_tiberius(e))).await;
                return;
            }
        };
        for data in row.into_iter() {
            if let Err(e) = encode(&data, &mut buf) {
                let _ = batches.send(Err(from_tiberius(e))).await;
                return;
            }
        }
        buf.end_row();
        if buf.len() > batching.max_bytes {
            let m = format!("a row of more than {} bytes", batching.max_bytes);
            let _ = batches.send(Err(host(ErrorKind::InvalidData, m))).await;
            return;
        }
        if (buf.rows() >= batching.rows || buf.len() >= batching.bytes)
            && batches.send(Ok(buf.take())).await.is_err()
        {
            return;
        }
    }
    drop(rows);
    if !buf.is_empty() && batches.send(Ok(buf.take())).await.is_err() {
        return;
    }
    if batches.send(Ok(Vec::new())).await.is_ok() {
        pool.release(conn);
    }
}

/// Runs statements in order, in one transaction when asked.
pub(crate) async fn execute(
    pool: &Mssql,
    statements: Vec<Statement>,
    transaction: bool,
) -> Result<Vec<u64>, SqlError> {
    let mut conn = pool.acquire().await?;
    let run = async {
        if transaction {
            batch(&mut conn, "BEGIN TRANSACTION").await?;
        }
        let mut counts = Vec::with_capacity(statements.len());
        for (i, s) in statements.iter().enumerate() {
            let params: Vec<Param> = s.params.iter().cloned().map(Param).collect();
            let refs: Vec<&dyn ToSql> = params.iter().map(|p| p as &dyn ToSql).collect();
            let done = conn.execute(s.sql.as_str(), &refs).await.map_err(|e| {
                let mut e = from_tiberius(e);
                e.statement = Some(i as u32);
                e
            })?;
            counts.push(done.total());
        }
        if transaction {
            batch(&mut conn, "COMMIT TRANSACTION").await?;
        }
        Ok(counts)
    };
    let out = run.await;
    match &out {
        Ok(_) => pool.release(conn),
        // A failed transaction's connection is dropped: closing it rolls the transaction back.
        Err(_) => drop(conn),
    }
    out
}

/// Runs a statement without parameters and reads its results to the end.
async fn batch(conn: &mut Conn, sql: &str) -> Result<(), SqlError> {
    let stream = conn.simple_query(sql).await.map_err(from_tiberius)?;
    stream.into_results().await.map_err(from_tiberius)?;
    Ok(())
}
