//! Issues: freezing one with its ledger (one pending row per confirmed subscriber),
//! discarding or replacing one that nothing was sent of, and reading them back.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::states::Text;
use super::{Store, StoreError, WriteTx, from_row, per_db};
use crate::domain::{DeliveryStatus, IssueStatus, NewsLink, SlotOutcome, Slug};

/// What freezing records about an issue.
#[derive(Debug, Clone)]
pub struct FrozenIssue<'a> {
    pub number: u32,
    pub cycle: u32,
    pub term_slug: &'a Slug,
    pub subject: &'a str,
    pub preheader: &'a str,
    /// Rendered HTML with the personal placeholders.
    pub html: &'a str,
    /// Rendered text with the personal placeholders.
    pub text: &'a str,
    /// The web version, with no personal data.
    pub web_html: &'a str,
    pub links: &'a [NewsLink],
    /// The schedule slot the issue was made for, if any.
    pub slot_key: Option<&'a str>,
    /// Not sent before this time (review window).
    pub send_after: Option<DateTime<Utc>>,
    /// `Sending` for an issue that goes out at once, `Frozen` for one waiting for its slot.
    pub status: IssueStatus,
}

/// An issue as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredIssue {
    pub id: i64,
    pub number: u32,
    pub cycle: u32,
    pub term: Slug,
    pub subject: String,
    pub preheader: String,
    #[serde(skip)]
    pub html: String,
    #[serde(skip)]
    pub text: String,
    #[serde(skip)]
    pub web_html: String,
    pub status: IssueStatus,
    pub slot_key: Option<String>,
    pub send_after: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

const ISSUE_COLUMNS: &str =
    "id, number, cycle, term_slug, subject, preheader, html, text, web_html, status,
     slot_key, send_after, created_at, finished_at";

from_row!(StoredIssue, row => {
    Ok(Self {
        id: row.try_get("id")?,
        number: u32::try_from(row.try_get::<i64, _>("number")?).unwrap_or(0),
        cycle: u32::try_from(row.try_get::<i64, _>("cycle")?).unwrap_or(1),
        term: row.try_get::<Text<Slug>, _>("term_slug")?.0,
        subject: row.try_get("subject")?,
        preheader: row.try_get("preheader")?,
        html: row.try_get("html")?,
        text: row.try_get("text")?,
        web_html: row.try_get("web_html")?,
        status: row.try_get::<Text<IssueStatus>, _>("status")?.0,
        slot_key: row.try_get("slot_key")?,
        send_after: row.try_get("send_after")?,
        created_at: row.try_get("created_at")?,
        finished_at: row.try_get("finished_at")?,
    })
});

impl Store {
    /// Freezes an issue in one transaction: the issue with its rendered parts, its term and
    /// links recorded as sent, its term taken off the editors' queue, and one pending ledger
    /// row per subscriber confirmed at this moment. Returns the issue id and the row count.
    ///
    /// # Errors
    /// A database error, including a uniqueness violation when the issue number, the term in
    /// this cycle, a link, or the schedule slot was already used; then nothing is recorded.
    pub async fn freeze_issue(
        &self,
        issue: &FrozenIssue<'_>,
        now: DateTime<Utc>,
    ) -> Result<(i64, u64), StoreError> {
        let mut tx = self.write().await?;
        let frozen = freeze_in(&mut tx, issue, now).await?;
        tx.commit().await?;
        Ok(frozen)
    }

    /// Drops issue `number` if it is frozen or held and nothing of it was sent: its ledger,
    /// its term and links (they return to the pool) and the issue itself, so the next issue
    /// takes its number. A schedule slot it was made for is recorded as skipped. Returns
    /// `false` when there is no such unsent issue.
    ///
    /// # Errors
    /// A database error.
    pub async fn discard_issue(&self, number: u32, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let Some(id) = unsent_issue_id(&mut tx, number).await? else {
            return Ok(false);
        };
        per_db!(tx.conn(), c => {
            sqlx::query(
                "UPDATE schedule_slots SET outcome = $1, issue_id = NULL, recorded_at = $2,
                 detail = $3 WHERE issue_id = $4",
            )
            .bind(Text(SlotOutcome::Skipped))
            .bind(now)
            .bind(format!("issue #{number} was discarded"))
            .bind(id)
            .execute(c)
            .await?;
        });
        delete_issue(&mut tx, id).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Replaces frozen or held issue `number` (nothing of it sent) with `replacement`, in one
    /// transaction: the old one's ledger, term and links are dropped and the new one frozen
    /// with a fresh ledger (the subscribers confirmed now). Returns `None` when there is no
    /// such unsent issue.
    ///
    /// # Errors
    /// A database error, including a uniqueness violation (then nothing changes).
    pub async fn refreeze_issue(
        &self,
        number: u32,
        replacement: &FrozenIssue<'_>,
        now: DateTime<Utc>,
    ) -> Result<Option<(i64, u64)>, StoreError> {
        let mut tx = self.write().await?;
        let Some(id) = unsent_issue_id(&mut tx, number).await? else {
            return Ok(None);
        };
        // The slot row points at the issue; it is pointed at the replacement below.
        per_db!(tx.conn(), c => {
            sqlx::query("UPDATE schedule_slots SET issue_id = NULL WHERE issue_id = $1")
                .bind(id)
                .execute(c)
                .await?;
        });
        delete_issue(&mut tx, id).await?;
        let frozen = freeze_in(&mut tx, replacement, now).await?;
        if let Some(key) = replacement.slot_key {
            per_db!(tx.conn(), c => {
                sqlx::query("UPDATE schedule_slots SET issue_id = $1 WHERE slot_key = $2")
                    .bind(frozen.0)
                    .bind(key)
                    .execute(c)
                    .await?;
            });
        }
        tx.commit().await?;
        Ok(Some(frozen))
    }

    /// The oldest issue whose sending is not finished, if any.
    ///
    /// # Errors
    /// A database error.
    pub async fn unfinished_issue(&self) -> Result<Option<StoredIssue>, StoreError> {
        Ok(per_db!(&self.pool, db => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {ISSUE_COLUMNS} FROM issues WHERE status IN ('frozen', 'held', 'sending')
                 ORDER BY number LIMIT 1"
            )))
            .fetch_optional(db)
            .await?
        }))
    }

    /// The issue with this number.
    ///
    /// # Errors
    /// A database error.
    pub async fn issue(&self, number: u32) -> Result<Option<StoredIssue>, StoreError> {
        Ok(per_db!(&self.pool, db => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {ISSUE_COLUMNS} FROM issues WHERE number = $1"
            )))
            .bind(i64::from(number))
            .fetch_optional(db)
            .await?
        }))
    }

    /// Every issue, newest first.
    ///
    /// # Errors
    /// A database error.
    pub async fn issues(&self) -> Result<Vec<StoredIssue>, StoreError> {
        Ok(per_db!(&self.pool, db => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {ISSUE_COLUMNS} FROM issues ORDER BY number DESC"
            )))
            .fetch_all(db)
            .await?
        }))
    }

    /// The links an issue carried, in order.
    ///
    /// # Errors
    /// A database error.
    pub async fn issue_links(&self, issue_id: i64) -> Result<Vec<NewsLink>, StoreError> {
        let rows: Vec<(String, String, String, String, String)> = per_db!(&self.pool, db => {
            sqlx::query_as(
                "SELECT canonical_url, url, title, source, summary FROM links_sent
                 WHERE issue_id = $1 ORDER BY position",
            )
            .bind(issue_id)
            .fetch_all(db)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(canonical_url, url, title, source, summary)| NewsLink {
                canonical_url,
                url,
                title,
                source,
                summary,
                published: None,
                curated: false,
            })
            .collect())
    }
}

