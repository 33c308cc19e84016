//! `herald store copy`: an SQLite installation moved into an empty PostgreSQL database.
//!
//! Every table is read from one snapshot of the source (one read transaction) and written in
//! one transaction of the target, in an order that satisfies the foreign keys, in batches;
//! the ids come along, so the ledger, the feedback and the slots still point at the right
//! rows, and each identity continues after the largest id copied. The row count of every
//! table is compared before the target commits: a copy is all or nothing. Leases are not
//! copied (they belong to processes, which the copy outlives).

use chrono::{DateTime, Utc};
use futures::TryStreamExt as _;
use sqlx::Row as _;

use super::{Pool, Store, StoreError};

/// A column's type in both databases.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Int,
    Text,
    Time,
}

use Kind::{Int, Text, Time};

/// The tables, parents first, with their columns (every column of the schema).
const TABLES: &[(&str, &[(&str, Kind)])] = &[
    (
        "subscribers",
        &[
            ("id", Int),
            ("email", Text),
            ("email_key", Text),
            ("name", Text),
            ("status", Text),
            ("source", Text),
            ("created_at", Time),
            ("updated_at", Time),
            ("confirmed_at", Time),
            ("unsubscribed_at", Time),
            ("bounced_at", Time),
            ("first_name", Text),
        ],
    ),
    (
        "issues",
        &[
            ("id", Int),
            ("number", Int),
            ("cycle", Int),
            ("term_slug", Text),
            ("subject", Text),
            ("preheader", Text),
            ("html", Text),
            ("text", Text),
            ("web_html", Text),
            ("status", Text),
            ("slot_key", Text),
            ("send_after", Time),
            ("created_at", Time),
            ("finished_at", Time),
        ],
    ),
    (
        "terms_sent",
        &[
            ("issue_id", Int),
            ("cycle", Int),
            ("slug", Text),
            ("sent_at", Time),
        ],
    ),
    (
        "links_sent",
        &[
            ("issue_id", Int),
            ("position", Int),
            ("canonical_url", Text),
            ("url", Text),
            ("title", Text),
            ("source", Text),
            ("summary", Text),
        ],
    ),
    (
        "deliveries",
        &[
            ("id", Int),
            ("issue_id", Int),
            ("subscriber_id", Int),
            ("status", Text),
            ("attempts", Int),
            ("last_error", Text),
            ("smtp_reply", Text),
            ("next_attempt_at", Time),
            ("claimed_at", Time),
            ("claimed_by", Text),
            ("sent_at", Time),
            ("updated_at", Time),
            ("deferred_by", Text),
        ],
    ),
    (
        "feed_state",
        &[
            ("url", Text),
            ("name", Text),
            ("etag", Text),
            ("last_modified", Text),
            ("permanent_url", Text),
            ("last_success_at", Time),
            ("last_error", Text),
            ("last_error_at", Time),
            ("consecutive_failures", Int),
            ("items_seen", Int),
            ("items_json", Text),
            ("first_seen_at", Time),
        ],
    ),
    (
        "term_queue",
        &[("slug", Text), ("position", Int), ("added_at", Time)],
    ),
    (
        "schedule_slots",
        &[
            ("slot_key", Text),
            ("due_at", Time),
            ("outcome", Text),
            ("issue_id", Int),
            ("detail", Text),
            ("recorded_at", Time),
        ],
    ),
    ("daemon_state", &[("key", Text), ("value", Text)]),
    (
        "confirmation_sends",
        &[("email_key", Text), ("sent_at", Time)],
    ),
    (
        "mail_queue",
        &[
            ("id", Int),
            ("subscriber_id", Int),
            ("kind", Text),
            ("created_at", Time),
            ("due_at", Time),
            ("attempts", Int),
            ("last_error", Text),
            ("done_at", Time),
            ("outcome", Text),
        ],
    ),
    (
        "subscriber_files",
        &[
            ("path", Text),
            ("sha256", Text),
            ("rows", Int),
            ("imported_at", Time),
        ],
    ),
    (
        "feedback",
        &[
            ("id", Int),
            ("report_id", Text),
            ("kind", Text),
            ("delivery_id", Int),
            ("subscriber_id", Int),
            ("issue_id", Int),
            ("status_code", Text),
            ("reason", Text),
            ("report", Text),
            ("received_at", Time),
        ],
    ),
    (
        "link_clicks",
        &[("issue_id", Int), ("position", Int), ("clicks", Int)],
    ),
];

