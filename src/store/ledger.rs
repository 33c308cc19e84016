//! The per-recipient delivery ledger of an issue, apart from the delivery step (`step`):
//! its counts, the rows in flight and the ambiguous ones, settling those, and finishing the
//! issue once nothing is left to send.
//!
//! A row is claimed (pending -> sending, attempt counted) before its SMTP transaction starts
//! and marked (sent, failed, bounced, or back to pending) after it ends, each in a committed
//! transaction. A row left in `sending` by a run that is no longer alive (its lease expired)
//! is ambiguous: the message may have arrived. Ambiguous rows are reported and resent only on
//! request.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::states::Text;
use super::{Db, Store, StoreError, from_row, per_db};
use crate::domain::{DeliveryStatus, EmailAddress};

/// Rows of issue `$1` in `sending` whose run is alive at `$2`: it belongs to a process whose
/// lease is unexpired (a run is `HOLDER` or `HOLDER/...`). They are in flight, not
/// ambiguous. Every statement that uses it binds `$1` the issue and `$2` the time.
const IN_FLIGHT: &str = "d.issue_id = $1 AND d.status = 'sending' AND EXISTS (
         SELECT 1 FROM leases l WHERE l.expires_at > $2
            AND (d.claimed_by = l.holder
                 OR substr(d.claimed_by, 1, length(l.holder) + 1) = l.holder || '/'))";

/// The PostgreSQL channel that wakes workers when an issue starts going out.
const WORKER_CHANNEL: &str = "herald_delivery";

/// Ledger counts of one issue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LedgerCounts {
    pub pending: u64,
    /// Rows in `sending` (a live send's in-flight messages, or a crashed run's ambiguous
    /// ones).
    pub sending: u64,
    pub sent: u64,
    pub failed: u64,
    pub bounced: u64,
    /// Rows whose subscriber left before their turn.
    pub skipped: u64,
}

impl LedgerCounts {
    /// Every row.
    pub fn total(&self) -> u64 {
        self.pending + self.sending + self.sent + self.failed + self.bounced + self.skipped
    }
}

/// A row in `sending` with what is known about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryRow {
    pub email: EmailAddress,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub smtp_reply: Option<String>,
    pub claimed_at: Option<DateTime<Utc>>,
    pub claimed_by: Option<String>,
}

from_row!(DeliveryRow, row => {
    Ok(Self {
        email: row.try_get::<Text<EmailAddress>, _>("email")?.0,
        status: row.try_get::<Text<DeliveryStatus>, _>("status")?.0,
        attempts: row.try_get("attempts")?,
        last_error: row.try_get("last_error")?,
        smtp_reply: row.try_get("smtp_reply")?,
        claimed_at: row.try_get("claimed_at")?,
        claimed_by: row.try_get("claimed_by")?,
    })
});

impl Store {
    /// Ledger counts of one issue.
    ///
    /// # Errors
    /// A database error.
    pub async fn ledger_counts(&self, issue_id: i64) -> Result<LedgerCounts, StoreError> {
        let rows: Vec<(Text<DeliveryStatus>, i64)> = per_db!(&self.pool, db => {
            sqlx::query_as(
                "SELECT status, COUNT(*) AS n
                 FROM deliveries
                 WHERE issue_id = $1 GROUP BY status",
            )
            .bind(issue_id)
            .fetch_all(db)
            .await?
        });
        let mut c = LedgerCounts::default();
        for (status, n) in rows {
            let n = u64::try_from(n).unwrap_or(0);
            match status.0 {
                DeliveryStatus::Pending => c.pending = n,
                DeliveryStatus::Sending => c.sending = n,
                DeliveryStatus::Sent => c.sent = n,
                DeliveryStatus::Failed => c.failed = n,
                DeliveryStatus::Bounced => c.bounced = n,
                DeliveryStatus::Skipped => c.skipped = n,
            }
        }
        Ok(c)
    }

