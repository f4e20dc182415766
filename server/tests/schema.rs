//! The SQLite and PostgreSQL migrations are written twice and differ only in types: this test
//! applies both and compares what they built — tables, columns and their nullability, primary
//! keys, indexes (columns in order, unique, partial) and foreign keys — so that a migration added
//! to one dialect and forgotten, or written differently, in the other fails here.

mod support;

use idgard_server::db::Db;
use sqlx::Row;
use std::collections::BTreeSet;

/// One fact of a schema per line, e.g. `column tasks.state not null`.
type Schema = BTreeSet<String>;

async fn texts(db: &Db, sql: &str, table: &str) -> Vec<Vec<String>> {
    sqlx::query(sql)
        .bind(table.to_owned())
        .fetch_all(&db.pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|row| {
            (0..row.len())
                .map(|i| {
                    row.try_get::<String, _>(i)
                        .or_else(|_| row.try_get::<i64, _>(i).map(|n| n.to_string()))
                        .or_else(|_| row.try_get::<bool, _>(i).map(|b| (b as i64).to_string()))
                        .unwrap_or_else(|e| panic!("{sql}, column {i}: {e}"))
                })
                .collect()
        })
        .collect()
}

fn index(table: &str, columns: &str, unique: bool, partial: bool) -> String {
    format!(
        "index {table}({columns}){}{}",
        if unique { " unique" } else { "" },
        if partial { " partial" } else { "" }
    )
}

async fn sqlite_schema(db: &Db) -> Schema {
    let mut schema = Schema::new();
    let tables = texts(
        db,
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         AND name <> '_sqlx_migrations' AND name <> ?",
        "",
    )
    .await;
    for t in tables.iter().map(|r| r[0].clone()) {
        schema.insert(format!("table {t}"));
        let columns = texts(
            db,
            "SELECT name, \"notnull\", pk FROM pragma_table_info(?) ORDER BY pk",
            &t,
        )
        .await;
        let mut key = Vec::new();
        for c in &columns {
            let not_null = c[1] == "1" || c[2] != "0";
            schema.insert(format!(
                "column {t}.{} {}",
                c[0],
                if not_null { "not null" } else { "null" }
            ));
            if c[2] != "0" {
                key.push(c[0].clone());
            }
        }
        schema.insert(format!("primary key {t}({})", key.join(",")));
        for ix in texts(
            db,
            "SELECT name, \"unique\", origin, partial FROM pragma_index_list(?)",
            &t,
        )
        .await
        {
            if ix[2] == "pk" {
                continue;
            }
            let cols = texts(
                db,
                "SELECT name FROM pragma_index_info(?) ORDER BY seqno",
                &ix[0],
            )
            .await;
            let cols: Vec<String> = cols.into_iter().map(|r| r[0].clone()).collect();
            schema.insert(index(&t, &cols.join(","), ix[1] == "1", ix[3] == "1"));
        }
        for fk in texts(
            db,
            "SELECT \"from\", \"table\", \"to\" FROM pragma_foreign_key_list(?)",
            &t,
        )
        .await
        {
            schema.insert(format!("foreign key {t}.{} -> {}.{}", fk[0], fk[1], fk[2]));
        }
    }
    schema
}

async fn postgres_schema(db: &Db) -> Schema {
    let mut schema = Schema::new();
    let tables = texts(
        db,
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' \
         AND table_type = 'BASE TABLE' AND table_name <> '_sqlx_migrations' AND table_name <> $1",
        "",
    )
    .await;
    for t in tables.iter().map(|r| r[0].clone()) {
        schema.insert(format!("table {t}"));
        let columns = texts(
            db,
            "SELECT column_name::text, is_nullable::text FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name = $1",
            &t,
        )
        .await;
        for c in &columns {
            let not_null = c[1] == "NO";
            schema.insert(format!(
                "column {t}.{} {}",
                c[0],
                if not_null { "not null" } else { "null" }
            ));
        }
        let indexes = texts(
            db,
            "SELECT array_to_string(ARRAY(SELECT a.attname::text FROM unnest(ix.indkey) \
             WITH ORDINALITY AS k(attnum, ord) JOIN pg_attribute a ON a.attrelid = ix.indrelid \
             AND a.attnum = k.attnum ORDER BY k.ord), ','), ix.indisunique, ix.indisprimary, \
             ix.indpred IS NOT NULL FROM pg_index ix JOIN pg_class c ON c.oid = ix.indrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'public' AND c.relname = $1",
            &t,
        )
        .await;
        let mut key = String::new();
        for ix in indexes {
            if ix[2] == "1" {
                key = ix[0].clone();
            } else {
                schema.insert(index(&t, &ix[0], ix[1] == "1", ix[3] == "1"));
            }
        }
        schema.insert(format!("primary key {t}({key})"));
        let fks = texts(
            db,
            "SELECT kcu.column_name::text, ccu.table_name::text, ccu.column_name::text \
             FROM information_schema.table_constraints tc \
             JOIN information_schema.key_column_usage kcu ON tc.constraint_name = kcu.constraint_name \
             JOIN information_schema.constraint_column_usage ccu ON ccu.constraint_name = tc.constraint_name \
             WHERE tc.constraint_type = 'FOREIGN KEY' AND tc.table_schema = 'public' AND tc.table_name = $1",
            &t,
        )
        .await;
        for fk in fks {
            schema.insert(format!("foreign key {t}.{} -> {}.{}", fk[0], fk[1], fk[2]));
        }
    }
    schema
}

#[tokio::test]
async fn both_dialects_build_the_same_schema() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Db::open(
        &format!("sqlite://{}", dir.path().join("s.db").display()),
        None,
    )
    .await
    .unwrap();
    let scratch = support::Scratch::new("schema").await;
    let postgres = Db::open(&scratch.url(), None).await.unwrap();
    let (s, p) = (
        sqlite_schema(&sqlite).await,
        postgres_schema(&postgres).await,
    );
    postgres.pool.close().await;
    scratch.drop().await;
    assert!(
        s.iter().any(|l| l.starts_with("index ")),
        "no index seen: {s:#?}"
    );
    assert!(
        s.iter().any(|l| l.starts_with("foreign key ")),
        "no foreign key seen: {s:#?}"
    );
    let only_sqlite: Vec<&String> = s.difference(&p).collect();
    let only_postgres: Vec<&String> = p.difference(&s).collect();
    assert!(
        only_sqlite.is_empty() && only_postgres.is_empty(),
        "the migrations disagree\nonly in SQLite: {only_sqlite:#?}\nonly in PostgreSQL: {only_postgres:#?}"
    );
}
