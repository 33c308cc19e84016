//! Use case: import subscriber files (the `subscribers` directory before each send, or one
//! file from `herald subscribers import`), with the suppression rule.

use std::path::Path;

use chrono::{DateTime, Utc};
use tracing::{info, warn};

use super::{App, AppError};
use crate::domain::{EmailAddress, SubscriberName, SubscriberStatus};
use crate::store::{AddOutcome, IMPORT_BATCH, ImportCounts, StoreError, SubscriberRecord};
use crate::subscriber_file::RejectedRow;

/// The outcome of importing one subscriber file.
#[derive(Debug, Clone, Default)]
pub struct FileImport {
    pub counts: ImportCounts,
    /// Bad rows, with their line numbers and reasons.
    pub rejected: Vec<RejectedRow>,
}

impl App {
    /// Adds one address as confirmed (an operator's deliberate act, `herald subscribers
    /// add`); an unsubscribed or bounced address comes back only with `resubscribe`.
    ///
    /// # Errors
    /// A database error.
    #[tracing::instrument(skip_all, fields(source))]
    pub async fn add_subscriber(
        &self,
        email: &EmailAddress,
        name: &SubscriberName,
        source: &str,
        resubscribe: bool,
    ) -> Result<AddOutcome, StoreError> {
        self.store
            .add_subscriber(email, name, source, resubscribe, self.now())
            .await
    }

    /// Unsubscribes an address (`herald subscribers remove`): its status before, or `None`
    /// when it is no subscriber.
    ///
    /// # Errors
    /// A database error.
    #[tracing::instrument(skip_all)]
    pub async fn remove_subscriber(
        &self,
        email: &EmailAddress,
    ) -> Result<Option<SubscriberStatus>, StoreError> {
        self.store.unsubscribe(email, self.now()).await
    }

    /// Every subscriber (of `status`, if given), streamed in address order: read-only, in
    /// constant memory whatever the list's size.
    pub fn subscriber_stream(
        &self,
        status: Option<SubscriberStatus>,
    ) -> impl futures::Stream<Item = Result<SubscriberRecord, StoreError>> + '_ {
        self.store.subscriber_stream(status)
    }

    /// How many subscribers there are of each status.
    ///
    /// # Errors
    /// A database error.
    #[tracing::instrument(skip_all)]
    pub async fn subscriber_counts(
        &self,
    ) -> Result<std::collections::BTreeMap<SubscriberStatus, u64>, StoreError> {
        self.store.subscriber_counts().await
    }

    /// Reads, parses and imports one subscriber file (with the suppression rule): the good
    /// rows are imported, the bad ones returned with their line numbers and reasons.
    ///
    /// # Errors
    /// When the file cannot be read, its header is unusable, or the store fails.
    #[tracing::instrument(skip_all)]
    pub async fn import_subscriber_file(
        &self,
        file: &Path,
        now: DateTime<Utc>,
    ) -> Result<FileImport, AppError> {
        let bad_file = |source| AppError::SubscriberFile {
            file: file.to_path_buf(),
            source,
        };
        let mut reader = crate::subscriber_file::SubscriberReader::new(crate::files::open(file)?)
            .map_err(bad_file)?;
        let source = format!(
            "import:{}",
            file.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        let mut imported = FileImport::default();
        let mut rows = Vec::with_capacity(IMPORT_BATCH);
        loop {
            rows.clear();
            let more = reader
                .next_batch(IMPORT_BATCH, &mut rows, &mut imported.rejected)
                .map_err(bad_file)?;
            imported.counts += self.store.import_subscribers(&rows, &source, now).await?;
            if !more {
                break;
            }
        }
        // Rows whose address may repeat an earlier line: a second read of the file tells.
        let suspects = reader.into_suspects();
        if !suspects.is_empty() {
            let (rows, duplicates) =
                crate::subscriber_file::settle_duplicates(crate::files::open(file)?, suspects)
                    .map_err(bad_file)?;
            imported.counts += self.store.import_subscribers(&rows, &source, now).await?;
            imported.rejected.extend(duplicates);
            imported.rejected.sort_by_key(|r| r.line);
        }
        imported.counts.rejected = imported.rejected.len() as u64;
        Ok(imported)
    }

    /// `herald subscribers import FILE`: [`Self::import_subscriber_file`], and when FILE is
    /// one of the CSV files of `[subscribers] dir`, its content is recorded as imported (as
    /// the import before a send records it), so the next send does not read it again.
    ///
    /// # Errors
    /// As [`Self::import_subscriber_file`].
    #[tracing::instrument(skip_all)]
    pub async fn import_one_subscriber_file(
        &self,
        file: &Path,
        now: DateTime<Utc>,
    ) -> Result<FileImport, AppError> {
        let canonical = |p: &Path| std::fs::canonicalize(p).ok();
        let listed = match canonical(file) {
            Some(wanted) => crate::files::subscriber_csv_files(&self.config.subscribers_dir)
                .unwrap_or_default()
                .into_iter()
                .find(|f| canonical(f).as_ref() == Some(&wanted)),
            None => None,
        };
        // The digest is taken before the rows are read: a file changed in between is
        // imported again by the next send, never skipped.
        let hash = match &listed {
            Some(f) => Some(crate::files::sha256_hex(f)?),
            None => None,
        };
        let imported = self.import_subscriber_file(file, now).await?;
        if let (Some(f), Some(hash)) = (listed, hash) {
            let c = imported.counts;
            self.store
                .record_subscriber_file(
                    &f.display().to_string(),
                    &hash,
                    c.added + c.updated + c.unchanged + c.suppressed,
                    now,
                )
                .await?;
        }
        Ok(imported)
    }

    /// Imports every CSV file of `[subscribers] dir` that changed since its last import (a
    /// SHA-256 of its content is kept in the store; an unchanged file is skipped and counted
    /// in `files_unchanged`), logging each rejected row with its file and line. Returns the
    /// summed counts.
    ///
    /// # Errors
    /// When a file cannot be read or its header is unusable, or the store fails.
    #[tracing::instrument(skip_all)]
    pub async fn import_subscriber_files(
        &self,
        now: DateTime<Utc>,
    ) -> Result<ImportCounts, AppError> {
        let mut total = ImportCounts::default();
        for file in crate::files::subscriber_csv_files(&self.config.subscribers_dir)? {
            let hash = crate::files::sha256_hex(&file)?;
            let key = file.display().to_string();
            if self.store.subscriber_file_hash(&key).await?.as_deref() == Some(hash.as_str()) {
                info!(file = %file.display(), "subscriber file unchanged since its last import; not imported again");
                total.files_unchanged += 1;
                continue;
            }
            let imported = self.import_subscriber_file(&file, now).await?;
            for r in &imported.rejected {
                warn!(file = %file.display(), line = r.line, "subscriber row rejected: {}", r.reason);
            }
            let c = imported.counts;
            info!(file = %file.display(), added = c.added, updated = c.updated, unchanged = c.unchanged, suppressed = c.suppressed, rejected = c.rejected, "imported a subscriber file");
            // Recorded only once the whole file is in: a failed import is done again.
            self.store
                .record_subscriber_file(
                    &key,
                    &hash,
                    c.added + c.updated + c.unchanged + c.suppressed,
                    now,
                )
                .await?;
            total += c;
        }
        Ok(total)
    }
}
