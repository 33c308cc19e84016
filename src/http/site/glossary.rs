//! The glossary pages: the index (A-Z, by category, and search) and a page per term, cached
//! per content version.
//!
//! Part of the HTTP adapter.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tracing::warn;

use super::super::page::{not_found, render_page, try_later};
use super::super::{Shared, Web};
use crate::app::site::TermLookup;

/// How long a rendered term page is served before it is rendered again (its list of the
/// issues that featured the term comes from the store).
const TERM_PAGE_FRESH: Duration = Duration::from_secs(2);

/// Rendered term pages, by slug: each is rendered once per content version and kept for
/// [`TERM_PAGE_FRESH`], so a term page costs what the home page does.
#[derive(Default)]
pub(in crate::http) struct TermPages(Mutex<HashMap<String, CachedPage>>);

/// A rendered page and what it was rendered from.
struct CachedPage {
    content_version: u64,
    rendered_at: Instant,
    html: axum::body::Bytes,
}

impl TermPages {
    /// The page of `slug` rendered from content `version`, if still fresh.
    fn get(&self, slug: &str, version: u64) -> Option<axum::body::Bytes> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(slug)
            .filter(|c| c.content_version == version && c.rendered_at.elapsed() < TERM_PAGE_FRESH)
            .map(|c| c.html.clone())
    }

    fn insert(&self, slug: String, version: u64, html: axum::body::Bytes) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                slug,
                CachedPage {
                    content_version: version,
                    rendered_at: Instant::now(),
                    html,
                },
            );
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct SearchQuery {
    #[serde(default)]
    q: String,
}

/// A term as the glossary pages list it.
fn term_link(base: &str, t: &crate::domain::Term) -> serde_json::Value {
    serde_json::json!({
        "url": format!("{base}glossary/{}", t.slug),
        "slug": t.slug.as_str(),
        "term": t.term,
        "summary": t.summary,
        "category": t.category,
    })
}

/// JSON-LD for a `<script type="application/ld+json">` block: `<` is escaped so that no
/// value can close the script element.
fn json_ld(value: &serde_json::Value) -> String {
    value.to_string().replace('<', "\\u003c")
}

pub(super) async fn glossary_index(
    State(s): State<Shared>,
    Query(query): Query<SearchQuery>,
) -> Response {
    let glossary = s.glossary_for_pages();
    let base = s.config().newsletter.base_url.as_str();
    let name = &s.config().newsletter.name;
    let letters: Vec<serde_json::Value> = glossary
        .by_letter()
        .into_iter()
        .map(|(letter, terms)| {
            serde_json::json!({
                "letter": letter.to_string(),
                "terms": terms.iter().map(|t| term_link(base, t)).collect::<Vec<_>>(),
            })
        })
        .collect();
    let categories: Vec<serde_json::Value> = glossary
        .categories()
        .into_iter()
        .map(|c| {
            serde_json::json!({
                "name": c,
                "description": glossary.category_description(c),
                "terms": glossary.in_category(c).into_iter().map(|t| term_link(base, t)).collect::<Vec<_>>(),
            })
        })
        .collect();
    let q = query.q.trim();
    let search = crate::app::web::search_glossary(&glossary, q);
    let links = |terms: Vec<&crate::domain::Term>| -> Vec<serde_json::Value> {
        terms.into_iter().map(|t| term_link(base, t)).collect()
    };
    let results = links(search.results);
    let closest = links(search.closest);
    let mut context = tera::Context::new();
    context.insert("query", q);
    context.insert("results", &results);
    context.insert("closest", &closest);
    context.insert("letters", &letters);
    context.insert("categories", &categories);
    context.insert("term_count", &glossary.len());
    context.insert(
        "description",
        &format!(
            "{} AI terms explained in plain language: what each means, how it works, an example and related terms. From {name}.",
            glossary.len()
        ),
    );
    context.insert("canonical", &format!("{base}glossary"));
    context.insert(
        "jsonld",
        &json_ld(&serde_json::json!({
            "@context": "https://schema.org",
            "@type": "DefinedTermSet",
            "name": format!("{name} glossary"),
            "url": format!("{base}glossary"),
            "hasDefinedTerm": glossary.terms().iter().map(|t| serde_json::json!({
                "@type": "DefinedTerm",
                "name": t.term,
                "url": format!("{base}glossary/{}", t.slug),
            })).collect::<Vec<_>>(),
        })),
    );
    let title = if q.is_empty() {
        "Glossary".to_owned()
    } else {
        format!("Glossary: {q}")
    };
    render_page(&s, StatusCode::OK, "web/glossary.html", &title, context)
}

