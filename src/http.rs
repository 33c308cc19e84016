//! The web server (axum): subscribe, confirm and unsubscribe pages, the archive and its Atom
//! feed, glossary pages, health, metrics and the editors' preview.
//!
//! Adapter. Pages are plain HTML and CSS and work without JavaScript. No GET changes state:
//! confirming is the one exception the double opt-in link needs, and it only confirms what its
//! signed token names. Forged, tampered or expired tokens get a 404 with no detail; bodies are
//! limited to 16 KiB; `POST /subscribe` is rate-limited per client address; every response
//! carries security headers.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Form, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};
use serde::Deserialize;
use tracing::{info, warn};

use crate::clock::Clock;
use crate::compose::{Addressee, Sender, personal_message};
use crate::config::{Config, Secret};
use crate::domain::{EmailAddress, Purpose, SigningKey, SubscriberName};
use crate::mailer::{Mailer, Transport};
use crate::store::{Store, SubscribeOutcome};

/// How long a confirmation link stays valid.
pub const CONFIRMATION_DAYS: i64 = 7;

/// Largest request body accepted.
pub const MAX_BODY: usize = 16 * 1024;

/// Daemon health, shared with the scheduler.
#[derive(Debug, Default)]
pub struct Health {
    /// Unix seconds of the scheduler's last tick (0 before the first).
    pub last_tick: AtomicI64,
    /// Unix seconds when the daemon started.
    pub started: AtomicI64,
    /// Duration of the most recent send run, in milliseconds.
    pub last_send_ms: AtomicU64,
}

/// Everything the handlers share.
pub struct AppState {
    pub config: Config,
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub key: SigningKey,
    pub transport: Transport,
    pub sender: Sender,
    pub health: Arc<Health>,
    pub admin_token: Option<Secret>,
    subscribe_limit: DefaultKeyedRateLimiter<IpAddr>,
    /// At most 3 confirmation emails per address per hour, whatever the client address, so
    /// the form cannot be used to flood someone's inbox.
    confirmation_limit: DefaultKeyedRateLimiter<String>,
}

impl AppState {
    /// Builds the state; `POST /subscribe` allows 5 requests per minute per client address.
    pub fn new(
        config: Config,
        store: Store,
        clock: Arc<dyn Clock>,
        key: SigningKey,
        transport: Transport,
        sender: Sender,
        health: Arc<Health>,
    ) -> Self {
        let admin_token = config.secrets.admin_token.clone();
        Self {
            config,
            store,
            clock,
            key,
            transport,
            sender,
            health,
            admin_token,
            subscribe_limit: RateLimiter::keyed(Quota::per_minute(
                NonZeroU32::new(5).expect("non-zero"),
            )),
            confirmation_limit: RateLimiter::keyed(Quota::per_hour(
                NonZeroU32::new(3).expect("non-zero"),
            )),
        }
    }
}

type Shared = Arc<AppState>;

/// The application's routes.
pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/", get(subscribe_page))
        .route("/subscribe", post(subscribe))
        .route("/confirm/{token}", get(confirm))
        .route("/u/{token}", get(unsubscribe_page).post(unsubscribe))
        .route("/hold/{token}", get(hold_page).post(hold))
        .route("/archive", get(archive))
        .route("/archive/feed.xml", get(archive_feed))
        .route("/archive/{number}", get(archive_issue))
        .route("/glossary", get(glossary_index))
        .route("/glossary/{slug}", get(glossary_term))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/preview", get(preview))
        .fallback(|| async {
            page(
                StatusCode::NOT_FOUND,
                "Not found",
                "<p>There is nothing here.</p>",
            )
        })
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

