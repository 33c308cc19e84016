//! Slugs: the stable identifiers of glossary terms.
//!
//! Pure: no I/O.

use std::fmt;

use serde::Serialize;

/// Why a string is not a slug.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a valid slug: use 1 to 64 lower-case ASCII letters, digits and single hyphens, not starting or ending with a hyphen"
)]
pub struct InvalidSlug(pub String);

/// A term identifier such as `large-language-model`: lower-case ASCII letters, digits and
/// single hyphens, 1 to 64 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Slug(String);

impl Slug {
    /// Parses a slug.
    ///
    /// # Errors
    /// [`InvalidSlug`] when the rules above are broken.
    ///
    /// ```
    /// use herald_core::domain::Slug;
    /// assert!(Slug::parse("generative-ai").is_ok());
    /// assert!(Slug::parse("Generative AI").is_err());
    /// ```
    pub fn parse(input: &str) -> Result<Self, InvalidSlug> {
        let ok = !input.is_empty()
            && input.len() <= 64
            && !input.starts_with('-')
            && !input.ends_with('-')
            && !input.contains("--")
            && input
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if ok {
            Ok(Self(input.to_owned()))
        } else {
            Err(InvalidSlug(input.to_owned()))
        }
    }

    /// The slug a display name suggests: lower case ASCII letters and digits, every other run
    /// of characters a single hyphen (`"Retrieval-augmented generation (RAG)"` ->
    /// `retrieval-augmented-generation-rag`). `None` when nothing of the name is left.
    ///
    /// ```
    /// use herald_core::domain::Slug;
    /// assert_eq!(Slug::from_name("Model Context Protocol").unwrap().as_str(), "model-context-protocol");
    /// assert!(Slug::from_name("???").is_none());
    /// ```
    pub fn from_name(name: &str) -> Option<Self> {
        let mut slug = String::new();
        for c in name.chars() {
            if c.is_ascii_alphanumeric() {
                slug.push(c.to_ascii_lowercase());
            } else if !slug.is_empty() && !slug.ends_with('-') {
                slug.push('-');
            }
        }
        while slug.ends_with('-') {
            slug.pop();
        }
        Self::parse(&slug).ok()
    }

    /// The slug text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Slug {
    type Err = InvalidSlug;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}
