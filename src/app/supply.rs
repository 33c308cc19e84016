//! Use case: is there enough content for the next issues? Unsent terms in the cycle, links the
//! next issue would carry, curated links left, failing feeds. Read from the store and the
//! feed cache only (no network), so `herald check` and `/metrics` can ask at any time.

use chrono::{DateTime, Duration, Utc};

use super::{App, AppError};
use crate::glossary::Glossary;
use crate::selection::{self, LinkPolicy};

/// Fewer unsent terms than this in the current cycle earns a warning.
pub const LOW_TERMS: usize = 4;

/// What is left to make issues from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Supply {
    pub cycle: u32,
    /// Terms not yet sent in the current cycle.
    pub unsent_terms: usize,
    /// The links the next issue would carry with the feeds as last fetched.
    pub next_issue_links: usize,
    /// `[news] min_links`.
    pub min_links: usize,
    /// Curated links no issue has carried yet.
    pub unsent_curated: usize,
    /// Configured feeds whose last fetch failed.
    pub failing_feeds: usize,
}

impl Supply {
    /// What an operator should hear about, one line each.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.unsent_terms < LOW_TERMS {
            out.push(format!(
                "only {} terms remain unsent in cycle {}: add terms to the glossary",
                self.unsent_terms, self.cycle
            ));
        }
        if self.next_issue_links < self.min_links {
            out.push(format!(
                "the next issue would carry {} links, fewer than [news] min_links = {}",
                self.next_issue_links, self.min_links
            ));
        }
        if self.unsent_curated < self.min_links && self.failing_feeds > 0 {
            out.push(format!(
                "only {} curated links remain unsent and {} feeds are failing: add links to the curated file",
                self.unsent_curated, self.failing_feeds
            ));
        }
        out
    }
}

impl App {
    /// The content supply now, from the store and the feed cache.
    ///
    /// # Errors
    /// A database error.
    #[tracing::instrument(skip_all)]
    pub async fn supply(
        &self,
        glossary: &Glossary,
        now: DateTime<Utc>,
    ) -> Result<Supply, AppError> {
        let (config, store) = (&self.config, &self.store);
        let history = store.term_history().await?;
        let sent = store.sent_link_urls().await?;
        let curated = self.curated();
        let unsent_curated = curated
            .iter()
            .filter(|l| !sent.contains(&l.canonical_url))
            .count();
        let states = store.feed_states().await?;
        let failing_feeds = super::feed_cache::failing_feeds(config, &states).len();
        let batches = super::feed_cache::cached_batches(config, &states);
        let oldest = now - Duration::days(i64::from(config.news.max_age_days));
        let cutoff = store
            .last_issue()
            .await?
            .map_or(oldest, |l| l.created_at.max(oldest));
        let policy = LinkPolicy {
            links_per_issue: config.news.links_per_issue,
            keywords: config.news.keywords.clone(),
        };
        let next_issue_links =
            selection::select_links(curated.to_vec(), batches, &sent, cutoff, &policy).len();
        Ok(Supply {
            cycle: history.current_cycle(),
            unsent_terms: selection::remaining_in_cycle(glossary, &history),
            next_issue_links,
            min_links: config.news.min_links,
            unsent_curated,
            failing_feeds,
        })
    }
}
