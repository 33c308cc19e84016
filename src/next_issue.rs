//! Use case: work out the next issue — its number, term and links — exactly as the send will.
//!
//! Reads the store and fetches feeds (recording each feed's state: ETag, Last-Modified, items,
//! failures), then hands the values to the pure [`crate::selection`] functions. Records no
//! issue, term or link: freezing is the send's job.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use futures::future::join_all;
use tracing::{info, warn};

use crate::config::{Config, FeedSource};
use crate::domain::{Slug, Term};
use crate::glossary::Glossary;
use crate::news::curated::parse_curated;
use crate::news::fetch::{FeedFetcher, FetchOutcome, Validators};
use crate::render::{IssuePlan, NewsletterInfo};
use crate::selection::{self, FeedBatch, LinkPolicy, TermChoice, TermHistory};
use crate::store::{FeedSuccess, Store, StoreError};

/// Fewer unsent terms than this in the current cycle earns a warning.
pub const LOW_TERMS_WARNING: usize = 8;

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
    },
    /// Every term was sent in this cycle and `on_exhausted = "stop"`.
    Exhausted { cycle: u32 },
    /// The glossary has no terms.
    NoTerms,
}

/// A planning failure.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no term `{0}` in the glossary")]
    UnknownTerm(String),
}

/// The newsletter facts templates need.
pub fn newsletter_info(config: &Config) -> NewsletterInfo {
    NewsletterInfo {
        name: config.newsletter.name.clone(),
        base_url: config.newsletter.base_url.to_string(),
        timezone: config.schedule.timezone,
    }
}

/// The queue in force: `[schedule] queue` first, then `herald queue add` entries.
///
/// # Errors
/// A database error.
pub async fn queue(config: &Config, store: &Store) -> Result<Vec<Slug>, StoreError> {
    let mut queue = config.schedule.queue.clone();
    for slug in store.queue().await? {
        if !queue.contains(&slug) {
            queue.push(slug);
        }
    }
    Ok(queue)
}

/// Plans the next issue for `issue_time`. `term` overrides the rotation (editors' preview).
///
/// # Errors
/// A database error, or an unknown `term`.
pub async fn plan(
    config: &Config,
    glossary: &Glossary,
    store: &Store,
    fetcher: &FeedFetcher,
    issue_time: DateTime<Utc>,
    term: Option<&str>,
) -> Result<Planned, PlanError> {
    let history = store.term_history().await?;
    let (chosen, cycle, queued) = match term {
        Some(name) => {
            let t = glossary
                .find(name)
                .ok_or_else(|| PlanError::UnknownTerm(name.to_owned()))?;
            (t, history.current_cycle(), false)
        }
        None => {
            let queue = queue(config, store).await?;
            match selection::next_term(glossary, &history, &queue, config.schedule.on_exhausted) {
                TermChoice::Next {
                    term,
                    cycle,
                    queued,
                } => (term, cycle, queued),
                TermChoice::Exhausted { cycle } => return Ok(Planned::Exhausted { cycle }),
                TermChoice::NoTerms => return Ok(Planned::NoTerms),
            }
        }
    };
    warn_if_running_low(glossary, &history, chosen);

    let last = store.last_issue().await?;
    let oldest = issue_time - Duration::days(i64::from(config.news.max_age_days));
    let cutoff = last.map_or(oldest, |l| l.created_at.max(oldest));
    let batches = fetch_feeds(config, store, fetcher, issue_time).await?;
    let curated = load_curated(config);
    let sent = store.sent_link_urls().await?;
    let policy = LinkPolicy {
        links_per_issue: config.news.links_per_issue,
        keywords: config.news.keywords.clone(),
    };
    let links = selection::select_links(curated, batches, &sent, cutoff, &policy);
    info!(term = %chosen.slug, cycle, queued, links = links.len(), "planned the next issue");
    Ok(Planned::Ready {
        plan: Box::new(IssuePlan {
            number: last.map_or(1, |l| l.number + 1),
            date: issue_time,
            term: chosen.clone(),
            related: related_names(glossary, chosen),
            links,
        }),
        cycle,
        queued,
    })
}