/// Freezes an issue inside `tx`; see [`Store::freeze_issue`].
async fn freeze_in(
    tx: &mut WriteTx,
    issue: &FrozenIssue<'_>,
    now: DateTime<Utc>,
) -> Result<(i64, u64), StoreError> {
    let id: i64 = per_db!(tx.conn(), c => {
        sqlx::query_scalar(
            "INSERT INTO issues (number, cycle, term_slug, subject, preheader, html, text,
                                 web_html, status, slot_key, send_after, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $12, $9, $10, $11) RETURNING id",
        )
        .bind(i64::from(issue.number))
        .bind(i64::from(issue.cycle))
        .bind(issue.term_slug.as_str())
        .bind(issue.subject)
        .bind(issue.preheader)
        .bind(issue.html)
        .bind(issue.text)
        .bind(issue.web_html)
        .bind(issue.slot_key)
        .bind(issue.send_after)
        .bind(now)
        .bind(Text(issue.status))
        .fetch_one(c)
        .await?
    });
    per_db!(tx.conn(), c => {
        sqlx::query(
            "INSERT INTO terms_sent (issue_id, cycle, slug, sent_at)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(i64::from(issue.cycle))
        .bind(issue.term_slug.as_str())
        .bind(now)
        .execute(c)
        .await?;
    });
    for (position, link) in issue.links.iter().enumerate() {
        per_db!(tx.conn(), c => {
            sqlx::query(
                "INSERT INTO links_sent (issue_id, position, canonical_url, url, title, source,
                                         summary)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(id)
            .bind(position as i64)
            .bind(&link.canonical_url)
            .bind(&link.url)
            .bind(&link.title)
            .bind(&link.source)
            .bind(&link.summary)
            .execute(c)
            .await?;
        });
    }
    per_db!(tx.conn(), c => {
        sqlx::query("DELETE FROM term_queue WHERE slug = $1")
            .bind(issue.term_slug.as_str())
            .execute(c)
            .await?;
    });
    let rows = per_db!(tx.conn(), c => {
        sqlx::query(
            "INSERT INTO deliveries (issue_id, subscriber_id, status, updated_at)
             SELECT $1, id, 'pending', $2 FROM subscribers WHERE status = 'confirmed' ORDER BY id",
        )
        .bind(id)
        .bind(now)
        .execute(c)
        .await?
        .rows_affected()
    });
    Ok((id, rows))
}

/// The id of issue `number` if it is frozen or held and none of its rows left `pending`.
async fn unsent_issue_id(tx: &mut WriteTx, number: u32) -> Result<Option<i64>, StoreError> {
    Ok(per_db!(tx.conn(), c => {
        sqlx::query_scalar(
            "SELECT id FROM issues WHERE number = $1 AND status IN ($2, $3)
             AND NOT EXISTS (SELECT 1 FROM deliveries WHERE issue_id = issues.id AND status <> $4)",
        )
        .bind(i64::from(number))
        .bind(Text(IssueStatus::Frozen))
        .bind(Text(IssueStatus::Held))
        .bind(Text(DeliveryStatus::Pending))
        .fetch_optional(c)
        .await?
    }))
}

/// Deletes an unsent issue and everything that hangs off it.
async fn delete_issue(tx: &mut WriteTx, id: i64) -> Result<(), StoreError> {
    for table in ["deliveries", "links_sent", "terms_sent"] {
        per_db!(tx.conn(), c => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE issue_id = $1"
            )))
            .bind(id)
            .execute(c)
            .await?;
        });
    }
    per_db!(tx.conn(), c => {
        sqlx::query("DELETE FROM issues WHERE id = $1")
            .bind(id)
            .execute(c)
            .await?;
    });
    Ok(())
}
