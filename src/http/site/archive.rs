//! The archive of sent issues: the list and each issue's web version.
//!
//! Part of the HTTP adapter.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use tracing::warn;

use super::super::page::{not_found, render_page, try_later};
use super::super::{Shared, Web};

/// Issues that went out, newest first; a store error is logged and answered with a 503.
pub(super) async fn published(s: &Web) -> Result<Vec<crate::store::StoredIssue>, Response> {
    s.published_issues().await.map_err(|e| {
        warn!(error = %e, "reading the archive failed");
        try_later(s)
    })
}

/// `GET /archive`: the issues that went out, newest first.
pub(super) async fn archive(State(s): State<Shared>) -> Response {
    let tz = s.config().schedule.timezone;
    let issues = match published(&s).await {
        Ok(issues) => issues,
        Err(response) => return response,
    };
    let issues: Vec<serde_json::Value> = issues
        .iter()
        .map(|i| {
            serde_json::json!({
                "number": i.number,
                "subject": i.subject,
                "date": i.send_after.unwrap_or(i.created_at).with_timezone(&tz).format("%-d %B %Y").to_string(),
            })
        })
        .collect();
    let mut context = tera::Context::new();
    context.insert("issues", &issues);
    context.insert(
        "canonical",
        &format!("{}archive", s.config().newsletter.base_url),
    );
    render_page(&s, StatusCode::OK, "web/archive.html", "Archive", context)
}

/// `GET /archive/{number}`: an issue's web version, as it was sent, without personal data.
pub(super) async fn archive_issue(State(s): State<Shared>, Path(number): Path<String>) -> Response {
    let Ok(number) = number.parse::<u32>() else {
        return not_found(&s);
    };
    match s.published_issue(number).await {
        Err(e) => {
            warn!(error = %e, "reading the archive failed");
            try_later(&s)
        }
        Ok(Some(issue)) if !issue.web_html.is_empty() => {
            let mut response = Html(issue.web_html).into_response();
            // The email HTML has inline styles and a style block, and no scripts.
            response.headers_mut().insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; base-uri 'none'; frame-ancestors 'none'"),
            );
            response
        }
        _ => not_found(&s),
    }
}
