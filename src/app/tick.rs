//! Use case: one step of the daemon's schedule. Send what is due, freeze for review what is
//! about to be, or nothing. The daemon calls it on every wake-up; tests call it directly.
//!
//! Each slot is recorded in the store under a unique key, and an issue made for a slot
//! carries that key (also unique), so one slot yields at most one issue whatever restarts or
//! extra daemons happen. Only the holder of the sender lease acts.

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::delivery::Silent;
use super::send::{SendOutcome, SendRequest};
use super::{App, AppError};
use crate::domain::{IssueStatus, SlotOutcome};
use crate::schedule::{self, LatestAction, ScheduleRules, ScheduleState};
use crate::store::StoreError;

/// What one tick did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TickOutcome {
    /// Another daemon holds the sender lease.
    Standby,
    /// Nothing was due.
    Idle,
    /// An issue was delivered (or resumed); `finished` when no row is left pending.
    Delivered { number: u32, finished: bool },
    /// An issue was frozen for review and the editors were sent a copy.
    FrozenForReview { number: u32 },
    /// The latest slot was too old to send.
    Missed { slot: String },
    /// The glossary is exhausted (`on_exhausted = "stop"`) or empty.
    NoIssue { reason: String },
    /// The unfinished issue is held or waiting for its slot.
    Waiting { number: u32 },
    /// A slot was due but the SMTP server did not answer: nothing was frozen, and the slot
    /// is tried again at the next wake-up.
    SmtpUnreachable { reason: String },
}

impl App {
    /// What the schedule knows now: the latest and next slots, and which are handled.
    ///
    /// # Errors
    /// A database error.
    #[tracing::instrument(skip_all)]
    pub async fn schedule_state(&self, now: DateTime<Utc>) -> Result<ScheduleState, StoreError> {
        let (config, store) = (&self.config, &self.store);
        let latest = schedule::latest_slot(&config.schedule.cron, config.schedule.timezone, now);
        let next = schedule::next_slot(&config.schedule.cron, config.schedule.timezone, now);
        let first_start = store.first_daemon_start(now).await?;
        let last_issue_at = store.last_issue().await?.map(|l| l.created_at);
        let latest_handled = match latest {
            Some(slot) => {
                schedule::served_or_before_start(slot, first_start, last_issue_at)
                    || store.slot_recorded(&schedule::slot_key(slot)).await?
            }
            None => true,
        };
        let next_recorded = match next {
            Some(slot) => store.slot_recorded(&schedule::slot_key(slot)).await?,
            None => true,
        };
        Ok(ScheduleState {
            latest,
            latest_handled,
            next,
            next_recorded,
        })
    }

    /// The schedule's rules from the configuration.
    pub fn schedule_rules(&self) -> ScheduleRules {
        let s = &self.config.schedule;
        ScheduleRules {
            catch_up_hours: s.catch_up_hours,
            review_hours: s.review_hours,
            poll: chrono::Duration::seconds(i64::from(s.poll_seconds)),
        }
    }

    /// One step of the schedule for the daemon `run_id`. `stop` ends a delivery early
    /// (messages in flight are finished, nothing new is claimed).
    ///
    /// # Errors
    /// A store, template or glossary failure.
    #[tracing::instrument(skip_all)]
    pub async fn tick(
        &self,
        run_id: &str,
        stop: &CancellationToken,
    ) -> Result<TickOutcome, AppError> {
        let now = self.clock.now();
        self.health.ticked(now);
        if !self.take_sender_lease(run_id).await? {
            return Ok(TickOutcome::Standby);
        }
        let (config, store) = (&self.config, &self.store);

        // An unfinished issue comes first: resume it, or wait for its slot.
        if let Some(issue) = store.unfinished_issue().await? {
            if issue.status == IssueStatus::Held || issue.send_after.is_some_and(|t| t > now) {
                return Ok(TickOutcome::Waiting {
                    number: issue.number,
                });
            }
            return self.send_for_slot(run_id, None, now, stop).await;
        }

        let plan = schedule::plan_tick(self.schedule_state(now).await?, self.schedule_rules(), now);
        let mut missed = None;
        match plan.latest {
            Some(LatestAction::Send(slot)) => {
                let key = schedule::slot_key(slot);
                if !store
                    .claim_slot(&key, slot, SlotOutcome::Claimed, "", now)
                    .await?
                {
                    return Ok(TickOutcome::Idle);
                }
                info!(slot = %key, "slot due: sending");
                return self
                    .send_for_slot(run_id, Some((key, slot)), now, stop)
                    .await;
            }
            Some(LatestAction::Review { slot, goes_out }) => {
                // Caught up: this issue has had no review yet; it gets a window of its own.
                let key = schedule::slot_key(slot);
                if !store
                    .claim_slot(
                        &key,
                        slot,
                        SlotOutcome::Claimed,
                        "caught up: frozen for review",
                        now,
                    )
                    .await?
                {
                    return Ok(TickOutcome::Idle);
                }
                return self.freeze_slot_for_review(&key, slot, goes_out, now).await;
            }
            Some(LatestAction::Missed(slot)) => {
                let key = schedule::slot_key(slot);
                let detail = format!(
                    "noticed {} h late, beyond catch_up_hours",
                    (now - slot).num_hours()
                );
                if store
                    .claim_slot(&key, slot, SlotOutcome::Missed, &detail, now)
                    .await?
                {
                    warn!(slot = %key, "a slot passed while the daemon was down, longer ago than catch_up_hours: skipped");
                    missed = Some(key);
                }
            }
            Some(LatestAction::TooLateForReview(slot)) => {
                let key = schedule::slot_key(slot);
                let detail = format!(
                    "noticed {} h late: a {} h review window would end after catch_up_hours",
                    (now - slot).num_hours(),
                    config.schedule.review_hours.unwrap_or(0)
                );
                if store
                    .claim_slot(&key, slot, SlotOutcome::Missed, &detail, now)
                    .await?
                {
                    warn!(slot = %key, "{detail}: skipped, not sent unreviewed");
                    missed = Some(key);
                }
            }
            None => {}
        }
        if let Some((next, goes_out)) = plan.review_next {
            let key = schedule::slot_key(next);
            if store
                .claim_slot(&key, next, SlotOutcome::Claimed, "frozen for review", now)
                .await?
            {
                return self.freeze_slot_for_review(&key, next, goes_out, now).await;
            }
        }
        Ok(missed.map_or(TickOutcome::Idle, |slot| TickOutcome::Missed { slot }))
    }

