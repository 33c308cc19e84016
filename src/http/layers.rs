//! What wraps every route: the security headers of every response, and the request id.
//!
//! Every request gets an id (`x-request-id`: a UUID, or a trusted proxy's own, so one
//! request can be followed from the proxy's log into ours) and runs inside a `request` span
//! carrying the id, the method and the route. The route is the pattern that matched
//! (`/u/{token}`), never the path itself nor the query: paths and queries carry tokens. No
//! client address is recorded. The response carries the id back in `x-request-id`.
//!
//! Part of the HTTP adapter.

use axum::Router;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use tracing::Level;

use super::Shared;

/// The request id's header.
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest request id taken from a proxy.
const MAX_REQUEST_ID: usize = 128;

/// `routes` with request ids and the request span around them (see the module's docs).
pub(super) fn request_ids(routes: Router<Shared>, state: &Shared) -> Router<Shared> {
    routes.layer(
        ServiceBuilder::new()
            .layer(middleware::from_fn_with_state(
                state.clone(),
                keep_request_id_from_proxies,
            ))
            .layer(SetRequestIdLayer::new(X_REQUEST_ID, MakeRequestUuid))
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(request_span)
                    // A failed request is logged by its handler, with the reason; the layer's
                    // own events (started, finished, failed) are for debugging.
                    .on_failure(DefaultOnFailure::new().level(Level::DEBUG)),
            )
            .layer(PropagateRequestIdLayer::new(X_REQUEST_ID)),
    )
}

/// The span of one request: its id, method and route (the pattern, not the path).
fn request_span(request: &Request) -> tracing::Span {
    let id = request
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("-", MatchedPath::as_str);
    tracing::info_span!("request", id, method = %request.method(), route)
}

/// Drops an incoming `x-request-id` unless a trusted proxy (`[http] trusted_proxies`) sent it
/// and it is a plausible id: anyone else could fill our logs with ids of their choosing (or
/// someone else's). A dropped id is replaced by a new one.
async fn keep_request_id_from_proxies(
    State(s): State<Shared>,
    mut request: Request,
    next: Next,
) -> Response {
    let from_proxy = request
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .is_some_and(|ConnectInfo(peer)| s.is_trusted_proxy(&peer.ip()));
    if !(from_proxy && one_valid_request_id(request.headers())) {
        request.headers_mut().remove(&X_REQUEST_ID);
    }
    next.run(request).await
}

/// Whether `headers` hold exactly one `x-request-id`, of 1 to [`MAX_REQUEST_ID`] letters,
/// digits and `-_.:+/=` (UUIDs, hex, base64 and the like; nothing that could break a log
/// line).
fn one_valid_request_id(headers: &HeaderMap) -> bool {
    let mut ids = headers.get_all(&X_REQUEST_ID).iter();
    let (Some(id), None) = (ids.next(), ids.next()) else {
        return false;
    };
    let id = id.as_bytes();
    (1..=MAX_REQUEST_ID).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:+/=".contains(b))
}

/// Security headers on every response.
pub(super) async fn security_headers(request: Request, next: Next) -> Response {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn with_ids(ids: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for id in ids {
            h.append(X_REQUEST_ID, id.parse().unwrap());
        }
        h
    }

    #[test]
    fn a_request_id_is_one_short_plain_token() {
        for good in [
            "3f2c8a1e-6b4d-4c1a-9e0f-2b7d5c8a9e10",
            "abc",
            "Root=1-5759e988-bd862e3fe1be46a994272793",
        ] {
            assert!(one_valid_request_id(&with_ids(&[good])), "{good}");
        }
        let long = "a".repeat(MAX_REQUEST_ID + 1);
        for bad in ["", "two words", "quote\"d", "semi;colon", long.as_str()] {
            assert!(!one_valid_request_id(&with_ids(&[bad])), "{bad:?}");
        }
        assert!(!one_valid_request_id(&with_ids(&[])));
        assert!(!one_valid_request_id(&with_ids(&["a", "b"])));
    }
}
