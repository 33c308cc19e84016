//! The operator's routes: the editors' preview and issue statistics and the public
//! listener's `/metrics`, each behind `HERALD_ADMIN_TOKEN` (without it they do not exist),
//! and `/healthz` for monitors and load balancers (open: it shows no personal data).
//!
//! Part of the HTTP adapter.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use html_escape::encode_text as text;
use tracing::warn;

use super::Shared;
use super::extract::ClientIp;
use super::metrics;
use super::page::{plain_page, try_later};

/// The operator's routes.
pub(super) fn router() -> Router<Shared> {
    Router::new()
        .route("/archive/stats", get(archive_stats))
        .route("/preview", get(preview))
        .route("/metrics", get(metrics_behind_token))
        .route("/healthz", get(healthz))
}

/// `/metrics` on the public listener: behind `HERALD_ADMIN_TOKEN` (without one, it does not
/// exist there; `[http] metrics_listen` serves it on a private address instead).
async fn metrics_behind_token(
    State(s): State<Shared>,
    client: ClientIp,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = s.admin_only(&client, &headers, "herald metrics") {
        return refused;
    }
    metrics::text(&s).await
}

async fn healthz(State(s): State<Shared>) -> Response {
    let (status, mut body) = match s.health_check().await {
        Ok(()) => (StatusCode::OK, "ok\n".to_owned()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
    };
    // The content in use, and a reload that failed (the previous version is still served).
    if let Some(c) = s.content().current() {
        body.push_str(&format!(
            "content: version {} loaded at {}\n",
            c.version,
            c.loaded_at.to_rfc3339()
        ));
    }
    if let Some(e) = s.content().last_error() {
        body.push_str(&format!(
            "content reload failed at {} (the previous version is in use):\n",
            e.at.to_rfc3339()
        ));
        for line in &e.errors {
            body.push_str(&format!("  {line}\n"));
        }
    }
    (status, body).into_response()
}

/// `GET /archive/stats`: the editors' view of what happened after each issue (the same
/// figures as `herald stats`), behind `HERALD_ADMIN_TOKEN`.
async fn archive_stats(State(s): State<Shared>, client: ClientIp, headers: HeaderMap) -> Response {
    if let Some(refused) = s.admin_only(&client, &headers, "herald archive stats") {
        return refused;
    }
    let stats = match s.issue_stats(None).await {
        Ok(stats) => stats,
        Err(e) => {
            warn!(error = %e, "archive stats failed");
            return try_later(&s);
        }
    };
    let percent = |n: i64, of: i64| {
        if of == 0 {
            "-".to_owned()
        } else {
            format!("{n} ({:.1}%)", n as f64 * 100.0 / of as f64)
        }
    };
    let mut body = String::from(
        "<h1>What happened after each issue</h1>\n<table>\n<thead><tr><th>Issue</th><th>Went out</th><th>Term</th><th>Recipients</th><th>Delivered</th><th>Bounced during the send</th><th>Bounced later (soft)</th><th>Complaints</th><th>Failed</th><th>Unfinished</th><th>Unsubscribed within 7 days</th></tr></thead>\n<tbody>\n",
    );
    for i in &stats {
        body.push_str(&format!(
            "<tr><td><a href=\"{n}\">#{n}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} ({})</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            i.sent_at.format("%Y-%m-%d %H:%M UTC"),
            text(&i.term),
            i.recipients,
            i.delivered,
            percent(i.bounced, i.recipients),
            i.bounced_later,
            i.soft_bounced_later,
            percent(i.complaints, i.delivered),
            i.failed,
            i.unfinished,
            percent(i.unsubscribed_7d, i.delivered),
            n = i.number,
        ));
        if i.clicks.iter().any(|c| c.clicks > 0) {
            body.push_str("<tr><td></td><td colspan=\"10\"><ul>");
            for c in &i.clicks {
                body.push_str(&format!("<li>{} clicks: {}</li>", c.clicks, text(&c.url)));
            }
            body.push_str("</ul></td></tr>\n");
        }
    }
    body.push_str("</tbody>\n</table>\n");
    let mut response = plain_page(StatusCode::OK, "Issue statistics", &body);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn preview(State(s): State<Shared>, client: ClientIp, headers: HeaderMap) -> Response {
    if let Some(refused) = s.admin_only(&client, &headers, "herald preview") {
        return refused;
    }
    match s.preview_html().await {
        Ok(html) => Html(html).into_response(),
        Err(e) => plain_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Preview failed",
            &format!(
                "<h1>Preview failed</h1><pre>{}</pre>",
                text(&format!("{e:#}"))
            ),
        ),
    }
}
