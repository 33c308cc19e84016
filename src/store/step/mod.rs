//! The delivery step, the hot path of a send: in one transaction, record how the finished
//! attempts ended and claim the next rows, with one backend per database
//! ([`LedgerBackend`]: `sqlite`, `postgres`), each taking as few round trips and commits as
//! its database allows.
//!
//! Every state change of a delivery is a committed transaction: a row is claimed
//! (pending -> sending, attempt counted) before its SMTP transaction starts, and marked
//! (sent, failed, bounced, or back to pending) after it ends. Marks and the next claims share
//! one transaction, so rows in `sending` never outnumber the workers: after a crash at most
//! `concurrency` rows are ambiguous.
//!
//! The common mark, "sent", is one statement for the whole step however many rows it
//! carries; the rare ones (retry, failed, bounced, ambiguous, unclaim) go row by row, first,
//! in the same transaction ([`record_rare_marks`]).

mod postgres;
mod sqlite;

use chrono::{DateTime, Utc};

use super::states::Text;
use super::{Conn, Db, Store, StoreError, per_db};
use crate::domain::{DeliveryStatus, EmailAddress};

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

/// One step of a send: what to record and how many rows to claim.
#[derive(Debug, Clone, Copy)]
pub struct StepRequest<'a> {
    /// The issue being sent.
    pub issue_id: i64,
    /// The run taking the step: it becomes the claimed rows' `claimed_by`, and rows it gave
    /// up on for this run (`deferred_by`) are not claimed again.
    pub run: &'a str,
    /// The lease the run holds, its fence: the step claims only while the database still has
    /// this lease unexpired (see [`CLAIMABLE`]). `None` for a run without a lease.
    pub lease: Option<&'a str>,
    /// How the attempts that finished since the last step ended, by delivery id.
    pub marks: &'a [(i64, Mark)],
    /// How many rows to claim (the idle workers); 0 records the marks only.
    pub claim: usize,
    /// The step's time.
    pub now: DateTime<Utc>,
}

/// One database's way of taking a step. Every backend records exactly the same: the
/// request's marks, then up to `claim` claims of the rows [`CLAIMABLE`] finds, oldest first,
/// in one transaction (a claim's attempt counted, `claimed_by` the run).
pub(crate) trait LedgerBackend {
    /// Takes one step and returns the rows it claimed.
    ///
    /// # Errors
    /// A database error; then neither the marks nor the claims are recorded.
    async fn step(&mut self, request: StepRequest<'_>) -> Result<Vec<Claimed>, StoreError>;
}

/// One send's ledger steps, on the backend of its database: on SQLite a connection held for
/// the whole send, on PostgreSQL the pool and a cursor (see each backend).
pub struct LedgerSession<'a> {
    backend: Db<sqlite::SqliteLedger<'a>, postgres::PostgresLedger<'a>>,
}

impl std::fmt::Debug for LedgerSession<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LedgerSession")
    }
}

impl LedgerSession<'_> {
    /// One step of a send, in one transaction: records how finished attempts ended, then
    /// claims up to `request.claim` pending rows whose time has come (oldest first; only
    /// subscribers still confirmed; only while the run's lease holds) for `request.run`.
    ///
    /// # Errors
    /// A database error; then neither the marks nor the claims are recorded. (On PostgreSQL a
    /// step whose claim looked above the session's cursor and fell short looks again from the
    /// first row in a second statement: when only that one fails, the first one's marks and
    /// claims are recorded, as they would be by a step of their own.)
    pub async fn step(&mut self, request: StepRequest<'_>) -> Result<Vec<Claimed>, StoreError> {
        per_db!(&mut self.backend, backend => { backend.step(request).await })
    }
}

impl Store {
    /// A session for one send's ledger steps (see [`LedgerSession`]).
    ///
    /// # Errors
    /// A database error (on SQLite, no connection could be had).
    pub async fn ledger_session(&self) -> Result<LedgerSession<'_>, StoreError> {
        let backend = match &self.pool {
            Db::Sqlite(pool) => Db::Sqlite(sqlite::SqliteLedger::new(
                pool.acquire().await?,
                &self.turns,
            )),
            Db::Postgres(pool) => Db::Postgres(postgres::PostgresLedger::new(pool)),
        };
        Ok(LedgerSession { backend })
    }
}

/// The rows a step may claim, as the `FROM ... WHERE ...` of a `SELECT d.id` (`d` the
/// delivery, `s` its subscriber), in the numbering of [`StepParams`]: pending rows of issue
/// `$3` whose subscriber is still confirmed, whose retry time has come by `$1`, and that run
/// `$2` did not give up on.
///
/// The fence: a run that holds a lease (`$5`) claims only while the database still has that
/// lease unexpired and in its name, so a sender or worker whose lease expired or was taken
/// (it stalled, or lost the database for a while) claims nothing more, whatever its clock
/// says.
const CLAIMABLE: &str = "FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id
     WHERE d.issue_id = $3 AND d.status = 'pending' AND s.status = 'confirmed'
       AND (d.next_attempt_at IS NULL OR d.next_attempt_at <= $1)
       AND (d.deferred_by IS NULL OR d.deferred_by <> $2)
       AND ($5 IS NULL OR EXISTS (SELECT 1 FROM leases l WHERE l.holder = $5 AND l.expires_at > $1))";

