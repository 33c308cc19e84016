//! Leases: one holder at a time per name (the sender lease, each worker's lease), renewed by
//! a heartbeat, taken over once expired or once its process is known to be gone. A run's
//! lease is also the fence of its ledger steps (see `step`).

use chrono::{DateTime, Utc};

use super::{Store, StoreError, per_db};

impl Store {
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
        let mut tx = self.write().await?;
        let changed = per_db!(tx.conn(), c => {
            sqlx::query(
                "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE
                     SET holder = excluded.holder, expires_at = excluded.expires_at
                 WHERE leases.holder = excluded.holder OR leases.expires_at <= $4",
            )
            .bind(name)
            .bind(holder)
            .bind(until)
            .bind(now)
            .execute(c)
            .await?
            .rows_affected()
        });
        tx.commit().await?;
        Ok(changed == 1)
    }

    /// Who holds the lease `name`, and until when.
    ///
    /// # Errors
    /// A database error.
    pub async fn lease_holder(
        &self,
        name: &str,
    ) -> Result<Option<(String, DateTime<Utc>)>, StoreError> {
        Ok(per_db!(&self.pool, db => {
            sqlx::query_as("SELECT holder, expires_at FROM leases WHERE name = $1")
                .bind(name)
                .fetch_optional(db)
                .await?
        }))
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
        let mut tx = self.write().await?;
        let changed = per_db!(tx.conn(), c => {
            sqlx::query(
                "UPDATE leases SET holder = $1, expires_at = $2
                 WHERE name = $3
                 AND holder = $4",
            )
            .bind(holder)
            .bind(until)
            .bind(name)
            .bind(previous)
            .execute(c)
            .await?
            .rows_affected()
        });
        tx.commit().await?;
        Ok(changed == 1)
    }

    /// Gives up a lease held by `holder`.
    ///
    /// # Errors
    /// A database error.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        per_db!(tx.conn(), c => {
            sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
                .bind(name)
                .bind(holder)
                .execute(c)
                .await?;
        });
        tx.commit().await?;
        Ok(())
    }
}
