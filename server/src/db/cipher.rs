//! The embedded database, encrypted: SQLCipher encrypts every page of the SQLite file, of its
//! WAL and of its temporary files (AES-256, an HMAC-SHA512 per page) under a random 32-byte
//! database key. The key is kept beside the database in `<file>.key`, sealed with the server's
//! key ring like everything else the server seals: without the key ring it opens nothing, and
//! after a rotation it is sealed again under the current key.
//!
//! A database an earlier version wrote in clear is encrypted once, when a server starts on it
//! ([`prepare`] with `serving`): copied into an encrypted file that then takes its place.
//! PostgreSQL keeps its own files; encrypting those is the database host's part
//! (`docs/operations.md`, "Encryption at rest").

use anyhow::{Context, Result, bail};
use idgard_vault::Keyring;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Connection, Executor};
use std::io::Read;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// What a SQLite file in clear starts with.
const CLEAR_HEADER: &[u8; 16] = b"SQLite format 3\0";
/// Bytes in a database key.
const KEY_LEN: usize = 32;
/// The page size of a new encrypted database. SQLCipher encrypts and authenticates each page
/// apart, with a cost per page beside the cost per byte; with pages of 16 KiB the pipeline
/// benchmark's initial load and provisioning on an encrypted database take about 10 % less time
/// than with SQLite's 4 KiB (`docs/performance.md`).
pub const PAGE_SIZE: u32 = 16_384;
/// The page size of databases whose key file names none (the first encrypted ones):
/// SQLCipher's default.
const FIRST_PAGE_SIZE: u32 = 4_096;

/// The key of an encrypted database, and the page size it was made with (which SQLCipher must
/// be told before it reads the file: nothing in the file says it).
///
/// Its file holds, sealed, the key's 32 bytes and then the page size (4 bytes, big-endian); a
/// file of the first versions holds the key alone, for 4 KiB pages.
pub struct DatabaseKey {
    /// The key in SQLCipher's raw-key notation, `x'<hex>'`.
    raw: Zeroizing<String>,
    /// The database's page size.
    page_size: u32,
}

impl std::fmt::Debug for DatabaseKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DatabaseKey(..)")
    }
}

impl DatabaseKey {
    /// A key file's content: the key, then its page size (a file of the first versions holds
    /// the key alone: 4 KiB pages).
    fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let (key, page_size) = match bytes.len() {
            KEY_LEN => (bytes, FIRST_PAGE_SIZE),
            len if len == KEY_LEN + 4 => {
                let (key, size) = bytes.split_at(KEY_LEN);
                let size = u32::from_be_bytes(size.try_into().expect("4 bytes"));
                if !size.is_power_of_two() || !(512..=65_536).contains(&size) {
                    bail!("it names a page size of {size} bytes, which SQLite does not have");
                }
                (key, size)
            }
            len => bail!("a database key is {KEY_LEN} bytes and a page size, not {len} bytes"),
        };
        let hex = Zeroizing::new(hex::encode(key));
        Ok(Self {
            raw: Zeroizing::new(format!("x'{}'", hex.as_str())),
            page_size,
        })
    }

    /// The database's page size.
    pub fn page_size(&self) -> u32 {
        self.page_size
    }

    /// The statement that opens the database with this key: the first on every connection.
    pub fn statement(&self) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "PRAGMA key = \"{}\"; PRAGMA cipher_page_size = {};",
            self.raw.as_str(),
            self.page_size
        ))
    }

    /// The key of the database at `db`, from its key file (sealed again under the key ring's
    /// current key when an older one sealed it); `None` when there is no key file.
    pub fn load(ring: &Keyring, db: &Path) -> Result<Option<Self>> {
        let file = key_file(db);
        let sealed = match std::fs::read(&file) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
        };
        let plain = Zeroizing::new(idgard_vault::open(ring, &sealed).with_context(|| {
            format!(
                "the database key {} does not open with the key ring {}",
                file.display(),
                ring.dir().display()
            )
        })?);
        let key =
            Self::from_bytes(&plain).with_context(|| format!("{} is damaged", file.display()))?;
        if idgard_vault::key_of(&sealed) != Some(ring.current()) {
            write_key(ring, &file, &plain)?;
            tracing::info!(
                file = %file.display(),
                key = ring.current(),
                "sealed the database key again under the key ring's current key"
            );
        }
        Ok(Some(key))
    }

    /// A new random key for a database of [`PAGE_SIZE`] pages, written sealed to `db`'s key
    /// file.
    fn make(ring: &Keyring, db: &Path) -> Result<Self> {
        use ring::rand::SecureRandom;
        let mut bytes = Zeroizing::new([0u8; KEY_LEN + 4]);
        ring::rand::SystemRandom::new()
            .fill(&mut bytes[..KEY_LEN])
            .map_err(|_| anyhow::anyhow!("no random bytes for the database key"))?;
        bytes[KEY_LEN..].copy_from_slice(&PAGE_SIZE.to_be_bytes());
        write_key(ring, &key_file(db), bytes.as_ref())?;
        Self::from_bytes(bytes.as_ref())
    }
}

