//! The host's SQL capability (`idgard:connector/sql`): the databases a connection grants, opened
//! by the host with credentials the connector never sees, and the queries and statements a
//! connector runs on them, checked against the grant.
//!
//! A query runs in its own task on the host's runtime, which fetches and encodes the next rows
//! while the connector works on the last batch; at most two batches wait, so a slow connector
//! slows the query instead of filling memory. A run's tasks are aborted when its store ends.
//! Connections outlive a run: the runtime keeps one pool per database grant (URL, password, TLS,
//! access, timeouts), so the runs of a connection reuse their connections and prepared statements
//! instead of signing in every time; an idle connection closes after a minute.

mod dialect;
mod error;
pub mod grant;
mod mssql;
mod mysql;
mod postgres;
mod values;

use crate::bindings::{sql, wit::ErrorKind};
use crate::state::RunState;
use dialect::Batching;
use error::host;
use grant::{DatabaseGrant, DatabaseTls, Driver};
use sqlx::mysql::{MySqlConnectOptions, MySqlSslMode};
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use sqlx::{Executor, MySqlPool, PgPool};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use wasmtime::component::Resource;

/// Rows per batch handed to a connector, at most.
const BATCH_ROWS: u32 = 4096;
/// Bytes after which a batch is handed over.
const BATCH_BYTES: usize = 1 << 20;
/// Connections a database grant's pool holds at most (a query being read and statements beside
/// it, in each of the runs of its connection).
const MAX_CONNECTIONS: u32 = 4;
/// How long an unused connection stays open.
const IDLE: Duration = Duration::from_secs(60);

/// The rows of one query, as a connector holds them.
pub struct Rows {
    columns: Vec<String>,
    batches: mpsc::Receiver<Result<Vec<u8>, sql::SqlError>>,
    timeout: Duration,
    task: tokio::task::AbortHandle,
    /// The query said its end.
    ended: bool,
}

impl Drop for Rows {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
enum Pool {
    Postgres(PgPool),
    MySql(MySqlPool),
    Mssql(mssql::Mssql),
}

struct Granted {
    grant: DatabaseGrant,
    driver: Result<Driver, String>,
    password: Option<String>,
    pool: Option<Pool>,
}

/// The pools a runtime keeps across runs, by everything that opened them.
#[derive(Clone, Default)]
pub(crate) struct Pools(Arc<Mutex<HashMap<String, Pool>>>);

impl Pools {
    fn get_or_open(
        &self,
        grant: &DatabaseGrant,
        password: Option<&str>,
    ) -> Result<Pool, sql::SqlError> {
        let key = format!(
            "{}\0{}\0{:?}\0{:?}\0{:?}\0{}\0{}",
            grant.url,
            password.unwrap_or_default(),
            grant.tls,
            grant.ca,
            grant.access,
            grant.connect_timeout_s,
            grant.statement_timeout_s
        );
        let mut pools = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = pools.get(&key) {
            return Ok(p.clone());
        }
        let pool = open(grant, password)?;
        pools.insert(key, pool.clone());
        Ok(pool)
    }
}

/// The databases of one run.
#[derive(Default)]
pub(crate) struct Databases {
    by_name: BTreeMap<String, Granted>,
    max_batch_bytes: usize,
    pools: Pools,
}

impl Databases {
    /// The databases a run is granted, with the passwords withheld from the connector.
    pub(crate) fn new(
        granted: &BTreeMap<String, DatabaseGrant>,
        passwords: &BTreeMap<String, String>,
        max_batch_bytes: usize,
        pools: Pools,
    ) -> Self {
        let by_name = granted
            .iter()
            .map(|(name, g)| {
                let granted = Granted {
                    driver: g.check(name).and_then(|()| g.driver()),
                    password: g.password.as_ref().and_then(|p| passwords.get(p).cloned()),
                    grant: g.clone(),
                    pool: None,
                };
                (name.clone(), granted)
            })
            .collect();
        Self {
            by_name,
            max_batch_bytes,
            pools,
        }
    }

    fn granted(&mut self, name: &str) -> Result<(&mut Granted, &Pools), sql::SqlError> {
        let g = self.by_name.get_mut(name).ok_or_else(|| {
            host(
                ErrorKind::Denied,
                format!(
                    "the connection grants no database `{}`",
                    crate::text::shown(name, 64)
                ),
            )
        })?;
        if let Err(e) = &g.driver {
            return Err(host(ErrorKind::Configuration, e.clone()));
        }
        Ok((g, &self.pools))
    }
}

impl Granted {
    /// Whether the grant lets the connector run `sql`.
    fn allow(&self, sql: &str, writes: bool) -> Result<(), sql::SqlError> {
        if !self.grant.allows(sql) {
            return Err(host(
                ErrorKind::Denied,
                format!(
                    "the database allows only the statements its grant lists, and not `{}`",
                    crate::text::shown(sql, 120)
                ),
            ));
        }
        if writes && self.grant.access == crate::grants::Access::ReadOnly {
            return Err(host(
                ErrorKind::Denied,
                "the database is granted read-only: queries only",
            ));
        }
        Ok(())
    }

