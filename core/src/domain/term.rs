//! A glossary term as the rest of Herald sees it, after parsing and validation.
//!
//! Pure: no I/O.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

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
    /// When the term's name and aliases may be linked in other text (see [`LinkPolicy`]).
    #[serde(skip_serializing_if = "LinkPolicy::is_any")]
    pub link: LinkPolicy,
    /// Primary references (the paper, the specification, the regulation) the entry rests on:
    /// shown on the term page and in its JSON-LD, never in the email.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<Source>,
    /// The file the term came from.
    #[serde(skip)]
    pub path: PathBuf,
}

/// A primary reference for a term, as written in its front matter (`[[sources]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// The work's title, e.g. "Attention Is All You Need".
    pub title: String,
    /// Its authors ("Vaswani et al.") or the body that issued it ("European Parliament").
    pub authors: String,
    /// Year of publication.
    pub year: u16,
    /// Where a reader finds it: an `https://` (or `http://`) URL.
    pub url: String,
}

/// When another text's mention of a term may link to it. A headword that is also an everyday
/// word ("Bias", "Prompt", "Attention") would mis-link ordinary prose.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkPolicy {
    /// Any whole-word mention, case-insensitively (the default).
    #[default]
    Any,
    /// Only the exact capitalized headword or a multi-word alias, as written.
    Exact,
    /// Never.
    Never,
}

impl LinkPolicy {
    /// Whether this is the default, [`LinkPolicy::Any`].
    pub fn is_any(&self) -> bool {
        *self == Self::Any
    }
}

/// A group of terms on the glossary page, as `glossary/categories.toml` describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Category {
    /// The name terms give in their `category` field.
    pub name: String,
    /// One sentence that says what the group's terms have in common.
    pub description: String,
}
