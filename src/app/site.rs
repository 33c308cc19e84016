//! Use case: what the web pages and probes show. The archive of published issues, the
//! glossary, health and metrics; the HTTP layer only renders these values.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use chrono::{DateTime, Utc};

use super::App;
use crate::domain::{DeliveryStatus, SubscriberStatus, Term};

use crate::store::{StoreError, StoredIssue};

/// Daemon health, shared by the scheduler and the web server.
#[derive(Debug, Default)]
pub struct Health {
    /// Unix seconds of the scheduler's last tick (0 before the first).
    last_tick: AtomicI64,
    /// Unix seconds when the app started.
    started: AtomicI64,
    /// Duration of the most recent send run, in milliseconds.
    last_send_ms: AtomicU64,
}

impl Health {
    /// Records the start time.
    pub fn started(&self, now: DateTime<Utc>) {
        self.started.store(now.timestamp(), Ordering::Relaxed);
    }

    /// Records a scheduler tick.
    pub fn ticked(&self, now: DateTime<Utc>) {
        self.last_tick.store(now.timestamp(), Ordering::Relaxed);
    }

    /// Records how long a send run took.
    pub fn sent(&self, duration: std::time::Duration) {
        self.last_send_ms
            .store(duration.as_millis() as u64, Ordering::Relaxed);
    }
}

/// Why the daemon is not healthy.
#[derive(Debug, thiserror::Error)]
pub enum Unhealthy {
    #[error("store unreachable: {0}")]
    Store(#[from] StoreError),
    #[error("store cannot take a write: {0}")]
    ReadOnly(StoreError),
    #[error("scheduler stalled: last tick {0} s ago")]
    Stalled(i64),
}

/// The figures `/metrics` shows.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    pub issues_sent: i64,
    /// Every delivery status, with its count over all issues.
    pub deliveries: BTreeMap<DeliveryStatus, i64>,
    /// Duration of the most recent send run.
    pub last_send_seconds: f64,
    /// Each configured feed's name and its consecutive failures.
    pub feed_failures: Vec<(String, i64)>,
    pub subscribers: BTreeMap<SubscriberStatus, u64>,
    /// The links the next issue would carry with the feeds as last fetched.
    pub next_issue_links: usize,
    /// Glossary terms not yet sent in the current cycle.
    pub unsent_terms: usize,
    /// Confirmation and welcome emails waiting in the mail queue, and given up on.
    pub mail_queue: crate::store::QueueCounts,
    /// When the newest issue that went out was sent, its share of recipients whose address
    /// bounced (during the send or reported later), and its complaints per delivered copy.
    pub last_issue: Option<(chrono::DateTime<chrono::Utc>, f64, f64)>,
    /// How many of the newest issue's rates are over the alert thresholds (complaints over
    /// 0.1%, hard bounces over 2%).
    pub feedback_alerts: usize,
    /// The next slot of the schedule.
    pub next_slot: Option<chrono::DateTime<chrono::Utc>>,
}

/// What a glossary page request found.
#[derive(Debug, Clone)]
pub enum TermLookup {
    /// The term, by its slug.
    Found(Box<TermPage>),
    /// A name or alias of this term: its page is at the slug.
    Moved(crate::domain::Slug),
    /// No such term; the closest names.
    NotFound { closest: Vec<Term> },
}

/// Everything a term's page shows.
#[derive(Debug, Clone)]
pub struct TermPage {
    pub term: Term,
    pub related: Vec<Term>,
    /// The terms before and after it in its category, alphabetically.
    pub prev: Option<Term>,
    pub next: Option<Term>,
    /// Published issues that featured it, newest first.
    pub featured_in: Vec<StoredIssue>,
    /// When its file last changed.
    pub last_modified: Option<DateTime<Utc>>,
}

/// A page of the sitemap: its URL and when it last changed, if known.
pub type SitemapEntry = (String, Option<DateTime<Utc>>);

impl App {
    /// Issues that went out, newest first.
    ///
    /// # Errors
    /// A database error.
    #[tracing::instrument(skip_all)]
    pub async fn published_issues(&self) -> Result<Vec<StoredIssue>, StoreError> {
        let now = self.clock.now();
        Ok(self
            .store
            .issues()
            .await?
            .into_iter()
            .filter(|i| i.status.is_published() && i.send_after.is_none_or(|t| t <= now))
            .collect())
    }

    /// One published issue.
    ///
    /// # Errors
    /// A database error.
    #[tracing::instrument(skip_all, fields(issue = number))]
    pub async fn published_issue(&self, number: u32) -> Result<Option<StoredIssue>, StoreError> {
        Ok(self
            .published_issues()
            .await?
            .into_iter()
            .find(|i| i.number == number))
    }

    /// What `/glossary/{name}` shows for a slug, name or alias.
    ///
    /// # Errors
    /// A database error.
    #[tracing::instrument(skip_all)]
    pub async fn term_page(&self, name: &str) -> Result<TermLookup, StoreError> {
        let glossary = self.glossary_for_pages();
        let Some(term) = glossary.find(name) else {
            let closest = glossary.closest(name, 5).into_iter().cloned().collect();
            return Ok(TermLookup::NotFound { closest });
        };
        if term.slug.as_str() != name {
            return Ok(TermLookup::Moved(term.slug.clone()));
        }
        let featured_in = self
            .published_issues()
            .await?
            .into_iter()
            .filter(|i| i.term == term.slug)
            .collect();
        let (prev, next) = glossary.neighbours(term);
        Ok(TermLookup::Found(Box::new(TermPage {
            related: term
                .related
                .iter()
                .filter_map(|r| glossary.get(r).cloned())
                .collect(),
            prev: prev.cloned(),
            next: next.cloned(),
            featured_in,
            last_modified: crate::files::modified(&term.path),
            term: term.clone(),
        })))
    }