    /// The pool for this database, opened at first use.
    fn pool(&mut self, pools: &Pools) -> Result<&Pool, sql::SqlError> {
        if self.pool.is_none() {
            self.pool = Some(pools.get_or_open(&self.grant, self.password.as_deref())?);
        }
        Ok(self.pool.as_ref().expect("opened"))
    }

    /// How long the host waits for a statement or a batch: the grant's timeout and two seconds
    /// more, so that a database that enforces it itself (PostgreSQL) answers first, with its code.
    fn statement_timeout(&self) -> Duration {
        Duration::from_secs(u64::from(self.grant.statement_timeout_s) + 2)
    }
}

/// How every pool is sized and timed.
fn pool_options<DB: sqlx::Database>(connect: Duration) -> sqlx::pool::PoolOptions<DB> {
    sqlx::pool::PoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .idle_timeout(IDLE)
        .acquire_timeout(connect)
}

/// Opens a pool (lazily: no connection until the first query).
fn open(grant: &DatabaseGrant, password: Option<&str>) -> Result<Pool, sql::SqlError> {
    let config = |m: String| host(ErrorKind::Configuration, m);
    let ca = match (&grant.tls, &grant.ca) {
        (DatabaseTls::Required, Some(path)) => Some(crate::network::read_ca(path).map_err(config)?),
        _ => None,
    };
    let read_only = grant.access == crate::grants::Access::ReadOnly;
    let connect = Duration::from_secs(grant.connect_timeout_s.into());
    let timeout_ms = u64::from(grant.statement_timeout_s) * 1000;
    match grant.driver().map_err(config)? {
        Driver::Postgres => {
            let mut o: PgConnectOptions =
                grant.url.parse().map_err(|e| config(format!("url: {e}")))?;
            o = o.application_name("idgard-agent");
            if let Some(p) = password {
                o = o.password(p);
            }
            o = match ca {
                Some(pem) => o
                    .ssl_mode(PgSslMode::VerifyFull)
                    .ssl_root_cert_from_pem(pem.into_bytes()),
                None => o.ssl_mode(PgSslMode::Disable),
            };
            let timeout = timeout_ms.to_string();
            let mut settings = vec![("statement_timeout", timeout.as_str())];
            if read_only {
                settings.push(("default_transaction_read_only", "on"));
            }
            o = o.options(settings);
            Ok(Pool::Postgres(pool_options(connect).connect_lazy_with(o)))
        }
        Driver::MySql => {
            let mut o: MySqlConnectOptions =
                grant.url.parse().map_err(|e| config(format!("url: {e}")))?;
            if let Some(p) = password {
                o = o.password(p);
            }
            o = match ca {
                Some(pem) => o
                    .ssl_mode(MySqlSslMode::VerifyIdentity)
                    .ssl_ca_from_pem(pem.into_bytes()),
                None => o.ssl_mode(MySqlSslMode::Disabled),
            };
            Ok(Pool::MySql(
                pool_options::<sqlx::MySql>(connect)
                    .after_connect(move |conn, _| {
                        Box::pin(async move {
                            if read_only {
                                conn.execute("SET SESSION TRANSACTION READ ONLY").await?;
                            }
                            Ok(())
                        })
                    })
                    .connect_lazy_with(o),
            ))
        }
        Driver::Mssql => Ok(Pool::Mssql(
            mssql::Mssql::open(grant, password).map_err(config)?,
        )),
    }
}

/// Waits for `f` at most `timeout`; past it, the statement is reported as too slow.
async fn within<T>(
    timeout: Duration,
    f: impl Future<Output = Result<T, sql::SqlError>>,
) -> Result<T, sql::SqlError> {
    tokio::time::timeout(timeout, f).await.unwrap_or_else(|_| {
        Err(host(
            ErrorKind::Unavailable,
            format!(
                "the database did not answer within {timeout:?} (the grant's statement_timeout_s)"
            ),
        ))
    })
}

impl sql::Host for RunState {
    async fn databases(&mut self) -> wasmtime::Result<Vec<sql::Database>> {
        Ok(self
            .databases
            .by_name
            .iter()
            .map(|(name, g)| sql::Database {
                name: name.clone(),
                dialect: match g.driver {
                    Ok(Driver::MySql) => sql::Dialect::Mysql,
                    Ok(Driver::Mssql) => sql::Dialect::Mssql,
                    _ => sql::Dialect::Postgres,
                },
                read_only: g.grant.access == crate::grants::Access::ReadOnly,
            })
            .collect())
    }