const STYLE: &str = "body{margin:0;background:#f3f4f6;color:#1f2937;font:17px/1.6 Georgia,serif}\
main{max-width:640px;margin:0 auto;padding:32px 20px}\
h1,h2,label,button,nav{font-family:-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif}\
h1{font-size:28px;line-height:1.2}a{color:#1d4ed8}\
form{background:#fff;padding:20px;border-radius:6px}\
label{display:block;margin:12px 0 4px;font-size:14px}\
input{width:100%;box-sizing:border-box;padding:10px;font-size:16px;border:1px solid #9ca3af;border-radius:4px}\
button{margin-top:16px;padding:10px 18px;font-size:16px;background:#6d28d9;color:#fff;border:0;border-radius:4px;cursor:pointer}\
.error{color:#b91c1c}.muted{color:#6b7280;font-size:14px}\
@media (prefers-color-scheme:dark){body{background:#0b0b0f;color:#e4e4e7}form{background:#18181b}a{color:#93c5fd}}";

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"color-scheme\" content=\"light dark\"><title>{}</title><style>{STYLE}</style></head>\
         <body><main>{body}</main></body></html>\n",
        text(title)
    );
    (status, Html(html)).into_response()
}

fn not_found() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "Not found",
        "<h1>Not found</h1><p>This link is not valid.</p>",
    )
}

fn subscribe_form(s: &AppState, error: Option<&str>, email: &str, name: &str) -> String {
    let n = &s.config.newsletter;
    let error = error.map_or(String::new(), |e| {
        format!("<p class=\"error\" role=\"alert\">{}</p>", text(e))
    });
    format!(
        "<h1>{name_}</h1><p>One AI term explained every week, with a handful of fresh AI news links. Free, and you can leave with one click.</p>\
         {error}<form method=\"post\" action=\"{base}subscribe\">\
         <label for=\"email\">Email address</label><input id=\"email\" name=\"email\" type=\"email\" required maxlength=\"254\" value=\"{email}\" autocomplete=\"email\">\
         <label for=\"name\">Name (optional)</label><input id=\"name\" name=\"name\" type=\"text\" maxlength=\"100\" value=\"{name}\" autocomplete=\"name\">\
         <button type=\"submit\">Subscribe</button></form>\
         <p class=\"muted\"><a href=\"{base}archive\">Past issues</a> &middot; <a href=\"{base}glossary\">The glossary</a></p>",
        name_ = text(&n.name),
        base = attr(n.base_url.as_str()),
        email = attr(email),
        name = attr(name),
    )
}

async fn subscribe_page(State(s): State<Shared>) -> Response {
    page(
        StatusCode::OK,
        &s.config.newsletter.name,
        &subscribe_form(&s, None, "", ""),
    )
}

#[derive(Debug, Deserialize)]
struct SubscribeForm {
    email: String,
    #[serde(default)]
    name: String,
}

async fn subscribe(
    State(s): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Form(form): Form<SubscribeForm>,
) -> Response {
    // Forget clients whose allowance has refilled, so the limiter's memory stays bounded
    // over years of running.
    if s.subscribe_limit.len() > 10_000 {
        s.subscribe_limit.retain_recent();
        s.confirmation_limit.retain_recent();
    }
    if s.subscribe_limit.check_key(&peer.ip()).is_err() {
        return page(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many requests",
            "<h1>Too many requests</h1><p>Please wait a minute and try again.</p>",
        );
    }
    let email = match EmailAddress::parse(&form.email) {
        Ok(e) => e,
        Err(e) => {
            let message = format!("That email address is not valid: {e}.");
            let body = subscribe_form(&s, Some(&message), &form.email, &form.name);
            return page(StatusCode::BAD_REQUEST, "Invalid email address", &body);
        }
    };
    let name = SubscriberName::clean(&form.name);
    let now = s.clock.now();
    match s.store.request_subscription(&email, &name, now).await {
        Ok(SubscribeOutcome::Confirm(_))
            if s.confirmation_limit.check_key(&email.key()).is_err() =>
        {
            info!("confirmation not resent: three were sent to this address in the last hour");
        }
        Ok(SubscribeOutcome::Confirm(id)) => {
            if let Err(e) = send_confirmation(&s, id, &email, name.as_str()).await {
                warn!(error = %e, "could not send a confirmation email");
            }
        }
        Ok(SubscribeOutcome::AlreadyConfirmed) => {}
        Err(e) => {
            warn!(error = %e, "subscription failed");
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again later",
                "<h1>Something went wrong</h1><p>Please try again later.</p>",
            );
        }
    }
    // The same answer whatever the address's state: nothing is revealed.
    page(
        StatusCode::OK,
        "Check your inbox",
        "<h1>Check your inbox</h1><p>If the address can receive our newsletter, a confirmation email is on its way. \
         Follow the link in it within 7 days to start receiving issues.</p>",
    )
}

