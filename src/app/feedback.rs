//! Use case: read what came back after a send (bounces, complaints, unsubscribe emails) and
//! apply it. Every way in (`herald bounces ingest`, and the daemon's mailbox) comes here.

use tracing::{info, warn};

use super::{App, AppError};
use crate::domain::Purpose;
use crate::feedback::{Kind, Report, parse};
use crate::store::{FeedbackKind, FeedbackOutcome, FeedbackTarget, NewFeedback};

/// What one message turned out to be, and what it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingested {
    /// Recorded against a subscriber (and their delivery, when known).
    Recorded {
        kind: FeedbackKind,
        subscriber_id: i64,
        issue_number: Option<i64>,
        /// The subscriber was suppressed (bounced) or unsubscribed by this report.
        suppressed: bool,
    },
    /// Read before: nothing changed.
    Duplicate,
    /// Nothing to do: why (a delay warning, an auto-reply, no genuine token ...).
    Ignored(String),
}

/// Counts over many messages, for the command's summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct IngestCounts {
    pub messages: u64,
    pub hard_bounces: u64,
    pub soft_bounces: u64,
    pub complaints: u64,
    pub unsubscribes: u64,
    /// Subscribers suppressed or unsubscribed by these messages.
    pub suppressed: u64,
    pub duplicates: u64,
    pub ignored: u64,
}

impl IngestCounts {
    /// Adds one message's outcome.
    pub fn add(&mut self, outcome: &Ingested) {
        self.messages += 1;
        match outcome {
            Ingested::Recorded {
                kind, suppressed, ..
            } => {
                match kind {
                    FeedbackKind::HardBounce => self.hard_bounces += 1,
                    FeedbackKind::SoftBounce => self.soft_bounces += 1,
                    FeedbackKind::Complaint => self.complaints += 1,
                    FeedbackKind::Unsubscribe => self.unsubscribes += 1,
                }
                self.suppressed += u64::from(*suppressed);
            }
            Ingested::Duplicate => self.duplicates += 1,
            Ingested::Ignored(_) => self.ignored += 1,
        }
    }
}

impl App {
    /// Reads one returned message and applies it. `source` names it in the log (a file, a
    /// mailbox and its uid); `recipient` is its envelope recipient when known.
    ///
    /// # Errors
    /// When the store fails (then nothing of this message is recorded).
    #[tracing::instrument(skip_all)]
    pub async fn ingest_feedback(
        &self,
        raw: &[u8],
        recipient: Option<&str>,
        source: &str,
    ) -> Result<Ingested, AppError> {
        self.apply_report(&parse(raw, recipient), source).await
    }

    /// A Mailgun webhook call (`POST /webhooks/mailgun`): verified with `key` (the webhook
    /// signing key), then applied as a returned message would be. The inner error says why
    /// a call was refused.
    ///
    /// # Errors
    /// When the store fails.
    #[tracing::instrument(skip_all)]
    pub async fn mailgun_webhook(
        &self,
        body: &[u8],
        key: &[u8],
    ) -> Result<Result<Ingested, crate::feedback::WebhookError>, AppError> {
        let report = match crate::feedback::mailgun_event(body, key, self.clock.now().timestamp()) {
            Ok(report) => report,
            Err(e) => {
                warn!(source = "webhook mailgun", "webhook call refused: {e}");
                return Ok(Err(e));
            }
        };
        Ok(Ok(self.apply_report(&report, "webhook mailgun").await?))
    }