/// `/glossary/{slug}/`: the canonical address has no trailing slash.
pub(super) async fn glossary_term_slash(
    State(s): State<Shared>,
    Path(slug): Path<String>,
) -> Response {
    let to = format!("{}glossary/{}", s.config().newsletter.base_url, slug);
    match HeaderValue::from_str(&to) {
        Ok(location) => (
            StatusCode::MOVED_PERMANENTLY,
            [(header::LOCATION, location)],
        )
            .into_response(),
        Err(_) => not_found(&s),
    }
}

/// `GET /glossary/{slug}`: a term's page, from the cache while the content version is the
/// same and the page is fresh.
pub(super) async fn glossary_term(State(s): State<Shared>, Path(slug): Path<String>) -> Response {
    // The daemon's content version; without one (content read from files), no caching.
    let version = s.content().current().map(|c| c.version);
    if let Some(html) = version.and_then(|v| s.term_pages.get(&slug, v)) {
        return ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response();
    }
    let response = render_term_page(&s, &slug).await;
    if let (Some(version), StatusCode::OK) = (version, response.status()) {
        let (parts, body) = response.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
            return try_later(&s);
        };
        s.term_pages.insert(slug, version, bytes.clone());
        return Response::from_parts(parts, axum::body::Body::from(bytes));
    }
    response
}

async fn render_term_page(s: &Web, slug: &str) -> Response {
    let base = s.config().newsletter.base_url.as_str();
    let page = match s.term_page(slug).await {
        Ok(TermLookup::Found(page)) => page,
        Ok(TermLookup::Moved(slug)) => {
            return (
                StatusCode::MOVED_PERMANENTLY,
                [(header::LOCATION, format!("{base}glossary/{slug}"))],
            )
                .into_response();
        }
        Ok(TermLookup::NotFound { closest }) => {
            let mut context = tera::Context::new();
            context.insert("query", &slug);
            context.insert(
                "closest",
                &closest
                    .iter()
                    .map(|t| term_link(base, t))
                    .collect::<Vec<_>>(),
            );
            return render_page(
                s,
                StatusCode::NOT_FOUND,
                "web/term-missing.html",
                "Term not found",
                context,
            );
        }
        Err(e) => {
            warn!(error = %e, "reading a term page failed");
            return try_later(s);
        }
    };
    let term = &page.term;
    let url = format!("{base}glossary/{}", term.slug);
    let explanation = crate::render::markdown_to_html(&term.body);
    let tz = s.config().schedule.timezone;
    let featured: Vec<serde_json::Value> = page
        .featured_in
        .iter()
        .map(|i| {
            serde_json::json!({
                "number": i.number,
                "url": format!("{base}archive/{}", i.number),
                "date": i.send_after.unwrap_or(i.created_at).with_timezone(&tz).format("%-d %B %Y").to_string(),
            })
        })
        .collect();
    let mut context = tera::Context::new();
    context.insert(
        "term",
        &serde_json::json!({
            "term": term.term,
            "slug": term.slug.as_str(),
            "category": term.category,
            "aliases": term.aliases,
            "summary": term.summary,
            "example": term.example,
            "explanation_html": explanation,
            "related": page.related.iter().map(|r| term_link(base, r)).collect::<Vec<_>>(),
            "featured_in": featured,
            "prev": page.prev.as_ref().map(|t| term_link(base, t)),
            "next": page.next.as_ref().map(|t| term_link(base, t)),
            "sources": term.sources,
        }),
    );
    context.insert("description", &term.summary);
    context.insert("canonical", &url);
    context.insert("og_type", "article");
    context.insert(
        "jsonld",
        &json_ld(&serde_json::json!({
            "@context": "https://schema.org",
            "@type": "DefinedTerm",
            "name": term.term,
            "alternateName": term.aliases,
            "description": term.summary,
            "termCode": term.slug.as_str(),
            "url": url,
            "inDefinedTermSet": {
                "@type": "DefinedTermSet",
                "name": format!("{} glossary", s.config().newsletter.name),
                "url": format!("{base}glossary"),
            },
            "citation": term.sources.iter().map(|source| serde_json::json!({
                "@type": "CreativeWork",
                "name": source.title,
                "author": source.authors,
                "datePublished": source.year.to_string(),
                "url": source.url,
            })).collect::<Vec<_>>(),
        })),
    );
    render_page(s, StatusCode::OK, "web/term.html", &term.term, context)
}
