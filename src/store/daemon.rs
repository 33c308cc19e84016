//! What the daemon and the web pages record: schedule slots, held issues, and the
//! subscribe / confirm / unsubscribe flow.

use super::states::Text;
use super::{Store, StoreError, from_row, per_db};
use crate::domain::{
    DeliveryStatus, EmailAddress, IssueStatus, ServiceMail, SlotOutcome, SubscriberName,
    SubscriberStatus,
};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// A schedule slot as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotRecord {
    pub slot_key: String,
    pub due_at: DateTime<Utc>,
    pub outcome: SlotOutcome,
    pub issue_number: Option<u32>,
    pub detail: String,
    pub recorded_at: DateTime<Utc>,
}

from_row!(SlotRecord, r => {
    Ok(Self {
        slot_key: r.try_get("slot_key")?,
        due_at: r.try_get("due_at")?,
        outcome: r.try_get::<Text<SlotOutcome>, _>("outcome")?.0,
        issue_number: r
            .try_get::<Option<i64>, _>("number")?
            .and_then(|n| u32::try_from(n).ok()),
        detail: r.try_get("detail")?,
        recorded_at: r.try_get("recorded_at")?,
    })
});

/// A confirmed subscriber, as the welcome email needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirmed {
    pub email: EmailAddress,
    pub name: String,
    pub first_name: String,
    /// Whether this confirmation was the first (a welcome was queued).
    pub newly: bool,
}

/// What a subscription request did. The web page says the same thing in every case, so the
/// response never reveals whether an address was already subscribed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscribeOutcome {
    /// A confirmation email should go to this subscriber id.
    Confirm(i64),
    /// Already confirmed: nothing to send.
    AlreadyConfirmed,
    /// The address is suppressed (it bounced, or its owner reported an issue as spam): no
    /// confirmation is sent to it.
    Bounced,
}

/// Queues a service email, due now, in the caller's transaction.
async fn queue_mail(
    tx: &mut super::WriteTx,
    subscriber: i64,
    kind: ServiceMail,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    per_db!(tx.conn(), c => {
        sqlx::query(
            "INSERT INTO mail_queue (subscriber_id, kind, created_at, due_at)
             VALUES ($1, $2, $3, $3)",
        )
        .bind(subscriber)
        .bind(Text(kind))
        .bind(now)
        .execute(c)
        .await?;
    });
    Ok(())
}

impl Store {
    /// Records that a slot was acted on. Returns `false` when the slot was already recorded
    /// (by this or another daemon): one slot yields at most one issue.
    ///
    /// # Errors
    /// A database error.
    pub async fn claim_slot(
        &self,
        key: &str,
        due: DateTime<Utc>,
        outcome: SlotOutcome,
        detail: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let changed = per_db!(tx.conn(), c => {
            sqlx::query(
                "INSERT INTO schedule_slots (slot_key, due_at, outcome, detail, recorded_at)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (slot_key) DO NOTHING",
            )
            .bind(key)
            .bind(due)
            .bind(Text(outcome))
            .bind(detail)
            .bind(now)
            .execute(c)
            .await?
            .rows_affected()
        });
        tx.commit().await?;
        Ok(changed == 1)
    }