    async fn query(
        &mut self,
        database: String,
        sql_text: String,
        params: Vec<sql::Value>,
    ) -> wasmtime::Result<Result<Resource<Rows>, sql::SqlError>> {
        let batching = Batching {
            rows: BATCH_ROWS,
            bytes: BATCH_BYTES.min(self.databases.max_batch_bytes),
            max_bytes: self.databases.max_batch_bytes,
        };
        let (g, pools) = match self.databases.granted(&database) {
            Ok(g) => g,
            Err(e) => return Ok(Err(e)),
        };
        if let Err(e) = g.allow(&sql_text, false) {
            return Ok(Err(e));
        }
        let timeout = g.statement_timeout();
        let pool = match g.pool(pools) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        let (cols_tx, cols_rx) = oneshot::channel();
        let (tx, rx) = mpsc::channel(2);
        let task = match pool {
            Pool::Postgres(p) => tokio::spawn(dialect::query(
                p.clone(),
                sql_text,
                params,
                batching,
                cols_tx,
                tx,
            )),
            Pool::MySql(p) => tokio::spawn(dialect::query(
                p.clone(),
                sql_text,
                params,
                batching,
                cols_tx,
                tx,
            )),
            Pool::Mssql(p) => tokio::spawn(mssql::query(
                p.clone(),
                sql_text,
                params,
                batching,
                cols_tx,
                tx,
            )),
        }
        .abort_handle();
        let columns = within(timeout, async {
            cols_rx.await.unwrap_or_else(|_| {
                Err(host(
                    ErrorKind::Internal,
                    "the query ended before it started: the database driver failed (a bug), see the agent's log",
                ))
            })
        })
        .await;
        let columns = match columns {
            Ok(c) => c,
            Err(e) => {
                task.abort();
                return Ok(Err(e));
            }
        };
        let rows = Rows {
            columns,
            batches: rx,
            timeout,
            task,
            ended: false,
        };
        Ok(Ok(self.table.push(rows)?))
    }

    async fn execute(
        &mut self,
        database: String,
        statements: Vec<sql::Statement>,
        transaction: bool,
    ) -> wasmtime::Result<Result<Vec<u64>, sql::SqlError>> {
        let (g, pools) = match self.databases.granted(&database) {
            Ok(g) => g,
            Err(e) => return Ok(Err(e)),
        };
        for (i, s) in statements.iter().enumerate() {
            if let Err(mut e) = g.allow(&s.sql, true) {
                e.statement = Some(i as u32);
                return Ok(Err(e));
            }
        }
        let timeout = g.statement_timeout();
        let pool = match g.pool(pools) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        // In a task of its own: a driver that panics fails this call, not the agent.
        let pool = pool.clone();
        let task = tokio::spawn(async move {
            match &pool {
                Pool::Postgres(p) => dialect::execute(p, statements, transaction).await,
                Pool::MySql(p) => dialect::execute(p, statements, transaction).await,
                Pool::Mssql(p) => mssql::execute(p, statements, transaction).await,
            }
        });
        let abort = task.abort_handle();
        let done = within(timeout, async {
            task.await.unwrap_or_else(|_| {
                Err(host(
                    ErrorKind::Internal,
                    "the database driver failed (a bug): see the agent's log",
                ))
            })
        })
        .await;
        abort.abort();
        Ok(done)
    }
}

impl sql::HostRows for RunState {
    async fn columns(&mut self, rows: Resource<Rows>) -> wasmtime::Result<Vec<String>> {
        Ok(self.table.get(&rows)?.columns.clone())
    }

    async fn next(
        &mut self,
        rows: Resource<Rows>,
    ) -> wasmtime::Result<Result<Vec<u8>, sql::SqlError>> {
        let rows = self.table.get_mut(&rows)?;
        if rows.ended {
            return Ok(Ok(Vec::new()));
        }
        let timeout = rows.timeout;
        let next = within(timeout, async {
            match rows.batches.recv().await {
                Some(batch) => batch,
                None => Err(host(
                    ErrorKind::Internal,
                    "the query stopped before its end: its rows are incomplete",
                )),
            }
        })
        .await;
        rows.ended = matches!(&next, Ok(b) if b.is_empty());
        Ok(next)
    }

    async fn drop(&mut self, rows: Resource<Rows>) -> wasmtime::Result<()> {
        self.table.delete(rows)?;
        Ok(())
    }
}