async fn send_confirmation(
    s: &AppState,
    id: i64,
    email: &EmailAddress,
    name: &str,
) -> anyhow::Result<()> {
    let now = s.clock.now();
    let token = s.key.sign(Purpose::Confirm, id, now.timestamp());
    let link = format!("{}confirm/{token}", s.config.newsletter.base_url);
    let n = &s.config.newsletter.name;
    let body_text = format!(
        "Hello,\n\nsomeone (hopefully you) asked to subscribe {email} to {n}.\n\nConfirm here (the link works for {CONFIRMATION_DAYS} days):\n{link}\n\nIf it was not you, ignore this email: nothing will be sent.\n"
    );
    let body_html = format!(
        "<!DOCTYPE html><html><body style=\"font-family:Georgia,serif;font-size:17px;line-height:1.6\"><p>Hello,</p>\
         <p>someone (hopefully you) asked to subscribe {e} to {n}.</p>\
         <p><a href=\"{l}\">Confirm your subscription</a> (the link works for {CONFIRMATION_DAYS} days).</p>\
         <p>If it was not you, ignore this email: nothing will be sent.</p></body></html>",
        e = text(email.as_str()),
        n = text(n),
        l = attr(&link)
    );
    let message = crate::compose::simple_message(
        &s.sender,
        email,
        name,
        &format!("Confirm your subscription to {n}"),
        &crate::compose::message_id("confirm", 0, id, s.sender.from.email.domain())
            .replace('>', &format!(".{}>", now.timestamp())),
        now,
        body_text,
        body_html,
    )?;
    Mailer::send_once(
        &s.transport,
        &s.sender.from.email,
        email,
        &message.formatted(),
    )
    .await?;
    info!(subscriber = id, "sent a confirmation email");
    Ok(())
}

async fn confirm(State(s): State<Shared>, Path(token): Path<String>) -> Response {
    let now = s.clock.now();
    let Some(claims) = s.key.verify(Purpose::Confirm, &token) else {
        return not_found();
    };
    if now.timestamp() - claims.issued_at > CONFIRMATION_DAYS * 86_400
        || claims.issued_at > now.timestamp() + 300
    {
        return page(
            StatusCode::NOT_FOUND,
            "Link expired",
            "<h1>This link has expired</h1><p>Confirmation links work for 7 days. Please subscribe again.</p>",
        );
    }
    match s.store.confirm_subscriber(claims.subject, now).await {
        Ok(Some((email, name, newly))) => {
            if newly {
                match EmailAddress::parse(&email) {
                    Ok(address) => {
                        if let Err(e) =
                            crate::daemon::send_welcome(&s, claims.subject, &address, &name).await
                        {
                            warn!(error = %format!("{e:#}"), "could not send the welcome email");
                        }
                    }
                    Err(e) => warn!(error = %e, "stored address is invalid"),
                }
            }
            let base = s.config.newsletter.base_url.as_str();
            page(
                StatusCode::OK,
                "You are subscribed",
                &format!(
                    "<h1>You are subscribed</h1><p>Welcome! The latest issue is on its way to your inbox, and new issues arrive every week.</p>\
                     <p><a href=\"{}archive\">Read past issues</a></p>",
                    attr(base)
                ),
            )
        }
        Ok(None) => not_found(),
        Err(e) => {
            warn!(error = %e, "confirmation failed");
            page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again later",
                "<h1>Something went wrong</h1><p>Please try again later.</p>",
            )
        }
    }
}

async fn unsubscribe_page(State(s): State<Shared>, Path(token): Path<String>) -> Response {
    // A GET never unsubscribes: mail scanners follow links.
    let Some(claims) = s.key.verify(Purpose::Unsubscribe, &token) else {
        return not_found();
    };
    if !s
        .store
        .subscriber_exists(claims.subject)
        .await
        .unwrap_or(false)
    {
        return not_found();
    }
    page(
        StatusCode::OK,
        "Unsubscribe",
        &format!(
            "<h1>Unsubscribe from {}</h1><p>Press the button to stop receiving the newsletter.</p>\
             <form method=\"post\" action=\"{}u/{}\"><button type=\"submit\">Unsubscribe</button></form>",
            text(&s.config.newsletter.name),
            attr(s.config.newsletter.base_url.as_str()),
            attr(&token)
        ),
    )
}

