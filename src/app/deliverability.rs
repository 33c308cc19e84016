//! Use case: what stands between an issue and the inbox, as an operator can act on it: a
//! `base_url` where one-click unsubscribe cannot work, a DKIM or bounce domain that does not
//! align with From (DMARC), and an issue whose complaint or bounce rate mailbox providers
//! punish.

use std::net::IpAddr;

use tracing::{error, warn};

use super::{App, AppError};

/// Complaints per delivered copy above which an issue is an alert (Gmail and Yahoo ask
/// bulk senders to stay under 0.1%, and never reach 0.3%).
pub const COMPLAINT_ALERT: f64 = 0.001;
/// Hard bounces (during the send and reported later) per recipient above which an issue is
/// an alert.
pub const BOUNCE_ALERT: f64 = 0.02;

/// What the sending setup check found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetupFindings {
    /// Problems that make `herald check` fail.
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

/// Whether two domains align for DMARC's relaxed mode: equal, or one a subdomain of the
/// other (an approximation of "the same organisational domain" without the public suffix
/// list).
fn aligned(a: &str, b: &str) -> bool {
    let (a, b) = (a.to_ascii_lowercase(), b.to_ascii_lowercase());
    a == b || a.ends_with(&format!(".{b}")) || b.ends_with(&format!(".{a}"))
}

/// Whether an address is one the internet cannot reach: loopback, private, link-local,
/// unspecified or unique-local.
fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.octets()[0] == 100 && (64..128).contains(&v4.octets()[1])
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| is_internal(IpAddr::V4(v4)))
        }
    }
}

impl App {
    /// Checks the sending setup. Over SMTP, a `base_url` that is not https or names a
    /// loopback or private address is an error (the one-click unsubscribe link in every
    /// message would not work for anyone); a DKIM domain or bounce domain that does not align
    /// with the From domain is a warning (DMARC would not count that authentication).
    pub fn sending_setup(&self) -> SetupFindings {
        let mut found = SetupFindings::default();
        let config = &self.config;
        let from_domain = config.newsletter.from.email.domain().to_ascii_lowercase();
        if config.smtp.is_some() {
            let url = &config.newsletter.base_url;
            if url.scheme() != "https" {
                found.errors.push(format!(
                    "newsletter.base_url `{url}` is not https: mailbox providers require the one-click unsubscribe link (RFC 8058) to be https"
                ));
            }
            let internal = match url.host() {
                Some(url::Host::Ipv4(ip)) => is_internal(IpAddr::V4(ip)),
                Some(url::Host::Ipv6(ip)) => is_internal(IpAddr::V6(ip)),
                Some(url::Host::Domain(d)) => {
                    let d = d.trim_end_matches('.').to_ascii_lowercase();
                    d == "localhost" || d.ends_with(".localhost") || !d.contains('.')
                }
                None => true,
            };
            if internal {
                found.errors.push(format!(
                    "newsletter.base_url `{url}` points at a loopback or private address: subscribers' unsubscribe and archive links would not reach Herald"
                ));
            }
        }
        if let Some(dkim) = &config.delivery.dkim
            && !aligned(&dkim.domain, &from_domain)
        {
            found.warnings.push(format!(
                "delivery.dkim.domain `{}` does not align with the From domain `{from_domain}`: DMARC will not count the signature; sign with `{from_domain}` or a parent or subdomain of it",
                dkim.domain
            ));
        }
        if let Some(bounce) = &config.bounces.domain
            && !aligned(bounce, &from_domain)
        {
            found.warnings.push(format!(
                "bounces.domain `{bounce}` does not align with the From domain `{from_domain}`: DMARC will not count SPF; use a subdomain such as bounces.{from_domain}"
            ));
        }
        found
    }

    /// Logs the sending setup's problems once, as `send` and `run` start (they still run:
    /// tests and local trials use loopback addresses).
    pub fn warn_about_sending_setup(&self) {
        let found = self.sending_setup();
        for problem in found.errors.iter().chain(&found.warnings) {
            warn!("{problem}");
        }
    }

    /// The newest issue's rates over the alert thresholds, as sentences.
    ///
    /// # Errors
    /// When the store fails.
    #[tracing::instrument(skip_all)]
    pub async fn feedback_alerts(&self) -> Result<Vec<String>, AppError> {
        let Some(s) = self.store.latest_issue_stats().await? else {
            return Ok(Vec::new());
        };
        let mut alerts = Vec::new();
        if s.delivered > 0 {
            let rate = s.complaints as f64 / s.delivered as f64;
            if rate > COMPLAINT_ALERT {
                alerts.push(format!(
                    "issue #{}: complaint rate {:.2}% ({} of {} delivered) is over {:.1}%: mailbox providers will filter the newsletter; check how people subscribed and how often you send",
                    s.number,
                    rate * 100.0,
                    s.complaints,
                    s.delivered,
                    COMPLAINT_ALERT * 100.0
                ));
            }
        }
        if s.recipients > 0 {
            let hard = s.bounced + s.bounced_later;
            let rate = hard as f64 / s.recipients as f64;
            if rate > BOUNCE_ALERT {
                alerts.push(format!(
                    "issue #{}: hard-bounce rate {:.2}% ({hard} of {} recipients) is over {:.0}%: the list has dead addresses (an old import?)",
                    s.number,
                    rate * 100.0,
                    s.recipients,
                    BOUNCE_ALERT * 100.0
                ));
            }
        }
        Ok(alerts)
    }

    /// Logs [`Self::feedback_alerts`] as errors.
    ///
    /// # Errors
    /// When the store fails.
    #[tracing::instrument(skip_all)]
    pub async fn log_feedback_alerts(&self) -> Result<(), AppError> {
        for alert in self.feedback_alerts().await? {
            error!("{alert}");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_and_internal_addresses() {
        assert!(aligned("example.com", "example.com"));
        assert!(aligned("bounces.example.com", "example.com"));
        assert!(aligned("example.com", "news.example.com"));
        assert!(!aligned("example.org", "example.com"));
        assert!(!aligned("badexample.com", "example.com"));
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.1.1",
            "172.16.0.1",
            "169.254.1.1",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:2800:220:1::1"] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }
}
