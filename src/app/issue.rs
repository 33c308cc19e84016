//! Use case: the next issue. Plan it (term and links, exactly as the send will pick them),
//! prepare the issue a send works on (the unfinished frozen one, or a new one rendered and
//! frozen with its ledger in one transaction), and show the next issue as it would be sent
//! (previews, test copies, the editors' web preview).
//!
//! Reads the store and fetches feeds (recording each feed's state: ETag, Last-Modified,
//! items, failures), then hands the values to the pure [`crate::selection`] functions.

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};
use futures::future::join_all;
use tracing::{info, warn};

use super::{App, AppError};
use crate::config::{Config, FeedSource};
use crate::domain::{IssueStatus, Slug, Term};
use crate::feeds::{FeedFetcher, FetchOutcome, Validators};
use crate::glossary::Glossary;
use crate::render::{IssuePlan, RenderedIssue, Renderer};
use crate::selection::{self, FeedBatch, LinkPolicy, QueueSkip, TermChoice, TermHistory};
use crate::store::{FeedSuccess, Store, StoreError, StoredIssue};

/// What planning found.
#[derive(Debug)]
pub enum Planned {
    /// An issue to render.
    Ready {
        plan: Box<IssuePlan>,
        /// The cycle the term is recorded in.
        cycle: u32,
        /// Whether the term came from the editors' queue.
        queued: bool,
        /// Queued terms passed over, and why.
        skipped: Vec<QueueSkip>,
    },
    /// Every term was sent in this cycle and `on_exhausted = "stop"`.
    Exhausted { cycle: u32 },
    /// The glossary has no terms.
    NoTerms,
}

/// Where planning takes the feeds' items from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feeds {
    /// Fetch every feed now (and record what was found).
    Fetch,
    /// Use the items as last fetched.
    Cached,
}

/// The issue a send works on.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // made once per send; boxing would buy nothing
pub enum Prepared {
    /// Frozen (now or earlier) and ready to deliver.
    Ready {
        issue: StoredIssue,
        rendered: RenderedIssue,
        /// Whether an interrupted send is being resumed.
        resumed: bool,
        /// Queued terms the new issue passed over, and why (empty when resumed).
        skipped: Vec<QueueSkip>,
    },
    /// Every term was sent in this cycle and `on_exhausted = "stop"`.
    Exhausted { cycle: u32 },
    /// The glossary has no terms.
    NoTerms,
    /// An editor holds the unfinished issue (`herald issues hold`).
    Held { number: u32 },
    /// The unfinished issue is frozen for review and goes out at `until`.
    Waiting { number: u32, until: DateTime<Utc> },
}

/// The next issue as it would be sent, for previews and test copies: nothing is recorded.
#[derive(Debug)]
pub struct NextIssue {
    pub number: u32,
    pub rendered: RenderedIssue,
    /// The date the issue carries.
    pub date: DateTime<Utc>,
}

impl App {
    /// Renders an issue plan as it goes out: with `[tracking] clicks`, each news link points
    /// at Herald's redirect (`BASE/l/NUMBER/POSITION`, counted per link, never per reader);
    /// the plan itself (what is frozen and where the redirect leads) keeps the real links.
    ///
    /// # Errors
    /// A template that fails.
    pub fn render_plan(
        &self,
        renderer: &Renderer,
        plan: &IssuePlan,
    ) -> Result<RenderedIssue, AppError> {
        let info = self.newsletter_info();
        if !self.config.track_clicks {
            return Ok(renderer.render_issue(plan, &info)?);
        }
        let mut tracked = plan.clone();
        for (position, link) in tracked.links.iter_mut().enumerate() {
            link.url = format!("{}l/{}/{position}", info.base_url, plan.number);
        }
        Ok(renderer.render_issue(&tracked, &info)?)
    }

    /// The queue in force: `[schedule] queue` first, then `herald queue add` entries.
    ///
    /// # Errors
    /// A database error.
    #[tracing::instrument(skip_all)]
    pub async fn queue(&self) -> Result<Vec<Slug>, StoreError> {
        let mut queue = self.config.schedule.queue.clone();
        for slug in self.store.queue().await? {
            if !queue.contains(&slug) {
                queue.push(slug);
            }
        }
        Ok(queue)
    }

    /// Fetches every configured feed concurrently and records each outcome in the store. A
    /// failing feed is logged with its name and reason and contributes no links.
    ///
    /// # Errors
    /// Only a database error; feed failures are not errors.
    #[tracing::instrument(skip_all)]
    pub async fn fetch_feeds(&self, now: DateTime<Utc>) -> Result<Vec<FeedBatch>, StoreError> {
        fetch_feeds(&self.config, &self.store, &self.fetcher, now).await
    }