/// The file holding the sealed key of the database at `db`: `<db>.key`.
pub fn key_file(db: &Path) -> PathBuf {
    with_suffix(db, ".key")
}

/// Writes the key sealed, durably (losing it loses the database), keeping the owner of the file
/// it replaces: sealed again by a command run as root, it stays readable by the server's user.
fn write_key(ring: &Keyring, file: &Path, plain: &[u8]) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(file).ok().map(|m| (m.uid(), m.gid()));
    idgard_vault::write_file(ring, file, plain)
        .with_context(|| format!("cannot write the database key {}", file.display()))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(file, Some(uid), Some(gid))
            .with_context(|| format!("cannot give {} back to its owner", file.display()))?;
    }
    sync_parent(file)
}

fn sync_parent(file: &Path) -> Result<()> {
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync {}", dir.display()))
}

/// What the file of an embedded database holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileState {
    /// No database yet (no file, or an empty one).
    Missing,
    /// A SQLite database in clear.
    Clear,
    /// Anything else: an encrypted database (or a damaged file, which its key will not open).
    Encrypted,
}

/// What the file at `path` holds.
pub fn file_state(path: &Path) -> Result<FileState> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileState::Missing),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut head = Vec::with_capacity(CLEAR_HEADER.len());
    file.by_ref()
        .take(CLEAR_HEADER.len() as u64)
        .read_to_end(&mut head)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(match head.as_slice() {
        [] => FileState::Missing,
        h if h == CLEAR_HEADER => FileState::Clear,
        _ => FileState::Encrypted,
    })
}

/// The key to open the embedded database at `db` with. A new database gets a new key. One in
/// clear is encrypted first when `serving` (a server starting, which holds it alone); an
/// administration command refuses it, so that nothing writes it while it is encrypted.
pub async fn prepare(ring: &Keyring, db: &Path, serving: bool) -> Result<DatabaseKey> {
    match file_state(db)? {
        FileState::Missing => match DatabaseKey::load(ring, db)? {
            Some(key) => Ok(key),
            None => DatabaseKey::make(ring, db),
        },
        FileState::Encrypted => {
            let key = DatabaseKey::load(ring, db)?.with_context(|| {
                format!(
                    "the database {} is encrypted and its key file {} is missing: restore it \
                     with the database (docs/operations.md, \"Backup and restore\")",
                    db.display(),
                    key_file(db).display()
                )
            })?;
            check(db, &key, Check::Opens).await.with_context(|| {
                format!(
                    "the key in {} does not open {}: is it this database's key file?",
                    key_file(db).display(),
                    db.display()
                )
            })?;
            Ok(key)
        }
        FileState::Clear if serving => {
            let key = match DatabaseKey::load(ring, db)? {
                Some(key) => key,
                None => DatabaseKey::make(ring, db)?,
            };
            encrypt_clear(db, &key).await?;
            Ok(key)
        }
        FileState::Clear => bail!(
            "the database {} is in clear (an earlier version wrote it): start the server once, \
             which encrypts it, then run this command again",
            db.display()
        ),
    }
}

/// How far [`check`] looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// The key opens the file: its schema reads.
    Opens,
    /// Every page reads and the b-trees are sound (`PRAGMA integrity_check`); for a copy, which
    /// is not in WAL mode.
    Whole,
}

