//! Selection: which term and which links the next issue carries, given the history.
//!
//! Pure: the glossary, the history and the candidate links are passed in; nothing here reads
//! the database, the network or the clock. Deterministic: the same inputs always give the same
//! choice, so a preview shows exactly what the send will pick.
//!
//! ## The term rule
//! 1. Terms queued by an editor come first, in queue order (skipping any already sent in the
//!    current cycle or no longer in the glossary).
//! 2. Otherwise, among the terms not yet sent in the current cycle, prefer, in this order:
//!    a term whose category differs from the previous issue's; a term more of whose related
//!    terms were already covered in this cycle (so once "attention" and "deep learning" went
//!    out, "transformer" comes before "large language model"); a term more other terms relate
//!    to (foundations first, so a new cycle opens with the ideas the rest build on); and
//!    finally the alphabetically first slug.
//! 3. When every term has been sent in the cycle: `restart` begins cycle N+1 (never repeating
//!    the previous issue's term first), `stop` makes no issue.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

use crate::domain::{NewsLink, Slug, Term};
use crate::glossary::Glossary;
use crate::news::normalize::{same_story, title_key};

/// What to do when every term of the glossary has been sent in the current cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnExhausted {
    /// Start a new cycle: every term becomes eligible again.
    Restart,
    /// Make no issue and tell the operator.
    Stop,
}

/// A term an earlier issue featured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentTerm {
    pub issue_number: u32,
    pub cycle: u32,
    pub slug: Slug,
}

/// What was sent before, in issue order.
#[derive(Debug, Clone, Default)]
pub struct TermHistory {
    pub sent: Vec<SentTerm>,
}

impl TermHistory {
    /// The cycle of the most recent issue (1 when nothing was sent yet).
    pub fn current_cycle(&self) -> u32 {
        self.sent.iter().map(|s| s.cycle).max().unwrap_or(1)
    }

    /// The term of the most recent issue.
    pub fn last(&self) -> Option<&SentTerm> {
        self.sent.iter().max_by_key(|s| s.issue_number)
    }

    /// Whether `slug` went out in the current cycle.
    pub fn sent_this_cycle(&self, slug: &Slug) -> bool {
        let cycle = self.current_cycle();
        self.sent
            .iter()
            .any(|s| s.cycle == cycle && &s.slug == slug)
    }

    fn sent_in(&self, cycle: u32) -> HashSet<&Slug> {
        self.sent
            .iter()
            .filter(|s| s.cycle == cycle)
            .map(|s| &s.slug)
            .collect()
    }
}

/// The outcome of choosing a term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TermChoice<'g> {
    /// Feature this term, recorded in this cycle.
    Next {
        term: &'g Term,
        cycle: u32,
        /// Whether the term came from the editors' queue.
        queued: bool,
    },
    /// Every term was sent in `cycle` and the policy is `stop`.
    Exhausted { cycle: u32 },
    /// The glossary is empty.
    NoTerms,
}

/// How many terms of the glossary have not been sent in the current cycle.
pub fn remaining_in_cycle(glossary: &Glossary, history: &TermHistory) -> usize {
    let sent = history.sent_in(history.current_cycle());
    glossary
        .terms()
        .iter()
        .filter(|t| !sent.contains(&t.slug))
        .count()
}

/// Why a queued term is not the next issue's term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueSkip {
    /// The slug names no term (the file was removed or renamed).
    NotInGlossary(Slug),
    /// It went out earlier in this cycle; it comes first in the next one.
    SentThisCycle { slug: Slug, cycle: u32 },
}

impl std::fmt::Display for QueueSkip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotInGlossary(slug) => {
                write!(
                    f,
                    "queued term `{slug}` was skipped: it is not in the glossary"
                )
            }
            Self::SentThisCycle { slug, cycle } => write!(
                f,
                "queued term `{slug}` was skipped: it was already sent in cycle {cycle}; it comes first in the next cycle"
            ),
        }
    }
}

