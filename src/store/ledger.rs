//! Issues and the per-recipient delivery ledger: freezing an issue, claiming and marking
//! deliveries, resuming, and the sender lease.
//!
//! Every state change of a delivery is a committed transaction: a row is claimed
//! (pending -> sending, attempt counted) before its SMTP transaction starts, and marked
//! (sent, failed, bounced, or back to pending) after it ends. Marks and the next claims share
//! one transaction, so rows in `sending` never outnumber the workers: after a crash at most
//! `concurrency` rows are ambiguous.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use super::states::Text;
use super::{Dialect, Store, StoreError, from_row, on_pool, on_tx, write_one};

use crate::domain::{DeliveryStatus, EmailAddress, IssueStatus, NewsLink, Slug};

/// The rows of a step's issue that its run may claim, oldest first. Every ledger step binds
/// the same parameters: ?1 the time, ?2 the run, ?3 the issue id, ?4 the sent marks, ?5 the
/// lease the run holds (its fence; NULL for none).
///
/// The fence: a run that holds a lease claims only while the database still has that lease
/// unexpired and in its name, so a sender or worker whose lease expired or was taken (it
/// stalled, or lost the database for a while) claims nothing more, whatever its clock says.
const CLAIMABLE: &str = "FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id
     WHERE d.issue_id = ?3 AND d.status = 'pending' AND s.status = 'confirmed'
       AND (d.next_attempt_at IS NULL OR d.next_attempt_at <= ?1)
       AND (d.deferred_by IS NULL OR d.deferred_by <> ?2)
       AND (?5 IS NULL OR EXISTS (SELECT 1 FROM leases l WHERE l.holder = ?5 AND l.expires_at > ?1))";

/// Rows of ?1 (an issue) in `sending` whose run is alive: it belongs to a process whose lease
/// is unexpired (a run is `HOLDER` or `HOLDER/...`). They are in flight, not ambiguous.
const IN_FLIGHT: &str = "d.issue_id = ?1 AND d.status = 'sending' AND EXISTS (
         SELECT 1 FROM leases l WHERE l.expires_at > ?2
            AND (d.claimed_by = l.holder
                 OR substr(d.claimed_by, 1, length(l.holder) + 1) = l.holder || '/'))";

/// Marks sent, in one statement, the rows of ?4: a JSON array of `[id, reply]` pairs.
const MARK_SENT: &str = "UPDATE deliveries SET status = 'sent', smtp_reply = m.reply, sent_at = ?1,
        updated_at = ?1, last_error = NULL, next_attempt_at = NULL
     FROM (SELECT value ->> 0 AS id, value ->> 1 AS reply FROM json_each(?4)) AS m
     WHERE deliveries.id = m.id AND deliveries.status = 'sending'";

/// The PostgreSQL channel that wakes workers when an issue starts going out.
const WORKER_CHANNEL: &str = "herald_delivery";

/// Which database a transaction is on.
fn d_of(tx: &super::WriteTx) -> Dialect {
    match tx.tx {
        super::Tx::Sqlite(_) => Dialect::Sqlite,
        super::Tx::Postgres(_) => Dialect::Postgres,
    }
}

/// [`MARK_SENT`] for PostgreSQL. The ids again as an array, so that the planner finds the
/// rows by primary key (with only the join, it reads the whole ledger to hash it).
const MARK_SENT_PG: &str =
    "UPDATE deliveries SET status = 'sent', smtp_reply = m.reply, sent_at = ?1,
        updated_at = ?1, last_error = NULL, next_attempt_at = NULL
     FROM (SELECT (value ->> 0)::bigint AS id, value ->> 1 AS reply
           FROM jsonb_array_elements(?4::jsonb) AS value) AS m
     WHERE deliveries.id = m.id AND deliveries.status = 'sending'
       AND deliveries.id = ANY (ARRAY(SELECT (value ->> 0)::bigint
                                      FROM jsonb_array_elements(?4::jsonb) AS value))";

/// The "sent" marks of a step, as [`MARK_SENT`] reads them; `None` when there are none.
fn sent_marks(marks: &[(i64, Mark)]) -> Option<String> {
    let sent: Vec<(i64, &str)> = marks
        .iter()
        .filter_map(|(id, m)| match m {
            Mark::Sent { reply } => Some((*id, reply.as_str())),
            _ => None,
        })
        .collect();
    (!sent.is_empty()).then(|| serde_json::to_string(&sent).expect("ids and strings serialise"))
}

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

