//! News links: parse feeds and the curated file (pure), normalise and de-duplicate links
//! (pure), and fetch feeds over HTTP (the one adapter here).

pub mod curated;
pub mod fetch;
pub mod normalize;
pub mod parse;

pub use curated::{CuratedError, parse_curated};
pub use fetch::{FeedFetcher, FetchOutcome, FetchSettings};
pub use normalize::{canonical_url, clean_text, cut_at_word, title_key};
pub use parse::{FeedParseError, parse_feed};
