//! News links: parse feeds and the curated file, normalise and de-duplicate links.
//!
//! Pure: no I/O (fetching is the `herald` crate's `feeds` adapter).

pub mod curated;
pub mod normalize;
pub mod parse;

pub use curated::{CuratedError, parse_curated};
pub use normalize::{canonical_url, clean_text, cut_at_word, title_key, without_tracking};
pub use parse::{FeedParseError, parse_feed};
