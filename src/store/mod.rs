//! The store: Herald's one boundary to the database.
//!
//! Adapter. Everything the rest of Herald knows about persistence is the narrow API of
//! [`Store`]; SQL lives only in this module, so a PostgreSQL implementation can replace the
//! SQLite one without touching the pure core. SQLite runs in WAL mode with a busy timeout,
//! write transactions start with `BEGIN IMMEDIATE` (so two writers queue instead of failing
//! on upgrade), and the embedded migrations in `migrations/` run on open.

mod content;
mod copy;
mod daemon;
mod feedback;
mod ledger;
mod queue;
mod rates;
mod states;
mod subscribers;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, Postgres, Sqlite, SqlitePool, Transaction};

pub use content::{FeedState, FeedSuccess, LastIssue};
pub use copy::CopyError;
pub use daemon::{Confirmed, SlotRecord, SubscribeOutcome};
pub use feedback::{FeedbackKind, FeedbackOutcome, FeedbackTarget, LinkClicks, NewFeedback};
pub use ledger::{
    Claimed, DeliveryRow, FrozenIssue, IssueStats, LedgerCounts, LedgerSession, Mark, StoredIssue,
};
pub use queue::{QueueCounts, QueuedMail};
pub use rates::RelayRate;
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

/// Which SQL a statement is written in. Statements are written once, in the SQL both
/// databases share, with SQLite's numbered parameters (`?1`, or `?` in order); PostgreSQL
/// gets them as `$1`. The few statements that differ are written twice, chosen by `match`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// `sql` for this database.
    pub(crate) fn sql(self, sql: &'static str) -> &'static str {
        match self {
            Self::Sqlite => sql,
            Self::Postgres => postgres_static(sql),
        }
    }

    /// The statement written for this database: `sqlite` or `postgres` (both with SQLite's
    /// parameters), for the few that differ.
    pub(crate) fn pick(self, sqlite: &'static str, postgres: &'static str) -> &'static str {
        match self {
            Self::Sqlite => sqlite,
            Self::Postgres => postgres_static(postgres),
        }
    }

    /// A statement made at run time (a table name, a `LIMIT` written in), for this database.
    pub(crate) fn owned(self, sql: String) -> sqlx::AssertSqlSafe<String> {
        match self {
            Self::Sqlite => sqlx::AssertSqlSafe(sql),
            Self::Postgres => sqlx::AssertSqlSafe(to_postgres(&sql)),
        }
    }
}

/// SQLite's parameters (`?NNN`, or `?` numbered in order) as PostgreSQL's (`$NNN`). No
/// statement of Herald's has a `?` inside a string literal.
fn to_postgres(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut next = 1;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '?' {
            out.push(c);
            continue;
        }
        out.push('$');
        if chars.peek().is_some_and(char::is_ascii_digit) {
            while let Some(d) = chars.next_if(char::is_ascii_digit) {
                out.push(d);
            }
        } else {
            out.push_str(&next.to_string());
            next += 1;
        }
    }
    out
}

/// [`to_postgres`] of a statement written in the source, translated once per process.
fn postgres_static(sql: &'static str) -> &'static str {
    use std::collections::HashMap;
    use std::sync::{LazyLock, RwLock};
    static DONE: LazyLock<RwLock<HashMap<&'static str, &'static str>>> =
        LazyLock::new(RwLock::default);
    if let Some(done) = DONE.read().unwrap_or_else(|e| e.into_inner()).get(sql) {
        return done;
    }
    // One leaked copy per statement of the source: a bounded set.
    let translated: &'static str = Box::leak(to_postgres(sql).into_boxed_str());
    DONE.write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(sql, translated);
    translated
}

/// The connections, of one database or the other.
#[derive(Debug, Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` against the store's pool: `$db` is the pool (`&SqlitePool` or `&PgPool`),
/// `$d` its [`Dialect`], and `Db` the database type. The body is written once and compiled
/// for each database.
macro_rules! on_pool {
    ($store:expr, |$db:ident, $d:ident| $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::Sqlite($db) => {
                #[allow(unused)]
                type Db = sqlx::Sqlite;
                let $d = $crate::store::Dialect::Sqlite;
                $body
            }
            $crate::store::Pool::Postgres($db) => {
                #[allow(unused)]
                type Db = sqlx::Postgres;
                let $d = $crate::store::Dialect::Postgres;
                $body
            }
        }
    };
}

/// Runs `$body` inside a [`WriteTx`]: `$c` is its connection (`&mut SqliteConnection` or
/// `&mut PgConnection`; pass it as `&mut *$c`), `$d` its [`Dialect`], `Db` the database type.
macro_rules! on_tx {
    ($tx:expr, |$c:ident, $d:ident| $body:expr) => {
        match &mut $tx.tx {
            $crate::store::Tx::Sqlite($c) => {
                #[allow(unused)]
                type Db = sqlx::Sqlite;
                let $c: &mut sqlx::SqliteConnection = &mut **$c;
                let $d = $crate::store::Dialect::Sqlite;
                $body
            }
            $crate::store::Tx::Postgres($c) => {
                #[allow(unused)]
                type Db = sqlx::Postgres;
                let $c: &mut sqlx::PgConnection = &mut **$c;
                let $d = $crate::store::Dialect::Postgres;
                $body
            }
        }
    };
}

