//! The two databases' schemas agree: after the migrations, SQLite and PostgreSQL have the
//! same tables, the same columns (by name and nullability) and the same uniqueness rules
//! (primary keys, unique constraints, unique indexes), sqlx's `_sqlx_migrations` aside.
//! Column types differ on purpose (times are text on SQLite, `timestamptz` on PostgreSQL)
//! and are not compared. Skipped visibly without a PostgreSQL server, unless
//! `REQUIRE_POSTGRES_TESTS=1` (see `postgres.rs`).

use std::collections::{BTreeMap, BTreeSet};

use herald::store::Store;

use crate::harness::{Sandbox, TempPostgres, on_postgres};
use crate::postgres::postgres_available;

/// One table, as the comparison sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Table {
    /// Each column's name, and whether it may be NULL.
    columns: BTreeMap<String, bool>,
    /// The sets of columns whose values are unique (the primary key's included), each in
    /// name order; a partial unique index's set ends with `(partial)`.
    unique: BTreeSet<Vec<String>>,
}

/// Every table of a database, by name.
type Schema = BTreeMap<String, Table>;

/// Every way `sqlite` and `postgres` differ, in words; empty when they agree.
fn differences(sqlite: &Schema, postgres: &Schema) -> Vec<String> {
    let only = |on_sqlite: bool| if on_sqlite { "SQLite" } else { "PostgreSQL" };
    let nullability = |nullable: bool| if nullable { "nullable" } else { "NOT NULL" };
    let mut found = Vec::new();
    let tables: BTreeSet<&String> = sqlite.keys().chain(postgres.keys()).collect();
    for name in tables {
        let (Some(a), Some(b)) = (sqlite.get(name), postgres.get(name)) else {
            found.push(format!(
                "table {name}: only on {}",
                only(sqlite.contains_key(name))
            ));
            continue;
        };
        let columns: BTreeSet<&String> = a.columns.keys().chain(b.columns.keys()).collect();
        for column in columns {
            match (a.columns.get(column), b.columns.get(column)) {
                (Some(x), Some(y)) if x == y => {}
                (Some(x), Some(y)) => found.push(format!(
                    "{name}.{column}: {} on SQLite, {} on PostgreSQL",
                    nullability(*x),
                    nullability(*y)
                )),
                (x, _) => found.push(format!("{name}.{column}: only on {}", only(x.is_some()))),
            }
        }
        for key in a.unique.symmetric_difference(&b.unique) {
            found.push(format!(
                "{name}: unique ({}) only on {}",
                key.join(", "),
                only(a.unique.contains(key))
            ));
        }
    }
    found
}

/// An SQLite database's schema, from `pragma_table_list`, `pragma_table_info`,
/// `pragma_index_list` and `pragma_index_info`.
async fn sqlite_schema(pool: &sqlx::SqlitePool) -> Schema {
    let tables: Vec<(String, bool)> = sqlx::query_as(
        "SELECT name, strict FROM pragma_table_list
         WHERE schema = 'main' AND type = 'table'
           AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut schema = Schema::new();
    for (name, strict) in tables {
        let columns: Vec<(String, String, bool, i64)> =
            sqlx::query_as("SELECT name, type, \"notnull\", pk FROM pragma_table_info($1)")
                .bind(&name)
                .fetch_all(pool)
                .await
                .unwrap();
        let mut key: Vec<(i64, &str, &str)> = columns
            .iter()
            .filter(|(_, _, _, pk)| *pk > 0)
            .map(|(column, kind, _, pk)| (*pk, column.as_str(), kind.as_str()))
            .collect();
        key.sort();
        // An `INTEGER PRIMARY KEY` is the rowid, never NULL; the primary key of a STRICT
        // table is NOT NULL too. (Another table's primary key may hold NULLs on SQLite.)
        let rowid = matches!(key[..], [(_, _, kind)] if kind.eq_ignore_ascii_case("INTEGER"));
        let mut table = Table::default();
        for (column, _, not_null, pk) in &columns {
            let never_null = *not_null || (*pk > 0 && (strict || rowid));
            table.columns.insert(column.clone(), !never_null);
        }
        if !key.is_empty() {
            table
                .unique
                .insert(sorted(key.iter().map(|k| k.1.to_owned())));
        }
        let indexes: Vec<(String, bool)> =
            sqlx::query_as("SELECT name, partial FROM pragma_index_list($1) WHERE \"unique\" = 1")
                .bind(&name)
                .fetch_all(pool)
                .await
                .unwrap();
        for (index, partial) in indexes {
            let columns: Vec<String> =
                sqlx::query_scalar("SELECT name FROM pragma_index_info($1) ORDER BY seqno")
                    .bind(&index)
                    .fetch_all(pool)
                    .await
                    .unwrap();
            table.unique.insert(marked(sorted(columns), partial));
        }
        schema.insert(name, table);
    }
    schema
}

/// A PostgreSQL database's schema (its current schema), from `information_schema` and the
/// catalog's unique indexes (`pg_index`: every primary key and unique constraint has one).
async fn postgres_schema(pool: &sqlx::PgPool) -> Schema {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'
           AND table_name <> '_sqlx_migrations'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut schema: Schema = tables.into_iter().map(|t| (t, Table::default())).collect();
    let columns: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text, is_nullable::text
         FROM information_schema.columns WHERE table_schema = current_schema()",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for (table, column, nullable) in columns {
        if let Some(t) = schema.get_mut(&table) {
            t.columns.insert(column, nullable == "YES");
        }
    }
    let unique: Vec<(String, Vec<String>, bool)> = sqlx::query_as(
        "SELECT t.relname::text,
                ARRAY(SELECT a.attname::text FROM pg_attribute a
                      WHERE a.attrelid = t.oid AND a.attnum = ANY (ix.indkey::int2[])),
                ix.indpred IS NOT NULL
         FROM pg_index ix
         JOIN pg_class t ON t.oid = ix.indrelid
         JOIN pg_namespace n ON n.oid = t.relnamespace
         WHERE ix.indisunique AND n.nspname = current_schema()",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for (table, columns, partial) in unique {
        if let Some(t) = schema.get_mut(&table) {
            t.unique.insert(marked(sorted(columns), partial));
        }
    }
    schema
}