/// The related terms that exist, as (slug, display name).
pub fn related_names(glossary: &Glossary, term: &Term) -> Vec<(String, String)> {
    term.related
        .iter()
        .filter_map(|s| glossary.get(s).map(|r| (s.to_string(), r.term.clone())))
        .collect()
}

fn warn_if_running_low(glossary: &Glossary, history: &TermHistory, chosen: &Term) {
    let remaining = selection::remaining_in_cycle(glossary, history).saturating_sub(1);
    if remaining < LOW_TERMS_WARNING {
        warn!(
            remaining,
            term = %chosen.slug,
            "fewer than {LOW_TERMS_WARNING} unsent terms remain in this cycle: add terms to the glossary"
        );
    }
}

fn load_curated(config: &Config) -> Vec<crate::domain::NewsLink> {
    let Some(path) = &config.news.curated else {
        return Vec::new();
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            warn!(file = %path.display(), error = %e, "cannot read the curated links file; continuing without it");
            return Vec::new();
        }
    };
    match parse_curated(&text) {
        Ok((links, errors)) => {
            for e in errors {
                warn!(file = %path.display(), "curated link skipped: {e}");
            }
            links
        }
        Err(e) => {
            warn!(file = %path.display(), "curated links file is invalid, continuing without it: {e}");
            Vec::new()
        }
    }
}

