//! The delivery step on PostgreSQL: one statement per step.

use sqlx::postgres::PgArguments;
use sqlx::{Arguments as _, PgConnection, PgPool};

use super::{
    CLAIMABLE, Claimed, LedgerBackend, StepParams, StepRequest, has_rare_marks, record_rare_marks,
};
use crate::domain::EmailAddress;
use crate::store::states::Text;
use crate::store::{Db, StoreError};

/// Marks sent, in one statement, the rows of `$4` (a JSON array of `[id, reply]` pairs, in
/// the numbering of [`StepParams`]) that are still `sending`. The ids again as an array, so
/// that the planner finds the rows by primary key (with only the join, it reads the whole
/// ledger to hash it).
const MARK_SENT: &str = "UPDATE deliveries SET status = 'sent', smtp_reply = m.reply, sent_at = $1,
        updated_at = $1, last_error = NULL, next_attempt_at = NULL
     FROM (SELECT (value ->> 0)::bigint AS id, value ->> 1 AS reply
           FROM jsonb_array_elements($4::jsonb) AS value) AS m
     WHERE deliveries.id = m.id AND deliveries.status = 'sending'
       AND deliveries.id = ANY (ARRAY(SELECT (value ->> 0)::bigint
                                      FROM jsonb_array_elements($4::jsonb) AS value))";

/// One send's steps on PostgreSQL. A step is one statement (the sent marks, the claim and
/// the claimed rows' subscribers), so one round trip and one commit; a step with rare marks
/// records them first, in a transaction with the same statement.
///
/// Steps of several workers run side by side: without the writers' advisory lock (see
/// `Store::write`), a step locks the rows it claims and skips those another has locked
/// (`FOR UPDATE SKIP LOCKED`), and marks only rows its run claimed.
pub(super) struct PostgresLedger<'a> {
    pool: &'a PgPool,
    /// The largest id this session claimed: the next claim looks above it first. Every claim
    /// leaves a dead version of the row's `pending` index entry until vacuum, and a claim
    /// that started from the first row would step over all of them.
    cursor: i64,
}

impl<'a> PostgresLedger<'a> {
    pub(super) fn new(pool: &'a PgPool) -> Self {
        Self { pool, cursor: 0 }
    }

    /// The step's statement above the cursor, then, when that claimed fewer rows than asked
    /// for, once more from the first row: rows below the cursor came back (retries) or were
    /// skipped while another worker had them locked.
    async fn mark_and_claim(
        &mut self,
        conn: &mut PgConnection,
        params: &StepParams<'_>,
        claim: usize,
    ) -> Result<Vec<Claimed>, StoreError> {
        let mut claimed = mark_and_claim_above(conn, params, claim, self.cursor).await?;
        if claimed.len() < claim && self.cursor > 0 {
            self.cursor = 0;
            let rest = claim - claimed.len();
            let more = mark_and_claim_above(conn, &params.without_marks(), rest, 0).await?;
            claimed.extend(more);
        }
        if let Some(last) = claimed.iter().map(|c| c.delivery_id).max() {
            self.cursor = self.cursor.max(last);
        }
        Ok(claimed)
    }
}

impl LedgerBackend for PostgresLedger<'_> {
    async fn step(&mut self, request: StepRequest<'_>) -> Result<Vec<Claimed>, StoreError> {
        let params = StepParams::of(&request);
        if !has_rare_marks(request.marks) {
            let mut conn = self.pool.acquire().await?;
            return self.mark_and_claim(&mut conn, &params, request.claim).await;
        }
        let mut tx = self.pool.begin().await?;
        record_rare_marks(Db::Postgres(&mut *tx), &request).await?;
        let claimed = self.mark_and_claim(&mut tx, &params, request.claim).await?;
        tx.commit().await?;
        Ok(claimed)
    }
}

/// The sent marks, the claim of up to `claim` rows with ids above `above` (`FOR UPDATE SKIP
/// LOCKED`, fenced by the lease) and the claimed rows' subscribers, in one statement. The two
/// updates touch disjoint rows (`sending` ones marked, `pending` ones claimed), so one
/// snapshot serves both.
async fn mark_and_claim_above(
    conn: &mut PgConnection,
    params: &StepParams<'_>,
    claim: usize,
    above: i64,
) -> Result<Vec<Claimed>, StoreError> {
    // `$1` to `$5` as every step binds them, then `$6` the cursor. The LIMIT is written in,
    // as on SQLite: one statement text per claim size.
    let sql = format!(
        "WITH marked AS ({MARK_SENT} RETURNING deliveries.id),
              claimable AS (SELECT d.id {CLAIMABLE} AND d.id > $6 ORDER BY d.id LIMIT {claim}
                            FOR UPDATE OF d SKIP LOCKED),
              claimed AS (
                  UPDATE deliveries SET status = 'sending', attempts = attempts + 1,
                         claimed_at = $1, claimed_by = $2, updated_at = $1
                  FROM claimable WHERE deliveries.id = claimable.id
                  RETURNING deliveries.id, deliveries.subscriber_id, deliveries.attempts)
         SELECT c.id, c.subscriber_id, c.attempts, s.email, s.name, s.first_name
         FROM claimed c JOIN subscribers s ON s.id = c.subscriber_id
         ORDER BY c.id"
    );
    let mut arguments: PgArguments = params.arguments()?;
    arguments.add(above).map_err(sqlx::Error::Encode)?;
    let rows: Vec<ClaimRow> = sqlx::query_as_with(sqlx::AssertSqlSafe(sql), arguments)
        .fetch_all(conn)
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