    /// Plans the next issue for `issue_time`. `term` overrides the rotation (editors'
    /// preview).
    ///
    /// # Errors
    /// A database error, or an unknown `term`.
    #[tracing::instrument(skip_all)]
    pub async fn plan(
        &self,
        glossary: &Glossary,
        issue_time: DateTime<Utc>,
        term: Option<&str>,
    ) -> Result<Planned, AppError> {
        self.plan_replacing(glossary, issue_time, term, None).await
    }

    /// [`App::plan`] as if `replacing` (an unsent issue) had never been made: its term and
    /// links are back in the pool and its number is the one planned (`herald issues
    /// refreeze --replan`).
    ///
    /// # Errors
    /// As [`App::plan`].
    #[tracing::instrument(skip_all)]
    pub async fn plan_replacing(
        &self,
        glossary: &Glossary,
        issue_time: DateTime<Utc>,
        term: Option<&str>,
        replacing: Option<&StoredIssue>,
    ) -> Result<Planned, AppError> {
        self.plan_with(glossary, issue_time, term, replacing, Feeds::Fetch)
            .await
    }

    /// [`App::plan_replacing`] with the feeds fetched now or taken from the cache (the live
    /// preview re-plans on every edit, and must not fetch every feed each time).
    ///
    /// # Errors
    /// As [`App::plan`].
    #[tracing::instrument(skip_all)]
    pub async fn plan_with(
        &self,
        glossary: &Glossary,
        issue_time: DateTime<Utc>,
        term: Option<&str>,
        replacing: Option<&StoredIssue>,
        feeds: Feeds,
    ) -> Result<Planned, AppError> {
        let (config, store) = (&self.config, &self.store);
        let mut history = store.term_history().await?;
        let mut sent = store.sent_link_urls().await?;
        let last = match replacing {
            None => store.last_issue().await?,
            Some(old) => {
                history.sent.retain(|s| s.issue_number != old.number);
                for link in store.issue_links(old.id).await? {
                    sent.remove(&link.canonical_url);
                }
                match old.number.checked_sub(1).filter(|n| *n > 0) {
                    Some(previous) => {
                        store
                            .issue(previous)
                            .await?
                            .map(|i| crate::store::LastIssue {
                                number: i.number,
                                created_at: i.created_at,
                            })
                    }
                    None => None,
                }
            }
        };
        let (chosen, cycle, queued, skipped) = match term {
            Some(name) => {
                let t = glossary
                    .find(name)
                    .ok_or_else(|| AppError::UnknownTerm(name.to_owned()))?;
                (t, history.current_cycle(), false, Vec::new())
            }
            None => {
                let queue = self.queue().await?;
                match selection::next_term(glossary, &history, &queue, config.schedule.on_exhausted)
                {
                    TermChoice::Next {
                        term,
                        cycle,
                        queued,
                    } => {
                        let skipped =
                            selection::queue_skips(glossary, &history, &queue, &term.slug, cycle);
                        (term, cycle, queued, skipped)
                    }
                    TermChoice::Exhausted { cycle } => return Ok(Planned::Exhausted { cycle }),
                    TermChoice::NoTerms => return Ok(Planned::NoTerms),
                }
            }
        };
        for skip in &skipped {
            warn!("{skip}");
        }
        warn_if_running_low(glossary, &history, chosen);

        let oldest = issue_time - Duration::days(i64::from(config.news.max_age_days));
        let cutoff = last.map_or(oldest, |l| l.created_at.max(oldest));
        let batches = match feeds {
            Feeds::Fetch => self.fetch_feeds(issue_time).await?,
            Feeds::Cached => super::feed_cache::cached_batches(config, &store.feed_states().await?),
        };
        let curated = self.curated();
        let policy = LinkPolicy {
            links_per_issue: config.news.links_per_issue,
            keywords: config.news.keywords.clone(),
        };
        let links = selection::select_links(curated.to_vec(), batches, &sent, cutoff, &policy);
        info!(term = %chosen.slug, cycle, queued, links = links.len(), "planned the next issue");
        Ok(Planned::Ready {
            plan: Box::new(IssuePlan {
                number: last.map_or(1, |l| l.number + 1),
                date: issue_time,
                term: chosen.clone(),
                related: glossary.related_names(chosen),
                links,
            }),
            cycle,
            queued,
            skipped,
        })
    }

