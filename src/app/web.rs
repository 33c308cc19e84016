//! Use case: the decisions behind three web answers, so the HTTP layer only renders them:
//! what a glossary search shows, which unsubscribe links belong to copies no subscriber gets,
//! and which email service's webhook is enabled.

use crate::domain::Term;
use crate::feedback::WebhookError;
use crate::glossary::Glossary;

use super::feedback::Ingested;
use super::{App, AppError};

/// How many of the closest names a search that found nothing shows.
const CLOSEST_NAMES: usize = 5;

/// What a glossary search shows.
#[derive(Debug, Clone, Default)]
pub struct GlossarySearch<'a> {
    /// The terms that match, best first.
    pub results: Vec<&'a Term>,
    /// When a query found nothing, the closest names; empty otherwise.
    pub closest: Vec<&'a Term>,
}

/// Searches `glossary` for `query` (trimmed): names and aliases first, then prefixes, then
/// summaries and explanations; when nothing matches, the closest names.
pub fn search_glossary<'a>(glossary: &'a Glossary, query: &str) -> GlossarySearch<'a> {
    let query = query.trim();
    let results = glossary.search(query);
    let closest = if !query.is_empty() && results.is_empty() {
        glossary.closest(query, CLOSEST_NAMES)
    } else {
        Vec::new()
    };
    GlossarySearch { results, closest }
}

/// A copy that no subscriber gets, whose unsubscribe link leads to a page saying so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyKind {
    /// The editors' review copy (`/u/review-copy`).
    Review,
    /// A test copy (`herald send --test`, `/u/test-copy`).
    Test,
    /// The editors' preview (`/u/preview`).
    Preview,
}

impl CopyKind {
    /// The copy whose unsubscribe token is `token`, if it is one of these.
    pub fn of_unsubscribe_token(token: &str) -> Option<Self> {
        match token {
            "review-copy" => Some(Self::Review),
            "test-copy" => Some(Self::Test),
            "preview" => Some(Self::Preview),
            _ => None,
        }
    }
}

impl App {
    /// Applies a delivery-event webhook call from `provider`. `None` when that provider's
    /// webhook is not enabled (only Mailgun, by `HERALD_MAILGUN_WEBHOOK_KEY`); the inner
    /// error says why a call was refused.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn provider_webhook(
        &self,
        provider: &str,
        body: &[u8],
    ) -> Option<Result<Result<Ingested, WebhookError>, AppError>> {
        match (provider, &self.config.secrets.mailgun_webhook_key) {
            ("mailgun", Some(key)) => {
                Some(self.mailgun_webhook(body, key.expose().as_bytes()).await)
            }
            _ => None,
        }
    }
}
