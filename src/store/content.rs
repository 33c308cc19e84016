//! What earlier issues sent, the editors' queue, and feed state.

use std::collections::{HashMap, HashSet};

use super::states::Text;
use super::{Store, StoreError, per_db};
use crate::domain::{NewsLink, Slug};
use crate::selection::{SentTerm, TermHistory};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// What the store remembers about one feed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FeedState {
    pub url: String,
    pub name: String,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// Where a permanent redirect pointed, if one was seen.
    pub permanent_url: Option<String>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    pub consecutive_failures: i64,
    /// Items in the last successful fetch.
    pub items_seen: i64,
    /// The items of the last successful fetch, reused on 304 Not Modified.
    #[serde(skip)]
    pub items: Vec<NewsLink>,
}

/// A successful fetch, to record.
#[derive(Debug, Clone)]
pub struct FeedSuccess<'a> {
    pub etag: Option<&'a str>,
    pub last_modified: Option<&'a str>,
    pub permanent_url: Option<&'a str>,
    pub items: &'a [NewsLink],
}

/// The most recent issue's number and when it was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastIssue {
    pub number: u32,
    pub created_at: DateTime<Utc>,
}

impl Store {
    /// Every term sent so far, in issue order.
    ///
    /// # Errors
    /// A database error.
    pub async fn term_history(&self) -> Result<TermHistory, StoreError> {
        let rows: Vec<(i64, i64, Text<Slug>)> = per_db!(&self.pool, db => {
            sqlx::query_as(
                "SELECT i.number, t.cycle, t.slug
             FROM terms_sent t JOIN issues i ON i.id = t.issue_id
             ORDER BY i.number",
            )
            .fetch_all(db)
            .await?
        });
        let sent = rows
            .into_iter()
            .map(|(number, cycle, slug)| SentTerm {
                issue_number: u32::try_from(number).unwrap_or(0),
                cycle: u32::try_from(cycle).unwrap_or(1),
                slug: slug.0,
            })
            .collect();
        Ok(TermHistory { sent })
    }

    /// The most recent issue, if any.
    ///
    /// # Errors
    /// A database error.
    pub async fn last_issue(&self) -> Result<Option<LastIssue>, StoreError> {
        let row: Option<(i64, DateTime<Utc>)> = per_db!(&self.pool, db => {
            sqlx::query_as("SELECT number, created_at FROM issues ORDER BY number DESC LIMIT 1")
                .fetch_optional(db)
                .await?
        });
        Ok(row.map(|(number, created_at)| LastIssue {
            number: u32::try_from(number).unwrap_or(0),
            created_at,
        }))
    }

    /// Canonical URLs of every link any issue has carried.
    ///
    /// # Errors
    /// A database error.
    pub async fn sent_link_urls(&self) -> Result<HashSet<String>, StoreError> {
        let urls: Vec<String> = per_db!(&self.pool, db => {
            sqlx::query_scalar("SELECT canonical_url FROM links_sent")
                .fetch_all(db)
                .await?
        });
        Ok(urls.into_iter().collect())
    }

    /// The editors' queue, in order.
    ///
    /// # Errors
    /// A database error.
    pub async fn queue(&self) -> Result<Vec<Slug>, StoreError> {
        let slugs: Vec<Text<Slug>> = per_db!(&self.pool, db => {
            sqlx::query_scalar("SELECT slug FROM term_queue ORDER BY position")
                .fetch_all(db)
                .await?
        });
        Ok(slugs.into_iter().map(|s| s.0).collect())
    }

    /// Puts a slug at the front of the queue; `false` when it was already queued.
    ///
    /// # Errors
    /// A database error.
    pub async fn queue_add_first(
        &self,
        slug: &Slug,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let changed = per_db!(tx.conn(), c => {
            sqlx::query(
                "INSERT INTO term_queue (slug, position, added_at)
                 VALUES ($1, (SELECT COALESCE(MIN(position), 1) - 1 FROM term_queue), $2)
                 ON CONFLICT (slug) DO NOTHING",
            )
            .bind(slug.as_str())
            .bind(now)
            .execute(c)
            .await?
            .rows_affected()
        });
        tx.commit().await?;
        Ok(changed == 1)
    }

    /// Appends a slug to the queue; `false` when it was already queued.
    ///
    /// # Errors
    /// A database error.
    pub async fn queue_add(&self, slug: &Slug, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let changed = per_db!(tx.conn(), c => {
            sqlx::query(
                "INSERT INTO term_queue (slug, position, added_at)
                 VALUES ($1, (SELECT COALESCE(MAX(position), 0) + 1 FROM term_queue), $2)
                 ON CONFLICT (slug) DO NOTHING",
            )
            .bind(slug.as_str())
            .bind(now)
            .execute(c)
            .await?
            .rows_affected()
        });
        tx.commit().await?;
        Ok(changed == 1)
    }

