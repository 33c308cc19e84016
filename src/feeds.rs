//! Fetching feeds over HTTP.
//!
//! Adapter. One reqwest client (rustls) with connect, read and total timeouts, a User-Agent
//! naming Herald, gzip, and a cap on the body size. Conditional GET with the stored ETag and
//! Last-Modified (a 304 means "reuse the stored items"). Redirects are followed here, not by
//! reqwest, so that permanent ones (301, 308) can be recorded and used next time.
//! `Retry-After` on 429 and 503 is honoured once when the wait is short, and reported
//! otherwise. A failure never escapes as a panic or an error that stops the issue: it is a
//! [`FetchOutcome::Failed`] with a reason for the operator.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{
    DATE, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED, LOCATION, RETRY_AFTER,
};
use url::Url;

use crate::config::FeedSource;
use crate::domain::NewsLink;
use crate::news::{FeedParseError, parse_feed};

/// Limits for fetching.
#[derive(Debug, Clone)]
pub struct FetchSettings {
    pub connect_timeout: Duration,
    /// Longest silence between two reads of the response.
    pub read_timeout: Duration,
    /// Longest time for a whole request, body included.
    pub total_timeout: Duration,
    pub max_body_bytes: u64,
    pub max_redirects: usize,
    /// `Retry-After` waits up to this long are honoured once; longer ones fail the feed.
    pub max_retry_after: Duration,
    pub user_agent: String,
    /// Feeds fetched at once from one host: a slow host delays only its own feeds, and no
    /// server gets a burst of connections from one preview.
    pub per_host: usize,
    /// Feeds fetched at once in all.
    pub total: usize,
}

impl Default for FetchSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(20),
            total_timeout: Duration::from_secs(30),
            max_body_bytes: 5 * 1024 * 1024,
            max_redirects: 5,
            max_retry_after: Duration::from_secs(10),
            user_agent: format!(
                "Herald/{} (newsletter feed reader)",
                env!("CARGO_PKG_VERSION")
            ),
            per_host: 2,
            total: 16,
        }
    }
}

/// Why a feed could not be used this time.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("timed out")]
    Timeout,
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("request failed: {0}")]
    Request(String),
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("the server asked to retry after {0} seconds")]
    RetryAfter(u64),
    #[error("the body is larger than {0} bytes")]
    TooLarge(u64),
    #[error("more than {0} redirects")]
    TooManyRedirects(usize),
    #[error("redirect without a valid Location header")]
    BadRedirect,
    #[error(transparent)]
    Parse(#[from] FeedParseError),
}

/// What fetching one feed gave.
#[derive(Debug)]
pub enum FetchOutcome {
    /// New content.
    Fetched {
        links: Vec<NewsLink>,
        etag: Option<String>,
        last_modified: Option<String>,
        /// Set when a permanent redirect was followed.
        permanent_url: Option<Url>,
    },
    /// 304: the stored items are still current.
    NotModified,
    Failed(FetchError),
}

/// Validators from the previous fetch, for a conditional GET.
#[derive(Debug, Clone, Default)]
pub struct Validators<'a> {
    pub etag: Option<&'a str>,
    pub last_modified: Option<&'a str>,
    /// A permanent redirect seen earlier: fetched instead of the configured URL.
    pub permanent_url: Option<&'a str>,
}

/// Fetches feeds.
#[derive(Debug, Clone)]
pub struct FeedFetcher {
    client: reqwest::Client,
    settings: FetchSettings,
    /// Fetches in flight in all.
    total: std::sync::Arc<tokio::sync::Semaphore>,
    /// Fetches in flight per host (`host:port`).
    hosts: std::sync::Arc<
        std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<tokio::sync::Semaphore>>>,
    >,
}

