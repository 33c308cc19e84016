//! The subscription pages, for subscribers, their mail and email services: subscribe, confirm,
//! unsubscribe (one-click), the editors' hold link, the followed news links, and the
//! providers' delivery-event webhooks.
//!
//! Part of the HTTP adapter: a GET never changes state (link scanners follow GETs); the
//! state-changing forms are refused when a browser says they come from another site.

use axum::Router;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tracing::warn;

use super::extract::ClientIp;
use super::page::{
    action_page, cross_site, message, not_found, subscribe_form, too_many, try_later,
};
use super::{Shared, Web};
use crate::app::subscription::{CONFIRMATION_DAYS, Confirmation};
use crate::app::web::CopyKind;
use crate::domain::{EmailAddress, SubscriberName};

/// The subscription pages' routes.
pub(super) fn router() -> Router<Shared> {
    Router::new()
        .route("/subscribe", post(subscribe))
        .route("/confirm/{token}", get(confirm_page).post(confirm))
        .route("/u/{token}", get(unsubscribe_page).post(unsubscribe))
        .route("/hold/{token}", get(hold_page).post(hold))
        .route("/l/{issue}/{link}", get(follow_link))
        .route("/webhooks/{provider}", post(webhook))
}

#[derive(Debug, Deserialize)]
struct SubscribeForm {
    email: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    first_name: String,
}

async fn subscribe(
    State(s): State<Shared>,
    client: ClientIp,
    headers: HeaderMap,
    Form(form): Form<SubscribeForm>,
) -> Response {
    if !s.same_origin(&headers) {
        return cross_site(&s);
    }
    s.forget_refilled_clients();
    if s.subscribe_limit.check_key(&client.0).is_err() {
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
    if !s.same_origin(&headers) {
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
    let what = match CopyKind::of_unsubscribe_token(token)? {
        CopyKind::Review => "an editors' review copy",
        CopyKind::Test => "a test copy",
        CopyKind::Preview => "a preview",
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
    let Some(outcome) = s.provider_webhook(&provider, &body).await else {
        return not_found(&s);
    };
    match outcome {
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
    if !s.same_origin(&headers) {
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