    async fn apply_report(&self, report: &Report, source: &str) -> Result<Ingested, AppError> {
        let kind = match report.kind {
            Kind::HardBounce => FeedbackKind::HardBounce,
            Kind::SoftBounce => FeedbackKind::SoftBounce,
            Kind::Complaint => FeedbackKind::Complaint,
            Kind::Unsubscribe => FeedbackKind::Unsubscribe,
            Kind::Delayed | Kind::Delivered | Kind::Other => {
                let why = match report.kind {
                    Kind::Delayed => "a delay warning: the relay is still trying".to_owned(),
                    Kind::Delivered => "a report of a successful delivery".to_owned(),
                    _ => report.reason.clone(),
                };
                info!(source, "returned message ignored: {why}");
                return Ok(Ingested::Ignored(why));
            }
        };
        let Some(target) = self.target_of(report, kind) else {
            let why = "it names no delivery or subscriber by a genuine Herald token".to_owned();
            warn!(source, kind = ?kind, "returned message ignored: {why}");
            return Ok(Ingested::Ignored(why));
        };
        let outcome = self
            .store
            .record_feedback(
                &NewFeedback {
                    report_id: &report.id,
                    kind,
                    target,
                    status_code: report.status.as_deref(),
                    reason: &report.reason,
                    report: &report.text,
                },
                self.config.bounces.soft_bounce_limit,
                self.clock.now(),
            )
            .await?;
        Ok(match outcome {
            FeedbackOutcome::Recorded {
                subscriber_id,
                issue_number,
                suppressed,
            } => {
                info!(source, kind = ?kind, subscriber = subscriber_id, issue = ?issue_number, suppressed, reason = %report.reason, "recorded a returned message");
                Ingested::Recorded {
                    kind,
                    subscriber_id,
                    issue_number,
                    suppressed,
                }
            }
            FeedbackOutcome::Duplicate => {
                info!(source, report = %report.id, "returned message already recorded");
                Ingested::Duplicate
            }
            FeedbackOutcome::Unknown => {
                let why = "its delivery or subscriber no longer exists".to_owned();
                warn!(source, "returned message ignored: {why}");
                Ingested::Ignored(why)
            }
        })
    }

    /// Reads the bounce mailbox (`[bounces] imap_url`) once: every message is applied as
    /// `herald bounces ingest` would, then moved to the processed folder. A message is moved
    /// only once it is recorded, so a failure leaves it for the next poll (and a message read
    /// twice is counted once). `None` when no mailbox is configured.
    ///
    /// # Errors
    /// When the mailbox cannot be read or the store fails.
    #[tracing::instrument(skip_all)]
    pub async fn poll_bounce_mailbox(&self) -> Result<Option<IngestCounts>, AppError> {
        let Some(settings) = &self.config.bounces.imap else {
            return Ok(None);
        };
        let mut session = crate::mailer::imap::ImapSession::open(settings).await?;
        let mut counts = IngestCounts::default();
        for uid in session.uids().await? {
            let raw = session.fetch(uid).await?;
            let source = format!("imap {}/{} uid {uid}", settings.host, settings.mailbox);
            let outcome = self.ingest_feedback(&raw, None, &source).await?;
            counts.add(&outcome);
            session.processed(uid).await?;
        }
        session.logout().await;
        if counts.messages > 0 {
            info!(
                messages = counts.messages,
                hard_bounces = counts.hard_bounces,
                soft_bounces = counts.soft_bounces,
                complaints = counts.complaints,
                unsubscribes = counts.unsubscribes,
                "read the bounce mailbox"
            );
            self.log_feedback_alerts().await?;
        }
        Ok(Some(counts))
    }

    /// Whom a report is about: the first of its tokens that verifies.
    fn target_of(&self, report: &Report, kind: FeedbackKind) -> Option<FeedbackTarget> {
        let key = &self.key;
        let by_mail = report
            .unsubscribe_tokens
            .iter()
            .find_map(|t| key.verify_address(Purpose::MailUnsubscribe, t))
            .map(FeedbackTarget::Subscriber);
        if kind == FeedbackKind::Unsubscribe && by_mail.is_some() {
            return by_mail;
        }
        report
            .bounce_tokens
            .iter()
            .find_map(|t| key.verify_address(Purpose::Bounce, t))
            .map(FeedbackTarget::Delivery)
            .or_else(|| {
                report
                    .link_tokens
                    .iter()
                    .find_map(|t| key.verify(Purpose::Unsubscribe, t))
                    .map(|c| FeedbackTarget::Subscriber(c.subject))
            })
    }
}
