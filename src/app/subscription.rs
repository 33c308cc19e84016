//! Use case: the subscription flow. Subscribe (double opt-in: a pending subscriber and a
//! confirmation email), confirm (and the welcome email with the latest issue), unsubscribe
//! (RFC 8058 one-click). Every link carries a signed token; a forged, tampered or expired
//! one is refused without detail.

use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};
use tracing::info;

use super::{App, AppError};
use crate::compose::{Addressee, personal_message};
use crate::domain::{EmailAddress, Purpose, SubscriberName};
use crate::render::IssuePlan;
use crate::store::{StoreError, SubscribeOutcome};

/// How long a confirmation link stays valid.
pub const CONFIRMATION_DAYS: i64 = 7;

/// At most this many confirmation emails per address per hour, whatever the client address,
/// so the form cannot be used to flood someone's inbox.
const CONFIRMATIONS_PER_HOUR: u32 = 3;

/// What a confirmation link did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmation {
    /// The subscriber is confirmed (now, or already before).
    Confirmed,
    /// The link is older than [`CONFIRMATION_DAYS`].
    Expired,
    /// The token is forged or tampered with, or names nobody.
    Invalid,
}

impl App {
    /// A subscription request from the web form: records a pending subscriber and queues a
    /// confirmation email (at most three per address per hour) for the mail queue to send.
    /// The caller answers the same whatever happened, so that nothing is revealed about the
    /// address.
    ///
    /// # Errors
    /// A database error.
    #[tracing::instrument(skip_all)]
    pub async fn subscribe(
        &self,
        email: &EmailAddress,
        name: &SubscriberName,
        first_name: &SubscriberName,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        match self
            .store
            .request_subscription(email, name, first_name, now)
            .await?
        {
            SubscribeOutcome::Confirm(id) => {
                // Queued, not sent: the answer never waits for the SMTP server (nor reveals by
                // its timing whether the address was known), and a server that is down only
                // delays the email.
                if self
                    .store
                    .queue_confirmation(id, email, CONFIRMATIONS_PER_HOUR, now)
                    .await?
                {
                    self.mail_queue.notify_one();
                } else {
                    info!(
                        "confirmation not queued: three were sent to this address in the last hour"
                    );
                }
            }
            SubscribeOutcome::AlreadyConfirmed | SubscribeOutcome::Bounced => {}
        }
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    pub(super) async fn send_confirmation(
        &self,
        id: i64,
        email: &EmailAddress,
        name: &str,
    ) -> Result<(), AppError> {
        let now = self.clock.now();
        let token = self.key.sign(Purpose::Confirm, id, now.timestamp());
        let link = format!("{}confirm/{token}", self.config.newsletter.base_url);
        let n = &self.config.newsletter.name;
        let body_text = format!(
            "Hello,\n\nsomeone (hopefully you) asked to subscribe {email} to {n}.\n\nConfirm here (the link works for {CONFIRMATION_DAYS} days):\n{link}\n\nIf it was not you, ignore this email: nothing will be sent.\n"
        );
        let body_html = format!(
            "<!DOCTYPE html><html><body style=\"font-family:Georgia,serif;font-size:17px;line-height:1.6\"><p>Hello,</p>\
             <p>someone (hopefully you) asked to subscribe {e} to {n}.</p>\
             <p><a href=\"{l}\">Confirm your subscription</a> (the link works for {CONFIRMATION_DAYS} days).</p>\
             <p>If it was not you, ignore this email: nothing will be sent.</p></body></html>",
            e = text(email.as_str()),
            n = text(n),
            l = attr(&link)
        );
        // A new Message-ID for every confirmation email, on the From domain.
        let message_id = crate::compose::message_id(
            &format!("confirm-{}", now.timestamp()),
            0,
            id,
            self.sender.from.email.domain(),
        );
        let message = crate::compose::simple_message(
            &self.sender,
            crate::compose::ServiceMessage {
                to: email,
                to_name: name,
                subject: &format!("Confirm your subscription to {n}"),
                message_id: &message_id,
                date: now,
                text: body_text,
                html: body_html,
            },
        )?;
        self.send_service_message(email, &message).await?;
        info!(subscriber = id, "sent a confirmation email");
        Ok(())
    }

    /// Follows a confirmation link: confirms the subscriber it names and, the first time,
    /// queues the welcome email.
    ///
    /// # Errors
    /// A database error.
    #[tracing::instrument(skip_all)]
    pub async fn confirm(&self, token: &str) -> Result<Confirmation, StoreError> {
        let now = self.clock.now();
        let claims = match self.confirmation_claims(token) {
            Ok(claims) => claims,
            Err(refused) => return Ok(refused),
        };
        let issued = chrono::DateTime::from_timestamp(claims.issued_at, 0).unwrap_or(now);
        match self
            .store
            .confirm_subscriber(claims.subject, issued, now)
            .await?
        {
            Some(c) => {
                if c.newly {
                    // The store queued the welcome with the confirmation.
                    self.mail_queue.notify_one();
                }
                Ok(Confirmation::Confirmed)
            }
            None => Ok(Confirmation::Invalid),
        }
    }

    /// Whether a confirmation link is genuine and not expired, without confirming anything
    /// (the page a GET shows: link scanners follow GETs).
    pub fn confirmation_link(&self, token: &str) -> Confirmation {
        match self.confirmation_claims(token) {
            Ok(_) => Confirmation::Confirmed,
            Err(refused) => refused,
        }
    }

    fn confirmation_claims(&self, token: &str) -> Result<crate::domain::Claims, Confirmation> {
        let now = self.clock.now();
        let claims = self
            .key
            .verify(Purpose::Confirm, token)
            .ok_or(Confirmation::Invalid)?;
        if now.timestamp() - claims.issued_at > CONFIRMATION_DAYS * 86_400
            || claims.issued_at > now.timestamp() + 300
        {
            return Err(Confirmation::Expired);
        }
        Ok(claims)
    }

    /// The subscriber an unsubscribe link names, if the token is genuine and they exist.
    ///
    /// # Errors
    /// A database error.
    #[tracing::instrument(skip_all)]
    pub async fn unsubscribe_target(&self, token: &str) -> Result<Option<i64>, StoreError> {
        let Some(claims) = self.key.verify(Purpose::Unsubscribe, token) else {
            return Ok(None);
        };
        Ok(self
            .store
            .subscriber_exists(claims.subject)
            .await?
            .then_some(claims.subject))
    }

    /// Unsubscribes the subscriber an unsubscribe link names (idempotent). Returns `false`
    /// for a forged token or an unknown subscriber.
    ///
    /// # Errors
    /// A database error.
    #[tracing::instrument(skip_all)]
    pub async fn unsubscribe(&self, token: &str) -> Result<bool, StoreError> {
        let Some(claims) = self.key.verify(Purpose::Unsubscribe, token) else {
            return Ok(false);
        };
        let done = self
            .store
            .unsubscribe_id(claims.subject, self.clock.now())
            .await?;
        if done {
            info!(subscriber = claims.subject, "unsubscribed a subscriber");
        }
        Ok(done)
    }

    /// Sends the welcome email with the latest issue (or, before the first issue, the term
    /// the next issue will feature) to a newly confirmed subscriber.
    ///
    /// # Errors
    /// When the glossary or templates fail, or the message cannot be sent.
    #[tracing::instrument(skip_all)]
    pub(super) async fn send_welcome(
        &self,
        id: i64,
        email: &EmailAddress,
        name: &str,
        first_name: &str,
    ) -> Result<(), AppError> {
        let config = &self.config;
        let glossary = self.glossary()?;
        let renderer = self.renderer()?;
        let latest = self
            .store
            .issues()
            .await?
            .into_iter()
            .find(|i| i.status.is_published());
        let (number, term, links, date) = match &latest {
            Some(issue) => (
                issue.number,
                glossary.get(&issue.term).cloned(),
                self.store.issue_links(issue.id).await?,
                issue.send_after.unwrap_or(issue.created_at),
            ),
            None => (0, None, Vec::new(), self.clock.now()),
        };
        let term = match term {
            Some(t) => t,
            None => {
                let history = self.store.term_history().await?;
                match crate::selection::next_term(
                    &glossary,
                    &history,
                    &[],
                    config.schedule.on_exhausted,
                ) {
                    crate::selection::TermChoice::Next { term, .. } => term.clone(),
                    _ => {
                        return Err(AppError::Refused(
                            "no glossary term for the welcome email".into(),
                        ));
                    }
                }
            }
        };
        let plan = IssuePlan {
            number,
            date,
            related: glossary.related_names(&term),
            term,
            links,
        };
        let (html, txt) = if renderer.has("welcome.html") {
            ("welcome.html", "welcome.txt")
        } else {
            ("issue.html", "issue.txt")
        };
        let mut rendered = renderer.render_pair(&plan, &self.newsletter_info(), html, txt)?;
        rendered.subject = format!("Welcome to {}", config.newsletter.name);
        // A re-sent welcome is a new message, not a duplicate for mail clients to drop.
        let message = personal_message(
            &format!("welcome-{}", self.clock.now().timestamp_millis()),
            &rendered,
            &self.sender,
            Addressee {
                id,
                email,
                name,
                first_name,
            },
            &self.key,
            self.clock.now(),
        )?;
        self.send_service_message(email, &message).await?;
        info!(subscriber = id, "sent the welcome email");
        Ok(())
    }
}
