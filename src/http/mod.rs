//! The web server (axum): one router per audience over the application layer, merged here.
//!
//! Adapter. A handler parses the request, calls [`App`] and renders the answer; whatever
//! decides (who may do what, what a page shows) is in `crate::app`. Pages are plain HTML and
//! CSS and work without JavaScript. No GET changes state: confirming is the one exception the
//! double opt-in link needs, and it only confirms what its signed token names. Forged,
//! tampered or expired tokens get a 404 with no detail; bodies are limited to 16 KiB;
//! `POST /subscribe` is rate-limited per client address; every response carries security
//! headers and an `x-request-id`, and every request is one span in the logs.
//!
//! | module | audience | routes |
//! |---|---|---|
//! | `site` | readers and search engines | `/`, `/glossary…`, `/archive`, `/archive/{n}`, `/archive/feed.xml`, `/sitemap.xml`, `/robots.txt` |
//! | `subscription` | subscribers, their mail, email services | `/subscribe`, `/confirm/…`, `/u/…`, `/hold/…`, `/l/…`, `/webhooks/…` |
//! | `operator` | the operator and editors (admin token), monitors | `/archive/stats`, `/preview`, `/metrics`, `/healthz` |
//! | `metrics` | Prometheus on `[http] metrics_listen` | `/metrics` ([`metrics_router`]) |
//! | `extract` | shared | the client address, the same-origin check, the admin token and its limiter |
//! | `page` | shared | page rendering: the layout, messages, error pages |
//! | `layers` | shared | security headers, request ids, the request span |
//! | [`server`] | | the hyper server loop and its connection limits |
//!
//! A new audience (the editors' workspace, the API) is a module with a `router()` returning
//! `Router<Shared>`, and one `.merge` (or `.nest`) line in [`router`].

mod extract;
mod layers;
mod metrics;
mod operator;
mod page;
pub mod server;
mod site;
mod subscription;

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::middleware;
use axum::response::Response;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::app::App;

/// Largest request body accepted.
pub const MAX_BODY: usize = 16 * 1024;

/// What the handlers of every audience share: the app, and the web's own state (per-client
/// limits, keyed by the client's address, and the rendered term pages).
struct Web {
    app: Arc<App>,
    /// `POST /subscribe`: 5 requests per minute per client address.
    subscribe_limit: DefaultKeyedRateLimiter<IpAddr>,
    /// The admin token (`/preview`, `/metrics`, `/archive/stats`) and the limit on wrong
    /// ones.
    admin: extract::AdminGuard,
    /// Rendered term pages, by slug.
    term_pages: site::TermPages,
}

/// A limiter of 5 requests per minute per client address.
fn five_a_minute() -> DefaultKeyedRateLimiter<IpAddr> {
    RateLimiter::keyed(Quota::per_minute(NonZeroU32::new(5).expect("non-zero")))
}

impl Web {
    fn new(app: Arc<App>) -> Self {
        let admin = extract::AdminGuard::new(app.config().secrets.admin_token.as_ref());
        Self {
            app,
            subscribe_limit: five_a_minute(),
            admin,
            term_pages: site::TermPages::default(),
        }
    }
}

impl std::ops::Deref for Web {
    type Target = App;
    fn deref(&self) -> &App {
        &self.app
    }
}

/// The state every audience's router is written over.
type Shared = Arc<Web>;

/// The application's routes: every audience's router, merged.
pub fn router(app: Arc<App>) -> Router {
    let state = Arc::new(Web::new(app));
    let routes = Router::new()
        .merge(site::router())
        .merge(subscription::router())
        .merge(operator::router())
        .fallback(fallback)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn(layers::security_headers));
    layers::request_ids(routes, &state).with_state(state)
}

/// The metrics router for `[http] metrics_listen`: `/metrics` without a token, nothing else.
pub fn metrics_router(app: Arc<App>) -> Router {
    let state = Arc::new(Web::new(app));
    layers::request_ids(metrics::router(), &state).with_state(state)
}

async fn fallback(State(s): State<Shared>) -> Response {
    page::not_found(&s)
}