    /// The next issue as it would be sent on `date`: the unfinished frozen issue if there
    /// is one, else the next one planned and rendered now. Records nothing (feed fetches
    /// update the feed cache, as any fetch does).
    ///
    /// # Errors
    /// [`AppError::Refused`] when there is no issue to make; store and render errors.
    #[tracing::instrument(skip_all)]
    pub async fn next_issue(
        &self,
        glossary: &Glossary,
        renderer: &Renderer,
        date: DateTime<Utc>,
    ) -> Result<NextIssue, AppError> {
        if let Some(issue) = self.store.unfinished_issue().await? {
            let date = issue.send_after.unwrap_or(issue.created_at);
            return Ok(NextIssue {
                number: issue.number,
                rendered: frozen_rendering(issue),
                date,
            });
        }
        match self.plan(glossary, date, None).await? {
            Planned::Ready { plan, .. } => Ok(NextIssue {
                number: plan.number,
                rendered: self.render_plan(renderer, &plan)?,
                date,
            }),
            Planned::Exhausted { cycle } => Err(AppError::Exhausted { cycle }),
            Planned::NoTerms => Err(AppError::NoTerms),
        }
    }

    /// The next issue's HTML as it would be sent, addressed to a sample editor, for the
    /// editors' `GET /preview`: records nothing.
    ///
    /// # Errors
    /// When the glossary, templates or store fail, or there is no issue to make.
    #[tracing::instrument(skip_all)]
    pub async fn preview_html(&self) -> Result<String, AppError> {
        let config = &self.config;
        let glossary = self.glossary()?;
        let renderer = self.renderer()?;
        let now = self.clock.now();
        let date = crate::schedule::next_slot(&config.schedule.cron, config.schedule.timezone, now)
            .unwrap_or(now);
        let next = self.next_issue(&glossary, &renderer, date).await?;
        Ok(next
            .rendered
            .personalize(&crate::render::Recipient {
                name: "Editor",
                first_name: "",
                email: "editor@example.com",
                unsubscribe_url: &format!("{}u/preview", config.newsletter.base_url),
            })
            .html)
    }

    /// The issue to send: an unfinished one (resumed as frozen), or else the next one,
    /// composed, rendered and frozen in one transaction with its ledger. Subscriber files are
    /// imported before the audience is fixed. `slot` names the schedule slot a daemon sends
    /// for; with `review_until`, the new issue is frozen for the editors' review and waits
    /// until then instead of going out at once.
    ///
    /// # Errors
    /// [`AppError`].
    #[tracing::instrument(skip_all)]
    pub async fn prepare(
        &self,
        glossary: &Glossary,
        renderer: &Renderer,
        now: DateTime<Utc>,
        issue_time: DateTime<Utc>,
        slot: Option<&str>,
        review_until: Option<DateTime<Utc>>,
    ) -> Result<Prepared, AppError> {
        let store = &self.store;
        if let Some(issue) = store.unfinished_issue().await? {
            match issue.status {
                IssueStatus::Held => {
                    return Ok(Prepared::Held {
                        number: issue.number,
                    });
                }
                IssueStatus::Frozen => {
                    if let Some(until) = issue.send_after.filter(|t| *t > now) {
                        return Ok(Prepared::Waiting {
                            number: issue.number,
                            until,
                        });
                    }
                    store
                        .set_issue_status(
                            issue.number,
                            &[IssueStatus::Frozen],
                            IssueStatus::Sending,
                        )
                        .await?;
                }
                _ => {}
            }
            let rendered = frozen_rendering(issue.clone());
            return Ok(Prepared::Ready {
                issue,
                rendered,
                resumed: true,
                skipped: Vec::new(),
            });
        }
        let imported = self.import_subscriber_files(now).await?;
        info!(
            added = imported.added,
            updated = imported.updated,
            suppressed = imported.suppressed,
            rejected = imported.rejected,
            files_unchanged = imported.files_unchanged,
            "imported subscriber files"
        );
        let (plan, cycle, skipped) = match self.plan(glossary, issue_time, None).await? {
            Planned::Ready {
                plan,
                cycle,
                skipped,
                ..
            } => (plan, cycle, skipped),
            Planned::Exhausted { cycle } => return Ok(Prepared::Exhausted { cycle }),
            Planned::NoTerms => return Ok(Prepared::NoTerms),
        };
        let info = self.newsletter_info();
        let rendered = self.render_plan(renderer, &plan)?;
        let web_html = rendered.web_html(&info.base_url);
        let frozen = crate::store::FrozenIssue {
            number: plan.number,
            cycle,
            term_slug: &plan.term.slug,
            subject: &rendered.subject,
            preheader: &rendered.preheader,
            html: rendered.html_template(),
            text: rendered.text_template(),
            web_html: &web_html,
            links: &plan.links,
            slot_key: slot,
            send_after: Some(review_until.unwrap_or(issue_time)),
            status: if review_until.is_some() {
                IssueStatus::Frozen
            } else {
                IssueStatus::Sending
            },
        };
        let (id, rows) = store.freeze_issue(&frozen, now).await?;
        info!(issue = plan.number, id, recipients = rows, term = %plan.term.slug, "froze the issue");
        let Some(issue) = store.issue(plan.number).await? else {
            return Err(AppError::Refused(format!(
                "issue #{} was frozen but cannot be read back",
                plan.number
            )));
        };
        Ok(Prepared::Ready {
            issue,
            rendered,
            resumed: false,
            skipped,
        })
    }
}

