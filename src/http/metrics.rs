//! Metrics in the Prometheus text format: the router of `[http] metrics_listen` (a private
//! address, no token), and the text the operator's `/metrics` serves behind the admin token.
//!
//! Part of the HTTP adapter.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tracing::warn;

use super::{Shared, Web};

/// The metrics listener's routes: `/metrics` without a token, nothing else.
pub(super) fn router() -> Router<Shared> {
    Router::new().route(
        "/metrics",
        get(|State(s): State<Shared>| async move { text(&s).await }),
    )
}

/// A Prometheus label value, escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The metrics, as Prometheus text (503 when the store cannot be read).
pub(super) async fn text(s: &Web) -> Response {
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