/// Checks that `key` opens the database at `db` (and, `Whole`, that it is sound).
async fn check(db: &Path, key: &DatabaseKey, how: Check) -> Result<()> {
    // A live database is in WAL mode, which a read-only connection cannot always open.
    let access = match how {
        Check::Opens => Access::ReadWrite,
        Check::Whole => Access::ReadOnly,
    };
    let mut conn = connect(db, Some(key), access).await?;
    let verdict: String = match how {
        Check::Opens => sqlx::query_scalar("SELECT 'ok' FROM sqlite_schema LIMIT 1")
            .fetch_optional(&mut conn)
            .await?
            .unwrap_or_else(|| "ok".to_owned()),
        Check::Whole => {
            sqlx::query_scalar("PRAGMA integrity_check")
                .fetch_one(&mut conn)
                .await?
        }
    };
    conn.close().await?;
    if verdict != "ok" {
        bail!("{} is damaged: {verdict}", db.display());
    }
    Ok(())
}

/// What a connection of [`connect`] may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read only: SQLite opens the file read-only.
    ReadOnly,
    /// Write, and create attached copies.
    ReadWrite,
}

/// Opens one connection to the database at `db` (`key`: encrypted), outside any pool. Its
/// statements are not logged: the first carries the key.
pub async fn connect(
    db: &Path,
    key: Option<&DatabaseKey>,
    access: Access,
) -> Result<SqliteConnection> {
    use sqlx::ConnectOptions as _;
    if !db.exists() {
        bail!("no database at {}", db.display());
    }
    // Read-write may create files: an attached copy is a new file (see `export`).
    let options = SqliteConnectOptions::new()
        .filename(db)
        .read_only(access == Access::ReadOnly)
        .create_if_missing(access == Access::ReadWrite)
        .disable_statement_logging();
    let mut conn = SqliteConnection::connect_with(&options)
        .await
        .with_context(|| format!("cannot open {}", db.display()))?;
    if let Some(key) = key {
        sqlx::raw_sql(key.statement().as_str())
            .execute(&mut conn)
            .await?;
    }
    Ok(conn)
}

/// How [`export`] holds the database it copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hold {
    /// Others go on writing: the copy is the state when it began.
    Shared,
    /// Nobody else writes until the copy is done (the connection must be in rollback-journal
    /// mode, where an exclusive lock keeps readers out too).
    Exclusive,
}

/// Writes a copy of the database `conn` reads, encrypted with `key`, to the new file `to`: one
/// consistent state, read in one statement.
async fn export(
    conn: &mut SqliteConnection,
    to: &Path,
    key: &DatabaseKey,
    hold: Hold,
) -> Result<()> {
    if to.exists() {
        bail!("{} already exists", to.display());
    }
    sqlx::query("ATTACH DATABASE $1 AS copy KEY $2")
        .bind(to.to_string_lossy().as_ref())
        .bind(key.raw.as_str())
        .execute(&mut *conn)
        .await
        .with_context(|| format!("cannot create {}", to.display()))?;
    // The copy's pages are those its key file names (the statement takes no parameter).
    let copied = match conn
        .execute(format!("PRAGMA copy.cipher_page_size = {}", key.page_size).as_str())
        .await
    {
        Ok(_) => copy_into(conn, hold).await,
        Err(e) => Err(e.into()),
    };
    sqlx::query("DETACH DATABASE copy")
        .execute(&mut *conn)
        .await?;
    copied.with_context(|| format!("cannot copy the database into {}", to.display()))?;
    std::fs::File::open(to)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot sync {}", to.display()))?;
    Ok(())
}

async fn copy_into(conn: &mut SqliteConnection, hold: Hold) -> Result<()> {
    if hold == Hold::Shared {
        conn.execute("SELECT sqlcipher_export('copy')").await?;
        return Ok(());
    }
    conn.execute("BEGIN EXCLUSIVE").await?;
    let copied = conn.execute("SELECT sqlcipher_export('copy')").await;
    conn.execute(if copied.is_ok() { "COMMIT" } else { "ROLLBACK" })
        .await?;
    copied?;
    Ok(())
}

