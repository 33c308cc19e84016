//! What happened after each issue went out, for `herald stats`, the archive's editor view
//! and `/metrics`: its ledger by outcome, later bounces and complaints, unsubscribes within
//! a week of the copy, clicks per link.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{LinkClicks, Store, StoreError, per_db};

/// One issue's outcome, for `herald stats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct IssueStats {
    pub number: i64,
    #[sqlx(rename = "term_slug")]
    pub term: String,
    pub sent_at: DateTime<Utc>,
    /// Ledger rows: the subscribers it was addressed to.
    pub recipients: i64,
    pub delivered: i64,
    /// Refused as an unknown mailbox during the send.
    pub bounced: i64,
    /// Refused for good for another reason.
    pub failed: i64,
    /// Not yet sent (pending, or ambiguous after an interrupted send).
    pub unfinished: i64,
    /// Readers who got it and unsubscribed within 7 days of their copy.
    #[serde(rename = "unsubscribed_within_7_days")]
    pub unsubscribed_7d: i64,
    /// Delivered, then reported as a permanent failure by a delivery status notification.
    pub bounced_later: i64,
    /// Delivered, then reported as a temporary failure the relay gave up on.
    pub soft_bounced_later: i64,
    /// Abuse reports (a reader marked it as spam).
    pub complaints: i64,
    /// Each news link with how often its redirect was followed (`[tracking] clicks`).
    #[sqlx(skip)]
    pub clicks: Vec<LinkClicks>,
}

impl Store {
    /// What happened after each issue that went out (or is going out), newest first; one
    /// issue with `number`.
    ///
    /// # Errors
    /// A database error.
    pub async fn issue_stats(&self, number: Option<u32>) -> Result<Vec<IssueStats>, StoreError> {
        let mut stats = self.stats_of(number, false).await?;
        for s in &mut stats {
            s.clicks = self
                .link_clicks(u32::try_from(s.number).unwrap_or(0))
                .await?;
        }
        Ok(stats)
    }

    /// [`Store::issue_stats`] of the newest issue that went out only (for `/metrics`: the
    /// ledgers of older issues are not read).
    ///
    /// # Errors
    /// A database error.
    pub async fn latest_issue_stats(&self) -> Result<Option<IssueStats>, StoreError> {
        Ok(self.stats_of(None, true).await?.pop())
    }

    /// The stats of issue `number`, of every issue that went out, or (`latest`) of the
    /// newest one only, without their clicks.
    async fn stats_of(
        &self,
        number: Option<u32>,
        latest: bool,
    ) -> Result<Vec<IssueStats>, StoreError> {
        // Within 7 days of the copy: the two databases spell date arithmetic differently.
        let within_week = if self.is_postgres() {
            "s.unsubscribed_at >= d.sent_at AND s.unsubscribed_at < d.sent_at + interval '7 days'"
        } else {
            "julianday(s.unsubscribed_at) >= julianday(d.sent_at)
             AND julianday(s.unsubscribed_at) < julianday(d.sent_at) + 7"
        };
        Ok(per_db!(&self.pool, db => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT i.number, i.term_slug,
                COALESCE(i.finished_at, i.send_after, i.created_at) AS sent_at,
                COUNT(d.id) AS recipients,
                COUNT(d.id) FILTER (WHERE d.status = 'sent') AS delivered,
                COUNT(d.id) FILTER (WHERE d.status = 'bounced') AS bounced,
                COUNT(d.id) FILTER (WHERE d.status = 'failed') AS failed,
                COUNT(d.id) FILTER (WHERE d.status IN ('pending', 'sending')) AS unfinished,
                COUNT(d.id) FILTER (WHERE d.status = 'sent' AND s.unsubscribed_at IS NOT NULL
                    AND {within_week}) AS unsubscribed_7d,
                (SELECT COUNT(*) FROM feedback f
                 WHERE f.issue_id = i.id AND f.kind = 'hard_bounce') AS bounced_later,
                (SELECT COUNT(*) FROM feedback f
                 WHERE f.issue_id = i.id AND f.kind = 'soft_bounce') AS soft_bounced_later,
                (SELECT COUNT(*) FROM feedback f
                 WHERE f.issue_id = i.id AND f.kind = 'complaint') AS complaints
             FROM issues i
             LEFT JOIN deliveries d ON d.issue_id = i.id
             LEFT JOIN subscribers s ON s.id = d.subscriber_id
             WHERE i.status IN ('sending', 'sent') AND ($1 IS NULL OR i.number = $1)
               AND (NOT $2 OR i.number =
                    (SELECT MAX(number) FROM issues WHERE status IN ('sending', 'sent')))
             GROUP BY i.id ORDER BY i.number DESC"
            )))
            .bind(number.map(i64::from))
            .bind(latest)
            .fetch_all(db)
            .await?
        }))
    }
}