/// Implements `sqlx::FromRow` for both databases' rows with one body (`$row` the row).
macro_rules! from_row {
    ($ty:ty, |$row:ident| $body:expr) => {
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

pub(crate) use {from_row, on_pool, on_tx};

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

/// An open transaction of one database or the other.
pub(crate) enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

/// A write transaction, holding this process's turn to write until it ends.
pub(crate) struct WriteTx {
    tx: Tx,
    _turn: tokio::sync::OwnedMutexGuard<()>,
}

impl WriteTx {
    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        match self.tx {
            Tx::Sqlite(tx) => tx.commit().await,
            Tx::Postgres(tx) => tx.commit().await,
        }
    }
}

/// Runs one write statement on its own and evaluates to how many rows it changed: `$query`
/// is the statement, built with `$d` the [`Dialect`]. On SQLite the statement runs alone (a
/// single statement is atomic); on PostgreSQL inside a write transaction, so it is serialised
/// with the other writers as on SQLite.
macro_rules! write_one {
    ($store:expr, |$d:ident| $query:expr) => {
        async {
            let store: &$crate::store::Store = &$store;
            let n = match &store.pool {
                $crate::store::Pool::Sqlite(db) => {
                    let $d = $crate::store::Dialect::Sqlite;
                    let _turn = store.turns.lock().await;
                    $query.execute(db).await?.rows_affected()
                }
                $crate::store::Pool::Postgres(_) => {
                    let mut tx = store.write().await?;
                    let n = $crate::store::on_tx!(tx, |c, $d| $query
                        .execute(&mut *c)
                        .await?
                        .rows_affected());
                    tx.commit().await?;
                    n
                }
            };
            Ok::<u64, $crate::store::StoreError>(n)
        }
        .await
    };
}

pub(crate) use write_one;

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

    /// Which database this is.
    pub(crate) fn dialect(&self) -> Dialect {
        match self.pool {
            Pool::Sqlite(_) => Dialect::Sqlite,
            Pool::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Whether this store is a PostgreSQL database.
    pub fn is_postgres(&self) -> bool {
        self.dialect() == Dialect::Postgres
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
            sqlx::query_scalar("SELECT value FROM daemon_state WHERE key = ?")
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
            let taken: Option<i64> = on_tx!(tx, |c, d| sqlx::query_scalar(
                d.sql("SELECT id FROM subscribers WHERE email_key = ?1 AND id <> ?2")
            )
            .bind(address.key())
            .bind(id)
            .fetch_optional(&mut *c)
            .await?);
            if let Some(other) = taken {
                tracing::warn!(subscriber = id, duplicate_of = other, address = %stored, "two subscribers are one mailbox (an address stored before addresses were normalised); remove one of them");
                continue;
            }
            on_tx!(tx, |c, d| sqlx::query(d.sql(
                "UPDATE subscribers SET email = ?1, email_key = ?2 WHERE id = ?3"
            ))
            .bind(address.as_str())
            .bind(address.key())
            .bind(id)
            .execute(&mut *c)
            .await?
            .rows_affected());
            tx.commit().await?;
            tracing::info!(subscriber = id, from = %stored, to = %address, "normalised a stored address");
        }
        write_one!(self, |d| sqlx::query(d.sql(
            "INSERT INTO daemon_state (key, value) VALUES (?1, '1') ON CONFLICT (key) DO NOTHING"
        ))
        .bind(DONE))?;
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
            Pool::Sqlite(pool) => Tx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
            Pool::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(WRITE_LOCK)
                    .execute(&mut *tx)
                    .await?;
                Tx::Postgres(tx)
            }
        };
        Ok(WriteTx { tx, _turn: turn })
    }

    /// A write transaction for a ledger step. On SQLite, [`Store::write`]. On PostgreSQL a
    /// plain transaction without the writers' advisory lock: a step locks the rows it claims
    /// (`FOR UPDATE SKIP LOCKED`) and changes only rows it claimed, so the steps of several
    /// workers run side by side.
    async fn ledger_write(&self) -> Result<WriteTx, StoreError> {
        match &self.pool {
            Pool::Sqlite(_) => self.write().await,
            Pool::Postgres(pool) => Ok(WriteTx {
                tx: Tx::Postgres(pool.begin().await?),
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
        write_one!(self, |d| sqlx::query(d.sql(
            "INSERT INTO daemon_state (key, value) VALUES ('health_probe', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value"
        ))
        .bind(now.to_rfc3339()))?;
        Ok(())
    }

    /// Whether the database answers (for health checks).
    ///
    /// # Errors
    /// The database error when it does not.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(self, |db, _d| sqlx::query("SELECT 1")
            .execute(db)
            .await?
            .rows_affected());
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
