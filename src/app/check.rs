//! Use case: `herald check`'s rendering checks. The issue, the welcome email and every web
//! page are rendered against sample data, so a broken template is caught before a send or a
//! visitor finds it.

use super::{App, AppError};
use crate::glossary::Glossary;
use crate::render::{RenderError, Renderer};

/// A template that does not render.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("no glossary term to render a sample issue with")]
    NoTerm,
    #[error(transparent)]
    Load(#[from] AppError),
    #[error("{0}: {1}")]
    Template(&'static str, RenderError),
    #[error(transparent)]
    Pages(RenderError),
    #[error(transparent)]
    Compose(#[from] crate::compose::ComposeError),
    #[error("the DKIM key signed nothing: the sample message carries no DKIM-Signature")]
    Dkim,
}

impl App {
    /// Renders the templates against a sample issue (the first term, links whose titles
    /// need escaping) and builds a message from it, so template errors surface in `herald
    /// check` and not at send time; renders the welcome email and every web page too.
    /// Returns a description of the sizes.
    ///
    /// # Errors
    /// The first template that fails, by name.
    pub fn check_templates(&self, glossary: &Glossary) -> Result<String, CheckError> {
        let config = &self.config;
        let renderer = self.renderer()?;
        let Some(term) = glossary.terms().first() else {
            return Err(CheckError::NoTerm);
        };
        let sample_link = |n: u32, title: &str| crate::domain::NewsLink {
            title: title.to_owned(),
            url: format!("https://news.example.com/{n}?a=1&b=2"),
            canonical_url: format!("https://news.example.com/{n}"),
            source: "Sample <Feed> & Co".to_owned(),
            summary: "A sample summary with <tags> & ampersands.".to_owned(),
            published: None,
            curated: n == 1,
        };
        let plan = crate::render::IssuePlan {
            number: 1,
            date: self.clock.now(),
            term: term.clone(),
            related: glossary.related_names(term),
            links: vec![
                sample_link(1, "A <script> & a title"),
                sample_link(2, "Second link"),
            ],
        };
        let info = self.newsletter_info();
        let rendered = renderer
            .render_issue(&plan, &info)
            .map_err(|e| CheckError::Template("issue.html / issue.txt", e))?;
        let email = crate::domain::EmailAddress::parse("reader@example.com")
            .expect("a valid sample address");
        let message = crate::compose::personal_message(
            "issue",
            &rendered,
            &self.sender,
            crate::compose::Addressee {
                id: 1,
                email: &email,
                name: "Sample Reader",
                first_name: "",
            },
            &crate::domain::SigningKey::new(super::DEVELOPMENT_KEY),
            plan.date,
        )?;
        let personal = rendered.personalize(&crate::render::Recipient {
            name: "Sample Reader",
            first_name: "",
            email: email.as_str(),
            unsubscribe_url: "https://example.com/u/x",
        });
        let mut extra = String::new();
        for (html, text) in [("welcome.html", "welcome.txt")] {
            if renderer.has(html) || renderer.has(text) {
                renderer
                    .render_pair(&plan, &info, html, text)
                    .map_err(|e| CheckError::Template("welcome.html / welcome.txt", e))?;
                extra.push_str(&format!(", {html} and {text} ok"));
            }
        }
        if renderer.has("web/layout.html") {
            let pages = check_page_templates(
                &renderer,
                &config.newsletter.name,
                config.newsletter.base_url.as_str(),
            )
            .map_err(CheckError::Pages)?;
            extra.push_str(&format!(", {pages} web pages ok"));
        }
        Ok(format!(
            "sample issue: html {} bytes, text {} bytes, message {} bytes{extra}",
            personal.html.len(),
            personal.text.len(),
            message.formatted().len()
        ))
    }
}

impl App {
    /// Signs a sample message with the configured DKIM key and checks the signature header is
    /// there. `None` when DKIM is not configured.
    ///
    /// # Errors
    /// When the sample cannot be built or carries no signature.
    pub fn check_dkim(&self) -> Result<Option<String>, CheckError> {
        let Some(dkim) = &self.config.delivery.dkim else {
            return Ok(None);
        };
        let to = crate::domain::EmailAddress::parse("reader@example.com")
            .expect("a valid sample address");
        let message_id = crate::compose::message_id("check", 0, 0, self.sender.from.email.domain());
        let message = crate::compose::simple_message(
            &self.sender,
            crate::compose::ServiceMessage {
                to: &to,
                to_name: "",
                subject: "DKIM sample",
                message_id: &message_id,
                date: self.clock.now(),
                text: "A sample.".into(),
                html: "<p>A sample.</p>".into(),
            },
        )?;
        let bytes = message.formatted();
        if !String::from_utf8_lossy(&bytes).contains("DKIM-Signature:") {
            return Err(CheckError::Dkim);
        }
        Ok(Some(format!(
            "signed a sample as {}._domainkey.{} ({})",
            dkim.selector,
            dkim.domain,
            dkim.private_key_path.display()
        )))
    }
}

/// The page templates and a sample context for each, so `herald check` can render them all
/// and catch a broken page before a visitor does. Returns how many were rendered.
///
/// # Errors
/// The first page that fails, by name.
fn check_page_templates(
    renderer: &Renderer,
    newsletter: &str,
    base_url: &str,
) -> Result<usize, RenderError> {
    use serde_json::json;
    let pages: [(&str, serde_json::Value); 7] = [
        (
            "web/subscribe.html",
            json!({"error": "That email address is not valid: sample.", "email": "a@example.com", "name": "A"}),
        ),
        (
            "web/message.html",
            json!({"heading": "Sample", "paragraphs": ["One", "Two"], "link": {"href": base_url, "label": "Home"}}),
        ),
        (
            "web/confirm-action.html",
            json!({"heading": "Sample", "text": "Press", "action": base_url, "button": "Go"}),
        ),
        (
            "web/archive.html",
            json!({"issues": [{"number": 1, "subject": "Sample <issue>", "date": "1 December 2026"}]}),
        ),
        (
            "web/glossary.html",
            json!({
                "query": "sample <query>",
                "term_count": 1,
                "results": [{"url": base_url, "term": "Term", "summary": "Summary"}],
                "closest": [{"url": base_url, "term": "Term", "summary": "Summary"}],
                "letters": [{"letter": "T", "terms": [{"url": base_url, "term": "Term", "summary": "Summary"}]}],
                "categories": [{"name": "Fundamentals", "description": "The basics.", "terms": [{"url": base_url, "term": "Term", "summary": "Summary"}]}],
            }),
        ),
        (
            "web/term.html",
            json!({"term": {
                "term": "Term", "slug": "term", "category": "Fundamentals", "aliases": ["T"],
                "summary": "Summary", "example": "Example", "explanation_html": "<p>Text</p>",
                "related": [{"url": base_url, "term": "Other"}],
                "featured_in": [{"number": 1, "url": base_url, "date": "1 December 2026"}],
                "prev": {"url": base_url, "term": "Before"}, "next": null,
                "sources": [{"title": "A paper", "authors": "Doe et al.", "year": 2020, "url": base_url}],
            }}),
        ),
        (
            "web/term-missing.html",
            json!({"query": "nope", "closest": [{"url": base_url, "term": "Term", "summary": "Summary"}]}),
        ),
    ];
    for (name, sample) in &pages {
        let mut context = tera::Context::from_serialize(sample)
            .map_err(|e| RenderError::Template(e.to_string()))?;
        context.insert("title", "Sample");
        for (key, value) in [
            ("description", "A sample page."),
            ("canonical", base_url),
            ("og_type", "website"),
            ("jsonld", "{\"@type\": \"DefinedTerm\"}"),
        ] {
            if !context.contains_key(key) {
                context.insert(key, value);
            }
        }
        context.insert(
            "newsletter",
            &json!({"name": newsletter, "base_url": base_url}),
        );
        renderer
            .render_page(name, &context)
            .map_err(|e| RenderError::Template(format!("{name}: {e}")))?;
    }
    Ok(pages.len())
}
