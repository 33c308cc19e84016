//! Send rates shared by every process sending through one relay: token buckets in the
//! database (`rate_buckets`), one per relay and span (a second, an hour).

use chrono::{DateTime, Utc};

use super::{Store, StoreError, per_db};

/// A relay's limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RelayRate {
    /// Messages per second; `None` is unlimited.
    pub per_second: Option<f64>,
    /// Messages per hour; `None` is unlimited.
    pub per_hour: Option<u32>,
}

impl RelayRate {
    /// The buckets: (span, capacity, tokens per second).
    fn buckets(self) -> Vec<(&'static str, f64, f64)> {
        let mut b = Vec::new();
        if let Some(rate) = self.per_second {
            // A second's worth at most (at least one message), as the in-process limiter.
            b.push(("second", rate.max(1.0), rate));
        }
        if let Some(n) = self.per_hour {
            b.push(("hour", f64::from(n), f64::from(n) / 3600.0));
        }
        b
    }
}

impl Store {
    /// Takes up to `want` send tokens of `relay` at `now`. Returns how many were granted and,
    /// when none was, how long until one is.
    ///
    /// # Errors
    /// A database error.
    pub async fn take_send_tokens(
        &self,
        relay: &str,
        rate: RelayRate,
        want: u32,
        now: DateTime<Utc>,
    ) -> Result<(u32, std::time::Duration), StoreError> {
        let buckets = rate.buckets();
        if buckets.is_empty() || want == 0 {
            return Ok((want, std::time::Duration::ZERO));
        }
        // PostgreSQL's workers take tokens side by side: each locks its relay's rows until it
        // commits. On SQLite the write transaction already keeps every other writer out.
        let read_bucket = if self.is_postgres() {
            "SELECT tokens, updated_at FROM rate_buckets WHERE relay = $1 AND span = $2 FOR UPDATE"
        } else {
            "SELECT tokens, updated_at FROM rate_buckets WHERE relay = $1 AND span = $2"
        };
        let mut tx = self.delivery_write().await?;
        let mut granted = want;
        let mut levels = Vec::with_capacity(buckets.len());
        for (span, capacity, per_second) in &buckets {
            let (tokens, updated): (f64, DateTime<Utc>) = per_db!(tx.conn(), c => {
                sqlx::query(
                    "INSERT INTO rate_buckets (relay, span, tokens, updated_at)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (relay, span) DO NOTHING",
                )
                .bind(relay)
                .bind(*span)
                .bind(*capacity)
                .bind(now)
                .execute(&mut *c)
                .await?;
                sqlx::query_as(read_bucket)
                    .bind(relay)
                    .bind(*span)
                    .fetch_one(c)
                    .await?
            });
            let elapsed = (now - updated).to_std().unwrap_or_default().as_secs_f64();
            let level = (tokens + elapsed * per_second).min(*capacity);
            granted = granted.min(level.floor().max(0.0) as u32);
            levels.push((span, level, per_second));
        }
        let mut wait = std::time::Duration::ZERO;
        for (span, level, per_second) in levels {
            let left = level - f64::from(granted);
            if granted == 0 {
                wait = wait.max(std::time::Duration::from_secs_f64(
                    ((1.0 - left) / per_second).max(0.0),
                ));
            }
            per_db!(tx.conn(), c => {
                sqlx::query(
                    "UPDATE rate_buckets SET tokens = $1, updated_at = $2
                     WHERE relay = $3 AND span = $4",
                )
                .bind(left)
                .bind(now)
                .bind(relay)
                .bind(*span)
                .execute(c)
                .await?;
            });
        }
        tx.commit().await?;
        Ok((granted, wait))
    }
}
