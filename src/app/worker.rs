//! Use case: a delivery worker (`herald worker`, `herald run --role worker`), on a host of its
//! own, delivering rows of the issue being sent through its own relay (`[smtp]`) at its own
//! rate (`[delivery]`), beside the sender and other workers on one PostgreSQL database.
//!
//! The worker holds a lease of its own (`worker:ID`, renewed by a heartbeat). It waits for an
//! issue in `sending` (woken by the sender's `NOTIFY`, or every `poll_seconds`), then runs the
//! same delivery loop as the sender under its lease: rows are claimed with `FOR UPDATE SKIP
//! LOCKED`, so workers never claim the same row, and never more than its `concurrency` at a
//! time, so a worker that dies leaves at most that many ambiguous rows (reported, not
//! resent). A worker whose lease expired stops before its next message.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::lease::worker_lease;
use super::{App, AppError};
use crate::domain::IssueStatus;

impl App {
    /// Delivers as worker `id` until `cancel`: every issue that is being sent, as it comes.
    ///
    /// # Errors
    /// When the store fails at start; later failures are logged and retried.
    #[tracing::instrument(skip_all)]
    pub async fn work(&self, id: &str, cancel: &CancellationToken) -> Result<(), AppError> {
        let lease = worker_lease(id);
        let mut wake_ups = self.store.worker_wake_ups().await?;
        if wake_ups.is_none() {
            warn!(
                "a worker on SQLite: SQLite serves one host, where the sender delivers on its own; \
                 workers are for PostgreSQL"
            );
        }
        if !self.take_lease(&lease, id).await? {
            warn!(lease = %lease, "the worker lease is held by another process");
        }
        let heartbeat = self.lease_heartbeat(&lease, id);
        let poll = Duration::from_secs(u64::from(self.config.schedule.poll_seconds.max(1)));
        info!(worker = %id, "delivery worker ready");
        while !cancel.is_cancelled() {
            if let Err(e) = self.work_once(&lease, id, cancel).await {
                warn!(worker = %id, error = %e, "a delivery run failed; trying again");
            }
            let woken = async {
                match wake_ups.as_mut() {
                    Some(listener) => {
                        if let Err(e) = listener.recv().await {
                            warn!(error = %e, "listening for the sender's wake-ups");
                            tokio::time::sleep(poll).await;
                        }
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = woken => {}
                () = tokio::time::sleep(poll) => {}
                () = cancel.cancelled() => {}
            }
        }
        drop(heartbeat);
        self.release_lease(&lease, id).await?;
        info!(worker = %id, "delivery worker stopped");
        Ok(())
    }

    /// One delivery run of the issue being sent, if there is one.
    async fn work_once(
        &self,
        lease: &str,
        id: &str,
        cancel: &CancellationToken,
    ) -> Result<(), AppError> {
        let now = self.clock.now();
        // Renewed here too, so a worker that was cut off and came back holds its lease again
        // (in its own name: a worker's lease is never another process's).
        if !self.take_lease(lease, id).await? {
            return Ok(());
        }
        let Some(issue) = self.store.unfinished_issue().await? else {
            return Ok(());
        };
        if issue.status != IssueStatus::Sending || issue.send_after.is_some_and(|t| t > now) {
            return Ok(());
        }
        let run = format!("{id}/{}", now.timestamp_millis());
        let rendered = super::issue::frozen_rendering(issue.clone());
        let stop = cancel.clone();
        let summary = self
            .deliver_as_worker(&issue, rendered, run, async move { stop.cancelled().await })
            .await?;
        let c = summary.counts;
        info!(
            worker = %id,
            issue = issue.number,
            sent = c.sent,
            pending = c.pending,
            sending = c.sending,
            ambiguous = summary.ambiguous,
            finished = summary.finished,
            "worker delivery run ended"
        );
        Ok(())
    }
}
