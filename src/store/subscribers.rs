//! Subscriber rows: import, add, unsubscribe, list and count.

use std::collections::{BTreeMap, HashMap};

use super::states::Text;
use super::{Store, StoreError, from_row, per_db};
use crate::domain::{EmailAddress, SubscriberName, SubscriberStatus};
use crate::subscriber_file::{ImportAction, SubscriberRow, decide_import};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// A subscriber as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubscriberRecord {
    pub id: i64,
    pub email: EmailAddress,
    pub name: String,
    /// The first name to greet them by; empty when unknown.
    pub first_name: String,
    pub status: SubscriberStatus,
    pub source: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What an import did, row by row, summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ImportCounts {
    pub added: u64,
    pub updated: u64,
    pub unchanged: u64,
    /// Rows naming an unsubscribed or bounced address, left as they were.
    pub suppressed: u64,
    /// Rows that could not be read (counted by the caller, which holds the reasons).
    pub rejected: u64,
    /// Whole files skipped because their content did not change since their last import.
    pub files_unchanged: u64,
}

impl std::ops::AddAssign for ImportCounts {
    fn add_assign(&mut self, other: Self) {
        self.added += other.added;
        self.updated += other.updated;
        self.unchanged += other.unchanged;
        self.suppressed += other.suppressed;
        self.rejected += other.rejected;
        self.files_unchanged += other.files_unchanged;
    }
}

/// What `add_subscriber` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddOutcome {
    Added,
    /// The address was already there and active; its name may have been updated.
    AlreadyActive,
    /// The address unsubscribed or bounced, and re-activation was not asked for.
    Suppressed(SubscriberStatus),
    /// The address unsubscribed or bounced and was explicitly re-activated.
    Reactivated,
}

from_row!(SubscriberRecord, row => {
    Ok(Self {
        id: row.try_get("id")?,
        email: row.try_get::<Text<EmailAddress>, _>("email")?.0,
        name: row.try_get("name")?,
        first_name: row.try_get("first_name")?,
        status: row.try_get::<Text<SubscriberStatus>, _>("status")?.0,
        source: row.try_get("source")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
});

/// The SQL that moves a subscriber to `status`, stamping the matching timestamp column.
const SET_STATUS: &str = "UPDATE subscribers SET status = $1, name = $2, updated_at = $3,
       confirmed_at = CASE WHEN $1 = 'confirmed' AND status <> 'confirmed' THEN $3 ELSE confirmed_at END,
       unsubscribed_at = CASE WHEN $1 = 'unsubscribed' AND status <> 'unsubscribed' THEN $3 ELSE unsubscribed_at END,
       bounced_at = CASE WHEN $1 = 'bounced' AND status <> 'bounced' THEN $3 ELSE bounced_at END
     WHERE id = $4";

const INSERT: &str = "INSERT INTO subscribers
       (email, email_key, name, status, source, created_at, updated_at, confirmed_at)
     VALUES ($1, $2, $3, $4, $5, $6, $6, CASE WHEN $4 = 'confirmed' THEN $6 END)";

/// Subscribers, all (`$1` NULL) or of status `$1`, in id order.
const SUBSCRIBERS: &str =
    "SELECT id, email, name, first_name, status, source, created_at, updated_at FROM subscribers
     WHERE $1 IS NULL OR status = $1 ORDER BY id";

/// Rows per import transaction: large enough that a row costs a fraction of a statement (and a
/// commit a fraction of an fsync), small enough that the write lock is held for tens of
/// milliseconds.
pub const IMPORT_BATCH: usize = 2000;

/// A subscriber row as an import looks it up: id, address key, name, first name, status.
type StoredRow = (i64, String, String, String, Text<SubscriberStatus>);

/// An address of an import batch: as stored (or to be inserted), and what changes.
struct ImportEntry<'a> {
    /// `None` for an address to insert.
    id: Option<i64>,
    email: &'a EmailAddress,
    name: String,
    first_name: String,
    status: SubscriberStatus,
    /// The status or the name changed.
    changed: bool,
    first_name_changed: bool,
}

/// What an import batch changes, decided row by row by the suppression rule
/// ([`decide_import`]) against the stored rows.
struct ImportPlan<'a> {
    /// Every address of the batch, by key.
    entries: HashMap<String, ImportEntry<'a>>,
    /// The new addresses, in file order (so their ids follow the file).
    new_keys: Vec<String>,
}

