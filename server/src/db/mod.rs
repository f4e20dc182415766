//! The database: a SQLite file (one writer, WAL) or PostgreSQL (several replicas), through
//! sqlx's `Any` driver so that one set of queries serves both; the few statements that differ
//! are chosen by [`Backend`]. Migrations are embedded and applied at start.

use anyhow::{Context, Result, bail};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub mod cipher;
mod sql;
mod wake;

pub use cipher::DatabaseKey;
pub use sql::{Col, in_list, multi_row_values};
pub use wake::{AgentWaker, Wakers};

/// A transaction.
pub type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite: one connection writes; claims are serialised by it.
    Sqlite,
    /// PostgreSQL: claims use `FOR UPDATE SKIP LOCKED`; replicas wake each other with NOTIFY.
    Postgres,
}

/// The channel replicas use to tell each other that an agent has work.
pub const NOTIFY_CHANNEL: &str = "idgard_tasks";

/// The pool and what goes with it.
#[derive(Clone)]
pub struct Db {
    /// The pool that writes (on SQLite, its one connection).
    pub pool: AnyPool,
    /// The pool for reads that need not wait behind a write: on SQLite, read-only connections
    /// beside the writer (WAL lets them read the last commit while a write runs); on
    /// PostgreSQL, the same pool as `pool`.
    pub read: AnyPool,
    /// Which database.
    pub backend: Backend,
    /// The URL (for the listener).
    url: String,
    /// Wakes polls held in this process.
    pub wakers: Wakers,
    /// Whether this process serves (and so holds the polls): set by [`Db::listen`].
    listening: Arc<AtomicBool>,
    /// The writer's page cache during large work, in MiB.
    large_cache_mib: u32,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("backend", &self.backend)
            .finish()
    }
}

/// The writer's page cache, in MiB, but during large work: the bound on what it holds while
/// it writes uploads and serves the queue (tests/all/memory.rs holds the server to it).
pub const CACHE_MIB: u32 = 64;
/// The writer's page cache during a synchronisation or provisioning, in MiB, by default
/// (`database.cache_mib`; see [`Db::widen`]).
pub const LARGE_CACHE_MIB: u32 = 256;

static MIGRATE_SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static MIGRATE_POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