/// Encrypts the database in clear at `db` with `key`, in place: an encrypted copy, then the copy
/// takes the file's place. A crash before that leaves the clear file as it was.
async fn encrypt_clear(db: &Path, key: &DatabaseKey) -> Result<()> {
    let started = std::time::Instant::now();
    tracing::warn!(
        database = %db.display(),
        "the database is in clear (an earlier version wrote it): encrypting it, once"
    );
    let copy = with_suffix(db, ".encrypting");
    for stale in [copy.clone(), with_suffix(&copy, "-journal")] {
        remove_if_there(&stale)?;
    }
    let mut conn = connect(db, None, Access::ReadWrite).await?;
    conn.execute("PRAGMA busy_timeout = 5000;").await?;
    // Out of WAL mode, which SQLite allows only to the database's one connection: no other
    // process (an administration command) has it open, and its WAL is folded in and removed.
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode = DELETE")
        .fetch_one(&mut conn)
        .await
        .with_context(|| {
            format!(
                "cannot take the database {} for itself: is another process using it?",
                db.display()
            )
        })?;
    if mode != "delete" {
        bail!(
            "another process has the database {} open (it stays in {mode} mode): stop it, then \
             start the server again",
            db.display()
        );
    }
    export(&mut conn, &copy, key, Hold::Exclusive).await?;
    conn.close().await?;
    check(&copy, key, Check::Whole)
        .await
        .with_context(|| format!("the encrypted copy {} is not sound", copy.display()))?;
    remove_if_there(&with_suffix(db, "-shm"))?;
    std::fs::rename(&copy, db)
        .with_context(|| format!("cannot put {} in place of {}", copy.display(), db.display()))?;
    sync_parent(db)?;
    let wal = with_suffix(db, "-wal");
    if wal.exists() {
        bail!(
            "{} appeared while the database was encrypted: another process wrote it in clear; \
             move it away before the server starts again",
            wal.display()
        );
    }
    tracing::warn!(
        database = %db.display(),
        key = %key_file(db).display(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "the database is encrypted: back up its key file with it, and the key ring apart"
    );
    Ok(())
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn remove_if_there(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// What [`backup`] wrote.
#[derive(Debug)]
pub struct Backup {
    /// The copy of the database, encrypted with the database's key.
    pub file: PathBuf,
    /// Its key file, sealed with the key ring as the database's is.
    pub key_file: PathBuf,
    /// The copy's size.
    pub bytes: u64,
}

/// Copies the embedded database at `db`, encrypted with `key`, to the new file `to` while a
/// server may go on writing it (one consistent state), copies its key file beside it, and checks
/// that the copy opens whole.
pub async fn backup(db: &Path, key: &DatabaseKey, to: &Path) -> Result<Backup> {
    use std::os::unix::fs::PermissionsExt;
    let copy_key = key_file(to);
    for there in [to, copy_key.as_path()] {
        if there.exists() {
            bail!("{} already exists", there.display());
        }
    }
    let sealed_key = std::fs::read(key_file(db))
        .with_context(|| format!("cannot read {}", key_file(db).display()))?;
    let copied = async {
        let mut conn = connect(db, Some(key), Access::ReadWrite).await?;
        export(&mut conn, to, key, Hold::Shared).await?;
        conn.close().await?;
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot restrict {}", to.display()))?;
        check(to, key, Check::Whole)
            .await
            .with_context(|| format!("the copy {} is not sound", to.display()))
    }
    .await;
    if let Err(e) = copied {
        // A copy cut short is no backup: nothing is left behind to be taken for one.
        let _ = std::fs::remove_file(to);
        return Err(e);
    }
    idgard_vault::write_private(&copy_key, &sealed_key)
        .with_context(|| format!("cannot write {}", copy_key.display()))?;
    sync_parent(to)?;
    Ok(Backup {
        file: to.to_owned(),
        key_file: copy_key,
        bytes: std::fs::metadata(to)?.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_names_its_page_size_or_is_of_the_first_version() {
        let first = DatabaseKey::from_bytes(&[1; KEY_LEN]).unwrap();
        assert_eq!(first.page_size(), 4096);
        assert!(
            first
                .statement()
                .ends_with("PRAGMA cipher_page_size = 4096;")
        );
        let mut bytes = vec![1; KEY_LEN];
        bytes.extend_from_slice(&PAGE_SIZE.to_be_bytes());
        let key = DatabaseKey::from_bytes(&bytes).unwrap();
        assert_eq!(
            (key.page_size(), key.raw.as_str()),
            (PAGE_SIZE, first.raw.as_str())
        );
        bytes[KEY_LEN..].copy_from_slice(&3000u32.to_be_bytes());
        let e = DatabaseKey::from_bytes(&bytes).unwrap_err();
        assert!(e.to_string().contains("page size of 3000"), "{e}");
        let e = DatabaseKey::from_bytes(&[1; KEY_LEN + 1]).unwrap_err();
        assert!(e.to_string().contains("not 33 bytes"), "{e}");
    }
}