    /// Queues a confirmation email to subscriber `id` (address `email`) if fewer than `limit`
    /// were queued for that address in the hour before `now`; returns whether it was queued.
    /// Kept in the database, so the limit holds across restarts and web instances.
    ///
    /// # Errors
    /// A database error.
    pub async fn queue_confirmation(
        &self,
        id: i64,
        email: &EmailAddress,
        limit: u32,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let hour_ago = now - chrono::Duration::hours(1);
        // Forget what no longer counts, so the table stays small.
        per_db!(tx.conn(), c => {
            sqlx::query("DELETE FROM confirmation_sends WHERE sent_at < $1")
                .bind(hour_ago)
                .execute(c)
                .await?;
        });
        let sent: i64 = per_db!(tx.conn(), c => {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM confirmation_sends WHERE email_key = $1 AND sent_at >= $2",
            )
            .bind(email.key())
            .bind(hour_ago)
            .fetch_one(c)
            .await?
        });
        let allowed = sent < i64::from(limit);
        if allowed {
            per_db!(tx.conn(), c => {
                sqlx::query("INSERT INTO confirmation_sends (email_key, sent_at) VALUES ($1, $2)")
                    .bind(email.key())
                    .bind(now)
                    .execute(c)
                    .await?;
            });
            queue_mail(&mut tx, id, ServiceMail::Confirmation, now).await?;
        }
        tx.commit().await?;
        Ok(allowed)
    }

    /// When a daemon first ran on this database: recorded by the first call (as `now`), read
    /// back by every later one.
    ///
    /// # Errors
    /// A database error.
    pub async fn first_daemon_start(
        &self,
        now: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, StoreError> {
        let mut tx = self.write().await?;
        per_db!(tx.conn(), c => {
            sqlx::query(
                "INSERT INTO daemon_state (key, value)
                 VALUES ('first_start', $1)
                 ON CONFLICT (key) DO NOTHING",
            )
            .bind(now.to_rfc3339())
            .execute(c)
            .await?;
        });
        tx.commit().await?;
        let value: String = per_db!(&self.pool, db => {
            sqlx::query_scalar("SELECT value FROM daemon_state WHERE key = 'first_start'")
                .fetch_one(db)
                .await?
        });
        DateTime::parse_from_rfc3339(&value)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| StoreError::Corrupt {
                column: "daemon_state.value",
                value,
            })
    }

    /// Updates a recorded slot's outcome.
    ///
    /// # Errors
    /// A database error.
    pub async fn finish_slot(
        &self,
        key: &str,
        outcome: SlotOutcome,
        issue_number: Option<u32>,
        detail: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        per_db!(tx.conn(), c => {
            sqlx::query(
                "UPDATE schedule_slots SET outcome = $1, detail = $2, recorded_at = $3,
                        issue_id = COALESCE((SELECT id FROM issues WHERE number = $4), issue_id)
                 WHERE slot_key = $5",
            )
            .bind(Text(outcome))
            .bind(detail)
            .bind(now)
            .bind(issue_number.map(i64::from))
            .bind(key)
            .execute(c)
            .await?;
        });
        tx.commit().await?;
        Ok(())
    }

    /// Forgets a slot claim, so that the next tick tries the slot again (after a failure that
    /// an operator can fix, such as a broken template).
    ///
    /// # Errors
    /// A database error.
    pub async fn forget_slot(&self, key: &str) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        per_db!(tx.conn(), c => {
            sqlx::query("DELETE FROM schedule_slots WHERE slot_key = $1 AND outcome = $2")
                .bind(key)
                .bind(Text(SlotOutcome::Claimed))
                .execute(c)
                .await?;
        });
        tx.commit().await?;
        Ok(())
    }

    /// Whether a slot was recorded.
    ///
    /// # Errors
    /// A database error.
    pub async fn slot_recorded(&self, key: &str) -> Result<bool, StoreError> {
        let n: i64 = per_db!(&self.pool, db => {
            sqlx::query_scalar("SELECT COUNT(*) FROM schedule_slots WHERE slot_key = $1")
                .bind(key)
                .fetch_one(db)
                .await?
        });
        Ok(n > 0)
    }

    /// The most recent recorded slots, newest first.
    ///
    /// # Errors
    /// A database error.
    pub async fn recent_slots(&self, limit: u32) -> Result<Vec<SlotRecord>, StoreError> {
        Ok(per_db!(&self.pool, db => {
            sqlx::query_as(
                "SELECT s.slot_key, s.due_at, s.outcome, i.number, s.detail, s.recorded_at
                 FROM schedule_slots s LEFT JOIN issues i ON i.id = s.issue_id
                 ORDER BY s.due_at DESC LIMIT $1",
            )
            .bind(i64::from(limit))
            .fetch_all(db)
            .await?
        }))
    }

    /// Releases a held or frozen issue: it may go out from `at` (an editor approved it, so
    /// the rest of its review window is waived). Returns whether an issue was released.
    ///
    /// # Errors
    /// A database error.
    pub async fn release_issue(&self, number: u32, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let changed = per_db!(tx.conn(), c => {
            sqlx::query(
                "UPDATE issues SET status = $1, send_after = $2
                 WHERE number = $3 AND status IN ($4, $1)",
            )
            .bind(Text(IssueStatus::Frozen))
            .bind(at)
            .bind(i64::from(number))
            .bind(Text(IssueStatus::Held))
            .execute(c)
            .await?
            .rows_affected()
        });
        tx.commit().await?;
        Ok(changed == 1)
    }

    /// Moves an issue from one of `from` to `to` (hold, release, start sending). Returns
    /// whether it moved.
    ///
    /// # Errors
    /// A database error.
    pub async fn set_issue_status(
        &self,
        number: u32,
        from: &[IssueStatus],
        to: IssueStatus,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let mut moved = false;
        for f in from {
            moved |= per_db!(tx.conn(), c => {
                sqlx::query("UPDATE issues SET status = $1 WHERE number = $2 AND status = $3")
                    .bind(Text(to))
                    .bind(i64::from(number))
                    .bind(Text(*f))
                    .execute(c)
                    .await?
                    .rows_affected()
            }) == 1;
        }
        tx.commit().await?;
        Ok(moved)
    }

    /// Asks for a subscription: a new address becomes pending; a pending, unsubscribed or
    /// bounced one gets a fresh confirmation (its status changes only when confirmed).
    ///
    /// # Errors
    /// A database error.
    pub async fn request_subscription(
        &self,
        email: &EmailAddress,
        name: &SubscriberName,
        first_name: &SubscriberName,
        now: DateTime<Utc>,
    ) -> Result<SubscribeOutcome, StoreError> {
        let mut tx = self.write().await?;
        let row: Option<(i64, Text<SubscriberStatus>)> = per_db!(tx.conn(), c => {
            sqlx::query_as("SELECT id, status FROM subscribers WHERE email_key = $1")
                .bind(email.key())
                .fetch_optional(c)
                .await?
        });
        let outcome = match row {
            Some((id, Text(status))) => {
                // A form anyone can post never renames an existing subscriber, and never
                // mails an address that bounced.
                match status {
                    SubscriberStatus::Confirmed => SubscribeOutcome::AlreadyConfirmed,
                    SubscriberStatus::Bounced => SubscribeOutcome::Bounced,
                    SubscriberStatus::Pending | SubscriberStatus::Unsubscribed => {
                        // A complaint suppresses for good: a form anyone can post must not
                        // mail someone who reported the newsletter as spam.
                        let complained: bool = per_db!(tx.conn(), c => {
                            sqlx::query_scalar(
                                "SELECT EXISTS (SELECT 1 FROM feedback
                                                WHERE subscriber_id = $1 AND kind = 'complaint')",
                            )
                            .bind(id)
                            .fetch_one(c)
                            .await?
                        });
                        if complained {
                            SubscribeOutcome::Bounced
                        } else {
                            SubscribeOutcome::Confirm(id)
                        }
                    }
                }
            }
            None => {
                let id: i64 = per_db!(tx.conn(), c => {
                    sqlx::query_scalar(
                        "INSERT INTO subscribers (email, email_key, name, first_name, status,
                                                  source, created_at, updated_at)
                         VALUES ($1, $2, $3, $5, 'pending', 'web', $4, $4) RETURNING id",
                    )
                    .bind(email.as_str())
                    .bind(email.key())
                    .bind(name.as_str())
                    .bind(now)
                    .bind(first_name.as_str())
                    .fetch_one(c)
                    .await?
                });
                SubscribeOutcome::Confirm(id)
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    /// Confirms a subscriber (double opt-in). Returns the subscriber's address and name, or
    /// `None` for an unknown id.
    ///
    /// # Errors
    /// A database error.
    pub async fn confirm_subscriber(
        &self,
        id: i64,
        link_issued: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<Confirmed>, StoreError> {
        let mut tx = self.write().await?;
        // A link issued before the address unsubscribed (or bounced) cannot bring it back:
        // only a new request's link can. (Links carry whole seconds.)
        let issued = link_issued + chrono::Duration::seconds(1);
        type Row = (Text<EmailAddress>, String, String, Text<SubscriberStatus>);
        let row: Option<Row> = per_db!(tx.conn(), c => {
            sqlx::query_as(
                "SELECT email, name, first_name, status FROM subscribers
                 WHERE id = $1 AND (unsubscribed_at IS NULL OR unsubscribed_at < $2)
                   AND (bounced_at IS NULL OR bounced_at < $2)",
            )
            .bind(id)
            .bind(issued)
            .fetch_optional(c)
            .await?
        });
        let Some((email, name, first_name, Text(status))) = row else {
            return Ok(None);
        };
        let newly = status != SubscriberStatus::Confirmed;
        if newly {
            per_db!(tx.conn(), c => {
                sqlx::query(
                    "UPDATE subscribers SET status = 'confirmed', confirmed_at = $1,
                            updated_at = $1
                     WHERE id = $2",
                )
                .bind(now)
                .bind(id)
                .execute(c)
                .await?;
            });
            // The welcome is queued with the confirmation: one without the other never is.
            queue_mail(&mut tx, id, ServiceMail::Welcome, now).await?;
        }
        tx.commit().await?;
        Ok(Some(Confirmed {
            email: email.0,
            name,
            first_name,
            newly,
        }))
    }

    /// Unsubscribes a subscriber by id (idempotent). Returns `false` for an unknown id.
    ///
    /// # Errors
    /// A database error.
    pub async fn unsubscribe_id(&self, id: i64, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let exists: Option<Text<SubscriberStatus>> = per_db!(tx.conn(), c => {
            sqlx::query_scalar("SELECT status FROM subscribers WHERE id = $1")
                .bind(id)
                .fetch_optional(c)
                .await?
        });
        let Some(status) = exists else {
            return Ok(false);
        };
        if status.0 != SubscriberStatus::Unsubscribed {
            per_db!(tx.conn(), c => {
                sqlx::query(
                    "UPDATE subscribers SET status = 'unsubscribed', unsubscribed_at = $1,
                            updated_at = $1
                     WHERE id = $2",
                )
                .bind(now)
                .bind(id)
                .execute(c)
                .await?;
            });
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Whether a subscriber id exists.
    ///
    /// # Errors
    /// A database error.
    pub async fn subscriber_exists(&self, id: i64) -> Result<bool, StoreError> {
        let n: i64 = per_db!(&self.pool, db => {
            sqlx::query_scalar("SELECT COUNT(*) FROM subscribers WHERE id = $1")
                .bind(id)
                .fetch_one(db)
                .await?
        });
        Ok(n > 0)
    }

    /// Total deliveries by status across all issues, and the number of sent issues (metrics).
    ///
    /// # Errors
    /// A database error.
    pub async fn delivery_totals(&self) -> Result<(Vec<(DeliveryStatus, i64)>, i64), StoreError> {
        let rows: Vec<(Text<DeliveryStatus>, i64)> = per_db!(&self.pool, db => {
            sqlx::query_as(
                "SELECT status, COUNT(*) AS n
                 FROM deliveries GROUP BY status
                 ORDER BY status",
            )
            .fetch_all(db)
            .await?
        });
        let by_status = rows.into_iter().map(|(status, n)| (status.0, n)).collect();
        let sent: i64 = per_db!(&self.pool, db => {
            sqlx::query_scalar("SELECT COUNT(*) FROM issues WHERE status = $1")
                .bind(Text(IssueStatus::Sent))
                .fetch_one(db)
                .await?
        });
        Ok((by_status, sent))
    }
}
