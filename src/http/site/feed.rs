//! `GET /archive/feed.xml`: the Atom feed of sent issues, rendered from
//! `templates/web/feed.xml`.
//!
//! Every text that goes into the feed loses its control characters (all but tab and line
//! feed): XML 1.0 forbids them, even escaped, and one in a subject would make the whole feed
//! unreadable to every feed reader. A templates directory without `web/feed.xml` (one copied
//! before the feed had a template), or whose `web/feed.xml` fails, gets the template shipped
//! inside Herald, so the feed never depends on an editor's files.
//!
//! Part of the HTTP adapter.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use tracing::warn;

use super::super::page::try_later;
use super::super::{Shared, Web};
use super::archive::published;
use crate::store::StoredIssue;

/// The feed's template.
const TEMPLATE: &str = "web/feed.xml";

/// The template as shipped, for a templates directory that has none.
const SHIPPED: &str = include_str!("../../../templates/web/feed.xml");

pub(super) async fn archive_feed(State(s): State<Shared>) -> Response {
    let issues = match published(&s).await {
        Ok(issues) => issues,
        Err(response) => return response,
    };
    let context = feed_context(&s, &issues);
    match render(&s, &context) {
        Ok(xml) => (
            [(header::CONTENT_TYPE, "application/atom+xml; charset=utf-8")],
            xml,
        )
            .into_response(),
        Err(e) => {
            warn!(error = %e, "the shipped feed template failed");
            try_later(&s)
        }
    }
}

/// What `web/feed.xml` is rendered with: `newsletter.{name, base_url}`,
/// `feed.{url, self_url, updated}` and `issues[].{number, subject, preheader, url, date}`,
/// newest first (dates in RFC 3339), every text without control characters.
fn feed_context(s: &Web, issues: &[StoredIssue]) -> tera::Context {
    let base = s.config().newsletter.base_url.as_str();
    let updated = issues
        .first()
        .map(|i| i.send_after.unwrap_or(i.created_at))
        .unwrap_or_else(|| s.now());
    let mut value = serde_json::json!({
        "newsletter": {"name": s.config().newsletter.name, "base_url": base},
        "feed": {
            "url": format!("{base}archive"),
            "self_url": format!("{base}archive/feed.xml"),
            "updated": updated.to_rfc3339(),
        },
        "issues": issues.iter().map(|i| serde_json::json!({
            "number": i.number,
            "subject": i.subject,
            "preheader": i.preheader,
            "url": format!("{base}archive/{}", i.number),
            "date": i.send_after.unwrap_or(i.created_at).to_rfc3339(),
        })).collect::<Vec<_>>(),
    });
    strip_control_characters(&mut value);
    let mut context = tera::Context::new();
    if let serde_json::Value::Object(fields) = value {
        for (key, field) in fields {
            context.insert(key, &field);
        }
    }
    context
}

/// The templates directory's `web/feed.xml`, or the shipped one when that is missing or
/// fails.
fn render(s: &Web, context: &tera::Context) -> Result<String, tera::Error> {
    if let Ok(renderer) = s.renderer()
        && renderer.has(TEMPLATE)
    {
        match renderer.render_page(TEMPLATE, context) {
            Ok(xml) => return Ok(xml),
            Err(e) => warn!(
                template = TEMPLATE,
                error = %e,
                "the feed template failed; serving the feed from the shipped template"
            ),
        }
    }
    tera::Tera::one_off(SHIPPED, context, true)
}

/// Removes from every string in `value` the characters XML cannot carry: control characters
/// other than tab and line feed, and the non-characters U+FFFE and U+FFFF.
fn strip_control_characters(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(text) => {
            text.retain(|c| {
                !(c.is_control() && c != '\t' && c != '\n') && c != '\u{fffe}' && c != '\u{ffff}'
            });
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_control_characters),
        serde_json::Value::Object(fields) => fields.values_mut().for_each(strip_control_characters),
        serde_json::Value::Null | serde_json::Value::Bool(_) | serde_json::Value::Number(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_leave_every_text_but_tab_and_line_feed_stay() {
        let mut value = serde_json::json!({
            "a": "one\u{1b}[31m two\u{0}\r\u{7f}\u{85}\u{fffe}",
            "b": [{"c": "tab\tand\nline"}],
            "n": 3,
        });
        strip_control_characters(&mut value);
        assert_eq!(
            value,
            serde_json::json!({"a": "one[31m two", "b": [{"c": "tab\tand\nline"}], "n": 3})
        );
    }

    #[test]
    fn the_shipped_feed_template_escapes_what_it_is_given() {
        let mut context = tera::Context::new();
        context.insert(
            "newsletter",
            &serde_json::json!({"name": "A & <B>", "base_url": "https://example.com/"}),
        );
        context.insert(
            "feed",
            &serde_json::json!({
                "url": "https://example.com/archive",
                "self_url": "https://example.com/archive/feed.xml",
                "updated": "2026-01-01T00:00:00+00:00",
            }),
        );
        context.insert(
            "issues",
            &serde_json::json!([{
                "number": 1, "subject": "Less < more", "preheader": "\"quoted\" & 'single'",
                "url": "https://example.com/archive/1", "date": "2026-01-01T00:00:00+00:00",
            }]),
        );
        let xml = tera::Tera::one_off(SHIPPED, &context, true).unwrap();
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let text = |name: &str| {
            doc.descendants()
                .find(|n| n.has_tag_name(name))
                .and_then(|n| n.text())
                .unwrap()
                .to_owned()
        };
        assert_eq!(text("title"), "A & <B>");
        assert_eq!(text("summary"), "\"quoted\" & 'single'");
        assert_eq!(
            doc.descendants()
                .filter(|n| n.has_tag_name("entry"))
                .count(),
            1
        );
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<feed"));
        assert!(xml.ends_with("</entry>\n</feed>\n"), "{xml}");
    }
}
