//! The web server (axum): subscribe, confirm and unsubscribe pages, the archive and its Atom
//! feed, glossary pages, health, metrics and the editors' preview.
//!
//! Adapter. Pages are plain HTML and CSS and work without JavaScript. No GET changes state:
//! confirming is the one exception the double opt-in link needs, and it only confirms what its
//! signed token names. Forged, tampered or expired tokens get a 404 with no detail; bodies are
//! limited to 16 KiB; `POST /subscribe` is rate-limited per client address; every response
//! carries security headers.

pub mod server;

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};
use serde::Deserialize;
use tracing::warn;

use crate::app::App;
use crate::app::site::TermLookup;
use crate::app::subscription::{CONFIRMATION_DAYS, Confirmation};
use crate::domain::{EmailAddress, Secret, SubscriberName};

/// Largest request body accepted.
pub const MAX_BODY: usize = 16 * 1024;

/// What the handlers share: the app, and the per-client rate limit of the subscribe form
/// (a web concern: it is keyed by the client's address).
struct Web {
    app: Arc<App>,
    /// `POST /subscribe`: 5 requests per minute per client address.
    subscribe_limit: DefaultKeyedRateLimiter<IpAddr>,
    /// Wrong admin tokens (`/preview`, `/metrics`): 5 per minute per client address.
    admin_failures: DefaultKeyedRateLimiter<IpAddr>,
    /// Rendered term pages, by slug: each is rendered once per content version and kept for
    /// [`TERM_PAGE_FRESH`], so a term page costs what the home page does.
    term_pages: std::sync::Mutex<std::collections::HashMap<String, CachedPage>>,
}

/// How long a rendered term page is served before it is rendered again (its list of the
/// issues that featured the term comes from the store).
const TERM_PAGE_FRESH: std::time::Duration = std::time::Duration::from_secs(2);

/// A rendered page and what it was rendered from.
struct CachedPage {
    content_version: u64,
    rendered_at: std::time::Instant,
    html: axum::body::Bytes,
}

impl Web {
    fn new(app: Arc<App>) -> Self {
        let five_a_minute =
            || RateLimiter::keyed(Quota::per_minute(NonZeroU32::new(5).expect("non-zero")));
        Self {
            app,
            subscribe_limit: five_a_minute(),
            admin_failures: five_a_minute(),
            term_pages: std::sync::Mutex::default(),
        }
    }

    /// The client's address: the peer's, or, when the peer is a trusted reverse proxy
    /// (`[http] trusted_proxies`), the nearest untrusted address its `X-Forwarded-For` or
    /// `Forwarded` header names. Headers from anyone else are ignored: they are trivial to
    /// forge.
    fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let trusted = |ip: &IpAddr| {
            self.app
                .config()
                .http
                .trusted_proxies
                .iter()
                .any(|n| n.contains(ip))
        };
        if !trusted(&peer) {
            return peer;
        }
        let mut hops: Vec<IpAddr> = Vec::new();
        for value in headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
        {
            hops.extend(
                value
                    .split(',')
                    .filter_map(|h| h.trim().parse::<IpAddr>().ok()),
            );
        }
        for value in headers
            .get_all(header::FORWARDED)
            .iter()
            .filter_map(|v| v.to_str().ok())
        {
            for element in value.split([',', ';']) {
                let Some((key, node)) = element.trim().split_once('=') else {
                    continue;
                };
                if key.trim().eq_ignore_ascii_case("for") {
                    let node = node.trim().trim_matches('"');
                    let host = match node.strip_prefix('[') {
                        Some(v6) => v6.split(']').next().unwrap_or(""),
                        None => node.split(':').next().unwrap_or(""),
                    };
                    if let Ok(ip) = host.parse() {
                        hops.push(ip);
                    }
                }
            }
        }
        hops.into_iter()
            .rev()
            .find(|ip| !trusted(ip))
            .unwrap_or(peer)
    }
}

impl std::ops::Deref for Web {
    type Target = App;
    fn deref(&self) -> &App {
        &self.app
    }
}