/// Tables whose `id` is an identity, to continue after the copied ids.
const IDENTITIES: &[&str] = &[
    "subscribers",
    "issues",
    "deliveries",
    "mail_queue",
    "feedback",
];

/// Rows per insert (deliveries have 13 columns: 26,000 parameters of PostgreSQL's 65,535).
const BATCH: usize = 2000;

/// One value on its way.
enum Value {
    Int(Option<i64>),
    Text(Option<String>),
    Time(Option<DateTime<Utc>>),
}

/// Why a copy did not happen.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("the copy goes from an SQLite database to a PostgreSQL one")]
    Direction,
    #[error(
        "the target database is not empty ({table} has {rows} rows): copy into an empty database"
    )]
    NotEmpty { table: &'static str, rows: i64 },
    #[error("{table}: {read} rows read, {target} rows in the target; nothing was committed")]
    Count {
        table: &'static str,
        read: i64,
        target: i64,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for CopyError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.into())
    }
}

impl Store {
    /// Copies this (SQLite) database into `target` (an empty PostgreSQL database, migrated),
    /// reporting each table as it is done. Returns the rows copied per table.
    ///
    /// # Errors
    /// [`CopyError`]; then the target is left as it was.
    pub async fn copy_into(
        &self,
        target: &Store,
        mut progress: impl FnMut(&str, i64),
    ) -> Result<Vec<(&'static str, i64)>, CopyError> {
        let (Pool::Sqlite(source), Pool::Postgres(dest)) = (&self.pool, &target.pool) else {
            return Err(CopyError::Direction);
        };
        for (table, _) in TABLES.iter().chain([&("leases", &[][..])]) {
            let rows: i64 =
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
                    .fetch_one(dest)
                    .await?;
            if rows > 0 {
                return Err(CopyError::NotEmpty { table, rows });
            }
        }
        // One snapshot of the source: a read transaction (WAL lets writers go on meanwhile).
        let mut src = source.begin().await?;
        let mut tx = dest.begin().await?;
        let mut copied = Vec::with_capacity(TABLES.len());
        for (table, columns) in TABLES {
            let names = columns
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ");
            let expected: i64 =
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
                    .fetch_one(&mut *src)
                    .await?;
            let mut batch: Vec<Vec<Value>> = Vec::with_capacity(BATCH);
            {
                let mut rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {names} FROM {table} ORDER BY rowid"
                )))
                .fetch(&mut *src);
                while let Some(row) = rows.try_next().await? {
                    let mut values = Vec::with_capacity(columns.len());
                    for (i, (_, kind)) in columns.iter().enumerate() {
                        values.push(match kind {
                            Int => Value::Int(row.try_get(i)?),
                            Text => Value::Text(row.try_get(i)?),
                            Time => Value::Time(row.try_get(i)?),
                        });
                    }
                    batch.push(values);
                    if batch.len() == BATCH {
                        insert(&mut tx, table, &names, &mut batch).await?;
                    }
                }
            }
            insert(&mut tx, table, &names, &mut batch).await?;
            let written: i64 =
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
                    .fetch_one(&mut *tx)
                    .await?;
            if written != expected {
                return Err(CopyError::Count {
                    table,
                    read: expected,
                    target: written,
                });
            }
            progress(table, written);
            copied.push((*table, written));
        }
        for table in IDENTITIES {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'),
                               COALESCE(MAX(id), 1), MAX(id) IS NOT NULL) FROM {table}"
            )))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        src.rollback().await?;
        Ok(copied)
    }
}

/// Inserts (and empties) a batch of rows of `table`.
async fn insert(
    tx: &mut sqlx::PgConnection,
    table: &str,
    names: &str,
    batch: &mut Vec<Vec<Value>>,
) -> Result<(), sqlx::Error> {
    if batch.is_empty() {
        return Ok(());
    }
    let mut q =
        sqlx::QueryBuilder::<sqlx::Postgres>::new(format!("INSERT INTO {table} ({names}) "));
    q.push_values(batch.drain(..), |mut b, row| {
        for value in row {
            match value {
                Value::Int(v) => b.push_bind(v),
                Value::Text(v) => b.push_bind(v),
                Value::Time(v) => b.push_bind(v),
            };
        }
    });
    q.build().execute(tx).await?;
    Ok(())
}
