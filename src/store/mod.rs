//! The store: Herald's one boundary to the database.
//!
//! Adapter. Everything the rest of Herald knows about persistence is the narrow API of
//! [`Store`]; SQL lives only in this module, so a PostgreSQL implementation can replace the
//! SQLite one without touching the pure core. SQLite runs in WAL mode with a busy timeout,
//! write transactions start with `BEGIN IMMEDIATE` (so two writers queue instead of failing
//! on upgrade), and the embedded migrations in `migrations/` run on open.

mod content;
mod daemon;
mod feedback;
mod ledger;
mod queue;
mod states;
mod subscribers;

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

pub use content::{FeedState, FeedSuccess, LastIssue};
pub use daemon::{Confirmed, SlotRecord, SubscribeOutcome};
pub use feedback::{FeedbackKind, FeedbackOutcome, FeedbackTarget, LinkClicks, NewFeedback};
pub use ledger::{Claimed, DeliveryRow, FrozenIssue, IssueStats, LedgerCounts, Mark, StoredIssue};
pub use queue::{QueueCounts, QueuedMail};
pub use subscribers::{AddOutcome, IMPORT_BATCH, ImportCounts, SubscriberRecord};

/// How long a connection waits for another writer before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

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

/// The database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
    /// This process's writers take turns here, first come first served, before they ask
    /// SQLite for its write lock. SQLite's own wait is polling, and a writer that commits and
    /// begins again at once (a large import, the delivery coordinator) would otherwise win
    /// every time and starve a short one, such as the sender lease's heartbeat.
    turns: std::sync::Arc<tokio::sync::Mutex<()>>,
}

/// A write transaction, holding this process's turn to write until it ends.
pub(crate) struct WriteTx {
    tx: Transaction<'static, Sqlite>,
    _turn: tokio::sync::OwnedMutexGuard<()>,
}

impl WriteTx {
    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }
}

impl std::ops::Deref for WriteTx {
    type Target = sqlx::SqliteConnection;
    fn deref(&self) -> &sqlx::SqliteConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut sqlx::SqliteConnection {
        &mut self.tx
    }
}

impl Store {
    /// Opens (creating if needed) the database at `url` and applies pending migrations.
    ///
    /// # Errors
    /// [`StoreError::Open`] when the database cannot be opened, [`StoreError::Migrate`] when
    /// a migration fails.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let open_err = |source| StoreError::Open {
            url: url.to_owned(),
            source,
        };
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
        sqlx::migrate!("./migrations").run(&pool).await?;
        let store = Self {
            pool,
            turns: std::sync::Arc::default(),
        };
        store.normalise_legacy_addresses().await?;
        Ok(store)
    }

    /// Brings addresses stored before they were normalised (a Unicode domain, stored as typed)
    /// to their normal form (the domain in IDNA form), so that `user@münchen.de` stored by an
    /// older Herald and `user@xn--mnchen-3ya.de` are one subscriber. A row whose normal form
    /// another row already has, or whose address is now refused (invisible characters, an IP
    /// literal), is left as it is and reported, for the operator to decide.
    ///
    /// Runs once per database (recorded in `daemon_state`): addresses written since are
    /// normalised on the way in, so later starts skip the scan of the subscriber table.
    async fn normalise_legacy_addresses(&self) -> Result<(), StoreError> {
        const DONE: &str = "addresses_normalised";
        let done: Option<String> =
            sqlx::query_scalar("SELECT value FROM daemon_state WHERE key = ?")
                .bind(DONE)
                .fetch_optional(&self.pool)
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
        .fetch_all(&self.pool)
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
            let taken: Option<i64> =
                sqlx::query_scalar("SELECT id FROM subscribers WHERE email_key = ?1 AND id <> ?2")
                    .bind(address.key())
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some(other) = taken {
                tracing::warn!(subscriber = id, duplicate_of = other, address = %stored, "two subscribers are one mailbox (an address stored before addresses were normalised); remove one of them");
                continue;
            }
            sqlx::query("UPDATE subscribers SET email = ?1, email_key = ?2 WHERE id = ?3")
                .bind(address.as_str())
                .bind(address.key())
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            tracing::info!(subscriber = id, from = %stored, to = %address, "normalised a stored address");
        }
        self.write_one(
            sqlx::query(
                "INSERT INTO daemon_state (key, value) VALUES (?1, '1') ON CONFLICT (key) DO NOTHING",
            )
            .bind(DONE),
        )
        .await?;
        Ok(())
    }

    /// Starts a write transaction with `BEGIN IMMEDIATE`: it takes the write lock at once, so
    /// concurrent writers wait (up to the busy timeout) instead of failing mid-transaction.
    async fn write(&self) -> Result<WriteTx, StoreError> {
        let turn = self.turns.clone().lock_owned().await;
        Ok(WriteTx {
            tx: self.pool.begin_with("BEGIN IMMEDIATE").await?,
            _turn: turn,
        })
    }

    /// Runs one write statement on its own (SQLite makes a single statement atomic) and
    /// returns how many rows it changed.
    async fn write_one(
        &self,
        query: sqlx::query::Query<'_, Sqlite, <Sqlite as sqlx::Database>::Arguments>,
    ) -> Result<u64, StoreError> {
        let _turn = self.turns.lock().await;
        Ok(query.execute(&self.pool).await?.rows_affected())
    }

    /// SQLite's quick integrity check: `Ok` when the database file is sound.
    ///
    /// # Errors
    /// [`StoreError::Damaged`] with what SQLite found, or a database error.
    pub async fn integrity_check(&self) -> Result<(), StoreError> {
        let found: Vec<String> = sqlx::query_scalar("PRAGMA quick_check")
            .fetch_all(&self.pool)
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
        self.write_one(
            sqlx::query(
                "INSERT INTO daemon_state (key, value) VALUES ('health_probe', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .bind(now.to_rfc3339()),
        )
        .await?;
        Ok(())
    }

    /// Whether the database answers (for health checks).
    ///
    /// # Errors
    /// The database error when it does not.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes every connection, waiting for those in use.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}