/// The rendering of a frozen issue, as stored.
pub(crate) fn frozen_rendering(issue: StoredIssue) -> RenderedIssue {
    RenderedIssue::from_frozen(
        issue.number,
        issue.subject,
        issue.preheader,
        issue.html,
        issue.text,
    )
}

fn warn_if_running_low(glossary: &Glossary, history: &TermHistory, chosen: &Term) {
    let remaining = selection::remaining_in_cycle(glossary, history).saturating_sub(1);
    if remaining < super::supply::LOW_TERMS {
        warn!(
            remaining,
            term = %chosen.slug,
            "fewer than {} unsent terms remain in this cycle: add terms to the glossary",
            super::supply::LOW_TERMS
        );
    }
}

/// The curated links; a missing or broken file is logged with its reason and contributes
/// nothing (the issue still goes out with the feeds' links).
pub(crate) fn load_curated(config: &Config) -> Vec<crate::domain::NewsLink> {
    let Some(path) = &config.news.curated else {
        return Vec::new();
    };
    match crate::files::load_curated(path) {
        Ok((links, errors)) => {
            for e in errors {
                warn!(file = %path.display(), "curated link skipped: {e}");
            }
            links
        }
        Err(e) => {
            warn!("curated links are not used: {e}");
            Vec::new()
        }
    }
}

async fn fetch_feeds(
    config: &Config,
    store: &Store,
    fetcher: &FeedFetcher,
    now: DateTime<Utc>,
) -> Result<Vec<FeedBatch>, StoreError> {
    let states = store.feed_states().await?;
    let outcomes = join_all(config.news.feeds.iter().map(|feed| {
        let state = states.get(feed.url.as_str());
        let validators = Validators {
            etag: state.and_then(|s| s.etag.as_deref()),
            last_modified: state.and_then(|s| s.last_modified.as_deref()),
            permanent_url: state.and_then(|s| s.permanent_url.as_deref()),
        };
        async move { (feed, fetcher.fetch(feed, validators).await) }
    }))
    .await;
    let mut batches = Vec::new();
    for (feed, outcome) in outcomes {
        let state = states.get(feed.url.as_str());
        let previous: Option<HashSet<String>> = state
            .filter(|s| s.last_success_at.is_some())
            .map(|s| s.items.iter().map(|l| l.canonical_url.clone()).collect());
        let links = record(store, feed, state, outcome, now).await?;
        batches.push(FeedBatch {
            name: feed.name.clone(),
            links,
            max_items: feed.max_items,
            previous,
        });
    }
    Ok(batches)
}

async fn record(
    store: &Store,
    feed: &FeedSource,
    state: Option<&crate::store::FeedState>,
    outcome: FetchOutcome,
    now: DateTime<Utc>,
) -> Result<Vec<crate::domain::NewsLink>, StoreError> {
    let url = feed.url.as_str();
    match outcome {
        FetchOutcome::Fetched {
            links,
            etag,
            last_modified,
            permanent_url,
        } => {
            if let Some(p) = &permanent_url {
                info!(feed = %feed.name, to = %p, "feed moved permanently; fetching the new address from now on");
            }
            info!(feed = %feed.name, items = links.len(), "fetched feed");
            store
                .record_feed_success(
                    url,
                    &feed.name,
                    FeedSuccess {
                        etag: etag.as_deref(),
                        last_modified: last_modified.as_deref(),
                        permanent_url: permanent_url.as_ref().map(url::Url::as_str),
                        items: &links,
                    },
                    now,
                )
                .await?;
            Ok(links)
        }
        FetchOutcome::NotModified => {
            let items = state.map(|s| s.items.clone()).unwrap_or_default();
            info!(feed = %feed.name, items = items.len(), "feed not modified; reusing stored items");
            store
                .record_feed_success(
                    url,
                    &feed.name,
                    FeedSuccess {
                        etag: state.and_then(|s| s.etag.as_deref()),
                        last_modified: state.and_then(|s| s.last_modified.as_deref()),
                        permanent_url: None,
                        items: &items,
                    },
                    now,
                )
                .await?;
            Ok(items)
        }
        FetchOutcome::Failed(error) => {
            let failures = state.map_or(1, |s| s.consecutive_failures + 1);
            warn!(feed = %feed.name, url, failures, "feed skipped: {error}");
            store
                .record_feed_failure(url, &feed.name, &error.to_string(), now)
                .await?;
            Ok(Vec::new())
        }
    }
}
