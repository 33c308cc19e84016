//! The store: Herald's one boundary to the database, SQLite or PostgreSQL.
//!
//! Adapter. Everything the rest of Herald knows about persistence is the narrow API of
//! [`Store`]; SQL lives only in this module. One `Store`, two databases, chosen by the URL:
//!
//! - Every statement is written once, where it runs, with numbered placeholders (`$1`, `$2`):
//!   PostgreSQL's own, and SQLite binds `$N` by its number too, so the same text serves both
//!   and nothing is translated. A statement made at run time (a column list, a `LIMIT`
//!   written in) writes its `$N` itself. The few statements the two databases spell
//!   differently (date arithmetic, JSON arrays, row locks) are chosen by `if`/`match` where
//!   they run.
//! - The code that runs a statement is written once too and compiled for each database by
//!   [`per_db!`], a `match` over [`Db`] whose arms are the same block.
//! - Writers take turns: SQLite in WAL mode with a busy timeout, write transactions started
//!   with `BEGIN IMMEDIATE`; on PostgreSQL a write transaction takes one advisory lock (see
//!   [`Store::write`]). The delivery step has a backend per database (`step`).
//! - The embedded migrations (`migrations/sqlite`, `migrations/postgres`) run on open.
//!
//! Modules by concern: `subscribers`, `content` (what earlier issues sent, the editors' queue,
//! feeds), `issues` (freezing and reading issues), `ledger` (the per-recipient ledger's
//! counts, ambiguous rows, finishing), `step` (the delivery step), `lease`, `stats`,
//! `daemon` (slots and the subscription flow), `feedback`, `queue` (service mail), `rates`,
//! `copy` (`herald store copy`), `states` (how domain values are stored).

mod content;
mod copy;
mod daemon;
mod feedback;
mod issues;
mod lease;
mod ledger;
mod queue;
mod rates;
mod states;
mod stats;
mod step;
mod subscribers;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgConnection, PgPool, Postgres, Sqlite, SqliteConnection, SqlitePool, Transaction};

pub use content::{FeedState, FeedSuccess, LastIssue};
pub use copy::CopyError;
pub use daemon::{Confirmed, SlotRecord, SubscribeOutcome};
pub use feedback::{FeedbackKind, FeedbackOutcome, FeedbackTarget, LinkClicks, NewFeedback};
pub use issues::{FrozenIssue, StoredIssue};
pub use ledger::{DeliveryRow, LedgerCounts};
pub use queue::{QueueCounts, QueuedMail};
pub use rates::RelayRate;
pub use stats::IssueStats;
pub use step::{Claimed, LedgerSession, Mark, StepRequest};
pub use subscribers::{AddOutcome, IMPORT_BATCH, ImportCounts, SubscriberRecord};

/// How long a connection waits for another writer before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The key of the PostgreSQL advisory lock every write transaction takes (see
/// [`Store::write`]): "HERALD" in ASCII.
const WRITE_LOCK: i64 = 0x4845_5241_4C44;

/// A database failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("opening database {url}: {source}")]
    Open { url: String, source: sqlx::Error },
    #[error("applying database migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("the database is damaged ({0}); restore it from a backup before sending")]
    Damaged(String),
    #[error("database holds an unreadable value in {column}: {value}")]
    Corrupt { column: &'static str, value: String },
}

impl StoreError {
    /// Whether the database refused the write because it would break a uniqueness rule.
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, Self::Sqlx(sqlx::Error::Database(e)) if e.is_unique_violation())
    }
}

/// One database or the other: `S` on SQLite, `P` on PostgreSQL. The store's pool is a
/// `Db<SqlitePool, PgPool>`, a write transaction's connection a `Db<&mut SqliteConnection,
/// &mut PgConnection>`; [`per_db!`] runs one block of code on either.
#[derive(Debug, Clone)]
pub(crate) enum Db<S, P> {
    Sqlite(S),
    Postgres(P),
}