type Shared = Arc<Web>;

/// The application's routes.
pub fn router(app: Arc<App>) -> Router {
    let state = Arc::new(Web::new(app));
    Router::new()
        .route("/", get(subscribe_page))
        .route("/subscribe", post(subscribe))
        .route("/confirm/{token}", get(confirm_page).post(confirm))
        .route("/u/{token}", get(unsubscribe_page).post(unsubscribe))
        .route("/hold/{token}", get(hold_page).post(hold))
        .route("/archive", get(archive))
        .route("/archive/feed.xml", get(archive_feed))
        .route("/archive/stats", get(archive_stats))
        .route("/archive/{number}", get(archive_issue))
        .route("/glossary", get(glossary_index))
        .route("/glossary/{slug}", get(glossary_term))
        .route("/glossary/{slug}/", get(glossary_term_slash))
        .route("/sitemap.xml", get(sitemap))
        .route("/robots.txt", get(robots))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/preview", get(preview))
        .route("/webhooks/{provider}", post(webhook))
        .route("/l/{issue}/{link}", get(follow_link))
        .fallback(fallback)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
}

async fn security_headers(request: axum::extract::Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    let set = |h: &mut HeaderMap, name: header::HeaderName, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::REFERRER_POLICY, "no-referrer");
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        set(
            h,
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' https: data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        );
    }
    set(h, header::CACHE_CONTROL, "no-store");
    response
}

/// The last-resort page, used only when the page templates themselves fail.
fn plain_page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title></head><body><main>{body}</main></body></html>\n",
        text(title)
    );
    (status, Html(html)).into_response()
}