impl FeedFetcher {
    /// Builds the HTTP client.
    ///
    /// # Errors
    /// When the TLS or HTTP client cannot be set up.
    pub fn new(settings: FetchSettings) -> Result<Self, reqwest::Error> {
        // reqwest is built without a default crypto provider; use ring, as lettre does.
        // `Err` means a provider is installed already (by an earlier call): that is fine.
        if rustls::crypto::ring::default_provider()
            .install_default()
            .is_err()
        {
            tracing::trace!("a rustls crypto provider was already installed");
        }
        let client = reqwest::Client::builder()
            .user_agent(&settings.user_agent)
            .connect_timeout(settings.connect_timeout)
            .read_timeout(settings.read_timeout)
            .timeout(settings.total_timeout)
            .gzip(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            client,
            total: std::sync::Arc::new(tokio::sync::Semaphore::new(settings.total.max(1))),
            hosts: std::sync::Arc::default(),
            settings,
        })
    }

    /// Fetches and parses one feed. Never fails: problems are a [`FetchOutcome::Failed`].
    pub async fn fetch(&self, feed: &FeedSource, validators: Validators<'_>) -> FetchOutcome {
        let start = validators
            .permanent_url
            .and_then(|u| Url::parse(u).ok())
            .unwrap_or_else(|| feed.url.clone());
        // Wait for a turn at this host and overall; the timeouts run from the request's
        // start, so time spent waiting here never fails a feed.
        let host = self.host_limit(&start);
        let (Ok(_host_turn), Ok(_turn)) = (host.acquire().await, self.total.acquire().await) else {
            unreachable!("the fetcher's semaphores are never closed")
        };
        match self.fetch_inner(feed, start, &validators).await {
            Ok(outcome) => outcome,
            Err(e) => FetchOutcome::Failed(e),
        }
    }

    fn host_limit(&self, url: &Url) -> std::sync::Arc<tokio::sync::Semaphore> {
        let key = format!(
            "{}:{}",
            url.host_str().unwrap_or_default().to_ascii_lowercase(),
            url.port_or_known_default().unwrap_or(0)
        );
        self.hosts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(key)
            .or_insert_with(|| {
                std::sync::Arc::new(tokio::sync::Semaphore::new(self.settings.per_host.max(1)))
            })
            .clone()
    }

    async fn fetch_inner(
        &self,
        feed: &FeedSource,
        start: Url,
        validators: &Validators<'_>,
    ) -> Result<FetchOutcome, FetchError> {
        let mut url = start;
        let mut permanent: Option<Url> = None;
        let mut all_permanent = true;
        let mut retried = false;
        let mut redirects = 0;
        loop {
            let mut request = self.client.get(url.clone());
            if let Some(etag) = validators.etag {
                request = request.header(IF_NONE_MATCH, etag);
            }
            if let Some(lm) = validators.last_modified {
                request = request.header(IF_MODIFIED_SINCE, lm);
            }
            let response = request.send().await.map_err(classify)?;
            let status = response.status();
            if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
                redirects += 1;
                if redirects > self.settings.max_redirects {
                    return Err(FetchError::TooManyRedirects(self.settings.max_redirects));
                }
                let next = response
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|loc| url.join(loc).ok())
                    .ok_or(FetchError::BadRedirect)?;
                let is_permanent = matches!(
                    status,
                    StatusCode::MOVED_PERMANENTLY | StatusCode::PERMANENT_REDIRECT
                );
                all_permanent &= is_permanent;
                if all_permanent {
                    permanent = Some(next.clone());
                }
                url = next;
                continue;
            }
            if status == StatusCode::NOT_MODIFIED {
                return Ok(FetchOutcome::NotModified);
            }
            if matches!(
                status,
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
            ) {
                let header = |name| response.headers().get(name).and_then(|v| v.to_str().ok());
                let wait = header(RETRY_AFTER).and_then(|v| retry_after_seconds(v, header(DATE)));
                match wait {
                    Some(secs)
                        if !retried
                            && Duration::from_secs(secs) <= self.settings.max_retry_after =>
                    {
                        retried = true;
                        tokio::time::sleep(Duration::from_secs(secs)).await;
                        continue;
                    }
                    Some(secs) => return Err(FetchError::RetryAfter(secs)),
                    None => return Err(FetchError::Status(status.as_u16())),
                }
            }
            if !status.is_success() {
                return Err(FetchError::Status(status.as_u16()));
            }
            let header = |name| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                    .map(str::to_owned)
            };
            let etag = header(ETAG);
            let last_modified = header(LAST_MODIFIED);
            let body = self.read_capped(response).await?;
            let links = parse_feed(&body, &url, &feed.name)?;
            return Ok(FetchOutcome::Fetched {
                links,
                etag,
                last_modified,
                permanent_url: permanent,
            });
        }
    }

    async fn read_capped(&self, mut response: reqwest::Response) -> Result<Vec<u8>, FetchError> {
        let limit = self.settings.max_body_bytes;
        if response.content_length().is_some_and(|n| n > limit) {
            return Err(FetchError::TooLarge(limit));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(classify)? {
            if body.len() as u64 + chunk.len() as u64 > limit {
                return Err(FetchError::TooLarge(limit));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

fn classify(e: reqwest::Error) -> FetchError {
    if e.is_timeout() {
        FetchError::Timeout
    } else if e.is_connect() {
        FetchError::Connect(root_cause(&e))
    } else {
        FetchError::Request(root_cause(&e))
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// `Retry-After` in seconds: a number of seconds, or an HTTP date measured against the
/// response's own `Date` header (without one, a date counts as a long wait).
fn retry_after_seconds(value: &str, date: Option<&str>) -> Option<u64> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(secs);
    }
    let until = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let now = date.and_then(|d| chrono::DateTime::parse_from_rfc2822(d.trim()).ok());
    Some(match now {
        Some(now) => u64::try_from((until - now).num_seconds()).unwrap_or(0),
        None => u64::MAX / 2,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(retry_after_seconds("7", None), Some(7));
        assert_eq!(
            retry_after_seconds(
                "Mon, 02 Nov 2026 09:00:30 GMT",
                Some("Mon, 02 Nov 2026 09:00:00 GMT")
            ),
            Some(30)
        );
        assert_eq!(retry_after_seconds("soon", None), None);
    }
}