/// The connections, of one database or the other.
pub(crate) type Pool = Db<SqlitePool, PgPool>;

/// A connection of one database or the other, borrowed for a few statements.
pub(crate) type Conn<'c> = Db<&'c mut SqliteConnection, &'c mut PgConnection>;

/// Runs one block against whichever database `$on` (a [`Db`]: `&self.pool`, `tx.conn()`)
/// is on, with `$db` naming its side in the block: `&SqlitePool` or `&PgPool`, `&mut
/// SqliteConnection` or `&mut PgConnection`. It is a `match` with two arms, each the same
/// block, so the block is compiled once for each database; its value (of one type for both,
/// such as the rows read, or `rows_affected()`) is the value of the whole `per_db!`.
///
/// The block is a block, not a closure: `?` in it returns from the enclosing function (as in
/// any block), and `return` returns from it too.
///
/// ```ignore
/// let n: i64 = per_db!(&self.pool, db => {
///     sqlx::query_scalar("SELECT COUNT(*) FROM subscribers WHERE status = $1")
///         .bind(status)
///         .fetch_one(db)
///         .await?
/// });
/// ```
macro_rules! per_db {
    ($on:expr, $db:ident => $body:block) => {
        match $on {
            $crate::store::Db::Sqlite($db) => $body,
            $crate::store::Db::Postgres($db) => $body,
        }
    };
}

/// Implements `sqlx::FromRow` for both databases' rows with one block: `$row` names the row
/// in it, and the block evaluates to `Result<Self, sqlx::Error>` (it is the body of each
/// `from_row`, so `?` in it returns from that function).
macro_rules! from_row {
    ($ty:ty, $row:ident => $body:block) => {
        impl<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> for $ty {
            fn from_row($row: &'r sqlx::sqlite::SqliteRow) -> Result<Self, sqlx::Error> {
                use sqlx::Row as _;
                $body
            }
        }
        impl<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> for $ty {
            fn from_row($row: &'r sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
                use sqlx::Row as _;
                $body
            }
        }
    };
}

pub(crate) use {from_row, per_db};

/// The database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
    /// This process's writers take turns here, first come first served, before they ask
    /// the database for its write lock. SQLite's own wait is polling, and a writer that
    /// commits and begins again at once (a large import, the delivery coordinator) would
    /// otherwise win every time and starve a short one, such as the sender lease's heartbeat.
    turns: std::sync::Arc<tokio::sync::Mutex<()>>,
}

/// A write transaction, holding this process's turn to write until it ends.
pub(crate) struct WriteTx {
    tx: Db<Transaction<'static, Sqlite>, Transaction<'static, Postgres>>,
    _turn: tokio::sync::OwnedMutexGuard<()>,
}

impl WriteTx {
    /// The transaction's connection, for [`per_db!`].
    pub(crate) fn conn(&mut self) -> Conn<'_> {
        match &mut self.tx {
            Db::Sqlite(tx) => Db::Sqlite(&mut **tx),
            Db::Postgres(tx) => Db::Postgres(&mut **tx),
        }
    }

    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        match self.tx {
            Db::Sqlite(tx) => tx.commit().await,
            Db::Postgres(tx) => tx.commit().await,
        }
    }
}

