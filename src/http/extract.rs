//! What handlers learn from a request besides its path and body, in one place: the client's
//! address behind trusted proxies ([`ClientIp`]), whether a form post comes from our own
//! pages, and whether a request carries the admin token (with the limit on wrong ones).
//!
//! Part of the HTTP adapter: reads headers and the peer address, never the store.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use governor::DefaultKeyedRateLimiter;
use ring::hmac;

use super::page::{not_found, too_many};
use super::{Shared, Web, five_a_minute};
use crate::domain::Secret;

/// The client's address: the peer's, or, behind a trusted reverse proxy, the address the
/// proxy names (see [`Web::client_ip`]).
pub(super) struct ClientIp(pub(super) IpAddr);

impl FromRequestParts<Shared> for ClientIp {
    type Rejection = <ConnectInfo<SocketAddr> as FromRequestParts<Shared>>::Rejection;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Shared,
    ) -> Result<Self, Self::Rejection> {
        let ConnectInfo(peer) = ConnectInfo::<SocketAddr>::from_request_parts(parts, state).await?;
        Ok(Self(state.client_ip(peer.ip(), &parts.headers)))
    }
}

impl Web {
    /// Whether `ip` is one of `[http] trusted_proxies`.
    pub(super) fn is_trusted_proxy(&self, ip: &IpAddr) -> bool {
        self.config()
            .http
            .trusted_proxies
            .iter()
            .any(|n| n.contains(ip))
    }

    /// The client's address: the peer's, or, when the peer is a trusted reverse proxy
    /// (`[http] trusted_proxies`), the nearest untrusted address its `X-Forwarded-For` or
    /// `Forwarded` header names. Headers from anyone else are ignored: they are trivial to
    /// forge.
    fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.is_trusted_proxy(&peer) {
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
            hops.extend(forwarded_for(value));
        }
        hops.into_iter()
            .rev()
            .find(|ip| !self.is_trusted_proxy(ip))
            .unwrap_or(peer)
    }

    /// Whether a state-changing form post comes from our own pages: a browser's
    /// `Sec-Fetch-Site` says `same-origin` (or `none`: typed, bookmarked), and an `Origin`
    /// header names `[newsletter] base_url`'s origin. A request with neither (a script, a mail
    /// client) is let through: the forms only ever act on what their signed tokens or the
    /// address name.
    pub(super) fn same_origin(&self, headers: &HeaderMap) -> bool {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let site = header("sec-fetch-site");
        if site.is_some_and(|site| !matches!(site, "same-origin" | "none")) {
            return false;
        }
        match header("origin") {
            None => true,
            // Our pages send `Referrer-Policy: no-referrer`, so a browser posts their forms
            // with `Origin: null`; then only its `Sec-Fetch-Site` can vouch (a sandboxed frame
            // elsewhere sends `null` too).
            Some("null") => site.is_some(),
            Some(origin) => {
                let base = &self.config().newsletter.base_url;
                origin == base.origin().ascii_serialization()
            }
        }
    }

    /// The admin routes' guard: `None` when the request carries `HERALD_ADMIN_TOKEN`;
    /// otherwise the answer (404 when no token is configured: the route does not exist).
    pub(super) fn admin_only(
        &self,
        ClientIp(client): &ClientIp,
        headers: &HeaderMap,
        realm: &'static str,
    ) -> Option<Response> {
        let Some(token) = &self.admin.token else {
            return Some(not_found(self));
        };
        if token.authorizes(headers) {
            return None;
        }
        // Guessing is slow: after 5 wrong tokens in a minute, a client waits.
        if self.admin.failures.check_key(client).is_err() {
            return Some(too_many(self));
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

    /// Forgets clients whose allowance has refilled, once the limiters remember many, so
    /// their memory stays bounded over years of running.
    pub(super) fn forget_refilled_clients(&self) {
        if self.subscribe_limit.len() > 10_000 {
            self.subscribe_limit.retain_recent();
            self.admin.failures.retain_recent();
        }
    }
}

/// The addresses a `Forwarded` header's `for=` parameters name, in order.
fn forwarded_for(value: &str) -> impl Iterator<Item = IpAddr> + '_ {
    value.split([',', ';']).filter_map(|element| {
        let (key, node) = element.trim().split_once('=')?;
        if !key.trim().eq_ignore_ascii_case("for") {
            return None;
        }
        let node = node.trim().trim_matches('"');
        let host = match node.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => node.split(':').next().unwrap_or(""),
        };
        host.parse().ok()
    })
}