/// The values a step's statement binds, by number. [`CLAIMABLE`] and each backend's
/// statement (its sent marks, its claim) are written against these numbers, and bind every
/// one of them, in this order, with [`StepParams::arguments`].
#[derive(Debug, Clone)]
struct StepParams<'a> {
    /// `$1`: the step's time.
    now: DateTime<Utc>,
    /// `$2`: the run.
    run: &'a str,
    /// `$3`: the issue.
    issue_id: i64,
    /// `$4`: the "sent" marks, a JSON array of `[id, reply]` pairs (`[]` for none).
    sent: String,
    /// `$5`: the run's lease, its fence (NULL for none).
    lease: Option<&'a str>,
}

impl<'a> StepParams<'a> {
    fn of(request: &StepRequest<'a>) -> Self {
        let sent: Vec<(i64, &str)> = request
            .marks
            .iter()
            .filter_map(|(id, m)| match m {
                Mark::Sent { reply } => Some((*id, reply.as_str())),
                _ => None,
            })
            .collect();
        Self {
            now: request.now,
            run: request.run,
            issue_id: request.issue_id,
            sent: serde_json::to_string(&sent).expect("ids and strings serialise"),
            lease: request.lease,
        }
    }

    /// The same step without its "sent" marks (for a second claim, once they are recorded).
    fn without_marks(&self) -> Self {
        Self {
            sent: "[]".to_owned(),
            ..self.clone()
        }
    }

    /// `$1` to `$5`, for `sqlx::query_with` on either database.
    fn arguments<A: sqlx::Arguments>(&self) -> Result<A, sqlx::Error>
    where
        for<'t> DateTime<Utc>: sqlx::Encode<'t, A::Database> + sqlx::Type<A::Database>,
        for<'t> &'t str: sqlx::Encode<'t, A::Database> + sqlx::Type<A::Database>,
        for<'t> i64: sqlx::Encode<'t, A::Database> + sqlx::Type<A::Database>,
        for<'t> Option<&'t str>: sqlx::Encode<'t, A::Database> + sqlx::Type<A::Database>,
    {
        let mut arguments = A::default();
        arguments.add(self.now).map_err(sqlx::Error::Encode)?;
        arguments.add(self.run).map_err(sqlx::Error::Encode)?;
        arguments.add(self.issue_id).map_err(sqlx::Error::Encode)?;
        arguments
            .add(self.sent.as_str())
            .map_err(sqlx::Error::Encode)?;
        arguments.add(self.lease).map_err(sqlx::Error::Encode)?;
        Ok(arguments)
    }
}

/// Whether a step carries marks other than "sent", which go row by row.
fn has_rare_marks(marks: &[(i64, Mark)]) -> bool {
    marks.iter().any(|(_, m)| !matches!(m, Mark::Sent { .. }))
}

/// Records a step's marks other than "sent", row by row, on `conn` inside the step's
/// transaction. A mark changes its row only while the row is still `sending`.
async fn record_rare_marks(conn: Conn<'_>, request: &StepRequest<'_>) -> Result<(), StoreError> {
    let now = request.now;
    per_db!(conn, c => {
        for (delivery_id, mark) in request.marks {
            match mark {
                Mark::Sent { .. } => {}
                Mark::Retry {
                    error,
                    retry_at,
                    give_up_this_run,
                } => {
                    sqlx::query(
                        "UPDATE deliveries SET status = 'pending', last_error = $1,
                                next_attempt_at = $2, updated_at = $3, deferred_by = $4
                         WHERE id = $5 AND status = 'sending'",
                    )
                    .bind(error.as_str())
                    .bind(retry_at)
                    .bind(now)
                    .bind(give_up_this_run.then_some(request.run))
                    .bind(delivery_id)
                    .execute(&mut *c)
                    .await?;
                }
                Mark::Ambiguous { error } => {
                    sqlx::query(
                        "UPDATE deliveries SET claimed_by = NULL, last_error = $1, updated_at = $2
                         WHERE id = $3 AND status = 'sending'",
                    )
                    .bind(error.as_str())
                    .bind(now)
                    .bind(delivery_id)
                    .execute(&mut *c)
                    .await?;
                }
                Mark::Unclaim => {
                    sqlx::query(
                        "UPDATE deliveries SET status = 'pending',
                         attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END,
                         updated_at = $1 WHERE id = $2 AND status = 'sending'",
                    )
                    .bind(now)
                    .bind(delivery_id)
                    .execute(&mut *c)
                    .await?;
                }
                Mark::Failed { error } | Mark::Bounced { error } => {
                    let status = if matches!(mark, Mark::Bounced { .. }) {
                        sqlx::query(
                            "UPDATE subscribers SET status = 'bounced', bounced_at = $1,
                                    updated_at = $1
                             WHERE id = (SELECT subscriber_id FROM deliveries WHERE id = $2)
                               AND status <> 'unsubscribed'",
                        )
                        .bind(now)
                        .bind(delivery_id)
                        .execute(&mut *c)
                        .await?;
                        DeliveryStatus::Bounced
                    } else {
                        DeliveryStatus::Failed
                    };
                    sqlx::query(
                        "UPDATE deliveries SET status = $4, last_error = $1, smtp_reply = $1,
                                updated_at = $2
                         WHERE id = $3 AND status = 'sending'",
                    )
                    .bind(error.as_str())
                    .bind(now)
                    .bind(delivery_id)
                    .bind(Text(status))
                    .execute(&mut *c)
                    .await?;
                }
            }
        }
    });
    Ok(())
}