pub use crate::config::is_postgres_url;
impl Store {
    /// Opens the database at `url` and applies pending migrations: `sqlite://PATH` (created
    /// if missing) or `postgres://...` (the database must exist).
    ///
    /// # Errors
    /// [`StoreError::Open`] when the database cannot be opened, [`StoreError::Migrate`] when
    /// a migration fails.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let open_err = |source| StoreError::Open {
            url: redact_url(url),
            source,
        };
        if is_postgres_url(url) {
            let options = PgConnectOptions::from_str(url)
                .map_err(open_err)?
                .application_name("herald")
                .options([("plan_cache_mode", "force_generic_plan")]);
            let pool = PgPoolOptions::new()
                .max_connections(8)
                .acquire_timeout(BUSY_TIMEOUT)
                .connect_with(options)
                .await
                .map_err(open_err)?;
            sqlx::migrate!("./migrations/postgres").run(&pool).await?;
            return Ok(Self {
                pool: Pool::Postgres(pool),
                turns: std::sync::Arc::default(),
            });
        }
        let options = SqliteConnectOptions::from_str(url)
            .map_err(open_err)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit survives power loss, so a delivery marked sent stays sent.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(open_err)?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        let store = Self {
            pool: Pool::Sqlite(pool),
            turns: std::sync::Arc::default(),
        };
        store.normalise_legacy_addresses().await?;
        Ok(store)
    }

    /// Whether this store is a PostgreSQL database.
    pub fn is_postgres(&self) -> bool {
        matches!(self.pool, Db::Postgres(_))
    }

    /// Brings addresses stored before they were normalised (a Unicode domain, stored as typed)
    /// to their normal form (the domain in IDNA form), so that `user@münchen.de` stored by an
    /// older Herald and `user@xn--mnchen-3ya.de` are one subscriber. A row whose normal form
    /// another row already has, or whose address is now refused (invisible characters, an IP
    /// literal), is left as it is and reported, for the operator to decide.
    ///
    /// Runs once per database (recorded in `daemon_state`): addresses written since are
    /// normalised on the way in, so later starts skip the scan of the subscriber table. Only
    /// SQLite databases can hold such rows (PostgreSQL support came after normalisation).
    async fn normalise_legacy_addresses(&self) -> Result<(), StoreError> {
        const DONE: &str = "addresses_normalised";
        let Pool::Sqlite(pool) = &self.pool else {
            return Ok(());
        };
        let done: Option<String> =
            sqlx::query_scalar("SELECT value FROM daemon_state WHERE key = $1")
                .bind(DONE)
                .fetch_optional(pool)
                .await?;
        if done.is_some() {
            return Ok(());
        }
        // Text and byte lengths differ only for non-ASCII text.
        let legacy: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT id, email, email_key FROM subscribers
             WHERE length(email) <> length(CAST(email AS BLOB))
                OR length(email_key) <> length(CAST(email_key AS BLOB))",
        )
        .fetch_all(pool)
        .await?;
        for (id, stored, stored_key) in legacy {
            let address = match crate::domain::EmailAddress::parse(&stored) {
                Ok(address) => address,
                Err(e) => {
                    tracing::error!(subscriber = id, address = %stored, error = %e, "a stored address is no longer accepted; remove the subscriber or correct the address");
                    continue;
                }
            };
            if address.as_str() == stored && address.key() == stored_key {
                continue;
            }
            let mut tx = self.write().await?;
            let taken: Option<i64> = per_db!(tx.conn(), c => {
                sqlx::query_scalar("SELECT id FROM subscribers WHERE email_key = $1 AND id <> $2")
                    .bind(address.key())
                    .bind(id)
                    .fetch_optional(c)
                    .await?
            });
            if let Some(other) = taken {
                tracing::warn!(subscriber = id, duplicate_of = other, address = %stored, "two subscribers are one mailbox (an address stored before addresses were normalised); remove one of them");
                continue;
            }
            per_db!(tx.conn(), c => {
                sqlx::query("UPDATE subscribers SET email = $1, email_key = $2 WHERE id = $3")
                    .bind(address.as_str())
                    .bind(address.key())
                    .bind(id)
                    .execute(c)
                    .await?;
            });
            tx.commit().await?;
            tracing::info!(subscriber = id, from = %stored, to = %address, "normalised a stored address");
        }
        let mut tx = self.write().await?;
        per_db!(tx.conn(), c => {
            sqlx::query(
                "INSERT INTO daemon_state (key, value)
                 VALUES ($1, '1')
                 ON CONFLICT (key) DO NOTHING",
            )
            .bind(DONE)
            .execute(c)
            .await?;
        });
        tx.commit().await?;
        Ok(())
    }

    /// Starts a write transaction. On SQLite with `BEGIN IMMEDIATE`: it takes the write lock
    /// at once, so concurrent writers wait (up to the busy timeout) instead of failing
    /// mid-transaction. On PostgreSQL the transaction takes one advisory lock
    /// (`pg_advisory_xact_lock`, released by its commit or rollback, or when its connection
    /// dies), so that writers of every process on the database take turns as on SQLite and a
    /// read-then-write transaction sees no other writer in between; readers never wait.
    async fn write(&self) -> Result<WriteTx, StoreError> {
        let turn = self.turns.clone().lock_owned().await;
        let tx = match &self.pool {
            Pool::Sqlite(pool) => Db::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
            Pool::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(WRITE_LOCK)
                    .execute(&mut *tx)
                    .await?;
                Db::Postgres(tx)
            }
        };
        Ok(WriteTx { tx, _turn: turn })
    }

    /// A write transaction for what the delivery workers share (a relay's send tokens). On
    /// SQLite, [`Store::write`]. On PostgreSQL a plain transaction without the writers'
    /// advisory lock: it locks the rows it changes (`FOR UPDATE`), so the workers do not wait
    /// for the other writers' turn. (A delivery step is such a transaction too: see `step`.)
    async fn delivery_write(&self) -> Result<WriteTx, StoreError> {
        match &self.pool {
            Pool::Sqlite(_) => self.write().await,
            Pool::Postgres(pool) => Ok(WriteTx {
                tx: Db::Postgres(pool.begin().await?),
                _turn: std::sync::Arc::new(tokio::sync::Mutex::new(()))
                    .lock_owned()
                    .await,
            }),
        }
    }

    /// SQLite's quick integrity check: `Ok` when the database file is sound. (PostgreSQL
    /// checks its own pages; there the check is that the database answers.)
    ///
    /// # Errors
    /// [`StoreError::Damaged`] with what SQLite found, or a database error.
    pub async fn integrity_check(&self) -> Result<(), StoreError> {
        let pool = match &self.pool {
            Pool::Sqlite(pool) => pool,
            Pool::Postgres(_) => return self.ping().await,
        };
        let found: Vec<String> = sqlx::query_scalar("PRAGMA quick_check")
            .fetch_all(pool)
            .await?;
        if found.len() == 1 && found[0] == "ok" {
            Ok(())
        } else {
            Err(StoreError::Damaged(found.join("; ")))
        }
    }

    /// Whether the database takes a write (a full disk or a read-only file would refuse):
    /// one tiny committed write.
    ///
    /// # Errors
    /// The database error when it does not.
    pub async fn write_probe(&self, now: chrono::DateTime<chrono::Utc>) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        per_db!(tx.conn(), c => {
            sqlx::query(
                "INSERT INTO daemon_state (key, value) VALUES ('health_probe', $1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .bind(now.to_rfc3339())
            .execute(c)
            .await?;
        });
        tx.commit().await?;
        Ok(())
    }

    /// Whether the database answers (for health checks).
    ///
    /// # Errors
    /// The database error when it does not.
    pub async fn ping(&self) -> Result<(), StoreError> {
        per_db!(&self.pool, db => {
            sqlx::query("SELECT 1").execute(db).await?;
        });
        Ok(())
    }

    /// Closes every connection, waiting for those in use.
    pub async fn close(&self) {
        match &self.pool {
            Pool::Sqlite(pool) => pool.close().await,
            Pool::Postgres(pool) => pool.close().await,
        }
    }
}

/// `url` with its password, if any, replaced by `***` (for messages and logs).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((user_info, host)) if user_info.contains(':') => {
            let user = user_info.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}{path}")
        }
        _ => url.to_owned(),
    }
}