fn sorted(columns: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut columns: Vec<String> = columns.into_iter().collect();
    columns.sort();
    columns
}

fn marked(mut columns: Vec<String>, partial: bool) -> Vec<String> {
    if partial {
        columns.push("(partial)".to_owned());
    }
    columns
}

/// A migrated SQLite database in `s`, as a pool.
async fn migrated_sqlite(s: &Sandbox, file: &str) -> sqlx::SqlitePool {
    let url = format!("sqlite://{}", s.path(file).display());
    Store::open(&url).await.unwrap().close().await;
    sqlx::SqlitePool::connect(&url).await.unwrap()
}

#[tokio::test]
async fn sqlite_and_postgresql_have_the_same_tables_columns_and_uniqueness_rules() {
    if on_postgres() || !postgres_available("schema parity") {
        return;
    }
    let s = Sandbox::new();
    let sqlite_pool = migrated_sqlite(&s, "parity.db").await;
    let target = TempPostgres::new();
    Store::open(&target.url).await.unwrap().close().await;
    let postgres_pool = sqlx::PgPool::connect(&target.url).await.unwrap();
    let sqlite = sqlite_schema(&sqlite_pool).await;
    let postgres = postgres_schema(&postgres_pool).await;

    // The readers read something: every table, with its columns and rules.
    assert_eq!(sqlite.len(), 16, "{sqlite:#?}");
    let deliveries = &sqlite["deliveries"];
    assert_eq!(deliveries.columns.get("id"), Some(&false));
    assert_eq!(deliveries.columns.get("deferred_by"), Some(&true));
    assert!(
        deliveries
            .unique
            .contains(&sorted(["issue_id".into(), "subscriber_id".into()])),
        "{deliveries:#?}"
    );
    assert!(
        postgres
            .get("deliveries")
            .is_some_and(|t| !t.columns.is_empty() && !t.unique.is_empty()),
        "{postgres:#?}"
    );

    let found = differences(&sqlite, &postgres);
    assert!(
        found.is_empty(),
        "the schemas differ (fix it with a new migration):\n{}",
        found.join("\n")
    );

    // A difference is found, on either side: a column whose nullability flipped and a
    // uniqueness rule that went missing, in a broken copy of each schema.
    let broken_sqlite = migrated_sqlite(&s, "broken.db").await;
    for statement in [
        "DROP TABLE leases",
        "CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT, expires_at TEXT NOT NULL) STRICT",
        "DROP TABLE term_queue",
        "CREATE TABLE term_queue (slug TEXT PRIMARY KEY, position INTEGER NOT NULL,
                                  added_at TEXT NOT NULL) STRICT",
    ] {
        sqlx::query(statement)
            .execute(&broken_sqlite)
            .await
            .unwrap();
    }
    assert_eq!(
        differences(&sqlite_schema(&broken_sqlite).await, &postgres),
        [
            "leases.holder: nullable on SQLite, NOT NULL on PostgreSQL",
            "term_queue: unique (position) only on PostgreSQL",
        ]
    );
    for statement in [
        "ALTER TABLE leases ALTER COLUMN holder DROP NOT NULL",
        "ALTER TABLE term_queue DROP CONSTRAINT term_queue_position_key",
    ] {
        sqlx::query(statement)
            .execute(&postgres_pool)
            .await
            .unwrap();
    }
    assert_eq!(
        differences(&sqlite, &postgres_schema(&postgres_pool).await),
        [
            "leases.holder: NOT NULL on SQLite, nullable on PostgreSQL",
            "term_queue: unique (position) only on SQLite",
        ]
    );
    postgres_pool.close().await;
}