/// A claimed delivery, with what a worker needs to send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub delivery_id: i64,
    pub subscriber_id: i64,
    pub email: EmailAddress,
    pub name: String,
    /// The first name to greet them by; empty when unknown.
    pub first_name: String,
    /// Attempts so far, this one included.
    pub attempts: u32,
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mark {
    /// The server accepted the message.
    Sent { reply: String },
    /// A transient failure: try again at `retry_at`, or in a later run when `give_up_this_run`.
    Retry {
        error: String,
        retry_at: DateTime<Utc>,
        give_up_this_run: bool,
    },
    /// A permanent failure (5xx).
    Failed { error: String },
    /// The mailbox does not exist (5.1.x): the subscriber is marked bounced too.
    Bounced { error: String },
    /// The message was sent but no reply came: it may or may not have been delivered. The
    /// row stays in `sending`, released by this run, so it counts as ambiguous: reported, and
    /// resent only on request (`send --retry-ambiguous`, `issues resolve`).
    Ambiguous { error: String },
    /// Never attempted (no SMTP session could be opened): back to pending as if it had not
    /// been claimed, its attempt not counted.
    Unclaim,
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

const ISSUE_COLUMNS: &str =
    "id, number, cycle, term_slug, subject, preheader, html, text, web_html, status,
     slot_key, send_after, created_at, finished_at";

from_row!(StoredIssue, |row| {
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

from_row!(DeliveryRow, |row| {
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
        on_tx!(tx, |c, d| sqlx::query(d.sql(
            "UPDATE schedule_slots SET outcome = ?1, issue_id = NULL, recorded_at = ?2,
                    detail = ?3 WHERE issue_id = ?4"
        ))
        .bind(super::states::Text(crate::domain::SlotOutcome::Skipped))
        .bind(now)
        .bind(format!("issue #{number} was discarded"))
        .bind(id)
        .execute(&mut *c)
        .await?
        .rows_affected());
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
        on_tx!(tx, |c, d| sqlx::query(d.sql(
            "UPDATE schedule_slots SET issue_id = NULL WHERE issue_id = ?"
        ))
        .bind(id)
        .execute(&mut *c)
        .await?
        .rows_affected());
        delete_issue(&mut tx, id).await?;
        let frozen = freeze_in(&mut tx, replacement, now).await?;
        if let Some(key) = replacement.slot_key {
            on_tx!(tx, |c, d| sqlx::query(d.sql(
                "UPDATE schedule_slots SET issue_id = ? WHERE slot_key = ?"
            ))
            .bind(frozen.0)
            .bind(key)
            .execute(&mut *c)
            .await?
            .rows_affected());
        }
        tx.commit().await?;
        Ok(Some(frozen))
    }

    /// The oldest issue whose sending is not finished, if any.
    ///
    /// # Errors
    /// A database error.
    pub async fn unfinished_issue(&self) -> Result<Option<StoredIssue>, StoreError> {
        Ok(on_pool!(self, |db, d| sqlx::query_as(d.owned(format!(
            "SELECT {ISSUE_COLUMNS} FROM issues WHERE status IN ('frozen', 'held', 'sending')
             ORDER BY number LIMIT 1"
        )))
        .fetch_optional(db)
        .await?))
    }

    /// The issue with this number.
    ///
    /// # Errors
    /// A database error.
    pub async fn issue(&self, number: u32) -> Result<Option<StoredIssue>, StoreError> {
        Ok(on_pool!(self, |db, d| sqlx::query_as(d.owned(format!(
            "SELECT {ISSUE_COLUMNS} FROM issues WHERE number = ?"
        )))
        .bind(i64::from(number))
        .fetch_optional(db)
        .await?))
    }

    /// Every issue, newest first.
    ///
    /// # Errors
    /// A database error.
    pub async fn issues(&self) -> Result<Vec<StoredIssue>, StoreError> {
        Ok(on_pool!(self, |db, d| sqlx::query_as(d.owned(format!(
            "SELECT {ISSUE_COLUMNS} FROM issues ORDER BY number DESC"
        )))
        .fetch_all(db)
        .await?))
    }

    /// The links an issue carried, in order.
    ///
    /// # Errors
    /// A database error.
    pub async fn issue_links(&self, issue_id: i64) -> Result<Vec<NewsLink>, StoreError> {
        let rows: Vec<(String, String, String, String, String)> = on_pool!(self, |db, d| {
            sqlx::query_as(d.sql(
                "SELECT canonical_url, url, title, source, summary FROM links_sent WHERE issue_id = ? ORDER BY position",
            ))
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

    /// Ledger counts of one issue.
    ///
    /// # Errors
    /// A database error.
    pub async fn ledger_counts(&self, issue_id: i64) -> Result<LedgerCounts, StoreError> {
        let rows: Vec<(Text<DeliveryStatus>, i64)> = on_pool!(self, |db, d| sqlx::query_as(d.sql(
            "SELECT status, COUNT(*) AS n FROM deliveries WHERE issue_id = ? GROUP BY status"
        ))
        .bind(issue_id)
        .fetch_all(db)
        .await?);
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
            let rows: Vec<DeliveryRow> = on_pool!(self, |db, d| {
                sqlx::query_as(d.sql(
                "SELECT s.email, d.status, d.attempts, d.last_error, d.smtp_reply, d.claimed_at, d.claimed_by
                 FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id
                 WHERE d.issue_id = ? AND d.status = ? ORDER BY d.id LIMIT ?"
            ))
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
        let n: i64 = on_pool!(self, |db, d| sqlx::query_scalar(d.owned(format!(
            "SELECT COUNT(*) FROM deliveries d WHERE d.issue_id = ?1 AND d.status = 'sending'
             AND (d.claimed_by IS NULL OR d.claimed_by <> ?3) AND NOT ({IN_FLIGHT})"
        )))
        .bind(issue_id)
        .bind(now)
        .bind(run)
        .fetch_one(db)
        .await?);
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
        let n: i64 = on_pool!(self, |db, d| sqlx::query_scalar(d.owned(format!(
            "SELECT COUNT(*) FROM deliveries d WHERE {IN_FLIGHT}"
        )))
        .bind(issue_id)
        .bind(now)
        .fetch_one(db)
        .await?);
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Wakes the workers waiting for an issue to deliver (PostgreSQL's `NOTIFY`; nothing on
    /// SQLite, which has no workers).
    ///
    /// # Errors
    /// A database error.
    pub async fn notify_workers(&self) -> Result<(), StoreError> {
        if let super::Pool::Postgres(pool) = &self.pool {
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
        let super::Pool::Postgres(pool) = &self.pool else {
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
            "UPDATE deliveries SET status = 'sent', sent_at = ?1, updated_at = ?1,
                    smtp_reply = 'marked delivered by an operator (herald issues resolve --sent)'
             WHERE issue_id = ?2 AND status = 'sending'"
        } else {
            "UPDATE deliveries SET status = 'pending', updated_at = ?1, claimed_by = NULL,
                    last_error = 'ambiguous: marked not delivered by an operator'
             WHERE issue_id = ?2 AND status = 'sending'"
        };
        let n = on_tx!(tx, |c, d| sqlx::query(d.sql(settle))
            .bind(now)
            .bind(issue_id)
            .execute(&mut *c)
            .await?
            .rows_affected());
        on_tx!(tx, |c, d| sqlx::query(d.sql(
            "UPDATE issues SET status = 'sending', finished_at = NULL
             WHERE id = ?1 AND status = 'sent'
               AND EXISTS (SELECT 1 FROM deliveries WHERE issue_id = ?1 AND status = 'pending')"
        ))
        .bind(issue_id)
        .execute(&mut *c)
        .await?
        .rows_affected());
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
        let n = on_tx!(tx, |c, d| sqlx::query(d.sql(
            "UPDATE deliveries SET status = 'pending', updated_at = ?1,
                    last_error = 'ambiguous after a crash: resent on request'
             WHERE status = 'sending' AND (claimed_by IS NULL OR claimed_by <> ?2)"
        ))
        .bind(now)
        .bind(run)
        .execute(&mut *c)
        .await?
        .rows_affected());
        on_tx!(tx, |c, _d| {
            sqlx::query(
            "UPDATE issues SET status = 'sending', finished_at = NULL
             WHERE status = 'sent' AND id IN (SELECT issue_id FROM deliveries WHERE status = 'pending')",
        )
        .execute(&mut *c)
        .await?
        .rows_affected()
        });
        tx.commit().await?;
        Ok(n)
    }

    /// One step of a send, in one transaction: records how finished attempts ended, then
    /// claims up to `claim` pending rows whose time has come (oldest first; only subscribers
    /// still confirmed) for `run`.
    ///
    /// # Errors
    /// A database error; then neither the marks nor the claims are recorded.
    #[allow(clippy::too_many_arguments)]
    pub async fn ledger_step(
        &self,
        issue_id: i64,
        run: &str,
        lease: Option<&str>,
        marks: &[(i64, Mark)],
        claim: usize,
        now: DateTime<Utc>,
    ) -> Result<Vec<Claimed>, StoreError> {
        // On PostgreSQL, steps of several workers run side by side: each locks the rows it
        // claims and skips those another has locked (`FOR UPDATE SKIP LOCKED`), and marks only
        // rows it claimed, so it does not wait for the other writers' turn.
        let mut tx = self.ledger_write().await?;
        // The common mark, "sent", is one statement for the whole step however many rows
        // it carries; the rare ones go row by row.
        if let Some(json) = sent_marks(marks) {
            on_tx!(tx, |c, d| sqlx::query(d.pick(MARK_SENT, MARK_SENT_PG))
                .bind(now)
                .bind(run)
                .bind(issue_id)
                .bind(&json)
                .execute(&mut *c)
                .await?
                .rows_affected());
        }
        for (delivery_id, mark) in marks {
            match mark {
                Mark::Sent { .. } => {}
                Mark::Retry {
                    error,
                    retry_at,
                    give_up_this_run,
                } => {
                    on_tx!(tx, |c, d| {
                        sqlx::query(d.sql(
                        "UPDATE deliveries SET status = 'pending', last_error = ?1, next_attempt_at = ?2,
                                updated_at = ?3, deferred_by = ?4 WHERE id = ?5 AND status = 'sending'"
                    ))
                    .bind(error.as_str())
                    .bind(retry_at)
                    .bind(now)
                    .bind(give_up_this_run.then_some(run))
                    .bind(delivery_id)
                    .execute(&mut *c)
                    .await?
                    .rows_affected()
                    });
                }
                Mark::Ambiguous { error } => {
                    on_tx!(tx, |c, d| sqlx::query(d.sql(
                        "UPDATE deliveries SET claimed_by = NULL, last_error = ?1, updated_at = ?2
                         WHERE id = ?3 AND status = 'sending'"
                    ))
                    .bind(error.as_str())
                    .bind(now)
                    .bind(delivery_id)
                    .execute(&mut *c)
                    .await?
                    .rows_affected());
                }
                Mark::Unclaim => {
                    on_tx!(tx, |c, d| sqlx::query(d.sql(
                        "UPDATE deliveries SET status = 'pending',
                                attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END,
                                updated_at = ?1 WHERE id = ?2 AND status = 'sending'"
                    ))
                    .bind(now)
                    .bind(delivery_id)
                    .execute(&mut *c)
                    .await?
                    .rows_affected());
                }
                Mark::Failed { error } | Mark::Bounced { error } => {
                    let status = if matches!(mark, Mark::Bounced { .. }) {
                        on_tx!(tx, |c, d| {
                            sqlx::query(d.sql(
                            "UPDATE subscribers SET status = 'bounced', bounced_at = ?1, updated_at = ?1
                             WHERE id = (SELECT subscriber_id FROM deliveries WHERE id = ?2) AND status <> 'unsubscribed'"
                        ))
                        .bind(now)
                        .bind(delivery_id)
                        .execute(&mut *c)
                        .await?
                        .rows_affected()
                        });
                        DeliveryStatus::Bounced
                    } else {
                        DeliveryStatus::Failed
                    };
                    on_tx!(tx, |c, d| {
                        sqlx::query(d.sql(
                        "UPDATE deliveries SET status = ?4, last_error = ?1, smtp_reply = ?1, updated_at = ?2
                         WHERE id = ?3 AND status = 'sending'"
                    ))
                    .bind(error.as_str())
                    .bind(now)
                    .bind(delivery_id)
                    .bind(Text(status))
                    .execute(&mut *c)
                    .await?
                    .rows_affected()
                    });
                }
            }
        }
        let mut claimed = Vec::new();
        if claim > 0 {
            // The rows and what a worker needs to send them in one read, then the claim of
            // exactly those rows in one write (the transaction holds the write lock, so
            // nothing changes in between).
            // The LIMIT is written into the statement (see `LedgerSession::step`).
            let lock = match d_of(&tx) {
                Dialect::Sqlite => "",
                Dialect::Postgres => "FOR UPDATE OF d SKIP LOCKED",
            };
            let rows: Vec<ClaimRow> = on_tx!(tx, |c, d| sqlx::query_as(d.owned(format!(
                "SELECT d.id, d.subscriber_id, d.attempts, s.email, s.name, s.first_name
                 {CLAIMABLE} ORDER BY d.id LIMIT {claim} {lock}"
            )))
            .bind(now)
            .bind(run)
            .bind(issue_id)
            .bind(None::<&str>)
            .bind(lease)
            .fetch_all(&mut *c)
            .await?);
            // The attempts as they were read, before this claim counts one more.
            claimed = rows
                .into_iter()
                .map(|mut row| {
                    row.2 += 1;
                    claim_of(row)
                })
                .collect();
            if !claimed.is_empty() {
                let ids = serde_json::to_string(
                    &claimed.iter().map(|c| c.delivery_id).collect::<Vec<_>>(),
                )
                .expect("ids serialise");
                let changed = on_tx!(tx, |c, d| {
                    sqlx::query(d.pick(
                    "UPDATE deliveries SET status = 'sending', attempts = attempts + 1, claimed_at = ?1,
                            claimed_by = ?2, updated_at = ?1
                     WHERE id IN (SELECT value FROM json_each(?3)) AND status = 'pending'",
                    "UPDATE deliveries SET status = 'sending', attempts = attempts + 1, claimed_at = ?1,
                            claimed_by = ?2, updated_at = ?1
                     WHERE id IN (SELECT value::bigint FROM jsonb_array_elements_text(?3::jsonb))
                       AND status = 'pending'",
                ))
                .bind(now)
                .bind(run)
                .bind(&ids)
                .execute(&mut *c)
                .await?
                .rows_affected()
                });
                debug_assert_eq!(changed, claimed.len() as u64);
            }
        }
        tx.commit().await?;
        Ok(claimed)
    }

    /// A connection of its own for one send's ledger steps (see [`LedgerSession`]).
    ///
    /// # Errors
    /// A database error.
    pub async fn ledger_session(&self) -> Result<LedgerSession<'_>, StoreError> {
        // (A PostgreSQL step is a transaction of several statements: see `ledger_step`.)
        let conn = match &self.pool {
            super::Pool::Sqlite(pool) => Some(pool.acquire().await?),
            super::Pool::Postgres(_) => None,
        };
        Ok(LedgerSession {
            store: self,
            conn,
            cursor: 0,
        })
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
        let (n, at): (i64, Option<DateTime<Utc>>) = on_pool!(self, |db, d| {
            sqlx::query_as(d.sql(
            "SELECT COUNT(*) AS n, MIN(next_attempt_at) AS at FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id
             WHERE d.issue_id = ? AND d.status = 'pending' AND s.status = 'confirmed'
               AND (d.deferred_by IS NULL OR d.deferred_by <> ?)"
        ))
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
        on_tx!(tx, |c, d| sqlx::query(d.sql(
            "UPDATE deliveries SET status = 'skipped', updated_at = ?1
             WHERE issue_id = ?2 AND status = 'pending'
               AND subscriber_id IN (SELECT id FROM subscribers WHERE status <> 'confirmed')"
        ))
        .bind(now)
        .bind(issue_id)
        .execute(&mut *c)
        .await?
        .rows_affected());
        // Pending rows, and rows a live worker still has in flight (which may come back to
        // pending), in one snapshot.
        let left: i64 = on_tx!(tx, |c, d| sqlx::query_scalar(d.owned(format!(
            "SELECT COUNT(*) FROM deliveries d
             WHERE (d.issue_id = ?1 AND d.status = 'pending') OR ({IN_FLIGHT})"
        )))
        .bind(issue_id)
        .bind(now)
        .fetch_one(&mut *c)
        .await?);
        if left == 0 {
            on_tx!(tx, |c, d| {
                sqlx::query(d.sql(
                "UPDATE issues SET status = 'sent', finished_at = ?1 WHERE id = ?2 AND status <> 'sent'"
            ))
            .bind(now)
            .bind(issue_id)
            .execute(&mut *c)
            .await?
            .rows_affected()
            });
        }
        tx.commit().await?;
        Ok(left == 0)
    }

    /// Takes or renews the lease `name` for `holder` until `until`. Returns `false` when
    /// another holder's lease has not expired.
    ///
    /// # Errors
    /// A database error.
    pub async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        Ok(write_one!(self, |d| {
            sqlx::query(d.sql(
            "INSERT INTO leases (name, holder, expires_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
             WHERE leases.holder = excluded.holder OR leases.expires_at <= ?4"
        ))
        .bind(name)
        .bind(holder)
        .bind(until)
        .bind(now)
        })? == 1)
    }

    /// Who holds the lease `name`, and until when.
    ///
    /// # Errors
    /// A database error.
    pub async fn lease_holder(
        &self,
        name: &str,
    ) -> Result<Option<(String, DateTime<Utc>)>, StoreError> {
        Ok(on_pool!(self, |db, d| sqlx::query_as(d.sql(
            "SELECT holder, expires_at FROM leases WHERE name = ?"
        ))
        .bind(name)
        .fetch_optional(db)
        .await?))
    }

    /// Takes the lease `name` from `previous`, whose process is known to be gone. Returns
    /// `false` when someone else took it meanwhile.
    ///
    /// # Errors
    /// A database error.
    pub async fn take_over_lease(
        &self,
        name: &str,
        previous: &str,
        holder: &str,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        Ok(write_one!(self, |d| sqlx::query(d.sql(
            "UPDATE leases SET holder = ?1, expires_at = ?2 WHERE name = ?3 AND holder = ?4"
        ))
        .bind(holder)
        .bind(until)
        .bind(name)
        .bind(previous))?
            == 1)
    }

    /// Gives up a lease held by `holder`.
    ///
    /// # Errors
    /// A database error.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        write_one!(self, |d| sqlx::query(
            d.sql("DELETE FROM leases WHERE name = ? AND holder = ?")
        )
        .bind(name)
        .bind(holder))?;
        Ok(())
    }
}

/// Freezes an issue inside `tx`; see [`Store::freeze_issue`].
async fn freeze_in(
    tx: &mut super::WriteTx,
    issue: &FrozenIssue<'_>,
    now: DateTime<Utc>,
) -> Result<(i64, u64), StoreError> {
    let id: i64 = on_tx!(tx, |c, d| {
        sqlx::query_scalar(d.sql(
        "INSERT INTO issues (number, cycle, term_slug, subject, preheader, html, text, web_html,
                                 status, slot_key, send_after, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?12, ?9, ?10, ?11) RETURNING id"
    ))
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
    .fetch_one(&mut *c)
    .await?
    });
    on_tx!(tx, |c, d| sqlx::query(d.sql(
        "INSERT INTO terms_sent (issue_id, cycle, slug, sent_at) VALUES (?1, ?2, ?3, ?4)"
    ))
    .bind(id)
    .bind(i64::from(issue.cycle))
    .bind(issue.term_slug.as_str())
    .bind(now)
    .execute(&mut *c)
    .await?
    .rows_affected());
    for (position, link) in issue.links.iter().enumerate() {
        on_tx!(tx, |c, d| {
            sqlx::query(d.sql(
                "INSERT INTO links_sent (issue_id, position, canonical_url, url, title, source, summary)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
            ))
            .bind(id)
            .bind(position as i64)
            .bind(&link.canonical_url)
            .bind(&link.url)
            .bind(&link.title)
            .bind(&link.source)
            .bind(&link.summary)
            .execute(&mut *c)
            .await?
            .rows_affected()
        });
    }
    on_tx!(tx, |c, d| sqlx::query(
        d.sql("DELETE FROM term_queue WHERE slug = ?")
    )
    .bind(issue.term_slug.as_str())
    .execute(&mut *c)
    .await?
    .rows_affected());
    let rows = on_tx!(tx, |c, d| sqlx::query(d.sql(
        "INSERT INTO deliveries (issue_id, subscriber_id, status, updated_at)
             SELECT ?1, id, 'pending', ?2 FROM subscribers WHERE status = 'confirmed' ORDER BY id"
    ))
    .bind(id)
    .bind(now)
    .execute(&mut *c)
    .await?
    .rows_affected());
    Ok((id, rows))
}

/// The id of issue `number` if it is frozen or held and none of its rows left `pending`.
async fn unsent_issue_id(tx: &mut super::WriteTx, number: u32) -> Result<Option<i64>, StoreError> {
    Ok(on_tx!(tx, |c, d| sqlx::query_scalar(d.sql(
        "SELECT id FROM issues WHERE number = ?1 AND status IN (?2, ?3)
           AND NOT EXISTS (SELECT 1 FROM deliveries WHERE issue_id = issues.id AND status <> ?4)"
    ))
    .bind(i64::from(number))
    .bind(Text(IssueStatus::Frozen))
    .bind(Text(IssueStatus::Held))
    .bind(Text(DeliveryStatus::Pending))
    .fetch_optional(&mut *c)
    .await?))
}

/// Deletes an unsent issue and everything that hangs off it.
async fn delete_issue(tx: &mut super::WriteTx, id: i64) -> Result<(), StoreError> {
    for table in ["deliveries", "links_sent", "terms_sent"] {
        on_tx!(tx, |c, d| sqlx::query(
            d.owned(format!("DELETE FROM {table} WHERE issue_id = ?"))
        )
        .bind(id)
        .execute(&mut *c)
        .await?
        .rows_affected());
    }
    on_tx!(tx, |c, d| sqlx::query(
        d.sql("DELETE FROM issues WHERE id = ?")
    )
    .bind(id)
    .execute(&mut *c)
    .await?
    .rows_affected());
    Ok(())
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

    async fn stats_of(
        &self,
        number: Option<u32>,
        latest: bool,
    ) -> Result<Vec<IssueStats>, StoreError> {
        // Within 7 days of the copy: the two databases spell date arithmetic differently.
        let within_week = match self.dialect() {
            Dialect::Sqlite => {
                "julianday(s.unsubscribed_at) >= julianday(d.sent_at)
                 AND julianday(s.unsubscribed_at) < julianday(d.sent_at) + 7"
            }
            Dialect::Postgres => {
                "s.unsubscribed_at >= d.sent_at AND s.unsubscribed_at < d.sent_at + interval '7 days'"
            }
        };
        Ok(on_pool!(self, |db, d| {
            sqlx::query_as(d.owned(format!(
            "SELECT i.number, i.term_slug, COALESCE(i.finished_at, i.send_after, i.created_at) AS sent_at,
                COUNT(d.id) AS recipients,
                COUNT(d.id) FILTER (WHERE d.status = 'sent') AS delivered,
                COUNT(d.id) FILTER (WHERE d.status = 'bounced') AS bounced,
                COUNT(d.id) FILTER (WHERE d.status = 'failed') AS failed,
                COUNT(d.id) FILTER (WHERE d.status IN ('pending', 'sending')) AS unfinished,
                COUNT(d.id) FILTER (WHERE d.status = 'sent' AND s.unsubscribed_at IS NOT NULL
                    AND {within_week}) AS unsubscribed_7d,
                (SELECT COUNT(*) FROM feedback f WHERE f.issue_id = i.id AND f.kind = 'hard_bounce') AS bounced_later,
                (SELECT COUNT(*) FROM feedback f WHERE f.issue_id = i.id AND f.kind = 'soft_bounce') AS soft_bounced_later,
                (SELECT COUNT(*) FROM feedback f WHERE f.issue_id = i.id AND f.kind = 'complaint') AS complaints
             FROM issues i
             LEFT JOIN deliveries d ON d.issue_id = i.id
             LEFT JOIN subscribers s ON s.id = d.subscriber_id
             WHERE i.status IN ('sending', 'sent') AND (?1 IS NULL OR i.number = ?1)
               AND (NOT ?2 OR i.number =
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
    pub clicks: Vec<super::LinkClicks>,
}

/// One send's ledger steps on a connection held for the whole send.
///
/// A step whose marks are all "sent" (the common case) runs as one call to SQLite's thread
/// (one multi-statement query: `BEGIN IMMEDIATE`, the marks, the claim, the claimed rows'
/// subscribers, `COMMIT`) instead of one round trip per statement; any other step takes
/// [`Store::ledger_step`]. Both record exactly the same.
pub struct LedgerSession<'a> {
    store: &'a Store,
    /// SQLite's held connection; PostgreSQL steps take [`Store::ledger_step`].
    conn: Option<sqlx::pool::PoolConnection<sqlx::Sqlite>>,
    /// On PostgreSQL, the largest id this session claimed: the next claim looks above it
    /// first. Every claim leaves a dead version of the row's `pending` index entry until
    /// vacuum, and a claim that started from the first row would step over all of them.
    cursor: i64,
}

impl std::fmt::Debug for LedgerSession<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LedgerSession")
    }
}

impl LedgerSession<'_> {
    /// [`Store::ledger_step`], faster.
    ///
    /// # Errors
    /// A database error; then neither the marks nor the claims are recorded.
    #[allow(clippy::too_many_arguments)]
    pub async fn step(
        &mut self,
        issue_id: i64,
        run: &str,
        lease: Option<&str>,
        marks: &[(i64, Mark)],
        claim: usize,
        now: DateTime<Utc>,
    ) -> Result<Vec<Claimed>, StoreError> {
        let Some(conn) = self.conn.as_mut() else {
            if let super::Pool::Postgres(pool) = &self.store.pool
                && marks.iter().all(|(_, m)| matches!(m, Mark::Sent { .. }))
            {
                let mut claimed =
                    postgres_step(pool, issue_id, run, lease, marks, claim, now, self.cursor)
                        .await?;
                if claimed.len() < claim && self.cursor > 0 {
                    // Nothing (or not enough) above the cursor: rows below it came back
                    // (retries) or were skipped while locked. Look from the start, once.
                    self.cursor = 0;
                    let more = postgres_step(
                        pool,
                        issue_id,
                        run,
                        lease,
                        &[],
                        claim - claimed.len(),
                        now,
                        0,
                    )
                    .await?;
                    claimed.extend(more);
                }
                if let Some(last) = claimed.iter().map(|c| c.delivery_id).max() {
                    self.cursor = self.cursor.max(last);
                }
                return Ok(claimed);
            }
            return self
                .store
                .ledger_step(issue_id, run, lease, marks, claim, now)
                .await;
        };
        if !marks.iter().all(|(_, m)| matches!(m, Mark::Sent { .. })) {
            return self
                .store
                .ledger_step(issue_id, run, lease, marks, claim, now)
                .await;
        }
        let sent = sent_marks(marks).unwrap_or_else(|| "[]".to_owned());
        let _turn = self.store.turns.lock().await;
        // The claim's LIMIT is written into the statement, not bound: SQLite's planner reads a
        // bound LIMIT and then re-prepares the statement every time it is bound again (a
        // fifth of a step's time). At most `concurrency + 1` texts, each prepared once.
        let sql = format!(
            "BEGIN IMMEDIATE;
             {MARK_SENT};
             UPDATE deliveries SET status = 'sending', attempts = attempts + 1, claimed_at = ?1,
                    claimed_by = ?2, updated_at = ?1
             WHERE id IN (SELECT d.id {CLAIMABLE} ORDER BY d.id LIMIT {claim})
             RETURNING id, subscriber_id, attempts;
             SELECT s.id AS subscriber, s.email, s.name, s.first_name FROM subscribers s
             WHERE {claim} > 0 AND s.id IN (SELECT subscriber_id FROM deliveries
                                       WHERE issue_id = ?3 AND status = 'sending' AND claimed_by = ?2);
             COMMIT;"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(run)
            .bind(issue_id)
            .bind(sent)
            .bind(lease)
            .fetch_all(&mut **conn)
            .await;
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) => {
                // The transaction may still be open on this connection: end it, or make sure
                // the connection is never used again.
                if let Err(rollback) = sqlx::query("ROLLBACK").execute(&mut **conn).await {
                    tracing::debug!(error = %rollback, "ROLLBACK after a failed ledger step");
                }
                return Err(e.into());
            }
        };
        // The claimed rows (three columns), then the subscribers of every row this run has in
        // flight (a superset of the claimed rows' subscribers).
        let mut claims = Vec::new();
        let mut people = std::collections::HashMap::new();
        for row in rows {
            if row.len() == 3 {
                claims.push((
                    row.try_get::<i64, _>("id")?,
                    row.try_get::<i64, _>("subscriber_id")?,
                    row.try_get::<i64, _>("attempts")?,
                ));
            } else {
                people.insert(
                    row.try_get::<i64, _>("subscriber")?,
                    (
                        row.try_get::<Text<EmailAddress>, _>("email")?.0,
                        row.try_get::<String, _>("name")?,
                        row.try_get::<String, _>("first_name")?,
                    ),
                );
            }
        }
        let mut claimed = Vec::with_capacity(claims.len());
        for (delivery_id, subscriber_id, attempts) in claims {
            let Some((email, name, first_name)) = people.remove(&subscriber_id) else {
                return Err(StoreError::Damaged(format!(
                    "delivery {delivery_id} was claimed but its subscriber {subscriber_id} was not found"
                )));
            };
            claimed.push(Claimed {
                delivery_id,
                subscriber_id,
                email,
                name,
                first_name,
                attempts: u32::try_from(attempts).unwrap_or(1),
            });
        }
        claimed.sort_by_key(|c| c.delivery_id);
        Ok(claimed)
    }
}

/// [`LedgerSession::step`] on PostgreSQL: the sent marks, the claim (`FOR UPDATE SKIP
/// LOCKED`, fenced by the lease) and the claimed rows' subscribers in one statement, so one
/// round trip and one commit. The two updates touch disjoint rows (`sending` ones marked,
/// `pending` ones claimed), so one snapshot serves both.
#[allow(clippy::too_many_arguments)]
async fn postgres_step(
    pool: &sqlx::PgPool,
    issue_id: i64,
    run: &str,
    lease: Option<&str>,
    marks: &[(i64, Mark)],
    claim: usize,
    now: DateTime<Utc>,
    above: i64,
) -> Result<Vec<Claimed>, StoreError> {
    let sent = sent_marks(marks).unwrap_or_else(|| "[]".to_owned());
    let sql = Dialect::Postgres.owned(format!(
        "WITH marked AS ({MARK_SENT_PG} RETURNING deliveries.id),
              claimable AS (SELECT d.id {CLAIMABLE} AND d.id > ?6 ORDER BY d.id LIMIT {claim}
                            FOR UPDATE OF d SKIP LOCKED),
              claimed AS (
                  UPDATE deliveries SET status = 'sending', attempts = attempts + 1,
                         claimed_at = ?1, claimed_by = ?2, updated_at = ?1
                  FROM claimable WHERE deliveries.id = claimable.id
                  RETURNING deliveries.id, deliveries.subscriber_id, deliveries.attempts)
         SELECT c.id, c.subscriber_id, c.attempts, s.email, s.name, s.first_name
         FROM claimed c JOIN subscribers s ON s.id = c.subscriber_id
         ORDER BY c.id"
    ));
    let rows: Vec<ClaimRow> = sqlx::query_as(sql)
        .bind(now)
        .bind(run)
        .bind(issue_id)
        .bind(sent)
        .bind(lease)
        .bind(above)
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().map(claim_of).collect())
}

/// A claimed row as read: the delivery, its subscriber, its attempts (this one included),
/// and the subscriber's address, name and first name.
type ClaimRow = (i64, i64, i64, Text<EmailAddress>, String, String);

fn claim_of((delivery_id, subscriber_id, attempts, email, name, first_name): ClaimRow) -> Claimed {
    Claimed {
        delivery_id,
        subscriber_id,
        email: email.0,
        name,
        first_name,
        attempts: u32::try_from(attempts).unwrap_or(1),
    }
}