/// Fetches every configured feed concurrently and records each outcome in the store. A
/// failing feed is logged with its name and reason and contributes no links.
///
/// # Errors
/// Only a database error; feed failures are not errors.
pub async fn fetch_feeds(
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

/// Counts of the feeds' recent health, for `herald check`.
pub fn failing_feeds(
    config: &Config,
    states: &HashMap<String, crate::store::FeedState>,
) -> Vec<(String, i64, String)> {
    config
        .news
        .feeds
        .iter()
        .filter_map(|f| {
            let s = states.get(f.url.as_str())?;
            (s.consecutive_failures > 0).then(|| {
                (
                    f.name.clone(),
                    s.consecutive_failures,
                    s.last_error.clone().unwrap_or_default(),
                )
            })
        })
        .collect()
}

/// The issue a send works on.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // made once per send; boxing would buy nothing
pub enum Prepared {
    /// Frozen (now or earlier) and ready to deliver.
    Ready {
        issue: crate::store::StoredIssue,
        rendered: crate::render::RenderedIssue,
        /// Whether an interrupted send is being resumed.
        resumed: bool,
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

/// Why an issue could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("rendering the issue: {0}")]
    Render(#[from] crate::render::RenderError),
    #[error("reading subscriber file {file}: {message}")]
    Subscribers { file: String, message: String },
}

/// The outcome of importing one subscriber file.
#[derive(Debug, Clone, Default)]
pub struct FileImport {
    pub counts: crate::store::ImportCounts,
    /// Bad rows, with their line numbers and reasons.
    pub rejected: Vec<crate::subscriber_file::RejectedRow>,
}

/// The CSV files of a subscribers directory, sorted.
///
/// # Errors
/// [`PrepareError::Subscribers`] when the directory cannot be read.
pub fn subscriber_csv_files(
    dir: &std::path::Path,
) -> Result<Vec<std::path::PathBuf>, PrepareError> {
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| PrepareError::Subscribers {
            file: dir.display().to_string(),
            message: e.to_string(),
        })?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")))
        .collect();
    files.sort();
    Ok(files)
}

/// Reads, parses and imports one subscriber file (with the suppression rule): the good rows
/// are imported, the bad ones returned with their line numbers and reasons.
///
/// # Errors
/// When the file cannot be read, its header is unusable, or the store fails.
pub async fn import_subscriber_file(
    store: &Store,
    file: &std::path::Path,
    now: DateTime<Utc>,
) -> Result<FileImport, PrepareError> {
    let err = |message: String| PrepareError::Subscribers {
        file: file.display().to_string(),
        message,
    };
    let bytes = std::fs::read(file).map_err(|e| err(e.to_string()))?;
    let parsed = crate::subscriber_file::parse(&bytes).map_err(|e| err(e.to_string()))?;
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut counts = store
        .import_subscribers(&parsed.rows, &format!("import:{name}"), now)
        .await?;
    counts.rejected = parsed.rejected.len() as u64;
    Ok(FileImport {
        counts,
        rejected: parsed.rejected,
    })
}

/// Imports every CSV file of `[subscribers] dir` (with the suppression rule), logging each
/// rejected row with its file and line. Returns the summed counts.
///
/// # Errors
/// When a file cannot be read or its header is unusable, or the store fails.
pub async fn import_subscriber_files(
    config: &Config,
    store: &Store,
    now: DateTime<Utc>,
) -> Result<crate::store::ImportCounts, PrepareError> {
    let mut total = crate::store::ImportCounts::default();
    for file in subscriber_csv_files(&config.subscribers_dir)? {
        let imported = import_subscriber_file(store, &file, now).await?;
        for r in &imported.rejected {
            warn!(file = %file.display(), line = r.line, "subscriber row rejected: {}", r.reason);
        }
        let c = imported.counts;
        total.added += c.added;
        total.updated += c.updated;
        total.unchanged += c.unchanged;
        total.suppressed += c.suppressed;
        total.rejected += c.rejected;
    }
    Ok(total)
}

/// The issue to send: an unfinished one (resumed as frozen), or else the next one, composed,
/// rendered and frozen in one transaction with its ledger. Subscriber files are imported
/// before the audience is fixed. `slot` names the schedule slot a daemon sends for; with
/// `review`, the new issue is frozen to wait for `issue_time` instead of going out at once.
///
/// # Errors
/// [`PrepareError`].
#[allow(clippy::too_many_arguments)]
pub async fn prepare(
    config: &Config,
    glossary: &Glossary,
    renderer: &crate::render::Renderer,
    store: &Store,
    fetcher: &FeedFetcher,
    now: DateTime<Utc>,
    issue_time: DateTime<Utc>,
    slot: Option<&str>,
    review: bool,
) -> Result<Prepared, PrepareError> {
    if let Some(issue) = store.unfinished_issue().await? {
        if issue.status == "held" {
            return Ok(Prepared::Held {
                number: issue.number,
            });
        }
        if issue.status == "frozen" {
            if let Some(until) = issue.send_after.filter(|t| *t > now) {
                return Ok(Prepared::Waiting {
                    number: issue.number,
                    until,
                });
            }
            store
                .set_issue_status(issue.number, &["frozen"], "sending")
                .await?;
        }
        let rendered = crate::render::RenderedIssue::from_frozen(
            issue.number,
            issue.subject.clone(),
            issue.preheader.clone(),
            issue.html.clone(),
            issue.text.clone(),
        );
        return Ok(Prepared::Ready {
            issue,
            rendered,
            resumed: true,
        });
    }
    let imported = import_subscriber_files(config, store, now).await?;
    info!(
        added = imported.added,
        updated = imported.updated,
        suppressed = imported.suppressed,
        rejected = imported.rejected,
        "imported subscriber files"
    );
    let (plan, cycle) = match plan(config, glossary, store, fetcher, issue_time, None).await? {
        Planned::Ready { plan, cycle, .. } => (plan, cycle),
        Planned::Exhausted { cycle } => return Ok(Prepared::Exhausted { cycle }),
        Planned::NoTerms => return Ok(Prepared::NoTerms),
    };
    let info = newsletter_info(config);
    let rendered = renderer.render_issue(&plan, &info)?;
    let web_html = rendered.web_html(&info.base_url);
    let frozen = crate::store::FrozenIssue {
        number: plan.number,
        cycle,
        term_slug: plan.term.slug.as_str(),
        subject: &rendered.subject,
        preheader: &rendered.preheader,
        html: rendered.html_template(),
        text: rendered.text_template(),
        web_html: &web_html,
        links: &plan.links,
        slot_key: slot,
        send_after: Some(issue_time),
        status: if review { "frozen" } else { "sending" },
    };
    let (id, rows) = store.freeze_issue(&frozen, now).await?;
    info!(issue = plan.number, id, recipients = rows, term = %plan.term.slug, "froze the issue");
    let issue = store
        .issue(plan.number)
        .await?
        .expect("the issue was just frozen");
    Ok(Prepared::Ready {
        issue,
        rendered,
        resumed: false,
    })
}
