//! What came back after a send: bounces, complaints and unsubscribe requests by email,
//! recorded against the ledger row they are about, and what they do to the subscriber.

use chrono::{DateTime, Utc};

use super::{Store, StoreError, WriteTx, per_db};

/// What a report does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedbackKind {
    /// Suppresses the address at once.
    HardBounce,
    /// Suppresses the address after `soft_bounce_limit` issues in a row.
    SoftBounce,
    /// Unsubscribes and suppresses at once.
    Complaint,
    /// Unsubscribes.
    Unsubscribe,
}

impl FeedbackKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::HardBounce => "hard_bounce",
            Self::SoftBounce => "soft_bounce",
            Self::Complaint => "complaint",
            Self::Unsubscribe => "unsubscribe",
        }
    }
}

/// Whom a report is about, as its verified token says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedbackTarget {
    /// One ledger row (a VERP bounce address).
    Delivery(i64),
    /// A subscriber (the mailto unsubscribe address, an unsubscribe link); the report is
    /// recorded against their newest delivered issue.
    Subscriber(i64),
}

/// One report to record.
#[derive(Debug, Clone)]
pub struct NewFeedback<'a> {
    pub report_id: &'a str,
    pub kind: FeedbackKind,
    pub target: FeedbackTarget,
    pub status_code: Option<&'a str>,
    pub reason: &'a str,
    pub report: &'a str,
}

/// What recording a report did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedbackOutcome {
    /// Recorded. `suppressed`: the subscriber was confirmed (or pending) and no longer is.
    Recorded {
        subscriber_id: i64,
        issue_number: Option<i64>,
        suppressed: bool,
    },
    /// This report was recorded before: nothing changed.
    Duplicate,
    /// The token was genuine but its delivery or subscriber no longer exists.
    Unknown,
}

impl Store {
    /// Records one report and applies it, in one transaction: a hard bounce marks the
    /// subscriber bounced; a soft bounce does so once the subscriber's last `soft_limit`
    /// issues that went out to them each came back with one; a complaint or an unsubscribe
    /// request unsubscribes them (a bounced address stays bounced). A report already
    /// recorded changes nothing.
    ///
    /// # Errors
    /// A database error; then nothing is recorded.
    pub async fn record_feedback(
        &self,
        fb: &NewFeedback<'_>,
        soft_limit: u32,
        now: DateTime<Utc>,
    ) -> Result<FeedbackOutcome, StoreError> {
        let mut tx = self.write().await?;
        let Some(About {
            delivery_id,
            subscriber_id,
            issue_id,
            issue_number,
        }) = about(&mut tx, fb.target).await?
        else {
            return Ok(FeedbackOutcome::Unknown);
        };
        let inserted = per_db!(tx.conn(), c => {
            sqlx::query(
                "INSERT INTO feedback (report_id, kind, delivery_id, subscriber_id, issue_id,
                                       status_code, reason, report, received_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (report_id) DO NOTHING",
            )
            .bind(fb.report_id)
            .bind(fb.kind.as_str())
            .bind(delivery_id)
            .bind(subscriber_id)
            .bind(issue_id)
            .bind(fb.status_code)
            .bind(fb.reason)
            .bind(fb.report)
            .bind(now)
            .execute(c)
            .await?
            .rows_affected()
        });
        if inserted == 0 {
            return Ok(FeedbackOutcome::Duplicate);
        }
        let suppressed = apply(&mut tx, fb.kind, subscriber_id, soft_limit, now).await?;
        tx.commit().await?;
        Ok(FeedbackOutcome::Recorded {
            subscriber_id,
            issue_number,
            suppressed,
        })
    }
}

/// What a report is about: the delivery (when known), the subscriber, the issue and its
/// number.
struct About {
    delivery_id: Option<i64>,
    subscriber_id: i64,
    issue_id: Option<i64>,
    issue_number: Option<i64>,
}

/// What `target` is about, inside the report's transaction; `None` when its delivery or
/// subscriber no longer exists. A subscriber's report is about their newest delivered issue.
async fn about(tx: &mut WriteTx, target: FeedbackTarget) -> Result<Option<About>, StoreError> {
    type Found = (Option<i64>, i64, Option<i64>, Option<i64>);
    let found: Option<Found> = match target {
        FeedbackTarget::Delivery(id) => per_db!(tx.conn(), c => {
            sqlx::query_as(
                "SELECT d.id, d.subscriber_id, d.issue_id, i.number FROM deliveries d
                 JOIN issues i ON i.id = d.issue_id WHERE d.id = $1",
            )
            .bind(id)
            .fetch_optional(c)
            .await?
        })
        .map(|(d, s, i, n): (i64, i64, i64, i64)| (Some(d), s, Some(i), Some(n))),
        FeedbackTarget::Subscriber(id) => per_db!(tx.conn(), c => {
            sqlx::query_as(
                "SELECT (SELECT d.id FROM deliveries d
                         WHERE d.subscriber_id = s.id AND d.status = 'sent'
                         ORDER BY d.issue_id DESC LIMIT 1),
                        s.id,
                        (SELECT d.issue_id FROM deliveries d
                         WHERE d.subscriber_id = s.id AND d.status = 'sent'
                         ORDER BY d.issue_id DESC LIMIT 1),
                        (SELECT i.number FROM deliveries d JOIN issues i ON i.id = d.issue_id
                         WHERE d.subscriber_id = s.id AND d.status = 'sent'
                         ORDER BY d.issue_id DESC LIMIT 1)
                 FROM subscribers s WHERE s.id = $1",
            )
            .bind(id)
            .fetch_optional(c)
            .await?
        }),
    };
    Ok(found.map(
        |(delivery_id, subscriber_id, issue_id, issue_number)| About {
            delivery_id,
            subscriber_id,
            issue_id,
            issue_number,
        },
    ))
}