async fn unsubscribe(State(s): State<Shared>, Path(token): Path<String>) -> Response {
    // RFC 8058 one-click: the body (`List-Unsubscribe=One-Click`) needs no parsing, no cookies,
    // no login; repeating the request is harmless.
    let Some(claims) = s.key.verify(Purpose::Unsubscribe, &token) else {
        return not_found();
    };
    match s.store.unsubscribe_id(claims.subject, s.clock.now()).await {
        Ok(true) => {
            info!(subscriber = claims.subject, "unsubscribed");
            page(
                StatusCode::OK,
                "Unsubscribed",
                "<h1>You are unsubscribed</h1><p>You will not receive further issues. Sorry to see you go.</p>",
            )
        }
        Ok(false) => not_found(),
        Err(e) => {
            warn!(error = %e, "unsubscribe failed");
            page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again later",
                "<h1>Something went wrong</h1><p>Please try again later.</p>",
            )
        }
    }
}

async fn hold_page(State(s): State<Shared>, Path(token): Path<String>) -> Response {
    let Some(claims) = s.key.verify(Purpose::Hold, &token) else {
        return not_found();
    };
    page(
        StatusCode::OK,
        "Hold issue",
        &format!(
            "<h1>Hold issue #{n}?</h1><p>A held issue does not go out at its slot until it is released with <code>herald issues release {n}</code>.</p>\
             <form method=\"post\" action=\"{}hold/{}\"><button type=\"submit\">Hold issue #{n}</button></form>",
            attr(s.config.newsletter.base_url.as_str()),
            attr(&token),
            n = claims.subject
        ),
    )
}

async fn hold(State(s): State<Shared>, Path(token): Path<String>) -> Response {
    let Some(claims) = s.key.verify(Purpose::Hold, &token) else {
        return not_found();
    };
    let Ok(number) = u32::try_from(claims.subject) else {
        return not_found();
    };
    match s.store.set_issue_status(number, &["frozen"], "held").await {
        Ok(true) => page(
            StatusCode::OK,
            "Held",
            &format!(
                "<h1>Issue #{number} is held</h1><p>Release it with <code>herald issues release {number}</code>.</p>"
            ),
        ),
        Ok(false) => page(
            StatusCode::CONFLICT,
            "Too late",
            &format!(
                "<h1>Issue #{number} cannot be held</h1><p>It is already held, or already going out.</p>"
            ),
        ),
        Err(_) => page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Try again later",
            "<h1>Something went wrong</h1>",
        ),
    }
}

/// Issues that went out, newest first.
async fn published(s: &AppState) -> Vec<crate::store::StoredIssue> {
    let now = s.clock.now();
    s.store
        .issues()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|i| {
            matches!(i.status.as_str(), "sending" | "sent") && i.send_after.is_none_or(|t| t <= now)
        })
        .collect()
}

async fn archive(State(s): State<Shared>) -> Response {
    let tz = s.config.schedule.timezone;
    let base = s.config.newsletter.base_url.as_str();
    let items: String = published(&s)
        .await
        .iter()
        .map(|i| {
            let date = i.send_after.unwrap_or(i.created_at).with_timezone(&tz).format("%-d %B %Y");
            format!(
                "<li><a href=\"{}archive/{}\">#{} &middot; {}</a> <span class=\"muted\">{}</span></li>",
                attr(base),
                i.number,
                i.number,
                text(&i.subject),
                date
            )
        })
        .collect();
    let body = if items.is_empty() {
        "<p>No issue has gone out yet.</p>".to_owned()
    } else {
        format!("<ul>{items}</ul>")
    };
    page(
        StatusCode::OK,
        "Archive",
        &format!(
            "<h1>{} archive</h1>{body}<p class=\"muted\"><a href=\"{b}archive/feed.xml\">Atom feed</a> &middot; <a href=\"{b}\">Subscribe</a></p>",
            text(&s.config.newsletter.name),
            b = attr(base)
        ),
    )
}

