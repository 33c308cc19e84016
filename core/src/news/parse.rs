//! Feed parsing: bytes of an RSS 0.9x/1.0/2.0, Atom or JSON Feed document into clean
//! [`NewsLink`]s.
//!
//! Pure: bytes in, links out. Relative links are resolved against the feed's address, text is
//! reduced to clean text, and links are identified by their canonical URL, never by
//! feed-rs's generated entry ids (which hash link and title, or are random).

use url::Url;

use super::normalize::{canonical_url, clean_text, cut_at_word, without_tracking};
use crate::domain::NewsLink;

/// Longest summary kept, in characters.
pub const SUMMARY_CHARS: usize = 280;

/// Why a feed document could not be read.
#[derive(Debug, thiserror::Error)]
#[error("not a valid RSS, Atom or JSON feed: {0}")]
pub struct FeedParseError(String);

/// Parses a feed fetched from `feed_url`, naming each link's source `source`.
///
/// Entries without a usable link or title are skipped; so are links that are not http(s).
///
/// # Errors
/// [`FeedParseError`] when the document is not a feed at all.
pub fn parse_feed(
    bytes: &[u8],
    feed_url: &Url,
    source: &str,
) -> Result<Vec<NewsLink>, FeedParseError> {
    let feed = feed_rs::parser::Builder::new()
        .base_uri(Some(feed_url.as_str()))
        .build()
        .parse(bytes)
        .map_err(|e| FeedParseError(e.to_string()))?;
    let mut links = Vec::new();
    for entry in feed.entries {
        let Some(href) = entry
            .links
            .iter()
            .find(|l| l.rel.as_deref().is_none_or(|r| r == "alternate"))
            .or_else(|| entry.links.first())
            .map(|l| l.href.trim())
        else {
            continue;
        };
        let Ok(url) = feed_url.join(href) else {
            continue;
        };
        if !matches!(url.scheme(), "http" | "https") {
            continue;
        }
        let summary_source = entry
            .summary
            .as_ref()
            .map(|t| t.content.as_str())
            .or_else(|| entry.content.as_ref().and_then(|c| c.body.as_deref()))
            .or_else(|| {
                entry
                    .media
                    .iter()
                    .find_map(|m| m.description.as_ref().map(|d| d.content.as_str()))
            })
            .unwrap_or("");
        let summary = cut_at_word(&clean_text(summary_source), SUMMARY_CHARS);
        let title = entry
            .title
            .as_ref()
            .map(|t| clean_text(&t.content))
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| cut_at_word(&summary, 90));
        if title.is_empty() {
            continue;
        }
        links.push(NewsLink {
            title,
            canonical_url: canonical_url(&url),
            url: without_tracking(&url).to_string(),
            source: source.to_owned(),
            summary,
            published: entry.published.or(entry.updated),
            curated: false,
        });
    }
    Ok(links)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_links_resolve_against_the_feed_url() {
        let rss = br#"<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>
            <item><title>One &amp; two</title><link>/posts/1?utm_source=rss</link>
            <description>&lt;p&gt;Hello &lt;b&gt;world&lt;/b&gt;&lt;/p&gt;</description>
            <pubDate>Mon, 02 Nov 2026 09:00:00 GMT</pubDate></item>
            <item><title>No link</title></item></channel></rss>"#;
        let url = Url::parse("https://news.example.org/feed.xml").unwrap();
        let links = parse_feed(rss, &url, "Example").unwrap();
        assert_eq!(links.len(), 1);
        assert_eq!(links[0].title, "One & two");
        // Resolved against the feed's address, and without its tracking parameter: the link
        // goes out in an issue as it is here.
        assert_eq!(links[0].url, "https://news.example.org/posts/1");
        assert_eq!(links[0].canonical_url, "https://news.example.org/posts/1");
        assert_eq!(links[0].summary, "Hello world");
        assert!(links[0].published.is_some());
    }

    #[test]
    fn garbage_is_an_error() {
        let url = Url::parse("https://x.example/").unwrap();
        assert!(parse_feed(b"<html><body>not a feed</body></html>", &url, "X").is_err());
    }
}
