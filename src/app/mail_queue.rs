//! Use case: the mail queue. Confirmation and welcome emails are queued in the store by the
//! web requests (which answer at once) and sent here, by the daemon: due emails are taken
//! a batch at a time, sent, and finished; an SMTP server that is down or answers 4xx only
//! delays them (retried with the delivery backoff, `[delivery] retry_base_ms` doubling up to
//! `retry_max_ms`, for a day); a 5xx or a message that may have arrived (no reply after the
//! final `.`) is not repeated. An email no longer wanted (the subscriber left, bounced, or is
//! confirmed already) is dropped unsent.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::{App, AppError};
use crate::domain::{QueueOutcome, ServiceMail, SubscriberStatus};
use crate::mailer::SendError;
use crate::store::{QueuedMail, StoreError};

/// Emails taken per round.
const BATCH: u32 = 16;

/// How long a taken email is left alone by other senders (longer than one attempt can take).
const HOLD: chrono::Duration = chrono::Duration::minutes(10);

/// An email still failing this long after it was queued is given up.
const GIVE_UP: chrono::Duration = chrono::Duration::days(1);

/// How often the queue is looked at with nothing to wake it (emails queued by another
/// instance on the same database).
const POLL: Duration = Duration::from_secs(30);

/// What one round of the queue did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueRound {
    pub sent: u32,
    pub retried: u32,
    pub finished_unsent: u32,
}

impl QueueRound {
    fn taken(&self) -> u32 {
        self.sent + self.retried + self.finished_unsent
    }
}

impl App {
    /// Sends the queued emails that are due, until none is.
    ///
    /// # Errors
    /// A database error (a failed send is recorded, not returned).
    #[tracing::instrument(skip_all)]
    pub async fn send_due_mail(
        &self,
        cancel: &CancellationToken,
    ) -> Result<QueueRound, StoreError> {
        let mut total = QueueRound::default();
        while !cancel.is_cancelled() {
            let now = self.clock.now();
            let taken = self.store.take_due_mail(now, HOLD, BATCH).await?;
            if taken.is_empty() {
                break;
            }
            for mail in taken {
                let round = self.send_queued(&mail).await?;
                total.sent += round.sent;
                total.retried += round.retried;
                total.finished_unsent += round.finished_unsent;
            }
        }
        Ok(total)
    }

    async fn send_queued(&self, mail: &QueuedMail) -> Result<QueueRound, StoreError> {
        let wanted = match mail.kind {
            // A reader who left and asks again stays unsubscribed until they confirm: the
            // confirmation is what brings them back.
            ServiceMail::Confirmation => matches!(
                mail.status,
                SubscriberStatus::Pending | SubscriberStatus::Unsubscribed
            ),
            ServiceMail::Welcome => mail.status == SubscriberStatus::Confirmed,
        };
        let now = self.clock.now();
        if !wanted {
            info!(queued = mail.id, kind = %mail.kind, status = %mail.status, "a queued email is no longer due; dropped");
            self.store
                .finish_mail(mail.id, QueueOutcome::Dropped, None, now)
                .await?;
            return Ok(QueueRound {
                finished_unsent: 1,
                ..QueueRound::default()
            });
        }
        let sent = match mail.kind {
            ServiceMail::Confirmation => {
                self.send_confirmation(mail.subscriber_id, &mail.email, &mail.name)
                    .await
            }
            ServiceMail::Welcome => {
                self.send_welcome(
                    mail.subscriber_id,
                    &mail.email,
                    &mail.name,
                    &mail.first_name,
                )
                .await
            }
        };
        let now = self.clock.now();
        let (outcome, error) = match sent {
            Ok(()) => (QueueOutcome::Sent, None),
            Err(AppError::Send(SendError::Ambiguous(e))) => {
                warn!(queued = mail.id, kind = %mail.kind, error = %e, "no reply after the message was written: it may have arrived, so it is not repeated");
                (QueueOutcome::Ambiguous, Some(e))
            }
            Err(AppError::Send(SendError::Permanent { message, .. })) => {
                warn!(queued = mail.id, kind = %mail.kind, error = %message, "the SMTP server refused the email for good");
                (QueueOutcome::Failed, Some(message))
            }
            Err(e) if now - mail.created_at < GIVE_UP => {
                // The delivery backoff, with the queued email's id for the jitter.
                let due = now
                    + chrono::Duration::from_std(super::delivery::backoff(
                        self.config.delivery.retry_base,
                        self.config.delivery.retry_max,
                        mail.id,
                        mail.attempts,
                    ))
                    .unwrap_or(GIVE_UP);
                warn!(queued = mail.id, kind = %mail.kind, attempt = mail.attempts, retry_at = %due, error = %e, "could not send a queued email; it will be tried again");
                self.store.retry_mail(mail.id, due, &e.to_string()).await?;
                return Ok(QueueRound {
                    retried: 1,
                    ..QueueRound::default()
                });
            }
            Err(e) => {
                error!(queued = mail.id, kind = %mail.kind, attempts = mail.attempts, error = %e, "gave up on a queued email after a day of failures");
                (QueueOutcome::Failed, Some(e.to_string()))
            }
        };
        self.store
            .finish_mail(mail.id, outcome, error.as_deref(), now)
            .await?;
        Ok(if outcome == QueueOutcome::Sent {
            QueueRound {
                sent: 1,
                ..QueueRound::default()
            }
        } else {
            QueueRound {
                finished_unsent: 1,
                ..QueueRound::default()
            }
        })
    }

    /// The daemon's mail queue: sends due emails when woken by a request, when the next
    /// retry is due, and every [`POLL`], until `cancel`.
    #[tracing::instrument(skip_all)]
    pub async fn run_mail_queue(&self, cancel: CancellationToken) {
        loop {
            match self.send_due_mail(&cancel).await {
                Ok(round) if round.taken() > 0 => info!(
                    sent = round.sent,
                    retried = round.retried,
                    unsent = round.finished_unsent,
                    "mail queue"
                ),
                Ok(_) => {}
                Err(e) => warn!(error = %e, "the mail queue could not read the store"),
            }
            let wait = match self.store.next_mail_due().await {
                Ok(Some(due)) => until(due, self.clock.now()).min(POLL),
                Ok(None) | Err(_) => POLL,
            };
            tokio::select! {
                () = self.mail_queue.notified() => {}
                () = tokio::time::sleep(wait) => {}
                () = cancel.cancelled() => break,
            }
        }
    }
}

fn until(due: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (due - now).to_std().unwrap_or(Duration::ZERO)
}
