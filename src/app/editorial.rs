//! Use case: the editors' loop around an issue: hold and release, and the review copy that
//! goes to the editors when an issue is frozen ahead of its slot.

use chrono::{DateTime, Utc};
use tracing::{info, warn};

use super::issue::{Planned, Prepared};
use super::{App, AppError};
use crate::domain::{IssueStatus, Purpose, Slug};
use crate::glossary::Glossary;
use crate::render::{IssuePlan, Recipient, RenderedIssue};
use crate::store::{StoreError, StoredIssue};

/// What `herald queue add` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Queued {
    /// Queued: an upcoming issue features it.
    Added(Slug),
    /// Queued first for the next cycle (it was sent in this one).
    NextCycle(Slug),
    /// `[schedule] queue` has it already.
    InConfig(Slug),
    /// `herald queue add` had queued it already.
    AlreadyQueued(Slug),
}

impl App {
    /// The terms `herald queue add` queued, in queue order (`[schedule] queue` aside).
    ///
    /// # Errors
    /// A database error.
    #[tracing::instrument(skip_all)]
    pub async fn queued_terms(&self) -> Result<Vec<Slug>, StoreError> {
        self.store.queue().await
    }

    /// Takes a term `herald queue add` queued out of the queue; `false` when it was not
    /// there.
    ///
    /// # Errors
    /// A database error.
    #[tracing::instrument(skip_all, fields(term = %slug))]
    pub async fn dequeue_term(&self, slug: &Slug) -> Result<bool, StoreError> {
        self.store.queue_remove(slug).await
    }

    /// Queues a term (slug, name or alias) for an upcoming issue. A term sent earlier in this
    /// cycle cannot come again before the next cycle: that is refused, unless `next_cycle`
    /// asks to put it first then.
    ///
    /// # Errors
    /// [`AppError::UnknownTerm`], [`AppError::Refused`] for a term sent in this cycle, or a
    /// database error.
    #[tracing::instrument(skip_all)]
    pub async fn queue_term(
        &self,
        glossary: &Glossary,
        name: &str,
        next_cycle: bool,
    ) -> Result<Queued, AppError> {
        let term = glossary
            .find(name)
            .ok_or_else(|| AppError::UnknownTerm(name.to_owned()))?;
        let slug = term.slug.clone();
        if self.config.schedule.queue.contains(&slug) {
            return Ok(Queued::InConfig(slug));
        }
        let history = self.store.term_history().await?;
        let now = self.clock.now();
        if history.sent_this_cycle(&slug) {
            if !next_cycle {
                return Err(AppError::Refused(format!(
                    "`{slug}` was already sent in cycle {}, and a term comes once per cycle; `herald queue add {slug} --next-cycle` puts it first in the next cycle",
                    history.current_cycle()
                )));
            }
            return Ok(if self.store.queue_add_first(&slug, now).await? {
                Queued::NextCycle(slug)
            } else {
                Queued::AlreadyQueued(slug)
            });
        }
        Ok(if self.store.queue_add(&slug, now).await? {
            Queued::Added(slug)
        } else {
            Queued::AlreadyQueued(slug)
        })
    }

    /// Holds a frozen issue so that it does not go out at its slot. Returns `false` when the
    /// issue is not waiting for its slot (already held, or going out).
    ///
    /// # Errors
    /// A database error.
    #[tracing::instrument(skip_all, fields(issue = number))]
    pub async fn hold_issue(&self, number: u32) -> Result<bool, StoreError> {
        self.store
            .set_issue_status(number, &[IssueStatus::Frozen], IssueStatus::Held)
            .await
    }

