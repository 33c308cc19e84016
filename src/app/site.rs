//! Use case: what the web pages and probes show. The archive of published issues, the
//! glossary, health and metrics; the HTTP layer only renders these values.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use tracing::warn;

use super::App;
use crate::domain::{DeliveryStatus, SubscriberStatus};
use crate::glossary::Glossary;
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
}

impl App {
    /// Issues that went out, newest first.
    ///
    /// # Errors
    /// A database error.
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
    pub async fn published_issue(&self, number: u32) -> Result<Option<StoredIssue>, StoreError> {
        Ok(self
            .published_issues()
            .await?
            .into_iter()
            .find(|i| i.number == number))
    }

    /// The glossary as the web pages show it: every term file that parses. Broken files
    /// are logged (and reported by `herald glossary check`), and the other terms are served.
    pub fn glossary_for_pages(&self) -> Glossary {
        let (glossary, report) = crate::files::load_glossary(&self.config.glossary_dir);
        if !report.errors.is_empty() {
            warn!(
                errors = report.errors.len(),
                first = %report.errors[0],
                "the glossary has errors: pages show the terms that parse"
            );
        }
        glossary
    }

    /// Whether the daemon is healthy: the store answers and the scheduler ticks.
    ///
    /// # Errors
    /// [`Unhealthy`] with the reason.
    pub async fn health_check(&self) -> Result<(), Unhealthy> {
        self.store.ping().await?;
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
    pub async fn metrics(&self) -> Result<Metrics, StoreError> {
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
        Ok(Metrics {
            issues_sent,
            deliveries: by_status,
            last_send_seconds: self.health.last_send_ms.load(Ordering::Relaxed) as f64 / 1000.0,
            feed_failures,
            subscribers: self.store.subscriber_counts().await?,
        })
    }
}
