//! A glossary term as the rest of Herald sees it, after parsing and validation.
//!
//! Pure: no I/O.

use std::path::PathBuf;

use serde::Serialize;

use super::Slug;

/// One glossary entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Term {
    /// Stable identifier, unique across the glossary.
    pub slug: Slug,
    /// Display name, e.g. "Large language model".
    pub term: String,
    /// Other names, e.g. "LLM"; unique across the glossary, case-insensitively.
    pub aliases: Vec<String>,
    /// Grouping used to vary consecutive issues.
    pub category: String,
    /// Slugs of related terms; each exists in the glossary.
    pub related: Vec<Slug>,
    /// One sentence of real usage that mentions the term or an alias.
    pub example: String,
    /// Plain-text summary, at most 300 characters.
    pub summary: String,
    /// The explanation, in Markdown.
    pub body: String,
    /// The file the term came from.
    #[serde(skip)]
    pub path: PathBuf,
}