    /// Releases a held issue, or one waiting for the end of its review window: an editor
    /// approved it, so it goes out at its slot (or at the daemon's next tick if the slot has
    /// passed). Returns `false` when the issue is neither held nor waiting.
    ///
    /// # Errors
    /// A database error.
    #[tracing::instrument(skip_all, fields(issue = number))]
    pub async fn release_issue(&self, number: u32) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let Some(issue) = self.store.issue(number).await? else {
            return Ok(false);
        };
        let slot = issue
            .slot_key
            .as_deref()
            .and_then(crate::schedule::parse_slot_key);
        let at = slot.map_or(now, |s| s.min(issue.send_after.unwrap_or(s)));
        self.store.release_issue(number, at).await
    }

    /// Freezes the next issue (dated `issue_time`, for the schedule slot `slot_key` if any) to
    /// wait for the editors until `goes_out`, and sends them the review copy. Returns the
    /// issue's number, or `None` when there is no issue to make (an unfinished one exists, the
    /// glossary is exhausted or empty).
    ///
    /// # Errors
    /// A store, template or glossary failure (then nothing is frozen).
    #[tracing::instrument(skip_all)]
    pub async fn freeze_for_review(
        &self,
        slot_key: Option<&str>,
        issue_time: DateTime<Utc>,
        goes_out: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<u32>, AppError> {
        let glossary = self.glossary()?;
        let renderer = self.renderer()?;
        let prepared = self
            .prepare(
                &glossary,
                &renderer,
                now,
                issue_time,
                slot_key,
                Some(goes_out),
            )
            .await?;
        let Prepared::Ready {
            issue,
            rendered,
            skipped,
            resumed: false,
        } = prepared
        else {
            return Ok(None);
        };
        let notes = self.review_notes(&issue, &skipped).await?;
        self.send_review_copies(&issue, &rendered, &notes, goes_out, now)
            .await?;
        info!(
            issue = issue.number,
            slot = slot_key.unwrap_or("-"),
            "frozen for review; editors notified"
        );
        Ok(Some(issue.number))
    }

    /// Settles issue `number`'s ambiguous deliveries as delivered or not. Refused while a
    /// sender is running (its rows in flight look the same).
    ///
    /// # Errors
    /// [`AppError::Refused`] for an unknown issue or a running sender; a database error.
    #[tracing::instrument(skip_all, fields(issue = number))]
    pub async fn resolve_ambiguous(&self, number: u32, delivered: bool) -> Result<u64, AppError> {
        let issue = self
            .store
            .issue(number)
            .await?
            .ok_or_else(|| AppError::Refused(format!("no issue #{number}")))?;
        let run = super::lease::run_id("resolve", self.clock.now());
        if !self.take_sender_lease(&run).await? {
            return Err(AppError::LeaseHeld);
        }
        let result = self
            .store
            .resolve_ambiguous(issue.id, delivered, self.clock.now())
            .await;
        self.release_sender_lease(&run).await?;
        Ok(result?)
    }

    /// Drops a frozen or held issue that sent nothing (see [`crate::store::Store::discard_issue`]).
    /// Returns `false` when there is no such issue.
    ///
    /// # Errors
    /// A database error.
    #[tracing::instrument(skip_all, fields(issue = number))]
    pub async fn discard_issue(&self, number: u32) -> Result<bool, StoreError> {
        let done = self.store.discard_issue(number, self.clock.now()).await?;
        if done {
            info!(issue = number, "discarded");
        }
        Ok(done)
    }

    /// Renders a frozen or held issue again from the current glossary and templates: with the
    /// same term and links, or (`replan`) with term and links picked again as if it had never
    /// been made. It keeps its number, slot, status and send time; the editors get a new
    /// review copy. Returns the new issue.
    ///
    /// # Errors
    /// [`AppError::Refused`] when the issue is not frozen or held (or sent something); glossary,
    /// template and store errors (then nothing changes).
    #[tracing::instrument(skip_all, fields(issue = number))]
    pub async fn refreeze_issue(&self, number: u32, replan: bool) -> Result<StoredIssue, AppError> {
        let refuse = || {
            AppError::Refused(format!(
                "issue #{number} cannot be refrozen: only a frozen or held issue that sent nothing can (see `herald issues list`)"
            ))
        };
        let old = self.store.issue(number).await?.ok_or_else(refuse)?;
        if !matches!(old.status, IssueStatus::Frozen | IssueStatus::Held) {
            return Err(refuse());
        }
        let glossary = self.glossary()?;
        let renderer = self.renderer()?;
        let now = self.clock.now();
        let date = old
            .slot_key
            .as_deref()
            .and_then(crate::schedule::parse_slot_key)
            .unwrap_or(old.created_at);
        let (plan, cycle, skipped) = if replan {
            match self
                .plan_replacing(&glossary, date, None, Some(&old))
                .await?
            {
                Planned::Ready {
                    plan,
                    cycle,
                    skipped,
                    ..
                } => (*plan, cycle, skipped),
                Planned::Exhausted { cycle } => return Err(AppError::Exhausted { cycle }),
                Planned::NoTerms => return Err(AppError::NoTerms),
            }
        } else {
            let term = glossary
                .get(&old.term)
                .cloned()
                .ok_or_else(|| AppError::UnknownTerm(old.term.to_string()))?;
            let plan = IssuePlan {
                number,
                date,
                related: glossary.related_names(&term),
                term,
                links: self.store.issue_links(old.id).await?,
            };
            (plan, old.cycle, Vec::new())
        };
        let info = self.newsletter_info();
        let rendered = self.render_plan(&renderer, &plan)?;
        let web_html = rendered.web_html(&info.base_url);
        let frozen = crate::store::FrozenIssue {
            number,
            cycle,
            term_slug: &plan.term.slug,
            subject: &rendered.subject,
            preheader: &rendered.preheader,
            html: rendered.html_template(),
            text: rendered.text_template(),
            web_html: &web_html,
            links: &plan.links,
            slot_key: old.slot_key.as_deref(),
            send_after: old.send_after,
            status: old.status,
        };
        self.store
            .refreeze_issue(number, &frozen, now)
            .await?
            .ok_or_else(refuse)?;
        let issue = self.store.issue(number).await?.ok_or_else(refuse)?;
        info!(issue = number, term = %issue.term, replan, "refrozen");
        if !self.config.schedule.editors.is_empty() {
            let notes = self.review_notes(&issue, &skipped).await?;
            self.send_review_copies(
                &issue,
                &rendered,
                &notes,
                issue.send_after.unwrap_or(date),
                now,
            )
            .await?;
        }
        Ok(issue)
    }

    /// What the editors should know about a frozen issue: queued terms it passed over, and
    /// fewer links than `[news] min_links`.
    async fn review_notes(
        &self,
        issue: &StoredIssue,
        skipped: &[crate::selection::QueueSkip],
    ) -> Result<Vec<String>, StoreError> {
        let mut notes: Vec<String> = skipped.iter().map(ToString::to_string).collect();
        let links = self.store.issue_links(issue.id).await?.len();
        if links < self.config.news.min_links {
            notes.push(format!(
                "the issue carries {links} links, fewer than [news] min_links = {}",
                self.config.news.min_links
            ));
        }
        Ok(notes)
    }

    /// The issue a hold link names, if its token is genuine.
    pub fn hold_token_issue(&self, token: &str) -> Option<u32> {
        let claims = self.key.verify(Purpose::Hold, token)?;
        u32::try_from(claims.subject).ok()
    }

    /// The hold link of an issue, as the review copy carries it.
    fn hold_url(&self, number: u32, now: DateTime<Utc>) -> String {
        let token = self
            .key
            .sign(Purpose::Hold, i64::from(number), now.timestamp());
        format!("{}hold/{token}", self.config.newsletter.base_url)
    }

    /// Sends the review copy of a frozen issue to every editor: the issue as subscribers will
    /// see it, with a note saying when it goes out and how to hold it. A copy that cannot be
    /// sent is logged with the editor's address and the reason.
    ///
    /// # Errors
    /// When a review message cannot be built.
    #[tracing::instrument(skip_all, fields(issue = issue.number))]
    pub async fn send_review_copies(
        &self,
        issue: &StoredIssue,
        rendered: &RenderedIssue,
        notes: &[String],
        slot: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), AppError> {
        let config = &self.config;
        let hold_url = self.hold_url(issue.number, now);
        let local = slot
            .with_timezone(&config.schedule.timezone)
            .format("%A %-d %B %Y, %H:%M %Z");
        let goes_out = local.to_string();
        let marked = crate::compose::mark_copy(
            rendered,
            crate::compose::CopyNote::Review {
                hold_url: &hold_url,
                goes_out: &goes_out,
                notes,
            },
        );
        for editor in &config.schedule.editors {
            let personal = marked.personalize(&Recipient {
                name: "",
                first_name: "",
                email: editor.as_str(),
                unsubscribe_url: &format!("{}u/review-copy", config.newsletter.base_url),
            });
            let id = crate::compose::message_id(
                "review",
                issue.number,
                0,
                self.sender.from.email.domain(),
            );
            let message = crate::compose::simple_message(
                &self.sender,
                crate::compose::ServiceMessage {
                    to: editor,
                    to_name: "",
                    subject: &marked.subject,
                    message_id: &id,
                    date: now,
                    text: personal.text,
                    html: personal.html,
                },
            )?;
            if let Err(e) = self.send_service_message(editor, &message).await {
                warn!(editor = %editor, error = %e, "could not send the review copy");
            }
        }
        info!(issue = issue.number, "editors sent the review copy");
        Ok(())
    }
}
