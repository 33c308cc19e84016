//! The public site, for readers and search engines: the home page (the subscribe form), the
//! glossary and its term pages, the archive of sent issues and its Atom feed, the sitemap and
//! `robots.txt`.
//!
//! Part of the HTTP adapter: each handler asks [`crate::app::App`] for what to show and
//! renders it.

mod archive;
mod feed;
mod glossary;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use html_escape::encode_text as text;
use tracing::warn;

pub(super) use glossary::TermPages;

use super::Shared;
use super::page::{subscribe_form, try_later};

/// The public site's routes.
pub(super) fn router() -> Router<Shared> {
    Router::new()
        .route("/", get(home))
        .route("/archive", get(archive::archive))
        .route("/archive/feed.xml", get(feed::archive_feed))
        .route("/archive/{number}", get(archive::archive_issue))
        .route("/glossary", get(glossary::glossary_index))
        .route("/glossary/{slug}", get(glossary::glossary_term))
        .route("/glossary/{slug}/", get(glossary::glossary_term_slash))
        .route("/sitemap.xml", get(sitemap))
        .route("/robots.txt", get(robots))
}

/// `GET /`: the subscribe form.
async fn home(State(s): State<Shared>) -> Response {
    subscribe_form(
        &s,
        StatusCode::OK,
        &s.config().newsletter.name,
        None,
        "",
        "",
    )
}

async fn sitemap(State(s): State<Shared>) -> Response {
    let pages = match s.sitemap().await {
        Ok(pages) => pages,
        Err(e) => {
            warn!(error = %e, "reading the sitemap failed");
            return try_later(&s);
        }
    };
    let base = s.config().newsletter.base_url.as_str();
    let mut xml = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\n",
    );
    for (path, modified) in pages {
        xml.push_str(&format!(
            "<url><loc>{}</loc>",
            text(&format!("{base}{path}"))
        ));
        if let Some(m) = modified {
            xml.push_str(&format!("<lastmod>{}</lastmod>", m.format("%Y-%m-%d")));
        }
        xml.push_str("</url>\n");
    }
    xml.push_str("</urlset>\n");
    (
        [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
        xml,
    )
        .into_response()
}

async fn robots(State(s): State<Shared>) -> Response {
    let base = s.config().newsletter.base_url.as_str();
    let body = format!(
        "User-agent: *\nDisallow: /u/\nDisallow: /confirm/\nDisallow: /hold/\nDisallow: /preview\nDisallow: /metrics\nDisallow: /healthz\nAllow: /\n\nSitemap: {base}sitemap.xml\n"
    );
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}
