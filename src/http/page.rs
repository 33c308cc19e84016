//! Page rendering shared by every audience: a `templates/web/*.html` page inside the layout,
//! the message and one-button pages, and the error pages (404, 503, 429, 403).
//!
//! Part of the HTTP adapter: renders values it is given; decides nothing.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use html_escape::encode_text as text;
use tracing::warn;

use super::Web;

/// The last-resort page, used only when the page templates themselves fail.
pub(super) fn plain_page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title></head><body><main>{body}</main></body></html>\n",
        text(title)
    );
    (status, Html(html)).into_response()
}

/// Renders `templates/web/NAME` inside `web/layout.html` with `context`, plus `title` and
/// `newsletter.{name, base_url}`. Templates are read on each request, so an edit shows at once.
pub(super) fn render_page(
    s: &Web,
    status: StatusCode,
    name: &str,
    title: &str,
    mut context: tera::Context,
) -> Response {
    context.insert("title", title);
    let base = s.config().newsletter.base_url.as_str();
    let defaults = [
        (
            "description",
            format!(
                "{}: one AI term explained every week, with fresh AI news links.",
                s.config().newsletter.name
            ),
        ),
        ("canonical", String::new()),
        ("og_type", "website".to_owned()),
        ("jsonld", String::new()),
    ];
    for (key, value) in defaults {
        if !context.contains_key(key) {
            context.insert(key, &value);
        }
    }
    context.insert(
        "newsletter",
        &serde_json::json!({
            "name": s.config().newsletter.name,
            "base_url": base,
        }),
    );
    let rendered = s
        .renderer()
        .and_then(|r| r.render_page(name, &context).map_err(Into::into));
    match rendered {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            warn!(template = name, error = %e, "a page template failed");
            plain_page(status, title, &format!("<h1>{}</h1>", text(title)))
        }
    }
}

/// A page with a heading, paragraphs and an optional link (`web/message.html`).
pub(super) fn message(
    s: &Web,
    status: StatusCode,
    title: &str,
    heading: &str,
    paragraphs: &[&str],
    link: Option<(&str, &str)>,
) -> Response {
    let mut context = tera::Context::new();
    context.insert("heading", heading);
    context.insert("paragraphs", paragraphs);
    context.insert(
        "link",
        &link.map(|(href, label)| serde_json::json!({"href": href, "label": label})),
    );
    render_page(s, status, "web/message.html", title, context)
}

/// A page with one button that POSTs to `action` (`web/confirm-action.html`).
pub(super) fn action_page(
    s: &Web,
    title: &str,
    heading: &str,
    explanation: &str,
    action: &str,
    button: &str,
) -> Response {
    let mut context = tera::Context::new();
    context.insert("heading", heading);
    context.insert("text", explanation);
    context.insert("action", action);
    context.insert("button", button);
    render_page(s, StatusCode::OK, "web/confirm-action.html", title, context)
}

/// The subscribe form (`web/subscribe.html`): the home page, and the form again with what
/// was wrong.
pub(super) fn subscribe_form(
    s: &Web,
    status: StatusCode,
    title: &str,
    error: Option<&str>,
    email: &str,
    name: &str,
) -> Response {
    let mut context = tera::Context::new();
    context.insert("error", &error);
    context.insert("email", email);
    context.insert("name", name);
    if status == StatusCode::OK {
        context.insert("canonical", s.config().newsletter.base_url.as_str());
    }
    render_page(s, status, "web/subscribe.html", title, context)
}

pub(super) fn not_found(s: &Web) -> Response {
    message(
        s,
        StatusCode::NOT_FOUND,
        "Not found",
        "Not found",
        &["This link is not valid."],
        None,
    )
}

pub(super) fn try_later(s: &Web) -> Response {
    message(
        s,
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again later",
        "Something went wrong",
        &["Please try again later."],
        None,
    )
}

/// 429 with `Retry-After`: the limits here refill within a minute.
pub(super) fn too_many(s: &Web) -> Response {
    let mut response = message(
        s,
        StatusCode::TOO_MANY_REQUESTS,
        "Too many requests",
        "Too many requests",
        &["Please wait a minute and try again."],
        None,
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
    response
}

pub(super) fn cross_site(s: &Web) -> Response {
    message(
        s,
        StatusCode::FORBIDDEN,
        "Not from this site",
        "This form was sent from another site",
        &["Please use the form on our own page."],
        None,
    )
}