impl<'a> ImportPlan<'a> {
    /// The plan for `batch`, given its addresses' `stored` rows; counts each row's outcome.
    fn of(batch: &'a [SubscriberRow], stored: Vec<StoredRow>, counts: &mut ImportCounts) -> Self {
        let mut entries: HashMap<String, ImportEntry<'a>> = HashMap::with_capacity(batch.len());
        let mut new_keys: Vec<String> = Vec::new();
        let mut by_key: HashMap<String, (i64, String, String, SubscriberStatus)> = stored
            .into_iter()
            .map(|(id, key, name, first_name, status)| (key, (id, name, first_name, status.0)))
            .collect();
        for row in batch {
            let key = row.email.key();
            if !entries.contains_key(&key)
                && let Some((id, name, first_name, status)) = by_key.remove(&key)
            {
                entries.insert(
                    key.clone(),
                    ImportEntry {
                        id: Some(id),
                        email: &row.email,
                        name,
                        first_name,
                        status,
                        changed: false,
                        first_name_changed: false,
                    },
                );
            }
            let entry = entries.get_mut(&key);
            let current = entry.as_ref().map(|e| (e.name.as_str(), e.status));
            match decide_import(current, row) {
                ImportAction::Insert(status) => {
                    entries.insert(
                        key.clone(),
                        ImportEntry {
                            id: None,
                            email: &row.email,
                            name: row.name.as_str().to_owned(),
                            first_name: row.first_name.as_str().to_owned(),
                            status,
                            changed: true,
                            first_name_changed: false,
                        },
                    );
                    new_keys.push(key);
                    counts.added += 1;
                    continue;
                }
                ImportAction::Update { status, name } => {
                    if let Some(e) = entries.get_mut(&key) {
                        e.status = status;
                        e.name = name;
                        e.changed = true;
                    }
                    counts.updated += 1;
                }
                ImportAction::Unchanged => counts.unchanged += 1,
                ImportAction::Suppressed => counts.suppressed += 1,
            }
            // A first name in the file is how they are greeted; an empty one erases nothing.
            if let Some(e) = entries.get_mut(&key)
                && !row.first_name.is_empty()
                && e.first_name != row.first_name.as_str()
            {
                e.first_name = row.first_name.as_str().to_owned();
                e.first_name_changed = true;
            }
        }
        Self { entries, new_keys }
    }
}

impl Store {
    /// Upserts rows with the suppression rule: an unsubscribed or bounced address is never
    /// re-activated by an import. Set-based and in batches of [`IMPORT_BATCH`] rows, each
    /// its own short transaction (one lookup and one multi-row insert per batch), so that a
    /// large file never holds the write lock for long: the sender lease's heartbeat and the
    /// web pages get their turn between batches.
    ///
    /// # Errors
    /// A database error; the batches before it are kept (an import is idempotent: running it
    /// again finishes the job).
    pub async fn import_subscribers(
        &self,
        rows: &[SubscriberRow],
        source: &str,
        now: DateTime<Utc>,
    ) -> Result<ImportCounts, StoreError> {
        let mut counts = ImportCounts::default();
        for batch in rows.chunks(IMPORT_BATCH) {
            self.import_batch(batch, source, now, &mut counts).await?;
        }
        Ok(counts)
    }

