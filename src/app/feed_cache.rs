//! The feeds as last fetched, read from the store's feed cache without any network: the items
//! selection takes when feeds are not fetched again, and each feed's health. Shared by the
//! issue plan ([`super::issue`]) and the supply report ([`super::supply`]), which must not
//! depend on each other's modules for it.

use std::collections::HashMap;

use crate::config::Config;
use crate::selection::FeedBatch;

/// The feeds' items as last fetched, as selection takes them: no network. Undated items count
/// as already seen.
pub fn cached_batches(
    config: &Config,
    states: &HashMap<String, crate::store::FeedState>,
) -> Vec<FeedBatch> {
    config
        .news
        .feeds
        .iter()
        .map(|feed| {
            let links = states
                .get(feed.url.as_str())
                .map(|s| s.items.clone())
                .unwrap_or_default();
            FeedBatch {
                name: feed.name.clone(),
                previous: Some(links.iter().map(|l| l.canonical_url.clone()).collect()),
                links,
                max_items: feed.max_items,
            }
        })
        .collect()
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