/// The admin token, if one is configured, and the limit on wrong ones.
pub(super) struct AdminGuard {
    token: Option<AdminToken>,
    /// Wrong admin tokens (`/preview`, `/metrics`, `/archive/stats`): 5 per minute per client
    /// address.
    failures: DefaultKeyedRateLimiter<IpAddr>,
}

impl AdminGuard {
    pub(super) fn new(token: Option<&Secret>) -> Self {
        Self {
            token: token.map(AdminToken::new),
            failures: five_a_minute(),
        }
    }
}

/// `HERALD_ADMIN_TOKEN`, kept as an HMAC key and the token's own tag, so that a presented
/// token is checked by ring's constant-time tag comparison (`ring::hmac::verify`): the time
/// taken says nothing about where a guess differs, nor about the token's length.
struct AdminToken {
    key: hmac::Key,
    tag: hmac::Tag,
}

impl AdminToken {
    fn new(token: &Secret) -> Self {
        let key = hmac::Key::new(hmac::HMAC_SHA256, token.expose().as_bytes());
        let tag = hmac::sign(&key, token.expose().as_bytes());
        Self { key, tag }
    }

    /// Whether `presented` is the token.
    fn matches(&self, presented: &[u8]) -> bool {
        hmac::verify(&self.key, presented, self.tag.as_ref()).is_ok()
    }

    /// Whether the request's `Authorization` carries the token: as a bearer token, or as
    /// the password of basic auth (any user name).
    fn authorizes(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        // Authentication schemes are case-insensitive (RFC 9110 11.1).
        let (scheme, credentials) = value.trim().split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("Bearer") {
            return self.matches(credentials.trim().as_bytes());
        }
        if scheme.eq_ignore_ascii_case("Basic") {
            use base64::Engine as _;
            let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(credentials.trim())
            else {
                return false;
            };
            let password = decoded.splitn(2, |b| *b == b':').nth(1).unwrap_or_default();
            return self.matches(password);
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(authorization: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, authorization.parse().unwrap());
        h
    }

    #[test]
    fn only_the_whole_admin_token_is_accepted_as_bearer_or_basic_password() {
        let token = AdminToken::new(&Secret::new("s3cret-token".to_owned()));
        assert!(token.authorizes(&headers("Bearer s3cret-token")));
        assert!(token.authorizes(&headers("bearer  s3cret-token ")));
        use base64::Engine as _;
        let basic = base64::engine::general_purpose::STANDARD.encode("editor:s3cret-token");
        assert!(token.authorizes(&headers(&format!("Basic {basic}"))));
        for wrong in [
            "Bearer s3cret-toke",
            "Bearer s3cret-token2",
            "Bearer ",
            "Bearer S3CRET-TOKEN",
            "s3cret-token",
            "Digest s3cret-token",
        ] {
            assert!(!token.authorizes(&headers(wrong)), "{wrong}");
        }
        assert!(!token.authorizes(&HeaderMap::new()));
    }

    #[test]
    fn forwarded_for_reads_every_for_parameter() {
        let ips: Vec<IpAddr> =
            forwarded_for("for=192.0.2.60;proto=http, For=\"[2001:db8::1]:4711\", by=203.0.113.43")
                .collect();
        assert_eq!(
            ips,
            [
                "192.0.2.60".parse::<IpAddr>().unwrap(),
                "2001:db8::1".parse().unwrap()
            ]
        );
    }
}
