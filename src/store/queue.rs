//! The mail queue: service emails (confirmations, welcomes) waiting to be sent, so that a web
//! request never waits for the SMTP server and a message is not lost while it is down.

use super::states::Text;
use super::{Store, StoreError, from_row, per_db};
use crate::domain::{EmailAddress, QueueOutcome, ServiceMail, SubscriberStatus};
use chrono::{DateTime, Utc};

/// A queued email taken for sending, with its subscriber as they are now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMail {
    pub id: i64,
    pub kind: ServiceMail,
    pub subscriber_id: i64,
    pub email: EmailAddress,
    pub name: String,
    pub first_name: String,
    pub status: SubscriberStatus,
    pub created_at: DateTime<Utc>,
    /// Attempts so far, this one included.
    pub attempts: u32,
}

from_row!(QueuedMail, r => {
    Ok(Self {
        id: r.try_get("id")?,
        kind: r.try_get::<Text<ServiceMail>, _>("kind")?.0,
        subscriber_id: r.try_get("subscriber_id")?,
        email: r.try_get::<Text<EmailAddress>, _>("email")?.0,
        name: r.try_get("name")?,
        first_name: r.try_get("first_name")?,
        status: r.try_get::<Text<SubscriberStatus>, _>("status")?.0,
        created_at: r.try_get("created_at")?,
        attempts: u32::try_from(r.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
    })
});

/// The queue at a glance, for `/metrics` and `/healthz`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounts {
    /// Waiting to be sent (or retried).
    pub waiting: u64,
    /// Of those, tried at least once and failed.
    pub retrying: u64,
    /// Given up on (failed) in the last 24 hours.
    pub failed_last_day: u64,
}

impl Store {
    /// Takes up to `limit` due emails for sending: each is moved `hold` into the future, so
    /// that another sender leaves it alone and, should this one die, it is due again then.
    ///
    /// # Errors
    /// A database error.
    pub async fn take_due_mail(
        &self,
        now: DateTime<Utc>,
        hold: chrono::Duration,
        limit: u32,
    ) -> Result<Vec<QueuedMail>, StoreError> {
        let mut tx = self.write().await?;
        let taken: Vec<QueuedMail> = per_db!(tx.conn(), c => {
            sqlx::query_as(
                "SELECT q.id, q.kind, q.subscriber_id, s.email, s.name, s.first_name, s.status,
                        q.created_at, q.attempts + 1 AS attempts
                 FROM mail_queue q JOIN subscribers s ON s.id = q.subscriber_id
                 WHERE q.done_at IS NULL AND q.due_at <= $1
                 ORDER BY q.due_at, q.id LIMIT $2",
            )
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(c)
            .await?
        });
        for mail in &taken {
            per_db!(tx.conn(), c => {
                sqlx::query(
                    "UPDATE mail_queue SET due_at = $1, attempts = attempts + 1
                     WHERE id = $2",
                )
                .bind(now + hold)
                .bind(mail.id)
                .execute(c)
                .await?;
            });
        }
        tx.commit().await?;
        Ok(taken)
    }

    /// Records how a queued email ended.
    ///
    /// # Errors
    /// A database error.
    pub async fn finish_mail(
        &self,
        id: i64,
        outcome: QueueOutcome,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        per_db!(tx.conn(), c => {
            sqlx::query(
                "UPDATE mail_queue SET done_at = $1, outcome = $2,
                        last_error = COALESCE($3, last_error)
                 WHERE id = $4",
            )
            .bind(now)
            .bind(Text(outcome))
            .bind(error)
            .bind(id)
            .execute(c)
            .await?;
        });
        tx.commit().await?;
        Ok(())
    }

    /// Puts a queued email back, to be tried again at `due`.
    ///
    /// # Errors
    /// A database error.
    pub async fn retry_mail(
        &self,
        id: i64,
        due: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        per_db!(tx.conn(), c => {
            sqlx::query("UPDATE mail_queue SET due_at = $1, last_error = $2 WHERE id = $3")
                .bind(due)
                .bind(error)
                .bind(id)
                .execute(c)
                .await?;
        });
        tx.commit().await?;
        Ok(())
    }

    /// When the next queued email is due, if any is waiting.
    ///
    /// # Errors
    /// A database error.
    pub async fn next_mail_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(per_db!(&self.pool, db => {
            sqlx::query_scalar("SELECT MIN(due_at) FROM mail_queue WHERE done_at IS NULL")
                .fetch_one(db)
                .await?
        }))
    }

    /// The queue at a glance.
    ///
    /// # Errors
    /// A database error.
    pub async fn mail_queue_counts(&self, now: DateTime<Utc>) -> Result<QueueCounts, StoreError> {
        let (waiting, retrying, failed): (i64, i64, i64) = per_db!(&self.pool, db => {
            sqlx::query_as(
                "SELECT
                    COUNT(*) FILTER (WHERE done_at IS NULL),
                    COUNT(*) FILTER (WHERE done_at IS NULL AND attempts > 0
                                       AND last_error IS NOT NULL),
                    COUNT(*) FILTER (WHERE outcome = 'failed' AND done_at >= $1)
                 FROM mail_queue",
            )
            .bind(now - chrono::Duration::days(1))
            .fetch_one(db)
            .await?
        });
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok(QueueCounts {
            waiting: count(waiting),
            retrying: count(retrying),
            failed_last_day: count(failed),
        })
    }
}
