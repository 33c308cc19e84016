//! Use case: what happened to the issues so far (`herald issues list | show`), and the
//! read-only listings the CLI prints (feeds, schedule slots).

use super::App;
use crate::domain::DeliveryStatus;
use crate::store::{DeliveryRow, FeedState, LedgerCounts, SlotRecord, StoreError, StoredIssue};

/// How many ledger rows of each kind `show` lists at most.
const ROWS_SHOWN: u32 = 1000;

/// One issue with its ledger counts.
#[derive(Debug, Clone)]
pub struct IssueSummary {
    pub issue: StoredIssue,
    pub counts: LedgerCounts,
}

/// One issue in detail: its links and the ledger rows an operator has to look at.
#[derive(Debug, Clone)]
pub struct IssueReport {
    pub summary: IssueSummary,
    /// The links' URLs, in issue order.
    pub links: Vec<String>,
    /// Rows that failed permanently or bounced.
    pub failures: Vec<DeliveryRow>,
    /// Rows left in `sending`: in flight during a send, ambiguous after a crash.
    pub ambiguous: Vec<DeliveryRow>,
    /// Pending rows that already failed at least once (waiting for a retry).
    pub pending_with_errors: Vec<DeliveryRow>,
}

impl App {
    /// Each feed's last fetch and its state, by feed URL.
    ///
    /// # Errors
    /// A database error.
    #[tracing::instrument(skip_all)]
    pub async fn feed_states(
        &self,
    ) -> Result<std::collections::HashMap<String, FeedState>, StoreError> {
        self.store.feed_states().await
    }

    /// The schedule's last `limit` slots and what became of them, newest first.
    ///
    /// # Errors
    /// A database error.
    #[tracing::instrument(skip_all)]
    pub async fn recent_slots(&self, limit: u32) -> Result<Vec<SlotRecord>, StoreError> {
        self.store.recent_slots(limit).await
    }

    /// Every issue, newest first, with its ledger counts.
    ///
    /// # Errors
    /// A database error.
    #[tracing::instrument(skip_all)]
    pub async fn issue_summaries(&self) -> Result<Vec<IssueSummary>, StoreError> {
        let mut out = Vec::new();
        for issue in self.store.issues().await? {
            let counts = self.store.ledger_counts(issue.id).await?;
            out.push(IssueSummary { issue, counts });
        }
        Ok(out)
    }

    /// Issue `number` in detail, or `None` when there is no such issue.
    ///
    /// # Errors
    /// A database error.
    #[tracing::instrument(skip_all, fields(issue = number))]
    pub async fn issue_report(&self, number: u32) -> Result<Option<IssueReport>, StoreError> {
        let store = &self.store;
        let Some(issue) = store.issue(number).await? else {
            return Ok(None);
        };
        let rows = |statuses: &'static [DeliveryStatus]| {
            store.deliveries_with_status(issue.id, statuses, ROWS_SHOWN)
        };
        let failures = rows(&[DeliveryStatus::Failed, DeliveryStatus::Bounced]).await?;
        let ambiguous = rows(&[DeliveryStatus::Sending]).await?;
        let pending_with_errors = rows(&[DeliveryStatus::Pending])
            .await?
            .into_iter()
            .filter(|r| r.last_error.is_some())
            .collect();
        let links = store
            .issue_links(issue.id)
            .await?
            .into_iter()
            .map(|l| l.url)
            .collect();
        let counts = store.ledger_counts(issue.id).await?;
        Ok(Some(IssueReport {
            summary: IssueSummary { issue, counts },
            links,
            failures,
            ambiguous,
            pending_with_errors,
        }))
    }
}
