//! `idgard-server backup` and `idgard-server sql`: the embedded database, which is encrypted,
//! copied whole or read with SQL (the `sqlite3` tool cannot open it).

use anyhow::{Context, Result};
use idgard_server::config::Config;
use idgard_server::db::{DatabaseKey, cipher};
use idgard_vault::Keyring;
use std::path::{Path, PathBuf};

/// The embedded database's file, its key ring's folder and its key.
async fn embedded(config: &Config) -> Result<(PathBuf, PathBuf, DatabaseKey)> {
    let url = config.database_url();
    let Some(db) = idgard_server::db::sqlite_file(&url) else {
        anyhow::bail!(
            "the database is PostgreSQL: use pg_dump and psql (docs/operations.md, \"Backup and restore\")"
        );
    };
    if !db.exists() {
        anyhow::bail!("no database at {}", db.display());
    }
    let (dir, _) = config.keyring();
    let ring = Keyring::open(&dir).with_context(|| format!("the key ring {}", dir.display()))?;
    let key = cipher::prepare(&ring, &db, false).await?;
    Ok((db, dir, key))
}

/// Runs `backup`: copies the embedded database to `to`.
pub async fn backup(config: &Config, to: &Path) -> Result<()> {
    let (db, dir, key) = embedded(config).await?;
    let done = cipher::backup(&db, &key, to).await?;
    say!(
        "backed up {} to {} ({} KiB, encrypted) with its key file {}: restore both together, and keep the key ring {} apart",
        db.display(),
        done.file.display(),
        done.bytes.div_ceil(1024),
        done.key_file.display(),
        dir.display()
    );
    Ok(())
}

/// Runs `sql`: one read-only statement on the embedded database, its rows printed one a line,
/// columns separated by tabs (a NULL as `NULL`, bytes in hex). The connection refuses writes
/// (`query_only`), and only one `SELECT` (or `WITH ... SELECT`) is taken: not several
/// statements, nor a `PRAGMA` (`rekey` would change the database's key).
pub async fn sql(config: &Config, statement: &str) -> Result<()> {
    use sqlx::{Column, Executor, Row, ValueRef};
    let statement = read_only(statement)?;
    let (db, _, key) = embedded(config).await?;
    let mut conn = cipher::connect(&db, Some(&key), cipher::Access::ReadWrite).await?;
    conn.execute("PRAGMA query_only = ON; PRAGMA busy_timeout = 5000;")
        .await?;
    let rows = sqlx::query(statement)
        .fetch_all(&mut conn)
        .await
        .context("the statement failed")?;
    if let Some(first) = rows.first() {
        let names: Vec<&str> = first.columns().iter().map(|c| c.name()).collect();
        say!("{}", names.join("\t"));
    }
    for row in &rows {
        let cells: Vec<String> = (0..row.len())
            .map(|i| {
                if row.try_get_raw(i).is_ok_and(|v| v.is_null()) {
                    "NULL".to_owned()
                } else if let Ok(n) = row.try_get::<i64, _>(i) {
                    n.to_string()
                } else if let Ok(x) = row.try_get::<f64, _>(i) {
                    x.to_string()
                } else if let Ok(t) = row.try_get::<String, _>(i) {
                    t
                } else {
                    row.try_get::<Vec<u8>, _>(i)
                        .map(hex::encode)
                        .unwrap_or_default()
                }
            })
            .collect();
        say!("{}", cells.join("\t"));
    }
    Ok(())
}

/// `statement` without its final `;`, if it is one query; otherwise why not.
fn read_only(statement: &str) -> Result<&str> {
    let one = statement.trim().trim_end_matches(';').trim_end();
    let first = one
        .split(|c: char| c.is_whitespace() || c == '(')
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    if one.contains(';') {
        anyhow::bail!("one statement at a time: this one holds a `;`");
    }
    if first != "SELECT" && first != "WITH" {
        anyhow::bail!("only queries are run (SELECT or WITH ... SELECT), not `{first}`");
    }
    Ok(one)
}

#[cfg(test)]
mod tests {
    use super::read_only;

    #[test]
    fn only_one_query_is_taken() {
        assert_eq!(read_only(" select 1 ;\n").unwrap(), "select 1");
        assert_eq!(
            read_only("WITH t AS (SELECT 1) SELECT * FROM t")
                .unwrap()
                .len(),
            36
        );
        for refused in [
            "PRAGMA rekey = 'x'",
            "SELECT 1; DELETE FROM agents",
            "PRAGMA query_only = OFF; DELETE FROM agents",
            "DELETE FROM agents",
            "ATTACH DATABASE 'x' AS y",
            "",
        ] {
            assert!(read_only(refused).is_err(), "{refused}");
        }
    }
}
