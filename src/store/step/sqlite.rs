//! The delivery step on SQLite: one call to SQLite's thread per step.

use std::collections::HashMap;

use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Row as _, Sqlite, SqliteConnection};

use super::{
    CLAIMABLE, Claimed, LedgerBackend, StepParams, StepRequest, has_rare_marks, record_rare_marks,
};
use crate::domain::EmailAddress;
use crate::store::states::Text;
use crate::store::{Db, StoreError};

/// Marks sent, in one statement, the rows of `$4` (a JSON array of `[id, reply]` pairs, in
/// the numbering of [`StepParams`]) that are still `sending`.
const MARK_SENT: &str = "UPDATE deliveries SET status = 'sent', smtp_reply = m.reply, sent_at = $1,
        updated_at = $1, last_error = NULL, next_attempt_at = NULL
     FROM (SELECT value ->> 0 AS id, value ->> 1 AS reply FROM json_each($4)) AS m
     WHERE deliveries.id = m.id AND deliveries.status = 'sending'";

/// One send's steps on SQLite, on a connection held for the whole send.
///
/// A step is one multi-statement query, so one call to SQLite's thread instead of one round
/// trip per statement: `BEGIN IMMEDIATE`, the sent marks, the claim, the subscribers of the
/// claimed rows, `COMMIT`. A step with rare marks begins the transaction on its own first,
/// records them row by row, then runs the same statements and commits.
pub(super) struct SqliteLedger<'a> {
    conn: PoolConnection<Sqlite>,
    /// The store's turns: a step is a write like any other (see `Store::turns`).
    turns: &'a tokio::sync::Mutex<()>,
}

impl<'a> SqliteLedger<'a> {
    pub(super) fn new(conn: PoolConnection<Sqlite>, turns: &'a tokio::sync::Mutex<()>) -> Self {
        Self { conn, turns }
    }
}

impl LedgerBackend for SqliteLedger<'_> {
    async fn step(&mut self, request: StepRequest<'_>) -> Result<Vec<Claimed>, StoreError> {
        let params = StepParams::of(&request);
        let claim = request.claim;
        // The claim's LIMIT is written into the statement, not bound: SQLite's planner reads a
        // bound LIMIT and then re-prepares the statement every time it is bound again (a
        // fifth of a step's time). At most `concurrency + 1` texts, each prepared once.
        let statements = format!(
            "{MARK_SENT};
             UPDATE deliveries SET status = 'sending', attempts = attempts + 1, claimed_at = $1,
                    claimed_by = $2, updated_at = $1
             WHERE id IN (SELECT d.id {CLAIMABLE} ORDER BY d.id LIMIT {claim})
             RETURNING id, subscriber_id, attempts;
             SELECT s.id AS subscriber, s.email, s.name, s.first_name FROM subscribers s
             WHERE {claim} > 0
               AND s.id IN (SELECT subscriber_id FROM deliveries
                            WHERE issue_id = $3 AND status = 'sending' AND claimed_by = $2);"
        );
        let _turn = self.turns.lock().await;
        let conn = &mut *self.conn;
        let rows = if has_rare_marks(request.marks) {
            with_rare_marks(conn, &request, &params, statements).await
        } else {
            let step = format!("BEGIN IMMEDIATE; {statements} COMMIT;");
            sqlx::query_with(
                sqlx::AssertSqlSafe(step),
                params.arguments::<SqliteArguments>()?,
            )
            .fetch_all(&mut *conn)
            .await
            .map_err(StoreError::from)
        };
        match rows {
            Ok(rows) => claims_of(rows),
            Err(e) => {
                // The transaction may still be open on this connection: end it, or make sure
                // the connection is never used again.
                if let Err(rollback) = sqlx::query("ROLLBACK").execute(conn).await {
                    tracing::debug!(error = %rollback, "ROLLBACK after a failed ledger step");
                }
                Err(e)
            }
        }
    }
}

/// A step with rare marks: the transaction begun, the rare marks recorded row by row, the
/// step's `statements` (which bind [`StepParams`]), the commit.
async fn with_rare_marks(
    conn: &mut SqliteConnection,
    request: &StepRequest<'_>,
    params: &StepParams<'_>,
    statements: String,
) -> Result<Vec<SqliteRow>, StoreError> {
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
    record_rare_marks(Db::Sqlite(&mut *conn), request).await?;
    let rows = sqlx::query_with(
        sqlx::AssertSqlSafe(statements),
        params.arguments::<SqliteArguments>()?,
    )
    .fetch_all(&mut *conn)
    .await?;
    sqlx::query("COMMIT").execute(conn).await?;
    Ok(rows)
}

/// The claimed rows out of a step's rows: first the claimed rows (three columns), then the
/// subscribers of every row this run has in flight (a superset of the claimed rows'
/// subscribers). In delivery id order.
fn claims_of(rows: Vec<SqliteRow>) -> Result<Vec<Claimed>, StoreError> {
    let mut claims = Vec::new();
    let mut people = HashMap::new();
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