    /// One batch of [`Store::import_subscribers`], in one transaction: the stored rows of
    /// its addresses in one lookup, what changes ([`ImportPlan`]), the new addresses in one
    /// multi-row insert, then the changed rows one by one.
    async fn import_batch(
        &self,
        batch: &[SubscriberRow],
        source: &str,
        now: DateTime<Utc>,
        counts: &mut ImportCounts,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        let stored: Vec<StoredRow> = per_db!(tx.conn(), c => {
            let mut lookup = sqlx::QueryBuilder::new(
                "SELECT id, email_key, name, first_name, status FROM subscribers
                 WHERE email_key IN (",
            );
            let mut keys = lookup.separated(", ");
            for row in batch {
                keys.push_bind(row.email.key());
            }
            lookup.push(")");
            lookup.build_query_as().fetch_all(c).await?
        });
        let ImportPlan { entries, new_keys } = ImportPlan::of(batch, stored, counts);
        if !new_keys.is_empty() {
            per_db!(tx.conn(), c => {
                let mut insert = sqlx::QueryBuilder::new(
                    "INSERT INTO subscribers (email, email_key, name, first_name, status, source,
                     created_at, updated_at, confirmed_at) ",
                );
                insert.push_values(
                    new_keys.iter().filter_map(|k| entries.get(k)),
                    |mut b, e| {
                        b.push_bind(e.email.as_str())
                            .push_bind(e.email.key())
                            .push_bind(e.name.as_str())
                            .push_bind(e.first_name.as_str())
                            .push_bind(Text(e.status))
                            .push_bind(source)
                            .push_bind(now)
                            .push_bind(now)
                            .push_bind((e.status == SubscriberStatus::Confirmed).then_some(now));
                    },
                );
                insert.build().execute(c).await?;
            });
        }
        for e in entries.values() {
            let Some(id) = e.id else { continue };
            if e.changed {
                per_db!(tx.conn(), c => {
                    sqlx::query(SET_STATUS)
                        .bind(e.status.as_str())
                        .bind(e.name.as_str())
                        .bind(now)
                        .bind(id)
                        .execute(c)
                        .await?;
                });
            }
            if e.first_name_changed {
                per_db!(tx.conn(), c => {
                    sqlx::query("UPDATE subscribers SET first_name = $1 WHERE id = $2")
                        .bind(e.first_name.as_str())
                        .bind(id)
                        .execute(c)
                        .await?;
                });
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// The content hash a subscriber file had when it was last imported in full.
    ///
    /// # Errors
    /// A database error.
    pub async fn subscriber_file_hash(&self, path: &str) -> Result<Option<String>, StoreError> {
        Ok(per_db!(&self.pool, db => {
            sqlx::query_scalar("SELECT sha256 FROM subscriber_files WHERE path = $1")
                .bind(path)
                .fetch_optional(db)
                .await?
        }))
    }

    /// Records that a subscriber file with this content hash was imported in full.
    ///
    /// # Errors
    /// A database error.
    pub async fn record_subscriber_file(
        &self,
        path: &str,
        sha256: &str,
        rows: u64,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        per_db!(tx.conn(), c => {
            sqlx::query(
                "INSERT INTO subscriber_files (path, sha256, rows, imported_at)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (path) DO UPDATE SET sha256 = $2, rows = $3, imported_at = $4",
            )
            .bind(path)
            .bind(sha256)
            .bind(i64::try_from(rows).unwrap_or(i64::MAX))
            .bind(now)
            .execute(c)
            .await?;
        });
        tx.commit().await?;
        Ok(())
    }

    /// Adds one address as confirmed (an operator's deliberate act). An unsubscribed or
    /// bounced address is re-activated only when `reactivate` is set.
    ///
    /// # Errors
    /// A database error.
    pub async fn add_subscriber(
        &self,
        email: &EmailAddress,
        name: &SubscriberName,
        source: &str,
        reactivate: bool,
        now: DateTime<Utc>,
    ) -> Result<AddOutcome, StoreError> {
        let mut tx = self.write().await?;
        let existing: Option<(i64, String, Text<SubscriberStatus>)> = per_db!(tx.conn(), c => {
            sqlx::query_as("SELECT id, name, status FROM subscribers WHERE email_key = $1")
                .bind(email.key())
                .fetch_optional(c)
                .await?
        });
        let outcome = match existing {
            None => {
                per_db!(tx.conn(), c => {
                    sqlx::query(INSERT)
                        .bind(email.as_str())
                        .bind(email.key())
                        .bind(name.as_str())
                        .bind(SubscriberStatus::Confirmed.as_str())
                        .bind(source)
                        .bind(now)
                        .execute(c)
                        .await?;
                });
                AddOutcome::Added
            }
            Some((id, old_name, Text(status))) => {
                let new_name = if name.is_empty() {
                    old_name
                } else {
                    name.as_str().to_owned()
                };
                if status.is_suppressed() && !reactivate {
                    AddOutcome::Suppressed(status)
                } else {
                    per_db!(tx.conn(), c => {
                        sqlx::query(SET_STATUS)
                            .bind(SubscriberStatus::Confirmed.as_str())
                            .bind(&new_name)
                            .bind(now)
                            .bind(id)
                            .execute(c)
                            .await?;
                    });
                    if status.is_suppressed() {
                        AddOutcome::Reactivated
                    } else {
                        AddOutcome::AlreadyActive
                    }
                }
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    /// Marks an address unsubscribed (the row is kept, so imports cannot bring it back).
    /// Returns the previous status, or `None` when the address is unknown.
    ///
    /// # Errors
    /// A database error.
    pub async fn unsubscribe(
        &self,
        email: &EmailAddress,
        now: DateTime<Utc>,
    ) -> Result<Option<SubscriberStatus>, StoreError> {
        let mut tx = self.write().await?;
        let row: Option<(i64, String, Text<SubscriberStatus>)> = per_db!(tx.conn(), c => {
            sqlx::query_as("SELECT id, name, status FROM subscribers WHERE email_key = $1")
                .bind(email.key())
                .fetch_optional(c)
                .await?
        });
        let Some((id, name, Text(previous))) = row else {
            return Ok(None);
        };
        if previous != SubscriberStatus::Unsubscribed {
            per_db!(tx.conn(), c => {
                sqlx::query(SET_STATUS)
                    .bind(SubscriberStatus::Unsubscribed.as_str())
                    .bind(&name)
                    .bind(now)
                    .bind(id)
                    .execute(c)
                    .await?;
            });
        }
        tx.commit().await?;
        Ok(Some(previous))
    }

    /// Subscribers, optionally of one status, in the order they were added.
    ///
    /// # Errors
    /// A database error.
    pub async fn subscribers(
        &self,
        status: Option<SubscriberStatus>,
    ) -> Result<Vec<SubscriberRecord>, StoreError> {
        Ok(per_db!(&self.pool, db => {
            sqlx::query_as(SUBSCRIBERS)
                .bind(status.map(Text))
                .fetch_all(db)
                .await?
        }))
    }

    /// Every subscriber (or those with `status`), in id order, one at a time: memory stays
    /// flat whatever the size of the list.
    pub fn subscriber_stream(
        &self,
        status: Option<SubscriberStatus>,
    ) -> impl futures::Stream<Item = Result<SubscriberRecord, StoreError>> + '_ {
        use futures::TryStreamExt as _;
        type Rows<'s> = futures::stream::BoxStream<'s, Result<SubscriberRecord, sqlx::Error>>;
        let stream: Rows<'_> = per_db!(&self.pool, db => {
            sqlx::query_as(SUBSCRIBERS).bind(status.map(Text)).fetch(db)
        });
        stream.map_err(StoreError::from)
    }

    /// The subscriber with this address, if any.
    ///
    /// # Errors
    /// A database error.
    pub async fn subscriber(
        &self,
        email: &EmailAddress,
    ) -> Result<Option<SubscriberRecord>, StoreError> {
        Ok(per_db!(&self.pool, db => {
            sqlx::query_as(
                "SELECT id, email, name, first_name, status, source, created_at, updated_at
                 FROM subscribers WHERE email_key = $1",
            )
            .bind(email.key())
            .fetch_optional(db)
            .await?
        }))
    }

    /// How many subscribers have each status (every status present, zero included).
    ///
    /// # Errors
    /// A database error.
    pub async fn subscriber_counts(&self) -> Result<BTreeMap<SubscriberStatus, u64>, StoreError> {
        let mut counts: BTreeMap<SubscriberStatus, u64> =
            SubscriberStatus::ALL.into_iter().map(|s| (s, 0)).collect();
        let rows: Vec<(Text<SubscriberStatus>, i64)> = per_db!(&self.pool, db => {
            sqlx::query_as("SELECT status, COUNT(*) AS n FROM subscribers GROUP BY status")
                .fetch_all(db)
                .await?
        });
        for (status, n) in rows {
            counts.insert(status.0, n.try_into().unwrap_or(0));
        }
        Ok(counts)
    }
}
