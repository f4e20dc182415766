//! The embedded database is encrypted: a new one from its first page, one an earlier version
//! wrote in clear when a server starts on it; its key is sealed with the key ring, follows a
//! rotation, and travels with a backup.

use idgard_server::db::{DatabaseKey, Db, cipher};
use idgard_vault::Keyring;
use std::path::{Path, PathBuf};

/// An agent name that shows whether the database's pages are readable.
const PROBE: &str = "zanzibar-probe-agent";

fn holds(path: &Path, needle: &str) -> bool {
    std::fs::read(path)
        .map(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
        .unwrap_or(false)
}

/// How many files beside the database `db` (itself, its WAL, its key...) hold `needle`.
fn files_holding(db: &Path, needle: &str) -> usize {
    std::fs::read_dir(db.parent().unwrap())
        .unwrap()
        .filter(|e| holds(&e.as_ref().unwrap().path(), needle))
        .count()
}

fn url(db: &Path) -> String {
    format!("sqlite://{}", db.display())
}

struct Place {
    _dir: tempfile::TempDir,
    db: PathBuf,
    ring: Keyring,
}

fn place() -> Place {
    let dir = tempfile::tempdir().unwrap();
    let (ring, _) = Keyring::open_or_create(&dir.path().join("keys")).unwrap();
    Place {
        db: dir.path().join("idgard.db"),
        ring,
        _dir: dir,
    }
}

/// Writes the probe, then closes the database so that every page is in the file.
async fn write_probe(db: Db) {
    sqlx::query("INSERT INTO agents (name, created_ms) VALUES ($1, 0)")
        .bind(PROBE)
        .execute(&db.pool)
        .await
        .unwrap();
    db.read.close().await;
    db.pool.close().await;
}

/// Reading the database at `db` with `key` fails: SQLite sees no database there.
async fn does_not_open(db: &Path, key: Option<&DatabaseKey>, access: cipher::Access) {
    let mut conn = cipher::connect(db, key, access).await.unwrap();
    let e = sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM agents")
        .fetch_one(&mut conn)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not a database"), "{e}");
}

async fn probe_is_there(db: &Db) -> bool {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM agents WHERE name = $1")
        .bind(PROBE)
        .fetch_one(&db.read)
        .await
        .unwrap();
    n == 1
}

#[tokio::test]
async fn a_new_database_is_encrypted_from_its_first_page() {
    let p = place();
    let key = cipher::prepare(&p.ring, &p.db, false).await.unwrap();
    write_probe(Db::open(&url(&p.db), Some(&key)).await.unwrap()).await;
    assert_eq!(
        cipher::file_state(&p.db).unwrap(),
        cipher::FileState::Encrypted
    );
    assert!(!holds(&p.db, PROBE));
    let sealed = std::fs::read(cipher::key_file(&p.db)).unwrap();
    assert!(idgard_vault::is_sealed(&sealed));
    assert_eq!(key.page_size(), cipher::PAGE_SIZE);
    // Its pages are of that size: the same key, told 4 KiB pages, does not open it.
    let plain = idgard_vault::open(&p.ring, &sealed).unwrap();
    assert_eq!(plain.len(), 36);
    let small = p.db.with_file_name("small-pages.db");
    std::fs::copy(&p.db, &small).unwrap();
    idgard_vault::write_file(&p.ring, &cipher::key_file(&small), &plain[..32]).unwrap();
    let small_key = DatabaseKey::load(&p.ring, &small).unwrap().unwrap();
    assert_eq!(small_key.page_size(), 4096);
    does_not_open(&small, Some(&small_key), cipher::Access::ReadOnly).await;

    // The same key opens it again; without it, or with another, it does not open.
    let key = cipher::prepare(&p.ring, &p.db, false).await.unwrap();
    let db = Db::open(&url(&p.db), Some(&key)).await.unwrap();
    assert!(probe_is_there(&db).await);
    db.pool.close().await;
    db.read.close().await;
    does_not_open(&p.db, None, cipher::Access::ReadWrite).await;
    let other = place();
    let e = DatabaseKey::load(&other.ring, &p.db).unwrap_err();
    assert!(
        format!("{e:#}").contains("does not open with the key ring"),
        "{e:#}"
    );
}

#[tokio::test]
async fn a_database_in_clear_is_encrypted_when_a_server_starts_on_it() {
    let p = place();
    write_probe(Db::open(&url(&p.db), None).await.unwrap()).await;
    assert_eq!(cipher::file_state(&p.db).unwrap(), cipher::FileState::Clear);
    assert!(files_holding(&p.db, PROBE) > 0);

    // An administration command refuses it, so that nothing writes it while it is encrypted.
    let e = cipher::prepare(&p.ring, &p.db, false).await.unwrap_err();
    assert!(format!("{e:#}").contains("start the server once"), "{e:#}");
    assert_eq!(cipher::file_state(&p.db).unwrap(), cipher::FileState::Clear);

    // A server starting on it encrypts it, once; everything is still there.
    let key = cipher::prepare(&p.ring, &p.db, true).await.unwrap();
    assert_eq!(
        cipher::file_state(&p.db).unwrap(),
        cipher::FileState::Encrypted
    );
    assert_eq!(files_holding(&p.db, PROBE), 0);
    let db = Db::open(&url(&p.db), Some(&key)).await.unwrap();
    assert!(probe_is_there(&db).await);
}

#[tokio::test]
async fn a_database_in_clear_that_another_process_holds_is_left_as_it_is() {
    let p = place();
    write_probe(Db::open(&url(&p.db), None).await.unwrap()).await;
    // An administration command has it open (as its pools keep it while it runs).
    let other = Db::open(&url(&p.db), None).await.unwrap();
    let e = cipher::prepare(&p.ring, &p.db, true).await.unwrap_err();
    let e = format!("{e:#}");
    assert!(e.contains("another process"), "{e}");
    assert_eq!(cipher::file_state(&p.db).unwrap(), cipher::FileState::Clear);
    assert!(probe_is_there(&other).await);
    other.read.close().await;
    other.pool.close().await;
    // Once it has gone, the next start encrypts it.
    let key = cipher::prepare(&p.ring, &p.db, true).await.unwrap();
    let db = Db::open(&url(&p.db), Some(&key)).await.unwrap();
    assert!(probe_is_there(&db).await);
}

#[tokio::test]
async fn a_server_starting_on_a_database_in_clear_encrypts_it() {
    let p = place();
    write_probe(Db::open(&url(&p.db), None).await.unwrap()).await;
    let config = idgard_server::config::Config {
        data_dir: p.db.parent().unwrap().to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        dev_http: true,
        ..Default::default()
    };
    let (up, is_up) = tokio::sync::oneshot::channel::<()>();
    idgard_server::serve(config, async move { is_up.await.unwrap() }, |_| {
        up.send(()).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        cipher::file_state(&p.db).unwrap(),
        cipher::FileState::Encrypted
    );
    assert_eq!(files_holding(&p.db, PROBE), 0);
    let key = DatabaseKey::load(&p.ring, &p.db).unwrap().unwrap();
    let db = Db::open(&url(&p.db), Some(&key)).await.unwrap();
    assert!(probe_is_there(&db).await);
}

#[tokio::test]
async fn a_key_file_of_another_database_is_refused_clearly() {
    let (p, other) = (place(), place());
    for place in [&p, &other] {
        let key = cipher::prepare(&p.ring, &place.db, false).await.unwrap();
        write_probe(Db::open(&url(&place.db), Some(&key)).await.unwrap()).await;
    }
    std::fs::copy(cipher::key_file(&other.db), cipher::key_file(&p.db)).unwrap();
    let e = cipher::prepare(&p.ring, &p.db, true).await.unwrap_err();
    let e = format!("{e:#}");
    assert!(e.contains("is it this database's key file?"), "{e}");
}

#[tokio::test]
async fn an_encrypted_database_without_its_key_file_is_refused_clearly() {
    let p = place();
    let key = cipher::prepare(&p.ring, &p.db, false).await.unwrap();
    write_probe(Db::open(&url(&p.db), Some(&key)).await.unwrap()).await;
    std::fs::remove_file(cipher::key_file(&p.db)).unwrap();
    let e = cipher::prepare(&p.ring, &p.db, true).await.unwrap_err();
    let e = format!("{e:#}");
    assert!(
        e.contains("is encrypted") && e.contains("idgard.db.key"),
        "{e}"
    );
}

#[tokio::test]
async fn the_database_key_follows_a_rotation_of_the_key_ring() {
    let p = place();
    let key = cipher::prepare(&p.ring, &p.db, false).await.unwrap();
    write_probe(Db::open(&url(&p.db), Some(&key)).await.unwrap()).await;
    let file = cipher::key_file(&p.db);
    assert_eq!(
        idgard_vault::key_of(&std::fs::read(&file).unwrap()),
        Some(1)
    );
    assert_eq!(p.ring.rotate().unwrap(), 2);
    let key = DatabaseKey::load(&p.ring, &p.db).unwrap().unwrap();
    assert_eq!(
        idgard_vault::key_of(&std::fs::read(&file).unwrap()),
        Some(2)
    );
    let db = Db::open(&url(&p.db), Some(&key)).await.unwrap();
    assert!(probe_is_there(&db).await);
}

#[tokio::test]
async fn a_backup_is_encrypted_and_opens_with_its_key_file() {
    let p = place();
    let key = cipher::prepare(&p.ring, &p.db, false).await.unwrap();
    let db = Db::open(&url(&p.db), Some(&key)).await.unwrap();
    sqlx::query("INSERT INTO agents (name, created_ms) VALUES ($1, 0)")
        .bind(PROBE)
        .execute(&db.pool)
        .await
        .unwrap();
    // Taken while the database is open (and its last write still in the WAL).
    let to = p.db.with_file_name("copy.db");
    let done = cipher::backup(&p.db, &key, &to).await.unwrap();
    assert!(done.bytes > 0 && done.key_file.ends_with("copy.db.key"));
    assert!(!holds(&to, PROBE));
    let e = cipher::backup(&p.db, &key, &to).await.unwrap_err();
    assert!(format!("{e:#}").contains("already exists"), "{e:#}");
    // Nor is a key file left from another copy overwritten.
    let elsewhere = p.db.with_file_name("elsewhere.db");
    std::fs::write(cipher::key_file(&elsewhere), b"another copy's").unwrap();
    let e = cipher::backup(&p.db, &key, &elsewhere).await.unwrap_err();
    assert!(
        format!("{e:#}").contains("elsewhere.db.key already exists"),
        "{e:#}"
    );
    assert!(!elsewhere.exists());

    // Restored alone, with its key file: everything is there.
    let restored = place();
    std::fs::copy(&to, &restored.db).unwrap();
    std::fs::copy(&done.key_file, cipher::key_file(&restored.db)).unwrap();
    let key = DatabaseKey::load(&p.ring, &restored.db).unwrap().unwrap();
    let db = Db::open(&url(&restored.db), Some(&key)).await.unwrap();
    assert!(probe_is_there(&db).await);
}

#[tokio::test]
async fn a_database_the_first_encrypted_version_made_still_opens_and_backs_up() {
    use sqlx::{Connection, Executor};
    let p = place();
    // That version's key file holds the key alone, and its connections said only the key
    // (SQLCipher's default pages, 4 KiB).
    let raw = [7u8; 32];
    idgard_vault::write_file(&p.ring, &cipher::key_file(&p.db), &raw).unwrap();
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&p.db)
        .create_if_missing(true);
    let mut conn = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    conn.execute(format!("PRAGMA key = \"x'{}'\"", hex::encode(raw)).as_str())
        .await
        .unwrap();
    conn.execute("CREATE TABLE kept (name TEXT); PRAGMA journal_mode = WAL;")
        .await
        .unwrap();
    sqlx::query("INSERT INTO kept VALUES ($1)")
        .bind(PROBE)
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    assert!(!holds(&p.db, PROBE));

    let key = cipher::prepare(&p.ring, &p.db, true).await.unwrap();
    assert_eq!(key.page_size(), 4096);
    let kept = |db: PathBuf, key| async move {
        let mut conn = cipher::connect(&db, Some(key), cipher::Access::ReadOnly)
            .await
            .unwrap();
        sqlx::query_scalar::<_, String>("SELECT name FROM kept")
            .fetch_one(&mut conn)
            .await
            .unwrap()
    };
    assert_eq!(kept(p.db.clone(), &key).await, PROBE);
    let db = Db::open(&url(&p.db), Some(&key)).await.unwrap();
    db.pool.close().await;
    db.read.close().await;

    // Its backup keeps its pages and its key file, and opens.
    let to = p.db.with_file_name("copy.db");
    let done = cipher::backup(&p.db, &key, &to).await.unwrap();
    let copied = DatabaseKey::load(&p.ring, &to).unwrap().unwrap();
    assert_eq!(copied.page_size(), 4096);
    assert_eq!(kept(to.clone(), &copied).await, PROBE);
    assert!(done.key_file.ends_with("copy.db.key"));
}