/// The queued terms the next issue passes over, and why: the entries before `chosen` in the
/// queue (every entry when `chosen` did not come from the queue).
pub fn queue_skips(
    glossary: &Glossary,
    history: &TermHistory,
    queue: &[Slug],
    chosen: &Slug,
    cycle: u32,
) -> Vec<QueueSkip> {
    let sent = history.sent_in(cycle);
    queue
        .iter()
        .take_while(|s| *s != chosen)
        .filter_map(|slug| {
            if glossary.get(slug).is_none() {
                Some(QueueSkip::NotInGlossary(slug.clone()))
            } else if sent.contains(slug) {
                Some(QueueSkip::SentThisCycle {
                    slug: slug.clone(),
                    cycle,
                })
            } else {
                None
            }
        })
        .collect()
}

/// Chooses the next issue's term. See the module documentation for the rule.
pub fn next_term<'g>(
    glossary: &'g Glossary,
    history: &TermHistory,
    queue: &[Slug],
    policy: OnExhausted,
) -> TermChoice<'g> {
    if glossary.is_empty() {
        return TermChoice::NoTerms;
    }
    let mut cycle = history.current_cycle();
    let mut sent = history.sent_in(cycle);
    let last = history.last();
    let mut candidates: Vec<&Term> = glossary
        .terms()
        .iter()
        .filter(|t| !sent.contains(&t.slug))
        .collect();
    if candidates.is_empty() {
        match policy {
            OnExhausted::Stop => return TermChoice::Exhausted { cycle },
            OnExhausted::Restart => {
                cycle += 1;
                sent = HashSet::new();
                candidates = glossary
                    .terms()
                    .iter()
                    .filter(|t| glossary.len() == 1 || Some(&t.slug) != last.map(|l| &l.slug))
                    .collect();
            }
        }
    }
    for slug in queue {
        if let Some(term) = candidates.iter().find(|t| &t.slug == slug) {
            return TermChoice::Next {
                term,
                cycle,
                queued: true,
            };
        }
    }
    let previous_category = last
        .and_then(|l| glossary.get(&l.slug))
        .map(|t| t.category.as_str());
    let mut inbound: HashMap<&Slug, i64> = HashMap::new();
    for t in glossary.terms() {
        for r in &t.related {
            *inbound.entry(r).or_default() += 1;
        }
    }
    let rank = |t: &Term| {
        let covered = t.related.iter().filter(|r| sent.contains(r)).count() as i64;
        (
            previous_category == Some(t.category.as_str()),
            -covered,
            -inbound.get(&t.slug).copied().unwrap_or(0),
        )
    };
    let best = candidates
        .into_iter()
        .min_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.slug.cmp(&b.slug)))
        .expect("candidates is not empty");
    TermChoice::Next {
        term: best,
        cycle,
        queued: false,
    }
}

/// The links fetched from one feed, with what selection needs to know about that feed.
#[derive(Debug, Clone)]
pub struct FeedBatch {
    pub name: String,
    pub links: Vec<NewsLink>,
    /// At most this many links from this feed per issue.
    pub max_items: Option<usize>,
    /// Canonical URLs the feed carried at its previous successful fetch; `None` the first
    /// time a feed is fetched. Undated items count as new only when absent from this set.
    pub previous: Option<HashSet<String>>,
}

/// How links are chosen.
#[derive(Debug, Clone)]
pub struct LinkPolicy {
    pub links_per_issue: usize,
    /// Words (lower case) that raise a link's rank when found in its title or summary.
    pub keywords: Vec<String>,
}