/// Applies a recorded report of `kind` to `subscriber_id`, inside the report's transaction.
/// Returns whether the subscriber was suppressed by it (confirmed or pending before, no
/// longer).
async fn apply(
    tx: &mut WriteTx,
    kind: FeedbackKind,
    subscriber_id: i64,
    soft_limit: u32,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    const BOUNCE: &str =
        "UPDATE subscribers SET status = 'bounced', bounced_at = $1, updated_at = $1
         WHERE id = $2 AND status IN ('confirmed', 'pending')";
    let changed = match kind {
        FeedbackKind::HardBounce => per_db!(tx.conn(), c => {
            sqlx::query(BOUNCE)
                .bind(now)
                .bind(subscriber_id)
                .execute(c)
                .await?
                .rows_affected()
        }),
        FeedbackKind::SoftBounce => {
            // The subscriber's last `soft_limit` issues that went out to them, and how
            // many of them came back with a soft bounce.
            let (issues, soft): (i64, i64) = per_db!(tx.conn(), c => {
                sqlx::query_as(
                    "WITH recent AS (
                         SELECT d.issue_id FROM deliveries d
                         WHERE d.subscriber_id = $1 AND d.status = 'sent'
                         ORDER BY d.issue_id DESC LIMIT $2)
                     SELECT COUNT(*), COUNT(*) FILTER (WHERE EXISTS (
                         SELECT 1 FROM feedback f WHERE f.subscriber_id = $1
                           AND f.issue_id = recent.issue_id AND f.kind = 'soft_bounce'))
                     FROM recent",
                )
                .bind(subscriber_id)
                .bind(i64::from(soft_limit))
                .fetch_one(c)
                .await?
            });
            if issues >= i64::from(soft_limit) && soft >= i64::from(soft_limit) {
                per_db!(tx.conn(), c => {
                    sqlx::query(BOUNCE)
                        .bind(now)
                        .bind(subscriber_id)
                        .execute(c)
                        .await?
                        .rows_affected()
                })
            } else {
                0
            }
        }
        FeedbackKind::Complaint | FeedbackKind::Unsubscribe => per_db!(tx.conn(), c => {
            sqlx::query(
                "UPDATE subscribers SET status = 'unsubscribed', unsubscribed_at = $1,
                        updated_at = $1
                 WHERE id = $2 AND status IN ('confirmed', 'pending')",
            )
            .bind(now)
            .bind(subscriber_id)
            .execute(c)
            .await?
            .rows_affected()
        }),
    };
    Ok(changed > 0)
}

/// One news link of an issue and how often its redirect was followed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct LinkClicks {
    pub position: i64,
    pub url: String,
    pub clicks: i64,
}

impl Store {
    /// Counts one click on link `position` of issue `number` and returns where it leads;
    /// `None` for a link that issue does not have. Only the count is kept.
    ///
    /// # Errors
    /// A database error.
    pub async fn count_click(
        &self,
        number: u32,
        position: u32,
    ) -> Result<Option<String>, StoreError> {
        let mut tx = self.write().await?;
        let found: Option<(i64, String)> = per_db!(tx.conn(), c => {
            sqlx::query_as(
                "SELECT l.issue_id, l.url FROM links_sent l JOIN issues i ON i.id = l.issue_id
                 WHERE i.number = $1 AND l.position = $2",
            )
            .bind(i64::from(number))
            .bind(i64::from(position))
            .fetch_optional(c)
            .await?
        });
        let Some((issue_id, url)) = found else {
            return Ok(None);
        };
        per_db!(tx.conn(), c => {
            sqlx::query(
                "INSERT INTO link_clicks (issue_id, position, clicks) VALUES ($1, $2, 1)
                 ON CONFLICT (issue_id, position) DO UPDATE SET clicks = link_clicks.clicks + 1",
            )
            .bind(issue_id)
            .bind(i64::from(position))
            .execute(c)
            .await?;
        });
        tx.commit().await?;
        Ok(Some(url))
    }

    /// Issue `number`'s news links in order, with their click counts.
    ///
    /// # Errors
    /// A database error.
    pub async fn link_clicks(&self, number: u32) -> Result<Vec<LinkClicks>, StoreError> {
        Ok(per_db!(&self.pool, db => {
            sqlx::query_as(
                "SELECT l.position, l.url, COALESCE(c.clicks, 0) AS clicks
                 FROM links_sent l JOIN issues i ON i.id = l.issue_id
                 LEFT JOIN link_clicks c ON c.issue_id = l.issue_id AND c.position = l.position
                 WHERE i.number = $1 ORDER BY l.position",
            )
            .bind(i64::from(number))
            .fetch_all(db)
            .await?
        }))
    }
}