    /// Rows of an issue with one of these statuses (for `herald issues show`).
    ///
    /// # Errors
    /// A database error.
    pub async fn deliveries_with_status(
        &self,
        issue_id: i64,
        statuses: &[DeliveryStatus],
        limit: u32,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        let mut out = Vec::new();
        for status in statuses {
            let rows: Vec<DeliveryRow> = per_db!(&self.pool, db => {
                sqlx::query_as(
                    "SELECT s.email, d.status, d.attempts, d.last_error, d.smtp_reply,
                            d.claimed_at, d.claimed_by
                     FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id
                     WHERE d.issue_id = $1 AND d.status = $2 ORDER BY d.id LIMIT $3",
                )
                .bind(issue_id)
                .bind(Text(*status))
                .bind(i64::from(limit))
                .fetch_all(db)
                .await?
            });
            out.extend(rows);
        }
        Ok(out)
    }

    /// Rows left in `sending` by runs other than `run` that are no longer alive (no
    /// unexpired lease): the ambiguous rows of a crashed send or worker. Rows a live worker
    /// has in flight are not counted.
    ///
    /// # Errors
    /// A database error.
    pub async fn ambiguous_count(
        &self,
        issue_id: i64,
        run: &str,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let n: i64 = per_db!(&self.pool, db => {
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT COUNT(*) FROM deliveries d WHERE d.issue_id = $1 AND d.status = 'sending'
                 AND (d.claimed_by IS NULL OR d.claimed_by <> $3) AND NOT ({IN_FLIGHT})"
            )))
            .bind(issue_id)
            .bind(now)
            .bind(run)
            .fetch_one(db)
            .await?
        });
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Rows of the issue that live runs (this one or workers) have in flight.
    ///
    /// # Errors
    /// A database error.
    pub async fn in_flight_count(
        &self,
        issue_id: i64,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let n: i64 = per_db!(&self.pool, db => {
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT COUNT(*) FROM deliveries d WHERE {IN_FLIGHT}"
            )))
            .bind(issue_id)
            .bind(now)
            .fetch_one(db)
            .await?
        });
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Wakes the workers waiting for an issue to deliver (PostgreSQL's `NOTIFY`; nothing on
    /// SQLite, which has no workers).
    ///
    /// # Errors
    /// A database error.
    pub async fn notify_workers(&self) -> Result<(), StoreError> {
        if let Db::Postgres(pool) = &self.pool {
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(WORKER_CHANNEL)
                .execute(pool)
                .await?;
        }
        Ok(())
    }

    /// A listener woken by [`Store::notify_workers`]; `None` on SQLite.
    ///
    /// # Errors
    /// A database error.
    pub async fn worker_wake_ups(&self) -> Result<Option<sqlx::postgres::PgListener>, StoreError> {
        let Db::Postgres(pool) = &self.pool else {
            return Ok(None);
        };
        let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
        listener.listen(WORKER_CHANNEL).await?;
        Ok(Some(listener))
    }

    /// Settles issue `issue_id`'s ambiguous rows (in `sending`, no run working on them): as
    /// delivered (`sent`, the operator checked the relay's log) or as not delivered (back to
    /// pending, for the next send). Returns how many rows were settled.
    ///
    /// # Errors
    /// A database error.
    pub async fn resolve_ambiguous(
        &self,
        issue_id: i64,
        delivered: bool,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut tx = self.write().await?;
        let settle = if delivered {
            "UPDATE deliveries SET status = 'sent', sent_at = $1, updated_at = $1,
                    smtp_reply = 'marked delivered by an operator (herald issues resolve --sent)'
             WHERE issue_id = $2 AND status = 'sending'"
        } else {
            "UPDATE deliveries SET status = 'pending', updated_at = $1, claimed_by = NULL,
                    last_error = 'ambiguous: marked not delivered by an operator'
             WHERE issue_id = $2 AND status = 'sending'"
        };
        let n = per_db!(tx.conn(), c => {
            sqlx::query(settle)
                .bind(now)
                .bind(issue_id)
                .execute(c)
                .await?
                .rows_affected()
        });
        per_db!(tx.conn(), c => {
            sqlx::query(
                "UPDATE issues SET status = 'sending', finished_at = NULL
                 WHERE id = $1 AND status = 'sent'
                   AND EXISTS (SELECT 1 FROM deliveries
                               WHERE issue_id = $1 AND status = 'pending')",
            )
            .bind(issue_id)
            .execute(c)
            .await?;
        });
        tx.commit().await?;
        Ok(n)
    }

    /// Puts the ambiguous rows of every unfinished issue back to pending, so they are sent
    /// again (`herald send --retry-ambiguous`). Returns how many.
    ///
    /// # Errors
    /// A database error.
    pub async fn retry_ambiguous(&self, run: &str, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut tx = self.write().await?;
        let n = per_db!(tx.conn(), c => {
            sqlx::query(
                "UPDATE deliveries SET status = 'pending', updated_at = $1,
                        last_error = 'ambiguous after a crash: resent on request'
                 WHERE status = 'sending' AND (claimed_by IS NULL OR claimed_by <> $2)",
            )
            .bind(now)
            .bind(run)
            .execute(c)
            .await?
            .rows_affected()
        });
        per_db!(tx.conn(), c => {
            sqlx::query(
                "UPDATE issues SET status = 'sending', finished_at = NULL
                 WHERE status = 'sent'
                   AND id IN (SELECT issue_id FROM deliveries WHERE status = 'pending')",
            )
            .execute(c)
            .await?;
        });
        tx.commit().await?;
        Ok(n)
    }

    /// When the next pending row of this issue becomes claimable in `run`: `None` when no
    /// pending row is left for this run.
    ///
    /// # Errors
    /// A database error.
    pub async fn next_retry_at(
        &self,
        issue_id: i64,
        run: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let (n, at): (i64, Option<DateTime<Utc>>) = per_db!(&self.pool, db => {
            sqlx::query_as(
                "SELECT COUNT(*) AS n, MIN(next_attempt_at) AS at
                 FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id
                 WHERE d.issue_id = $1 AND d.status = 'pending' AND s.status = 'confirmed'
                   AND (d.deferred_by IS NULL OR d.deferred_by <> $2)",
            )
            .bind(issue_id)
            .bind(run)
            .fetch_one(db)
            .await?
        });
        if n == 0 {
            return Ok(None);
        }
        Ok(Some(at.unwrap_or(DateTime::<Utc>::MIN_UTC)))
    }

    /// Ends an issue's send when nothing is left to send: rows of subscribers who left are
    /// marked skipped, and the issue is marked sent. Returns whether it finished.
    ///
    /// # Errors
    /// A database error.
    pub async fn finish_issue_if_done(
        &self,
        issue_id: i64,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        per_db!(tx.conn(), c => {
            sqlx::query(
                "UPDATE deliveries SET status = 'skipped', updated_at = $1
                 WHERE issue_id = $2 AND status = 'pending'
                   AND subscriber_id IN (SELECT id FROM subscribers WHERE status <> 'confirmed')",
            )
            .bind(now)
            .bind(issue_id)
            .execute(c)
            .await?;
        });
        // Pending rows, and rows a live worker still has in flight (which may come back to
        // pending), in one snapshot.
        let left: i64 = per_db!(tx.conn(), c => {
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT COUNT(*) FROM deliveries d
                 WHERE (d.issue_id = $1 AND d.status = 'pending') OR ({IN_FLIGHT})"
            )))
            .bind(issue_id)
            .bind(now)
            .fetch_one(c)
            .await?
        });
        if left == 0 {
            per_db!(tx.conn(), c => {
                sqlx::query(
                    "UPDATE issues SET status = 'sent', finished_at = $1
                     WHERE id = $2 AND status <> 'sent'",
                )
                .bind(now)
                .bind(issue_id)
                .execute(c)
                .await?;
            });
        }
        tx.commit().await?;
        Ok(left == 0)
    }
}