    /// Sends the unfinished issue, or the slot's new one, under the one send policy
    /// ([`App::send_now`]), and records what became of the slot. A slot whose issue could not
    /// be made (nothing was frozen: the SMTP server did not answer, a broken glossary or
    /// template) is forgotten, so the next wake-up tries it again within the catch-up window.
    async fn send_for_slot(
        &self,
        run_id: &str,
        slot: Option<(String, DateTime<Utc>)>,
        now: DateTime<Utc>,
        stop: &CancellationToken,
    ) -> Result<TickOutcome, AppError> {
        let store = &self.store;
        let slot_key = slot.as_ref().map(|(k, _)| k.as_str());
        // Each delivery run has an id of its own, so rows this daemon deferred in an earlier
        // run are retried in this one.
        let run = format!("{run_id}/{}", now.timestamp_millis());
        let cancel = stop.clone();
        let request = SendRequest {
            run_id: &run,
            slot: slot.as_ref().map(|(k, t)| (k.as_str(), *t)),
            retry_ambiguous: false,
            progress: &Silent,
        };
        let sent = self
            .send_now(request, async move { cancel.cancelled().await })
            .await;
        let outcome = match sent {
            Ok(report) => report.outcome,
            Err(e) => {
                if let Some(key) = slot_key
                    && !matches!(e, AppError::Delivery(_))
                {
                    store.forget_slot(key).await?;
                }
                return Err(e);
            }
        };
        match outcome {
            SendOutcome::SmtpUnreachable { reason } => {
                if let Some(key) = slot_key {
                    store.forget_slot(key).await?;
                    self.report_smtp_down(key, &reason);
                }
                Ok(TickOutcome::SmtpUnreachable { reason })
            }
            SendOutcome::Exhausted { cycle } => {
                let reason =
                    format!("every term was sent in cycle {cycle} and on_exhausted is \"stop\"");
                warn!("no issue: {reason}");
                if let Some(key) = slot_key {
                    store
                        .finish_slot(key, SlotOutcome::Exhausted, None, &reason, now)
                        .await?;
                }
                Ok(TickOutcome::NoIssue { reason })
            }
            SendOutcome::NoTerms => {
                let reason = "the glossary has no terms".to_owned();
                if let Some(key) = slot_key {
                    store
                        .finish_slot(key, SlotOutcome::Failed, None, &reason, now)
                        .await?;
                }
                Ok(TickOutcome::NoIssue { reason })
            }
            SendOutcome::Held { number }
            | SendOutcome::Waiting { number, .. }
            | SendOutcome::Interrupted { number }
            | SendOutcome::FrozenForReview { number, .. } => Ok(TickOutcome::Waiting { number }),
            SendOutcome::Delivered {
                summary, slot_key, ..
            } => {
                let number = summary.issue_number;
                self.log_delivery(number, &summary);
                let slot_key = slot.map(|(key, _)| key).or(slot_key);
                if let Some(key) = slot_key {
                    let outcome = if summary.finished {
                        SlotOutcome::Sent
                    } else {
                        SlotOutcome::Claimed
                    };
                    let c = &summary.counts;
                    store
                        .finish_slot(
                            &key,
                            outcome,
                            Some(number),
                            &format!("sent {}, pending {}", c.sent, c.pending),
                            self.clock.now(),
                        )
                        .await?;
                }
                Ok(TickOutcome::Delivered {
                    number,
                    finished: summary.finished,
                })
            }
        }
    }

    /// [`App::freeze_for_review`] for a schedule slot: a slot whose issue could not be made
    /// is tried again at the next wake-up.
    async fn freeze_slot_for_review(
        &self,
        key: &str,
        slot: DateTime<Utc>,
        goes_out: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<TickOutcome, AppError> {
        match self.freeze_for_review(Some(key), slot, goes_out, now).await {
            Ok(Some(number)) => Ok(TickOutcome::FrozenForReview { number }),
            Ok(None) => Ok(TickOutcome::Idle),
            Err(e) => {
                self.store.forget_slot(key).await?;
                Err(e)
            }
        }
    }
}