/// Renders `templates/web/NAME` inside `web/layout.html` with `context`, plus `title` and
/// `newsletter.{name, base_url}`. Templates are read on each request, so an edit shows at once.
fn render_page(
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
fn message(
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
fn action_page(
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

fn not_found(s: &Web) -> Response {
    message(
        s,
        StatusCode::NOT_FOUND,
        "Not found",
        "Not found",
        &["This link is not valid."],
        None,
    )
}

fn try_later(s: &Web) -> Response {
    message(
        s,
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again later",
        "Something went wrong",
        &["Please try again later."],
        None,
    )
}

fn subscribe_form(
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

async fn fallback(State(s): State<Shared>) -> Response {
    not_found(&s)
}

async fn subscribe_page(State(s): State<Shared>) -> Response {
    subscribe_form(
        &s,
        StatusCode::OK,
        &s.config().newsletter.name,
        None,
        "",
        "",
    )
}

#[derive(Debug, Deserialize)]
struct SubscribeForm {
    email: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    first_name: String,
}

/// Whether a state-changing form post comes from our own pages: a browser's
/// `Sec-Fetch-Site` says `same-origin` (or `none`: typed, bookmarked), and an `Origin` header
/// names `[newsletter] base_url`'s origin. A request with neither (a script, a mail client)
/// is let through: the forms only ever act on what their signed tokens or the address name.
fn same_origin(s: &Web, headers: &HeaderMap) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let site = header("sec-fetch-site");
    if site.is_some_and(|site| !matches!(site, "same-origin" | "none")) {
        return false;
    }
    match header("origin") {
        None => true,
        // Our pages send `Referrer-Policy: no-referrer`, so a browser posts their forms with
        // `Origin: null`; then only its `Sec-Fetch-Site` can vouch (a sandboxed frame elsewhere
        // sends `null` too).
        Some("null") => site.is_some(),
        Some(origin) => {
            let base = &s.config().newsletter.base_url;
            origin == base.origin().ascii_serialization()
        }
    }
}

/// 429 with `Retry-After`: the limits here refill within a minute.
fn too_many(s: &Web) -> Response {
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

fn cross_site(s: &Web) -> Response {
    message(
        s,
        StatusCode::FORBIDDEN,
        "Not from this site",
        "This form was sent from another site",
        &["Please use the form on our own page."],
        None,
    )
}

async fn subscribe(
    State(s): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<SubscribeForm>,
) -> Response {
    if !same_origin(&s, &headers) {
        return cross_site(&s);
    }
    // Forget clients whose allowance has refilled, so the limiter's memory stays bounded
    // over years of running.
    if s.subscribe_limit.len() > 10_000 {
        s.subscribe_limit.retain_recent();
        s.admin_failures.retain_recent();
    }
    if s.subscribe_limit
        .check_key(&s.client_ip(peer.ip(), &headers))
        .is_err()
    {
        return too_many(&s);
    }
    let email = match EmailAddress::parse(&form.email) {
        Ok(e) => e,
        Err(e) => {
            let error = format!("That email address is not valid: {e}.");
            return subscribe_form(
                &s,
                StatusCode::BAD_REQUEST,
                "Invalid email address",
                Some(&error),
                &form.email,
                &form.name,
            );
        }
    };
    let name = SubscriberName::clean(&form.name);
    let first_name = SubscriberName::clean(&form.first_name);
    if let Err(e) = s.subscribe(&email, &name, &first_name).await {
        warn!(error = %e, "subscription failed");
        return try_later(&s);
    }
    // The same answer whatever the address's state: nothing is revealed.
    message(
        &s,
        StatusCode::OK,
        "Check your inbox",
        "Check your inbox",
        &[
            "If the address can receive our newsletter, a confirmation email is on its way. \
           Follow the link in it within 7 days to start receiving issues.",
        ],
        None,
    )
}

/// `GET /confirm/{token}`: a page with a confirm button. Link scanners follow GETs (and
/// HEADs); only the button's POST confirms.
async fn confirm_page(State(s): State<Shared>, Path(token): Path<String>) -> Response {
    match s.confirmation_link(&token) {
        Confirmation::Confirmed => action_page(
            &s,
            "Confirm your subscription",
            &format!(
                "Confirm your subscription to {}",
                s.config().newsletter.name
            ),
            "Press the button to start receiving the newsletter.",
            &format!("{}confirm/{token}", s.config().newsletter.base_url),
            "Confirm my subscription",
        ),
        Confirmation::Expired => expired(&s),
        Confirmation::Invalid => not_found(&s),
    }
}

fn expired(s: &Web) -> Response {
    message(
        s,
        StatusCode::NOT_FOUND,
        "Link expired",
        "This link has expired",
        &[&format!(
            "Confirmation links work for {CONFIRMATION_DAYS} days. Please subscribe again."
        )],
        None,
    )
}

async fn confirm(
    State(s): State<Shared>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !same_origin(&s, &headers) {
        return cross_site(&s);
    }
    match s.confirm(&token).await {
        Ok(Confirmation::Confirmed) => {
            let archive = format!("{}archive", s.config().newsletter.base_url);
            message(
                &s,
                StatusCode::OK,
                "You are subscribed",
                "You are subscribed",
                &[
                    "Welcome! The latest issue is on its way to your inbox, and new issues arrive every week.",
                ],
                Some((&archive, "Read past issues")),
            )
        }
        Ok(Confirmation::Expired) => expired(&s),
        Ok(Confirmation::Invalid) => not_found(&s),
        Err(e) => {
            warn!(error = %e, "confirmation failed");
            try_later(&s)
        }
    }
}

/// The unsubscribe links of copies that no subscriber gets (review, test, preview): they
/// lead to a page saying so, never to a 404 that looks like a broken link.
fn copy_link(s: &Web, token: &str) -> Option<Response> {
    let what = match token {
        "review-copy" => "an editors' review copy",
        "test-copy" => "a test copy",
        "preview" => "a preview",
        _ => return None,
    };
    Some(message(
        s,
        StatusCode::OK,
        "Not a subscriber's copy",
        "This link belongs to a subscriber's copy",
        &[&format!(
            "You followed the unsubscribe link of {what}. In the copies subscribers get, it leads to their own one-click unsubscribe page; here it does nothing."
        )],
        None,
    ))
}

async fn unsubscribe_page(State(s): State<Shared>, Path(token): Path<String>) -> Response {
    // A GET never unsubscribes: mail scanners follow links.
    if let Some(page) = copy_link(&s, &token) {
        return page;
    }
    match s.unsubscribe_target(&token).await {
        Ok(Some(_)) => action_page(
            &s,
            "Unsubscribe",
            &format!("Unsubscribe from {}", s.config().newsletter.name),
            "Press the button to stop receiving the newsletter.",
            &format!("{}u/{token}", s.config().newsletter.base_url),
            "Unsubscribe",
        ),
        Ok(None) => not_found(&s),
        Err(e) => {
            warn!(error = %e, "unsubscribe page failed");
            try_later(&s)
        }
    }
}

async fn unsubscribe(State(s): State<Shared>, Path(token): Path<String>) -> Response {
    // RFC 8058 one-click: the body (`List-Unsubscribe=One-Click`) needs no parsing, no cookies,
    // no login; repeating the request is harmless.
    if let Some(page) = copy_link(&s, &token) {
        return page;
    }
    match s.unsubscribe(&token).await {
        Ok(true) => message(
            &s,
            StatusCode::OK,
            "Unsubscribed",
            "You are unsubscribed",
            &["You will not receive further issues. Sorry to see you go."],
            None,
        ),
        Ok(false) => not_found(&s),
        Err(e) => {
            warn!(error = %e, "unsubscribe failed");
            try_later(&s)
        }
    }
}

/// `GET /l/{issue}/{link}`: a news link of an issue, through Herald (`[tracking] clicks`):
/// counted per link, then redirected. No cookie, no per-reader token.
async fn follow_link(
    State(s): State<Shared>,
    Path((issue, link)): Path<(String, String)>,
) -> Response {
    let (Ok(issue), Ok(link)) = (issue.parse::<u32>(), link.parse::<u32>()) else {
        return not_found(&s);
    };
    match s.follow_link(issue, link).await {
        Ok(Some(url)) => match HeaderValue::from_str(&url) {
            Ok(location) => (
                StatusCode::FOUND,
                [
                    (header::LOCATION, location),
                    (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                ],
            )
                .into_response(),
            Err(_) => not_found(&s),
        },
        Ok(None) => not_found(&s),
        Err(e) => {
            warn!(error = %e, "counting a click failed");
            try_later(&s)
        }
    }
}

/// `POST /webhooks/{provider}`: delivery events from an email service, verified by its
/// signature. Only Mailgun for now, enabled by `HERALD_MAILGUN_WEBHOOK_KEY`.
async fn webhook(
    State(s): State<Shared>,
    Path(provider): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let key = match (provider.as_str(), &s.config().secrets.mailgun_webhook_key) {
        ("mailgun", Some(key)) => key.expose().as_bytes().to_vec(),
        _ => return not_found(&s),
    };
    match s.mailgun_webhook(&body, &key).await {
        Ok(Ok(_)) => (StatusCode::OK, "ok\n").into_response(),
        Ok(Err(crate::feedback::WebhookError::Malformed(_))) => {
            (StatusCode::BAD_REQUEST, "not a webhook event\n").into_response()
        }
        Ok(Err(_)) => (StatusCode::UNAUTHORIZED, "signature refused\n").into_response(),
        Err(e) => {
            warn!(error = %e, "webhook failed");
            (StatusCode::SERVICE_UNAVAILABLE, "try again later\n").into_response()
        }
    }
}

async fn hold_page(State(s): State<Shared>, Path(token): Path<String>) -> Response {
    let Some(n) = s.hold_token_issue(&token) else {
        return not_found(&s);
    };
    action_page(
        &s,
        "Hold issue",
        &format!("Hold issue #{n}?"),
        &format!(
            "A held issue does not go out at its slot until an editor releases it with the command: herald issues release {n}"
        ),
        &format!("{}hold/{token}", s.config().newsletter.base_url),
        &format!("Hold issue #{n}"),
    )
}

async fn hold(State(s): State<Shared>, Path(token): Path<String>, headers: HeaderMap) -> Response {
    if !same_origin(&s, &headers) {
        return cross_site(&s);
    }
    let Some(number) = s.hold_token_issue(&token) else {
        return not_found(&s);
    };
    let release = format!("To let it go out, run: herald issues release {number}");
    match s.hold_issue(number).await {
        Ok(true) => message(
            &s,
            StatusCode::OK,
            "Held",
            &format!("Issue #{number} is held"),
            &[&release],
            None,
        ),
        Ok(false) => message(
            &s,
            StatusCode::CONFLICT,
            "Too late",
            &format!("Issue #{number} cannot be held"),
            &["It is already held, or already going out."],
            None,
        ),
        Err(e) => {
            warn!(error = %e, "hold failed");
            try_later(&s)
        }
    }
}

/// Issues that went out, newest first; a store error is logged and answered with a 503.
async fn published(s: &Web) -> Result<Vec<crate::store::StoredIssue>, Response> {
    s.published_issues().await.map_err(|e| {
        warn!(error = %e, "reading the archive failed");
        try_later(s)
    })
}

async fn archive(State(s): State<Shared>) -> Response {
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

async fn archive_issue(State(s): State<Shared>, Path(number): Path<String>) -> Response {
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

async fn archive_feed(State(s): State<Shared>) -> Response {
    let base = s.config().newsletter.base_url.as_str();
    let issues = match published(&s).await {
        Ok(issues) => issues,
        Err(response) => return response,
    };
    let updated = issues
        .first()
        .map(|i| i.send_after.unwrap_or(i.created_at))
        .unwrap_or_else(|| s.now());
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\">\n\
         <title>{}</title>\n<id>{}archive</id>\n<link rel=\"self\" href=\"{}archive/feed.xml\"/>\n<link href=\"{}archive\"/>\n<updated>{}</updated>\n",
        text(&s.config().newsletter.name),
        text(base),
        attr(base),
        attr(base),
        updated.to_rfc3339()
    );
    for i in &issues {
        let when = i.send_after.unwrap_or(i.created_at).to_rfc3339();
        xml.push_str(&format!(
            "<entry>\n<title>{}</title>\n<id>{}archive/{}</id>\n<link href=\"{}archive/{}\"/>\n<updated>{when}</updated>\n<published>{when}</published>\n<author><name>{}</name></author>\n<summary>{}</summary>\n</entry>\n",
            text(&i.subject),
            text(base),
            i.number,
            attr(base),
            i.number,
            text(&s.config().newsletter.name),
            text(&i.preheader),
        ));
    }
    xml.push_str("</feed>\n");
    (
        [(header::CONTENT_TYPE, "application/atom+xml; charset=utf-8")],
        xml,
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct SearchQuery {
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

async fn glossary_index(State(s): State<Shared>, Query(query): Query<SearchQuery>) -> Response {
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
                "terms": glossary.in_category(c).into_iter().map(|t| term_link(base, t)).collect::<Vec<_>>(),
            })
        })
        .collect();
    let q = query.q.trim();
    let results: Vec<serde_json::Value> = glossary
        .search(q)
        .into_iter()
        .map(|t| term_link(base, t))
        .collect();
    let closest: Vec<serde_json::Value> = if !q.is_empty() && results.is_empty() {
        glossary
            .closest(q, 5)
            .into_iter()
            .map(|t| term_link(base, t))
            .collect()
    } else {
        Vec::new()
    };
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
async fn glossary_term_slash(State(s): State<Shared>, Path(slug): Path<String>) -> Response {
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

async fn glossary_term(State(s): State<Shared>, Path(slug): Path<String>) -> Response {
    // The daemon's content version; without one (content read from files), no caching.
    let version = s.content().current().map(|c| c.version);
    if let Some(version) = version {
        let cached = s
            .term_pages
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&slug)
            .filter(|c| c.content_version == version && c.rendered_at.elapsed() < TERM_PAGE_FRESH)
            .map(|c| c.html.clone());
        if let Some(html) = cached {
            return ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response();
        }
    }
    let response = render_term_page(&s, &slug).await;
    if let (Some(version), StatusCode::OK) = (version, response.status()) {
        let (parts, body) = response.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
            return try_later(&s);
        };
        s.term_pages
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                slug,
                CachedPage {
                    content_version: version,
                    rendered_at: std::time::Instant::now(),
                    html: bytes.clone(),
                },
            );
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
        })),
    );
    render_page(s, StatusCode::OK, "web/term.html", &term.term, context)
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

fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `/metrics` on the public listener: behind `HERALD_ADMIN_TOKEN` (without one, it does not
/// exist there; `[http] metrics_listen` serves it on a private address instead).
async fn metrics(
    State(s): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = admin_only(&s, peer, &headers, "herald metrics") {
        return refused;
    }
    metrics_text(&s).await
}

/// The admin routes' guard: `None` when the request carries `HERALD_ADMIN_TOKEN`.
fn admin_only(
    s: &Web,
    peer: SocketAddr,
    headers: &HeaderMap,
    realm: &'static str,
) -> Option<Response> {
    let Some(token) = &s.config().secrets.admin_token else {
        return Some(not_found(s));
    };
    // Guessing is slow: after 5 wrong tokens in a minute, a client waits.
    let client = s.client_ip(peer.ip(), headers);
    if authorized(headers, token) {
        return None;
    }
    if s.admin_failures.check_key(&client).is_err() {
        return Some(too_many(s));
    }
    Some(
        (
            StatusCode::UNAUTHORIZED,
            [(
                header::WWW_AUTHENTICATE,
                format!("Basic realm=\"{realm}\", charset=\"UTF-8\""),
            )],
            "authorization required\n",
        )
            .into_response(),
    )
}

/// The metrics router for `[http] metrics_listen`: `/metrics` without a token, nothing else.
pub fn metrics_router(app: Arc<App>) -> Router {
    let state = Arc::new(Web::new(app));
    Router::new()
        .route(
            "/metrics",
            get(|State(s): State<Shared>| async move { metrics_text(&s).await }),
        )
        .with_state(state)
}

async fn metrics_text(s: &Web) -> Response {
    let m = match s.metrics().await {
        Ok(m) => m,
        Err(e) => {
            warn!(error = %e, "reading the metrics failed");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("store unreachable: {e}\n"),
            )
                .into_response();
        }
    };
    let mut out = String::new();
    out.push_str("# HELP herald_issues_sent_total Issues whose delivery finished.\n# TYPE herald_issues_sent_total counter\n");
    out.push_str(&format!("herald_issues_sent_total {}\n", m.issues_sent));
    out.push_str("# HELP herald_deliveries Delivery ledger rows by status, all issues.\n# TYPE herald_deliveries gauge\n");
    for (status, n) in &m.deliveries {
        out.push_str(&format!("herald_deliveries{{status=\"{status}\"}} {n}\n"));
    }
    out.push_str("# HELP herald_send_duration_seconds Duration of the most recent send run.\n# TYPE herald_send_duration_seconds gauge\n");
    out.push_str(&format!(
        "herald_send_duration_seconds {:.3}\n",
        m.last_send_seconds
    ));
    out.push_str("# HELP herald_feed_consecutive_failures Consecutive failed fetches per feed.\n# TYPE herald_feed_consecutive_failures gauge\n");
    for (name, n) in &m.feed_failures {
        out.push_str(&format!(
            "herald_feed_consecutive_failures{{feed=\"{}\"}} {n}\n",
            label(name)
        ));
    }
    out.push_str("# HELP herald_next_issue_links Links the next issue would carry with the feeds as last fetched.\n# TYPE herald_next_issue_links gauge\n");
    out.push_str(&format!("herald_next_issue_links {}\n", m.next_issue_links));
    out.push_str("# HELP herald_unsent_terms Glossary terms not yet sent in the current cycle.\n# TYPE herald_unsent_terms gauge\n");
    out.push_str(&format!("herald_unsent_terms {}\n", m.unsent_terms));
    out.push_str(
        "# HELP herald_subscribers Subscribers by status.\n# TYPE herald_subscribers gauge\n",
    );
    for (status, n) in &m.subscribers {
        out.push_str(&format!("herald_subscribers{{status=\"{status}\"}} {n}\n"));
    }
    out.push_str("# HELP herald_mail_queue_waiting Confirmation and welcome emails waiting to be sent.\n# TYPE herald_mail_queue_waiting gauge\n");
    out.push_str(&format!(
        "herald_mail_queue_waiting {}\n",
        m.mail_queue.waiting
    ));
    out.push_str("# HELP herald_mail_queue_retrying Queued emails that failed at least once and wait for a retry.\n# TYPE herald_mail_queue_retrying gauge\n");
    out.push_str(&format!(
        "herald_mail_queue_retrying {}\n",
        m.mail_queue.retrying
    ));
    out.push_str("# HELP herald_mail_queue_failed Queued emails given up on in the last 24 hours.\n# TYPE herald_mail_queue_failed gauge\n");
    out.push_str(&format!(
        "herald_mail_queue_failed {}\n",
        m.mail_queue.failed_last_day
    ));
    if let Some((sent_at, bounce_ratio, complaint_ratio)) = m.last_issue {
        out.push_str("# HELP herald_last_issue_sent_timestamp_seconds When the newest issue that went out was sent.\n# TYPE herald_last_issue_sent_timestamp_seconds gauge\n");
        out.push_str(&format!(
            "herald_last_issue_sent_timestamp_seconds {}\n",
            sent_at.timestamp()
        ));
        out.push_str("# HELP herald_last_issue_bounce_ratio Share of the newest issue's recipients whose address bounced, during the send or reported later.\n# TYPE herald_last_issue_bounce_ratio gauge\n");
        out.push_str(&format!("herald_last_issue_bounce_ratio {bounce_ratio}\n"));
        out.push_str("# HELP herald_last_issue_complaint_ratio Abuse reports per delivered copy of the newest issue.\n# TYPE herald_last_issue_complaint_ratio gauge\n");
        out.push_str(&format!(
            "herald_last_issue_complaint_ratio {complaint_ratio}\n"
        ));
    }
    out.push_str("# HELP herald_feedback_alerts The newest issue's rates over the alert thresholds: complaints over 0.1% of delivered, hard bounces over 2% of recipients.\n# TYPE herald_feedback_alerts gauge\n");
    out.push_str(&format!("herald_feedback_alerts {}\n", m.feedback_alerts));
    if let Some(next) = m.next_slot {
        out.push_str("# HELP herald_next_slot_timestamp_seconds The next send time of the schedule.\n# TYPE herald_next_slot_timestamp_seconds gauge\n");
        out.push_str(&format!(
            "herald_next_slot_timestamp_seconds {}\n",
            next.timestamp()
        ));
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

/// Compares two byte strings in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorized(headers: &HeaderMap, token: &Secret) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    // Authentication schemes are case-insensitive (RFC 9110 11.1).
    let (scheme, credentials) = value.trim().split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("Bearer") {
        return constant_time_eq(credentials.trim().as_bytes(), token.expose().as_bytes());
    }
    if scheme.eq_ignore_ascii_case("Basic") {
        let basic = credentials;
        use base64::Engine as _;
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(basic.trim()) else {
            return false;
        };
        let password = decoded.splitn(2, |b| *b == b':').nth(1).unwrap_or_default();
        return constant_time_eq(password, token.expose().as_bytes());
    }
    false
}

/// `GET /archive/stats`: the editors' view of what happened after each issue (the same
/// figures as `herald stats`), behind `HERALD_ADMIN_TOKEN`.
async fn archive_stats(
    State(s): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = admin_only(&s, peer, &headers, "herald archive stats") {
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

async fn preview(
    State(s): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = admin_only(&s, peer, &headers, "herald preview") {
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
