//! Use case: send now. The one send policy that `herald send` and the daemon's schedule
//! share, so that neither front end decides on its own what may be frozen or sent:
//!
//! 1. the database is checked first (a damaged file could lose the ledger's record of who got
//!    the issue);
//! 2. `--retry-ambiguous` puts the rows an interrupted run left in `sending` back to pending;
//! 3. a new issue is frozen only while the SMTP server answers (an outage must not freeze an
//!    audience nobody can reach yet); an unfinished issue is resumed either way;
//! 4. a manual send with a review window freezes the new issue for review instead of sending
//!    it (the schedule makes its own review freezes ahead of each slot);
//! 5. otherwise the unfinished issue, or a new one frozen now, is delivered.
//!
//! What the front ends do with the outcome (print it and choose an exit code, or log it and
//! record the schedule slot) stays with them.

use std::future::Future;

use chrono::{DateTime, Utc};
use tracing::{info, warn};

use super::delivery::{Progress, SendSummary};
use super::issue::Prepared;
use super::{App, AppError};

/// What a send is asked to do.
pub struct SendRequest<'a> {
    /// The delivery run's id in the ledger (`claimed_by`): the lease holder, or
    /// `HOLDER/...` for one of its runs.
    pub run_id: &'a str,
    /// The schedule slot the send is for (its key and time), or `None` for a manual send.
    pub slot: Option<(&'a str, DateTime<Utc>)>,
    /// Put the rows an interrupted run left in `sending` back to pending first.
    pub retry_ambiguous: bool,
    /// Where delivery progress goes.
    pub progress: &'a dyn Progress,
}

/// What a send did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendReport {
    /// Ambiguous rows put back to pending (with [`SendRequest::retry_ambiguous`]).
    pub retried: u64,
    pub outcome: SendOutcome,
}

/// How a send ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// No issue was unfinished and the SMTP server did not answer: nothing was frozen.
    SmtpUnreachable { reason: String },
    /// A new issue was frozen for the editors' review; it goes out at `goes_out`.
    FrozenForReview {
        number: u32,
        goes_out: DateTime<Utc>,
    },
    /// The unfinished issue is held by an editor.
    Held { number: u32 },
    /// The unfinished issue waits for its review window to end.
    Waiting { number: u32, until: DateTime<Utc> },
    /// Every term of the cycle was sent and `on_exhausted` is "stop".
    Exhausted { cycle: u32 },
    /// The glossary has no terms.
    NoTerms,
    /// The issue was frozen (or found frozen) but a shutdown came before delivery began:
    /// the next run delivers it.
    Interrupted { number: u32 },
    /// The issue was delivered, or its delivery resumed (`resumed`).
    Delivered {
        subject: String,
        /// The schedule slot the issue was made for, if any.
        slot_key: Option<String>,
        resumed: bool,
        summary: SendSummary,
    },
}

impl App {
    /// Sends now under the one send policy (see the module's documentation), as `request`
    /// says, until the issue is delivered or `shutdown` completes.
    ///
    /// # Errors
    /// A damaged database, a store, glossary or template failure (then nothing was frozen).
    #[tracing::instrument(skip_all, fields(run = request.run_id, slot = request.slot.map(|s| s.0)))]
    pub async fn send_now(
        &self,
        request: SendRequest<'_>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<SendReport, AppError> {
        let now = self.now();
        self.store.integrity_check().await?;
        let retried = if request.retry_ambiguous {
            self.store.retry_ambiguous(request.run_id, now).await?
        } else {
            0
        };
        let report = |outcome| Ok(SendReport { retried, outcome });
        if self.store.unfinished_issue().await?.is_none() {
            if let Err(e) = self.check_smtp().await {
                return report(SendOutcome::SmtpUnreachable {
                    reason: e.to_string(),
                });
            }
            if request.slot.is_none()
                && let Some(hours) = self.config.schedule.review_hours
            {
                let goes_out = now + chrono::Duration::hours(i64::from(hours));
                if let Some(number) = self.freeze_for_review(None, now, goes_out, now).await? {
                    return report(SendOutcome::FrozenForReview { number, goes_out });
                }
            }
        }
        self.smtp_down_reported
            .store(false, std::sync::atomic::Ordering::Relaxed);
        let glossary = self.glossary()?;
        let renderer = self.renderer()?;
        let issue_time = request.slot.map_or(now, |(_, t)| t);
        let prepared = self
            .prepare(
                &glossary,
                &renderer,
                now,
                issue_time,
                request.slot.map(|(k, _)| k),
                None,
            )
            .await?;
        let (issue, rendered, resumed) = match prepared {
            Prepared::Ready {
                issue,
                rendered,
                resumed,
                ..
            } => (issue, rendered, resumed),
            Prepared::Exhausted { cycle } => return report(SendOutcome::Exhausted { cycle }),
            Prepared::NoTerms => return report(SendOutcome::NoTerms),
            Prepared::Held { number } => return report(SendOutcome::Held { number }),
            Prepared::Waiting { number, until } => {
                return report(SendOutcome::Waiting { number, until });
            }
        };
        let mut shutdown = std::pin::pin!(shutdown);
        if futures::FutureExt::now_or_never(shutdown.as_mut()).is_some() {
            // Shutting down: the issue is frozen, and the next run delivers it.
            return report(SendOutcome::Interrupted {
                number: issue.number,
            });
        }
        let started = std::time::Instant::now();
        let summary = self
            .deliver(
                &issue,
                rendered,
                request.run_id.to_owned(),
                request.progress,
                shutdown,
            )
            .await?;
        self.health.sent(started.elapsed());
        report(SendOutcome::Delivered {
            subject: issue.subject,
            slot_key: issue.slot_key,
            resumed,
            summary,
        })
    }

    /// Says that the SMTP server did not answer when a scheduled issue was due: a warning
    /// once per outage (until a send gets past the pre-flight), a debug line after that, so
    /// a daemon waking every minute does not repeat itself.
    pub(super) fn report_smtp_down(&self, slot: &str, reason: &str) {
        if self
            .smtp_down_reported
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::debug!(
                slot,
                reason,
                "SMTP server still unreachable: nothing frozen"
            );
        } else {
            warn!(
                slot,
                reason,
                "SMTP server unreachable at a scheduled send: no issue was frozen; trying again at each wake-up"
            );
        }
    }

    /// Logs how a delivery run ended.
    pub(super) fn log_delivery(&self, number: u32, summary: &SendSummary) {
        let c = &summary.counts;
        info!(
            issue = number,
            sent = c.sent,
            failed = c.failed,
            bounced = c.bounced,
            pending = c.pending,
            ambiguous = summary.ambiguous,
            "delivery run finished"
        );
    }
}