    /// Every page a search engine should know, with its last change: the home page, the
    /// glossary and each term (its file's modification time), the archive and each issue.
    ///
    /// # Errors
    /// A database error.
    #[tracing::instrument(skip_all)]
    pub async fn sitemap(&self) -> Result<Vec<SitemapEntry>, StoreError> {
        let glossary = self.glossary_for_pages();
        let issues = self.published_issues().await?;
        let newest_issue = issues.first().map(|i| i.send_after.unwrap_or(i.created_at));
        let newest_term = glossary
            .terms()
            .iter()
            .filter_map(|t| crate::files::modified(&t.path))
            .max();
        let mut pages = vec![
            (String::new(), None),
            ("glossary".to_owned(), newest_term),
            ("archive".to_owned(), newest_issue),
        ];
        pages.extend(glossary.terms().iter().map(|t| {
            (
                format!("glossary/{}", t.slug),
                crate::files::modified(&t.path),
            )
        }));
        pages.extend(issues.iter().map(|i| {
            (
                format!("archive/{}", i.number),
                Some(
                    i.finished_at
                        .unwrap_or(i.send_after.unwrap_or(i.created_at)),
                ),
            )
        }));
        Ok(pages)
    }

    /// Whether the daemon is healthy: the store answers and the scheduler ticks.
    ///
    /// # Errors
    /// [`Unhealthy`] with the reason.
    #[tracing::instrument(skip_all)]
    pub async fn health_check(&self) -> Result<(), Unhealthy> {
        self.store.ping().await?;
        self.store
            .write_probe(self.clock.now())
            .await
            .map_err(Unhealthy::ReadOnly)?;
        let now = self.clock.now().timestamp();
        let last = self.health.last_tick.load(Ordering::Relaxed);
        let started = self.health.started.load(Ordering::Relaxed);
        let limit = i64::from(self.config.schedule.poll_seconds) * 3 + 60;
        let reference = if last == 0 { started } else { last };
        if now - reference > limit {
            return Err(Unhealthy::Stalled(now - reference));
        }
        Ok(())
    }

    /// The figures for `/metrics`.
    ///
    /// # Errors
    /// A database error.
    #[tracing::instrument(skip_all)]
    pub async fn metrics(&self) -> Result<Metrics, super::AppError> {
        let (deliveries, issues_sent) = self.store.delivery_totals().await?;
        let mut by_status: BTreeMap<DeliveryStatus, i64> =
            DeliveryStatus::ALL.iter().map(|s| (*s, 0)).collect();
        by_status.extend(deliveries);
        let states: HashMap<String, crate::store::FeedState> = self.store.feed_states().await?;
        let feed_failures = self
            .config
            .news
            .feeds
            .iter()
            .map(|feed| {
                let n = states
                    .get(feed.url.as_str())
                    .map_or(0, |st| st.consecutive_failures);
                (feed.name.clone(), n)
            })
            .collect();
        let supply = self
            .supply(&self.glossary_for_pages(), self.clock.now())
            .await?;
        Ok(Metrics {
            next_issue_links: supply.next_issue_links,
            unsent_terms: supply.unsent_terms,
            issues_sent,
            deliveries: by_status,
            last_send_seconds: self.health.last_send_ms.load(Ordering::Relaxed) as f64 / 1000.0,
            feed_failures,
            subscribers: self.store.subscriber_counts().await?,
            mail_queue: self.store.mail_queue_counts(self.clock.now()).await?,
            feedback_alerts: self.feedback_alerts().await?.len(),
            last_issue: self.store.latest_issue_stats().await?.map(|s| {
                let ratio = |n: i64, of: i64| if of > 0 { n as f64 / of as f64 } else { 0.0 };
                (
                    s.sent_at,
                    ratio(s.bounced + s.bounced_later, s.recipients),
                    ratio(s.complaints, s.delivered),
                )
            }),
            next_slot: crate::schedule::next_slots(
                &self.config.schedule.cron,
                self.config.schedule.timezone,
                self.clock.now(),
                1,
            )
            .first()
            .copied(),
        })
    }
}

impl App {
    /// Follows news link `position` of issue `number` (`GET /l/NUMBER/POSITION`): counts
    /// the click for that link (nothing about who clicked) and returns where it leads.
    ///
    /// # Errors
    /// When the store fails.
    #[tracing::instrument(skip_all, fields(issue = number))]
    pub async fn follow_link(
        &self,
        number: u32,
        position: u32,
    ) -> Result<Option<String>, super::AppError> {
        Ok(self.store.count_click(number, position).await?)
    }

    /// What happened after each issue that went out, newest first (`herald stats`, and the
    /// editors' `GET /archive/stats`).
    ///
    /// # Errors
    /// When the store fails.
    #[tracing::instrument(skip_all)]
    pub async fn issue_stats(
        &self,
        number: Option<u32>,
    ) -> Result<Vec<crate::store::IssueStats>, super::AppError> {
        Ok(self.store.issue_stats(number).await?)
    }
}