async fn archive_issue(State(s): State<Shared>, Path(number): Path<String>) -> Response {
    let Ok(number) = number.parse::<u32>() else {
        return not_found();
    };
    match published(&s).await.into_iter().find(|i| i.number == number) {
        Some(issue) if !issue.web_html.is_empty() => {
            let mut response = Html(issue.web_html).into_response();
            // The email HTML has inline styles and a style block, and no scripts.
            response.headers_mut().insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; base-uri 'none'; frame-ancestors 'none'"),
            );
            response
        }
        _ => not_found(),
    }
}

async fn archive_feed(State(s): State<Shared>) -> Response {
    let base = s.config.newsletter.base_url.as_str();
    let issues = published(&s).await;
    let updated = issues
        .first()
        .map(|i| i.send_after.unwrap_or(i.created_at))
        .unwrap_or_else(|| s.clock.now());
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\">\n\
         <title>{}</title>\n<id>{}archive</id>\n<link rel=\"self\" href=\"{}archive/feed.xml\"/>\n<link href=\"{}archive\"/>\n<updated>{}</updated>\n",
        text(&s.config.newsletter.name),
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
            text(&s.config.newsletter.name),
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

fn load_glossary(s: &AppState) -> crate::glossary::Glossary {
    crate::glossary::load_dir(&s.config.glossary_dir).0
}

async fn glossary_index(State(s): State<Shared>) -> Response {
    let glossary = load_glossary(&s);
    let base = s.config.newsletter.base_url.as_str();
    let mut by_category: BTreeMap<&str, Vec<&crate::domain::Term>> = BTreeMap::new();
    for t in glossary.terms() {
        by_category.entry(&t.category).or_default().push(t);
    }
    let mut body = format!("<h1>{} glossary</h1>", text(&s.config.newsletter.name));
    for (category, terms) in by_category {
        body.push_str(&format!("<h2>{}</h2><ul>", text(category)));
        for t in terms {
            body.push_str(&format!(
                "<li><a href=\"{}glossary/{}\">{}</a>: {}</li>",
                attr(base),
                attr(t.slug.as_str()),
                text(&t.term),
                text(&t.summary)
            ));
        }
        body.push_str("</ul>");
    }
    page(StatusCode::OK, "Glossary", &body)
}

async fn glossary_term(State(s): State<Shared>, Path(slug): Path<String>) -> Response {
    let glossary = load_glossary(&s);
    let Some(term) = crate::domain::Slug::parse(&slug)
        .ok()
        .and_then(|slug| glossary.get(&slug).cloned())
    else {
        return not_found();
    };
    let base = s.config.newsletter.base_url.as_str();
    let mut explanation = String::new();
    pulldown_cmark::html::push_html(&mut explanation, pulldown_cmark::Parser::new(&term.body));
    let related: Vec<String> = term
        .related
        .iter()
        .filter_map(|r| glossary.get(r))
        .map(|r| {
            format!(
                "<a href=\"{}glossary/{}\">{}</a>",
                attr(base),
                attr(r.slug.as_str()),
                text(&r.term)
            )
        })
        .collect();
    let aliases = if term.aliases.is_empty() {
        String::new()
    } else {
        format!(
            "<p class=\"muted\">Also: {}</p>",
            text(&term.aliases.join(", "))
        )
    };
    page(
        StatusCode::OK,
        &term.term,
        &format!(
            "<p class=\"muted\">{}</p><h1>{}</h1>{aliases}<p><strong>{}</strong></p>{explanation}<blockquote>&ldquo;{}&rdquo;</blockquote>\
             <p>Related: {}</p><p class=\"muted\"><a href=\"{b}glossary\">All terms</a> &middot; <a href=\"{b}\">Subscribe</a></p>",
            text(&term.category),
            text(&term.term),
            text(&term.summary),
            text(&term.example),
            related.join(" &middot; "),
            b = attr(base)
        ),
    )
}

async fn healthz(State(s): State<Shared>) -> Response {
    if let Err(e) = s.store.ping().await {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("store unreachable: {e}\n"),
        )
            .into_response();
    }
    let now = s.clock.now().timestamp();
    let last = s.health.last_tick.load(Ordering::Relaxed);
    let started = s.health.started.load(Ordering::Relaxed);
    let limit = i64::from(s.config.schedule.poll_seconds) * 3 + 60;
    let reference = if last == 0 { started } else { last };
    if now - reference > limit {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("scheduler stalled: last tick {} s ago\n", now - reference),
        )
            .into_response();
    }
    (StatusCode::OK, "ok\n").into_response()
}

fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

async fn metrics(State(s): State<Shared>) -> Response {
    let mut out = String::new();
    let (deliveries, sent_issues) = s.store.delivery_totals().await.unwrap_or_default();
    out.push_str("# HELP herald_issues_sent_total Issues whose delivery finished.\n# TYPE herald_issues_sent_total counter\n");
    out.push_str(&format!("herald_issues_sent_total {sent_issues}\n"));
    out.push_str("# HELP herald_deliveries Delivery ledger rows by status, all issues.\n# TYPE herald_deliveries gauge\n");
    let mut by_status: BTreeMap<String, i64> =
        ["pending", "sending", "sent", "failed", "bounced", "skipped"]
            .into_iter()
            .map(|k| (k.to_owned(), 0))
            .collect();
    by_status.extend(deliveries);
    for (status, n) in &by_status {
        out.push_str(&format!(
            "herald_deliveries{{status=\"{}\"}} {n}\n",
            label(status)
        ));
    }
    out.push_str("# HELP herald_send_duration_seconds Duration of the most recent send run.\n# TYPE herald_send_duration_seconds gauge\n");
    out.push_str(&format!(
        "herald_send_duration_seconds {:.3}\n",
        s.health.last_send_ms.load(Ordering::Relaxed) as f64 / 1000.0
    ));
    out.push_str("# HELP herald_feed_consecutive_failures Consecutive failed fetches per feed.\n# TYPE herald_feed_consecutive_failures gauge\n");
    let states = s.store.feed_states().await.unwrap_or_default();
    for feed in &s.config.news.feeds {
        let n = states
            .get(feed.url.as_str())
            .map_or(0, |st| st.consecutive_failures);
        out.push_str(&format!(
            "herald_feed_consecutive_failures{{feed=\"{}\"}} {n}\n",
            label(&feed.name)
        ));
    }
    out.push_str(
        "# HELP herald_subscribers Subscribers by status.\n# TYPE herald_subscribers gauge\n",
    );
    for (status, n) in s.store.subscriber_counts().await.unwrap_or_default() {
        out.push_str(&format!("herald_subscribers{{status=\"{status}\"}} {n}\n"));
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
    if let Some(bearer) = value.strip_prefix("Bearer ") {
        return constant_time_eq(bearer.trim().as_bytes(), token.expose().as_bytes());
    }
    if let Some(basic) = value.strip_prefix("Basic ") {
        use base64::Engine as _;
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(basic.trim()) else {
            return false;
        };
        let password = decoded.splitn(2, |b| *b == b':').nth(1).unwrap_or_default();
        return constant_time_eq(password, token.expose().as_bytes());
    }
    false
}

async fn preview(State(s): State<Shared>, headers: HeaderMap) -> Response {
    let Some(token) = &s.admin_token else {
        return not_found();
    };
    if !authorized(&headers, token) {
        return (
            StatusCode::UNAUTHORIZED,
            [(
                header::WWW_AUTHENTICATE,
                "Basic realm=\"herald preview\", charset=\"UTF-8\"",
            )],
            "authorization required\n",
        )
            .into_response();
    }
    match crate::daemon::preview_html(&s).await {
        Ok(html) => Html(html).into_response(),
        Err(e) => page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Preview failed",
            &format!(
                "<h1>Preview failed</h1><pre>{}</pre>",
                text(&format!("{e:#}"))
            ),
        ),
    }
}

/// The welcome email for a new subscriber, built like an issue: same headers, same
/// unsubscribe link.
///
/// # Errors
/// When the message cannot be built.
pub fn welcome_message(
    s: &AppState,
    rendered: &crate::render::RenderedIssue,
    id: i64,
    email: &EmailAddress,
    name: &str,
) -> Result<lettre::Message, crate::compose::ComposeError> {
    personal_message(
        "welcome",
        rendered,
        &s.sender,
        Addressee { id, email, name },
        &s.key,
        s.clock.now(),
    )
}