    /// Removes a slug from the queue; `false` when it was not queued.
    ///
    /// # Errors
    /// A database error.
    pub async fn queue_remove(&self, slug: &Slug) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let changed = per_db!(tx.conn(), c => {
            sqlx::query("DELETE FROM term_queue WHERE slug = $1")
                .bind(slug.as_str())
                .execute(c)
                .await?
                .rows_affected()
        });
        tx.commit().await?;
        Ok(changed == 1)
    }

    /// The state of every feed the store has seen, by URL.
    ///
    /// # Errors
    /// A database error, or stored items that no longer parse.
    pub async fn feed_states(&self) -> Result<HashMap<String, FeedState>, StoreError> {
        let rows: Vec<StoredFeed> = per_db!(&self.pool, db => {
            sqlx::query_as(
                "SELECT url, name, etag, last_modified, permanent_url, last_success_at, last_error,
                        last_error_at, consecutive_failures, items_seen, items_json
                 FROM feed_state",
            )
            .fetch_all(db)
            .await?
        });
        let mut states = HashMap::new();
        for row in rows {
            let items = serde_json::from_str(&row.items_json).map_err(|_| StoreError::Corrupt {
                column: "feed_state.items_json",
                value: row.items_json.chars().take(80).collect(),
            })?;
            let state = FeedState {
                url: row.url,
                name: row.name,
                etag: row.etag,
                last_modified: row.last_modified,
                permanent_url: row.permanent_url,
                last_success_at: row.last_success_at,
                last_error: row.last_error,
                last_error_at: row.last_error_at,
                consecutive_failures: row.consecutive_failures,
                items_seen: row.items_seen,
                items,
            };
            states.insert(state.url.clone(), state);
        }
        Ok(states)
    }

    /// Records a successful fetch (a 200, or a 304 with `success.items` the reused items).
    ///
    /// # Errors
    /// A database error.
    pub async fn record_feed_success(
        &self,
        url: &str,
        name: &str,
        success: FeedSuccess<'_>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let items_json = serde_json::to_string(success.items).unwrap_or_else(|_| "[]".into());
        let mut tx = self.write().await?;
        per_db!(tx.conn(), c => {
            sqlx::query(
                "INSERT INTO feed_state (url, name, etag, last_modified, permanent_url,
                                         last_success_at, consecutive_failures, items_seen,
                                         items_json, first_seen_at)
                 VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8, $6)
                 ON CONFLICT (url) DO UPDATE SET
                     name = excluded.name, etag = excluded.etag,
                     last_modified = excluded.last_modified,
                     permanent_url = COALESCE(excluded.permanent_url, feed_state.permanent_url),
                     last_success_at = excluded.last_success_at, consecutive_failures = 0,
                     items_seen = excluded.items_seen, items_json = excluded.items_json",
            )
            .bind(url)
            .bind(name)
            .bind(success.etag)
            .bind(success.last_modified)
            .bind(success.permanent_url)
            .bind(now)
            .bind(success.items.len() as i64)
            .bind(&items_json)
            .execute(c)
            .await?;
        });
        tx.commit().await?;
        Ok(())
    }

    /// Records a failed fetch and counts it.
    ///
    /// # Errors
    /// A database error.
    pub async fn record_feed_failure(
        &self,
        url: &str,
        name: &str,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        per_db!(tx.conn(), c => {
            sqlx::query(
                "INSERT INTO feed_state (url, name, last_error, last_error_at,
                                         consecutive_failures, first_seen_at)
                 VALUES ($1, $2, $3, $4, 1, $4)
                 ON CONFLICT (url) DO UPDATE SET
                     name = excluded.name, last_error = excluded.last_error,
                     last_error_at = excluded.last_error_at,
                     consecutive_failures = feed_state.consecutive_failures + 1",
            )
            .bind(url)
            .bind(name)
            .bind(error)
            .bind(now)
            .execute(c)
            .await?;
        });
        tx.commit().await?;
        Ok(())
    }
}

/// A `feed_state` row as stored.
#[derive(sqlx::FromRow)]
struct StoredFeed {
    url: String,
    name: String,
    etag: Option<String>,
    last_modified: Option<String>,
    permanent_url: Option<String>,
    last_success_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
    last_error_at: Option<DateTime<Utc>>,
    consecutive_failures: i64,
    items_seen: i64,
    items_json: String,
}
