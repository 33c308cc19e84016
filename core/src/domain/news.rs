//! News links: what an issue carries besides its term.
//!
//! Pure: no I/O.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One candidate or selected news link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewsLink {
    /// Clean text: no tags, entities decoded, white space collapsed.
    pub title: String,
    /// The link as published (resolved against the feed's address).
    pub url: String,
    /// The canonical form used to de-duplicate and to remember what was sent.
    pub canonical_url: String,
    /// The feed's name, or "Editor's pick" for curated links.
    pub source: String,
    /// Clean text, cut at a word boundary; may be empty.
    pub summary: String,
    /// When the item was published (or last updated), if the source says.
    pub published: Option<DateTime<Utc>>,
    /// Whether an editor chose this link (curated links come first).
    pub curated: bool,
}