/// Selects the issue's links: curated links first (in file order), then feed items published
/// at or after `cutoff`, each feed capped at its `max_items`, ranked by keyword hits and then
/// recency; de-duplicated by canonical URL and near-identical title, never repeating a link an
/// earlier issue sent; at most `links_per_issue`.
pub fn select_links(
    curated: Vec<NewsLink>,
    feeds: Vec<FeedBatch>,
    already_sent: &HashSet<String>,
    cutoff: DateTime<Utc>,
    policy: &LinkPolicy,
) -> Vec<NewsLink> {
    let mut chosen: Vec<NewsLink> = Vec::new();
    let mut seen_urls: HashSet<String> = already_sent.clone();
    let mut seen_titles: Vec<Vec<String>> = Vec::new();
    let mut admit = |link: NewsLink, chosen: &mut Vec<NewsLink>| {
        if chosen.len() >= policy.links_per_issue || seen_urls.contains(&link.canonical_url) {
            return;
        }
        let key = title_key(&link.title);
        if seen_titles.iter().any(|t| same_story(t, &key)) {
            return;
        }
        seen_urls.insert(link.canonical_url.clone());
        seen_titles.push(key);
        chosen.push(link);
    };
    for link in curated {
        admit(link, &mut chosen);
    }

    let mut fresh: Vec<(usize, NewsLink)> = Vec::new();
    for feed in feeds {
        let mut items: Vec<NewsLink> = feed
            .links
            .into_iter()
            .filter(|l| match (l.published, &feed.previous) {
                (Some(published), _) => published >= cutoff,
                (None, Some(previous)) => !previous.contains(&l.canonical_url),
                (None, None) => false,
            })
            .filter(|l| !already_sent.contains(&l.canonical_url))
            .collect();
        items.sort_by_key(|l| std::cmp::Reverse(l.published));
        // Within one feed, drop repeats before counting against the feed's cap.
        let mut urls = HashSet::new();
        items.retain(|l| urls.insert(l.canonical_url.clone()));
        items.truncate(feed.max_items.unwrap_or(usize::MAX));
        fresh.extend(
            items
                .into_iter()
                .map(|l| (keyword_hits(&l, &policy.keywords), l)),
        );
    }
    fresh.sort_by(|(ha, a), (hb, b)| {
        hb.cmp(ha)
            .then_with(|| b.published.cmp(&a.published))
            .then_with(|| a.canonical_url.cmp(&b.canonical_url))
    });
    for (_, link) in fresh {
        admit(link, &mut chosen);
    }
    chosen
}

fn keyword_hits(link: &NewsLink, keywords: &[String]) -> usize {
    if keywords.is_empty() {
        return 0;
    }
    let words: HashMap<String, ()> = title_key(&format!("{} {}", link.title, link.summary))
        .into_iter()
        .map(|w| (w, ()))
        .collect();
    keywords
        .iter()
        .filter(|k| {
            let key = title_key(k);
            !key.is_empty() && key.iter().all(|w| words.contains_key(w))
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn link(title: &str, url: &str, day: Option<u32>) -> NewsLink {
        NewsLink {
            title: title.into(),
            url: url.into(),
            canonical_url: url.into(),
            source: "F".into(),
            summary: String::new(),
            published: day.map(|d| Utc.with_ymd_and_hms(2026, 11, d, 8, 0, 0).unwrap()),
            curated: false,
        }
    }

    #[test]
    fn curated_first_then_keywords_then_recency_and_caps() {
        let cutoff = Utc.with_ymd_and_hms(2026, 11, 10, 0, 0, 0).unwrap();
        let mut curated = link("Pick", "https://c.example/1", None);
        curated.curated = true;
        let feed = FeedBatch {
            name: "F".into(),
            links: vec![
                link("Old news", "https://f.example/old", Some(1)),
                link("Fresh story", "https://f.example/new", Some(20)),
                link("About transformers", "https://f.example/t", Some(15)),
                link("Undated", "https://f.example/undated", None),
            ],
            max_items: Some(2),
            previous: None,
        };
        let policy = LinkPolicy {
            links_per_issue: 5,
            keywords: vec!["transformers".into()],
        };
        let picked = select_links(vec![curated], vec![feed], &HashSet::new(), cutoff, &policy);
        let titles: Vec<&str> = picked.iter().map(|l| l.title.as_str()).collect();
        assert_eq!(titles, ["Pick", "About transformers", "Fresh story"]);
    }
}
