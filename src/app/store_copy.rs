//! Use case: move an installation's database from SQLite to PostgreSQL (`herald store copy`).

use tracing::info;

use super::{App, AppError};
use crate::store::{CopyError, Store};

/// Why a copy failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreCopyError {
    #[error("`herald store copy` copies to PostgreSQL: --to postgres://USER@HOST/DATABASE")]
    NotPostgres,
    #[error(transparent)]
    Copy(#[from] CopyError),
    #[error(transparent)]
    App(#[from] AppError),
}

impl App {
    /// Copies this installation's SQLite database into the empty PostgreSQL database at
    /// `to` (migrated first), table by table, each one logged. Returns the rows per table.
    ///
    /// # Errors
    /// [`StoreCopyError`]; the target is then left as it was (empty, migrated).
    #[tracing::instrument(skip_all)]
    pub async fn copy_store_to(
        &self,
        to: &str,
    ) -> Result<Vec<(&'static str, i64)>, StoreCopyError> {
        if !crate::store::is_postgres_url(to) {
            return Err(StoreCopyError::NotPostgres);
        }
        let target = Store::open(to).await.map_err(AppError::from)?;
        let copied = self
            .store
            .copy_into(&target, |table, rows| info!(table, rows, "copied"))
            .await;
        target.close().await;
        Ok(copied?)
    }
}
