//! The editor-curated links file (`[news] curated`), e.g. `news/curated.toml`:
//!
//! ```toml
//! [[link]]
//! title = "Attention Is All You Need"
//! url = "https://arxiv.org/abs/1706.03762"
//! note = "The paper that introduced the transformer."   # optional
//! date = 2026-11-20                                      # optional
//! ```
//!
//! Pure: text in, links out, each error with its line.

use chrono::{NaiveDate, TimeZone, Utc};
use serde::Deserialize;
use url::Url;

use super::normalize::{canonical_url, clean_text, without_tracking};
use crate::domain::NewsLink;
use crate::toml_source::TomlSource;

/// The source name shown for curated links.
pub const CURATED_SOURCE: &str = "Editor's pick";

/// A problem in the curated file, with its line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct CuratedError {
    pub line: usize,
    pub message: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    link: Vec<RawLink>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLink {
    title: String,
    url: String,
    note: Option<String>,
    date: Option<toml::value::Datetime>,
}

/// Parses the curated file. Every bad entry is reported; the good ones are still returned.
///
/// # Errors
/// The whole file fails only when it is not valid TOML of the expected shape.
pub fn parse_curated(text: &str) -> Result<(Vec<NewsLink>, Vec<CuratedError>), CuratedError> {
    let source = TomlSource::parse(text).map_err(|e| CuratedError {
        line: TomlSource::lines_only(text).line_of(e.span().map_or(0, |s| s.start)),
        message: e.message().trim().to_owned(),
    })?;
    let raw: RawFile = toml::from_str(text).map_err(|e| CuratedError {
        line: source.line_of(e.span().map_or(0, |s| s.start)),
        message: e.message().trim().to_owned(),
    })?;
    let mut links = Vec::new();
    let mut errors = Vec::new();
    for (i, link) in raw.link.into_iter().enumerate() {
        let line = |field: &str| {
            source
                .key_line(&format!("link[{i}].{field}"))
                .or_else(|| source.key_line(&format!("link[{i}]")))
                .unwrap_or(1)
        };
        let url = match Url::parse(link.url.trim()) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => u,
            Ok(_) | Err(_) => {
                errors.push(CuratedError {
                    line: line("url"),
                    message: format!("`url`: `{}` is not an http or https URL", link.url),
                });
                continue;
            }
        };
        let title = clean_text(&link.title);
        if title.is_empty() {
            errors.push(CuratedError {
                line: line("title"),
                message: "`title` is empty".into(),
            });
            continue;
        }
        let published = match link.date {
            None => None,
            Some(d) => match d
                .date
                .and_then(|d| NaiveDate::from_ymd_opt(d.year.into(), d.month.into(), d.day.into()))
            {
                Some(date) => Some(
                    Utc.from_utc_datetime(&date.and_hms_opt(0, 0, 0).expect("midnight exists")),
                ),
                None => {
                    errors.push(CuratedError {
                        line: line("date"),
                        message: format!("`date`: `{d}` is not a date such as 2026-11-20"),
                    });
                    continue;
                }
            },
        };
        links.push(NewsLink {
            title,
            canonical_url: canonical_url(&url),
            url: without_tracking(&url).to_string(),
            source: CURATED_SOURCE.to_owned(),
            summary: link.note.as_deref().map(clean_text).unwrap_or_default(),
            published,
            curated: true,
        });
    }
    Ok((links, errors))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_links_and_reports_bad_ones_by_line() {
        let text = "[[link]]\ntitle = \"A\"\nurl = \"https://a.example/x?utm_source=n\"\ndate = 2026-11-20\n\n[[link]]\ntitle = \"B\"\nurl = \"ftp://b.example\"\n";
        let (links, errors) = parse_curated(text).unwrap();
        assert_eq!(links.len(), 1);
        assert_eq!(links[0].canonical_url, "https://a.example/x");
        assert!(links[0].curated);
        assert_eq!(
            errors,
            vec![CuratedError {
                line: 8,
                message: "`url`: `ftp://b.example` is not an http or https URL".into()
            }]
        );
        assert!(parse_curated("[[link]]\ntitle = \"A\"\nlink = 3\n").is_err());
    }
}
