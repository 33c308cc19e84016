//! Use case: the editors' preview. The next issue composed exactly as the send will compose
//! it, for one subscriber, with nothing recorded (feed fetches update the feed cache, as any
//! fetch does). `herald preview` writes it to files; `herald preview --serve` shows it live.

use chrono::{DateTime, Utc};

use super::issue::{Feeds, Planned};
use super::{App, AppError};
use crate::compose::{Addressee, personal_message};
use crate::domain::{EmailAddress, Purpose, SubscriberStatus};
use crate::render::{IssuePlan, Recipient};
use crate::selection::QueueSkip;

/// Who a preview is addressed to when nobody is named and there is no confirmed subscriber.
const SAMPLE_READER: &str = "reader@example.com";

/// The next issue as one subscriber would get it.
#[derive(Debug, Clone)]
pub struct Preview {
    pub plan: IssuePlan,
    pub cycle: u32,
    /// Queued terms passed over, and why.
    pub skipped: Vec<QueueSkip>,
    pub subject: String,
    pub to: EmailAddress,
    pub html: String,
    pub text: String,
    /// The whole message, headers included.
    pub eml: Vec<u8>,
}

impl Preview {
    /// The message's header block.
    pub fn headers(&self) -> String {
        let eml = String::from_utf8_lossy(&self.eml);
        eml.split("\r\n\r\n")
            .next()
            .unwrap_or_default()
            .replace("\r\n", "\n")
    }
}

/// What a dry run of a send would write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DryRunSizes {
    /// Messages: one per confirmed subscriber.
    pub messages: usize,
    pub total_bytes: usize,
    pub largest_bytes: usize,
}

impl App {
    /// Composes `rendered` for every confirmed subscriber as the send would, recording
    /// nothing, and measures the messages (`herald send --dry-run`).
    ///
    /// # Errors
    /// A database error, or a message that cannot be composed.
    #[tracing::instrument(skip_all)]
    pub async fn dry_run_sizes(
        &self,
        rendered: &crate::render::RenderedIssue,
        date: DateTime<Utc>,
    ) -> Result<DryRunSizes, AppError> {
        let recipients = self
            .store
            .subscribers(Some(SubscriberStatus::Confirmed))
            .await?;
        let mut sizes = DryRunSizes {
            messages: recipients.len(),
            ..DryRunSizes::default()
        };
        for s in &recipients {
            let bytes = personal_message(
                "issue",
                rendered,
                &self.sender,
                Addressee {
                    id: s.id,
                    email: &s.email,
                    name: &s.name,
                    first_name: "",
                },
                &self.key,
                date,
            )?
            .formatted()
            .len();
            sizes.total_bytes += bytes;
            sizes.largest_bytes = sizes.largest_bytes.max(bytes);
        }
        Ok(sizes)
    }

    /// The next issue (or `term` instead of the rotation's choice), dated at the next slot so
    /// that two previews agree byte for byte, personalised for `subscriber` (else the first
    /// confirmed subscriber, else a sample reader).
    ///
    /// # Errors
    /// [`AppError`] for a broken glossary or template, an unknown term or subscriber address,
    /// or when there is no issue to make.
    #[tracing::instrument(skip_all)]
    pub async fn preview(
        &self,
        term: Option<&str>,
        subscriber: Option<&str>,
        feeds: Feeds,
    ) -> Result<Preview, AppError> {
        let config = &self.config;
        let glossary = self.glossary()?;
        let renderer = self.renderer()?;
        let now = self.clock.now();
        let date: DateTime<Utc> =
            crate::schedule::next_slot(&config.schedule.cron, config.schedule.timezone, now)
                .unwrap_or(now);
        let (plan, cycle, skipped) =
            match self.plan_with(&glossary, date, term, None, feeds).await? {
                Planned::Ready {
                    plan,
                    cycle,
                    skipped,
                    ..
                } => (*plan, cycle, skipped),
                Planned::Exhausted { cycle } => return Err(AppError::Exhausted { cycle }),
                Planned::NoTerms => return Err(AppError::NoTerms),
            };
        let rendered = self.render_plan(&renderer, &plan)?;
        let (id, email, name, first_name) = match subscriber {
            Some(raw) => {
                let email = EmailAddress::parse(raw).map_err(|e| {
                    AppError::Refused(format!("--subscriber `{raw}` is not an address: {e}"))
                })?;
                match self.store.subscriber(&email).await? {
                    Some(s) => (s.id, email, s.name, s.first_name),
                    None => (0, email, String::new(), String::new()),
                }
            }
            None => match self
                .store
                .subscribers(Some(SubscriberStatus::Confirmed))
                .await?
                .into_iter()
                .next()
            {
                Some(s) => (s.id, s.email, s.name, s.first_name),
                None => (
                    0,
                    EmailAddress::parse(SAMPLE_READER).expect("a valid sample address"),
                    String::new(),
                    String::new(),
                ),
            },
        };
        let message = personal_message(
            "issue",
            &rendered,
            &self.sender,
            Addressee {
                id,
                email: &email,
                name: &name,
                first_name: &first_name,
            },
            &self.key,
            plan.date,
        )?;
        let token = self.key.sign(Purpose::Unsubscribe, id, 0);
        let personal = rendered.personalize(&Recipient {
            name: &name,
            first_name: &first_name,
            email: email.as_str(),
            unsubscribe_url: &self.sender.unsubscribe_url(&token),
        });
        Ok(Preview {
            plan,
            cycle,
            skipped,
            subject: rendered.subject,
            to: email,
            html: personal.html,
            text: personal.text,
            eml: message.formatted(),
        })
    }
}