impl Db {
    /// Held by a server for as long as it serves an embedded database: a second server on the
    /// same SQLite file is refused (two would each think they alone hand out leases and wake
    /// agents). Several servers share a PostgreSQL database; the administration commands, which
    /// serve nothing, open an embedded one beside a running server. `None` for PostgreSQL.
    pub fn serving_lock(url: &str) -> Result<Option<std::fs::File>> {
        let path = sqlite_path(url);
        if !url.starts_with("sqlite:") || path.is_empty() || path.contains(":memory:") {
            return Ok(None);
        }
        let lock = format!("{path}.lock");
        if let Some(dir) = std::path::Path::new(&lock).parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock)
            .with_context(|| format!("cannot open the lock file {lock}"))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(file)),
            Err(std::fs::TryLockError::WouldBlock) => bail!(
                "another idgard-server already serves the database {} (it holds {lock}): stop \
                 it first, or give this one another data directory; several servers share a \
                 PostgreSQL database, not an embedded one",
                path
            ),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("cannot lock {lock}"))
            }
        }
    }

    /// Opens the database at `url` and applies migrations; an embedded one encrypted with `key`
    /// when given (see [`cipher::prepare`]), its writer's cache during large work the default
    /// [`LARGE_CACHE_MIB`].
    pub async fn open(url: &str, key: Option<&DatabaseKey>) -> Result<Self> {
        Self::open_with(url, key, LARGE_CACHE_MIB).await
    }

    /// [`Db::open`], an embedded database's writer holding up to `large_cache_mib` MiB of pages
    /// during large work ([`Db::widen`]).
    pub async fn open_with(
        url: &str,
        key: Option<&DatabaseKey>,
        large_cache_mib: u32,
    ) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            bail!("unsupported database URL `{url}`: use sqlite://<file> or postgres://...");
        };
        let pool = match backend {
            Backend::Sqlite => {
                let path = sqlite_path(url);
                if let Some(dir) = std::path::Path::new(path).parent()
                    && !dir.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("cannot create {}", dir.display()))?;
                }
                let url = if url.contains('?') {
                    url.to_owned()
                } else {
                    format!("{url}?mode=rwc")
                };
                let options = sqlite_options(&url, key)?;
                let unlock = unlock_statement(key);
                // A new database in clear (tests, benchmarks) gets the pages an encrypted one
                // does; the key names an encrypted one's.
                let page_size = match key {
                    Some(_) => String::new(),
                    None => format!("PRAGMA page_size = {};", cipher::PAGE_SIZE),
                };
                let setup = Arc::new(format!(
                    "{page_size} PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                     PRAGMA cache_size = -{}; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;",
                    u64::from(CACHE_MIB) << 10
                ));
                // One connection: SQLite has one writer, and a single connection never meets
                // SQLITE_BUSY. Reads are short; long polls wait in memory, not in the database.
                AnyPoolOptions::new()
                    .max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None)
                    .after_connect(move |conn, _| {
                        let unlock = unlock.clone();
                        let setup = setup.clone();
                        Box::pin(async move {
                            if let Some(unlock) = &unlock {
                                conn.execute(unlock.as_str()).await?;
                            }
                            conn.execute(setup.as_str()).await?;
                            Ok(())
                        })
                    })
                    .connect_with(options)
                    .await
                    .with_context(|| format!("cannot open {url}"))?
            }
            Backend::Postgres => {
                let options = quiet(AnyConnectOptions::from_str(url)?);
                AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(options)
                    .await
                    .with_context(|| format!("cannot connect to {}", redact(url)))?
            }
        };
        let migrator = match backend {
            Backend::Sqlite => &MIGRATE_SQLITE,
            Backend::Postgres => &MIGRATE_POSTGRES,
        };
        migrator
            .run(&pool)
            .await
            .context("cannot apply the database migrations")?;
        let read = match backend {
            Backend::Sqlite => sqlite_readers(url, key).await?,
            Backend::Postgres => pool.clone(),
        };
        Ok(Self {
            pool,
            read,
            backend,
            url: url.to_owned(),
            wakers: Wakers::default(),
            listening: Arc::default(),
            large_cache_mib,
        })
    }

    /// Lets the writer hold up to `database.cache_mib` of pages for the large piece of work
    /// `tx` does (a synchronisation, a provisioning): every page it reads from an encrypted file
    /// again is decrypted and authenticated again. A no-op on PostgreSQL.
    pub async fn widen(&self, tx: &mut Tx) -> Result<(), sqlx::Error> {
        self.cache(tx, self.large_cache_mib).await
    }

    /// Brings the writer's cache back to [`CACHE_MIB`]: pages beyond it are let go as they are
    /// released (at the latest when `tx` ends).
    pub async fn narrow(&self, tx: &mut Tx) -> Result<(), sqlx::Error> {
        self.cache(tx, CACHE_MIB).await
    }

    async fn cache(&self, tx: &mut Tx, mib: u32) -> Result<(), sqlx::Error> {
        if self.backend == Backend::Sqlite {
            let sql = format!("PRAGMA cache_size = -{}", u64::from(mib) << 10);
            sqlx::query(&sql).execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Wakes the polls a server of this embedded database holds, from a process that does not
    /// serve (an administration command); PostgreSQL's servers hear NOTIFY instead.
    pub fn wake_server(&self) {
        if self.backend == Backend::Sqlite && !self.listening.load(Ordering::SeqCst) {
            wake::touch(&wake::wake_file(sqlite_path(&self.url)));
        }
    }

    /// Relays other replicas' wake-ups (PostgreSQL) or administration commands' (SQLite: a
    /// file they touch); runs until the process ends.
    pub async fn listen(&self) -> Result<()> {
        self.listening.store(true, Ordering::SeqCst);
        if self.backend == Backend::Sqlite {
            return wake::watch(
                &wake::wake_file(sqlite_path(&self.url)),
                self.wakers.clone(),
            );
        }
        let mut listener = sqlx::postgres::PgListener::connect(&self.url).await?;
        listener.listen(NOTIFY_CHANNEL).await?;
        let wakers = self.wakers.clone();
        tokio::spawn(async move {
            loop {
                match listener.recv().await {
                    Ok(n) => {
                        if let Ok(agent) = n.payload().parse::<i64>() {
                            wakers.wake_local(agent);
                        }
                    }
                    Err(e) => {
                        // PgListener reconnects by itself; polls recheck the database meanwhile.
                        tracing::warn!("wake-up listener: {e}");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Ok(())
    }
}

/// Statements are logged at debug only, slow ones (over a second) too: a warning holding a whole
/// 100-row `INSERT` buries the log. The domain logs each operation's time itself.
fn quiet(options: AnyConnectOptions) -> AnyConnectOptions {
    use sqlx::ConnectOptions as _;
    options
        .log_statements(log::LevelFilter::Debug)
        .log_slow_statements(log::LevelFilter::Debug, Duration::from_secs(1))
}

/// The options of a connection to an embedded database. When it is encrypted, its statements
/// are not logged at all: the first one carries its key.
fn sqlite_options(url: &str, key: Option<&DatabaseKey>) -> Result<AnyConnectOptions> {
    use sqlx::ConnectOptions as _;
    let options = AnyConnectOptions::from_str(url)?;
    Ok(match key {
        Some(_) => options.disable_statement_logging(),
        None => quiet(options),
    })
}

/// Read-only connections to a SQLite file the writer has opened (and put in WAL mode).
async fn sqlite_readers(url: &str, key: Option<&DatabaseKey>) -> Result<AnyPool> {
    let base = url.split('?').next().unwrap_or(url);
    let options = sqlite_options(&format!("{base}?mode=ro"), key)?;
    let unlock = unlock_statement(key);
    AnyPoolOptions::new()
        .max_connections(4)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .after_connect(move |conn, _| {
            let unlock = unlock.clone();
            Box::pin(async move {
                if let Some(unlock) = &unlock {
                    conn.execute(unlock.as_str()).await?;
                }
                conn.execute("PRAGMA busy_timeout = 5000; PRAGMA query_only = ON;")
                    .await?;
                Ok(())
            })
        })
        .connect_with(options)
        .await
        .with_context(|| format!("cannot open {base} for reading"))
}

/// What every connection to an encrypted embedded database runs first: its key (SQLCipher
/// needs it before anything reads the file).
fn unlock_statement(key: Option<&DatabaseKey>) -> Option<Arc<zeroize::Zeroizing<String>>> {
    key.map(|k| Arc::new(k.statement()))
}

/// A URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***{}", &url[..s], &url[at..]),
        _ => url.to_owned(),
    }
}

/// The file of an embedded database's URL; `None` for PostgreSQL and in-memory databases.
pub fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let path = sqlite_path(url);
    (url.starts_with("sqlite:") && !path.is_empty() && !path.contains(":memory:"))
        .then(|| std::path::PathBuf::from(path))
}

/// The file of a `sqlite:` URL.
fn sqlite_path(url: &str) -> &str {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    path.split('?').next().unwrap_or(path)
}
