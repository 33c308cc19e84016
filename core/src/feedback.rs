//! What a message that comes back says: a delivery status notification (RFC 3464), a
//! complaint (an abuse report in the Abuse Reporting Format, RFC 5965), or a reader's email
//! to the `mailto:` unsubscribe address.
//!
//! Pure: bytes in, a [`Report`] out (mail-parser does the MIME). Nothing here trusts what it
//! reads: the tokens it collects identify a delivery or a subscriber only once the
//! application has verified their MAC, so a forged report can name no one.

use mail_parser::{MessageParser, MimeHeaders, PartType};
use sha2::{Digest, Sha256};

use crate::domain::ADDRESS_TOKEN_LEN;

/// The local-part prefix of the per-delivery envelope sender (VERP).
pub const BOUNCE_PREFIX: &str = "bounces+";
/// The local-part prefix of the `mailto:` unsubscribe address.
pub const UNSUBSCRIBE_PREFIX: &str = "unsubscribe+";

/// What kind of message came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// The relay gave up for good: a permanent failure (5.x.x): the address is dead.
    HardBounce,
    /// The relay gave up after temporary failures (4.x.x with `Action: failed`).
    SoftBounce,
    /// A delay warning (`Action: delayed`): the relay still tries; nothing to do.
    Delayed,
    /// A delivery report that says the message arrived (`delivered`, `relayed`, `expanded`).
    Delivered,
    /// An abuse report: the reader marked the message as spam.
    Complaint,
    /// An email to the `mailto:` unsubscribe address.
    Unsubscribe,
    /// Anything else (an auto-reply, a bounce in no standard format, a feedback report
    /// of another type): recorded nowhere.
    Other,
}

/// What a returned message says, and the tokens that may say whom it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub kind: Kind,
    /// The enhanced status code of a delivery report (`5.1.1`).
    pub status: Option<String>,
    /// Why, in the reporting server's words (`Diagnostic-Code`, or the feedback type).
    pub reason: String,
    /// Tokens of `bounces+TOKEN@` addresses: the report's own recipient first, then the
    /// returned message's envelope sender.
    pub bounce_tokens: Vec<String>,
    /// Tokens of an `unsubscribe+TOKEN@` recipient of the message itself.
    pub unsubscribe_tokens: Vec<String>,
    /// Unsubscribe link tokens (`/u/TOKEN`) found in a returned message's headers.
    pub link_tokens: Vec<String>,
    /// What identifies this report, so that it is counted once however often it is read:
    /// its Message-ID, or the SHA-256 of its bytes.
    pub id: String,
    /// The report's machine-readable part (delivery status or feedback report), as text,
    /// at most 4 KB: what the ledger keeps.
    pub text: String,
}

/// Reads one message. `recipient` is the envelope recipient when the caller knows it (a
/// Postfix pipe passes it); the message's own `Delivered-To`, `X-Original-To`,
/// `Envelope-To` and `To` headers are read as well.
pub fn parse(raw: &[u8], recipient: Option<&str>) -> Report {
    let id_of_bytes = || format!("sha256:{}", hex(&Sha256::digest(raw)));
    let Some(message) = MessageParser::default().parse(raw) else {
        return Report {
            kind: Kind::Other,
            status: None,
            reason: "not an email message".into(),
            bounce_tokens: Vec::new(),
            unsubscribe_tokens: Vec::new(),
            link_tokens: Vec::new(),
            id: id_of_bytes(),
            text: String::new(),
        };
    };
    let id = message
        .message_id()
        .map(|m| format!("message-id:{m}"))
        .unwrap_or_else(id_of_bytes);
    let to_text = delivered_to(&message, recipient);
    let mut bounce_tokens = address_tokens(&to_text, BOUNCE_PREFIX);
    let unsubscribe_tokens = address_tokens(&to_text, UNSUBSCRIBE_PREFIX);
    let report_type = report_type(&message);
    let parts = ReportParts::of(&message);
    let fields = parts.status.as_deref().map(fields).unwrap_or_default();
    let field = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    // The returned message's envelope sender, and the report's own record of it.
    let mut from_original = parts.original.clone();
    if let Some(v) = field("Original-Mail-From") {
        from_original.push_str(&v);
    }
    for token in address_tokens(&from_original, BOUNCE_PREFIX) {
        if !bounce_tokens.contains(&token) {
            bounce_tokens.push(token);
        }
    }
    let link_tokens = link_tokens(&parts.original);
    let text: String = parts
        .status
        .unwrap_or_default()
        .chars()
        .take(4096)
        .collect();
    let (kind, status, reason) = classify(report_type.as_deref(), &field, &unsubscribe_tokens);
    Report {
        kind,
        status,
        reason: one_line(&reason, 500),
        bounce_tokens,
        unsubscribe_tokens: if report_type.is_some() {
            Vec::new()
        } else {
            unsubscribe_tokens
        },
        link_tokens,
        id,
        text,
    }
}

/// The addresses the message itself was delivered to: the envelope recipient the caller
/// knows, and its `Delivered-To`, `X-Original-To`, `Envelope-To` and `To` headers, a line each.
fn delivered_to(message: &mail_parser::Message<'_>, recipient: Option<&str>) -> String {
    let mut to_text = String::new();
    if let Some(r) = recipient {
        to_text.push_str(r);
        to_text.push('\n');
    }
    for (name, value) in message.headers_raw() {
        if ["delivered-to", "x-original-to", "envelope-to", "to"]
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h))
        {
            to_text.push_str(value);
            to_text.push('\n');
        }
    }
    to_text
}

/// The `report-type` of a `multipart/report`, lower-cased; `None` for any other message.
fn report_type(message: &mail_parser::Message<'_>) -> Option<String> {
    message
        .content_type()
        .filter(|ct| {
            ct.ctype().eq_ignore_ascii_case("multipart")
                && ct
                    .subtype()
                    .is_some_and(|s| s.eq_ignore_ascii_case("report"))
        })
        .and_then(|ct| ct.attribute("report-type"))
        .map(str::to_ascii_lowercase)
}

/// The parts of a report Herald reads.
struct ReportParts {
    /// The machine-readable part (delivery status or feedback report), as text.
    status: Option<String>,
    /// The returned message's headers (its body is the newsletter), or the returned text.
    original: String,
}

impl ReportParts {
    fn of(message: &mail_parser::Message<'_>) -> Self {
        let mut status = None::<String>;
        let mut original = String::new();
        for part in &message.parts {
            let Some(ct) = part.content_type() else {
                continue;
            };
            let full = format!(
                "{}/{}",
                ct.ctype().to_ascii_lowercase(),
                ct.subtype().unwrap_or("").to_ascii_lowercase()
            );
            match full.as_str() {
                "message/delivery-status"
                | "message/global-delivery-status"
                | "message/feedback-report"
                    if status.is_none() =>
                {
                    status = Some(String::from_utf8_lossy(part.contents()).into_owned());
                }
                "message/rfc822" | "message/global" | "text/rfc822-headers" => {
                    match &part.body {
                        PartType::Message(m) => {
                            let raw = m.raw_message();
                            let end =
                                m.root_part().raw_body_offset().min(raw.len() as u32) as usize;
                            original.push_str(&String::from_utf8_lossy(&raw[..end]));
                        }
                        _ => original.push_str(&String::from_utf8_lossy(part.contents())),
                    }
                    original.push('\n');
                }
                _ => {}
            }
        }
        Self { status, original }
    }
}

/// What a report is, from its type and its fields: the kind, the status code and the reason.
fn classify(
    report_type: Option<&str>,
    field: &dyn Fn(&str) -> Option<String>,
    unsubscribe_tokens: &[String],
) -> (Kind, Option<String>, String) {
    match report_type {
        Some("delivery-status") => {
            let action = field("Action").unwrap_or_default().to_ascii_lowercase();
            let status = field("Status").map(|s| {
                s.split_whitespace()
                    .next()
                    .unwrap_or("")
                    .trim_matches(|c: char| !c.is_ascii_digit() && c != '.')
                    .to_owned()
            });
            let reason = field("Diagnostic-Code")
                .or_else(|| status.clone())
                .unwrap_or_else(|| action.clone());
            let class = status.as_deref().and_then(|s| s.chars().next());
            let kind = match (action.as_str(), class) {
                ("failed", Some('5')) => Kind::HardBounce,
                ("failed", Some('4')) => Kind::SoftBounce,
                // A failure without a usable status is taken as permanent, as RFC 3464
                // says `failed` means the relay will not try again.
                ("failed", _) => Kind::HardBounce,
                ("delayed", _) => Kind::Delayed,
                ("delivered" | "relayed" | "expanded", _) => Kind::Delivered,
                _ => Kind::Other,
            };
            (kind, status, reason)
        }
        Some("feedback-report") => {
            let feedback = field("Feedback-Type")
                .unwrap_or_default()
                .to_ascii_lowercase();
            let kind = if feedback == "abuse" {
                Kind::Complaint
            } else {
                Kind::Other
            };
            (kind, None, format!("feedback-type: {feedback}"))
        }
        _ if !unsubscribe_tokens.is_empty() => (
            Kind::Unsubscribe,
            None,
            "unsubscribe requested by email".to_owned(),
        ),
        _ => (
            Kind::Other,
            None,
            "neither a delivery report, an abuse report nor an unsubscribe request".to_owned(),
        ),
    }
}

/// The fields of a delivery-status or feedback-report part: `Name: value` lines (folded
/// lines unfolded), every block of it in order. The first per-recipient block comes after
/// the per-message one, so a lookup of a per-recipient field finds the first recipient's.
fn fields(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = out.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            out.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    out
}

/// The tokens of `PREFIX TOKEN @` addresses in `text` (any letter case), each once.
fn address_tokens(text: &str, prefix: &str) -> Vec<String> {
    let lower = text.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut rest = lower.as_str();
    while let Some(at) = rest.find(prefix) {
        let after = &rest[at + prefix.len()..];
        let token: String = after
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect();
        if token.len() == ADDRESS_TOKEN_LEN
            && after[token.len()..].starts_with('@')
            && !out.contains(&token)
        {
            out.push(token);
        }
        rest = after;
    }
    out
}

/// Unsubscribe link tokens (`/u/` and 44 URL-safe base64 characters).
fn link_tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("/u/") {
        let after = &rest[at + 3..];
        let token: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect();
        if token.len() == 44 && !out.contains(&token) {
            out.push(token);
        }
        rest = after;
    }
    out
}

/// Why a webhook call was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("the body is not a webhook event: {0}")]
    Malformed(String),
    #[error("the signature does not match the webhook signing key")]
    BadSignature,
    #[error("the signature is older or newer than 15 minutes")]
    Stale,
}

/// The longest a signed webhook call stays acceptable (Mailgun's advice), in seconds.
pub const WEBHOOK_MAX_AGE: i64 = 15 * 60;

/// Reads a Mailgun webhook call (its JSON body): checks its signature (HMAC-SHA256 of the
/// timestamp and token, keyed by the webhook signing key, hex) and its age against `now`
/// (seconds since the epoch), then says what the event is, as [`parse`] does for a message.
/// `failed` with `severity: permanent` is a hard bounce (a temporary failure is a delay:
/// Mailgun still tries), `complained` a complaint, `unsubscribed` an unsubscribe; the
/// delivery comes from the envelope sender (VERP), as for a returned message.
///
/// # Errors
/// [`WebhookError`] when the body is not an event, or is not signed with `key`, or too old.
pub fn mailgun_event(body: &[u8], key: &[u8], now: i64) -> Result<Report, WebhookError> {
    use hmac::{Hmac, KeyInit, Mac};
    let malformed = |what: &str| WebhookError::Malformed(what.to_owned());
    let json: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| WebhookError::Malformed(e.to_string()))?;
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let signature = &json["signature"];
    let timestamp =
        text(&signature["timestamp"]).ok_or_else(|| malformed("no signature.timestamp"))?;
    let token = text(&signature["token"]).ok_or_else(|| malformed("no signature.token"))?;
    let given = text(&signature["signature"]).ok_or_else(|| malformed("no signature.signature"))?;
    let given = unhex(&given).ok_or(WebhookError::BadSignature)?;
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(timestamp.as_bytes());
    mac.update(token.as_bytes());
    mac.verify_slice(&given)
        .map_err(|_| WebhookError::BadSignature)?;
    let at: i64 = timestamp
        .parse()
        .map_err(|_| malformed("signature.timestamp is not a number"))?;
    if (now - at).abs() > WEBHOOK_MAX_AGE {
        return Err(WebhookError::Stale);
    }

    let event = &json["event-data"];
    let name = text(&event["event"]).ok_or_else(|| malformed("no event-data.event"))?;
    let id = text(&event["id"]).unwrap_or_else(|| token.clone());
    let status = &event["delivery-status"];
    let enhanced = text(&status["enhanced-code"]);
    let reason = [
        text(&status["code"]),
        enhanced.clone(),
        text(&status["description"]).filter(|d| !d.is_empty()),
        text(&status["message"]).filter(|m| !m.is_empty()),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" ");
    let kind = match (name.as_str(), text(&event["severity"]).as_deref()) {
        ("failed", Some("permanent")) => Kind::HardBounce,
        ("failed", _) => Kind::Delayed,
        ("complained", _) => Kind::Complaint,
        ("unsubscribed", _) => Kind::Unsubscribe,
        ("delivered", _) => Kind::Delivered,
        _ => Kind::Other,
    };
    let mut senders = String::new();
    for v in [
        &event["envelope"]["sender"],
        &event["message"]["headers"]["return-path"],
    ] {
        if let Some(s) = text(v) {
            senders.push_str(&s);
            senders.push('\n');
        }
    }
    let bounce_tokens = address_tokens(&senders, BOUNCE_PREFIX);
    Ok(Report {
        kind,
        status: enhanced,
        reason: one_line(
            &if reason.is_empty() {
                format!("mailgun event {name}")
            } else {
                reason
            },
            500,
        ),
        // An unsubscribe through Mailgun names the delivery as a bounce does.
        unsubscribe_tokens: Vec::new(),
        bounce_tokens,
        link_tokens: Vec::new(),
        id: format!("mailgun:{id}"),
        text: event.to_string().chars().take(4096).collect(),
    })
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Whether a file's bytes are an mbox (it starts with a `From ` separator line).
pub fn is_mbox(bytes: &[u8]) -> bool {
    bytes.starts_with(b"From ")
}

/// The messages of an mbox (mboxrd): split at each `From ` line that starts the file or
/// follows an empty line, the separator line dropped and `>From ` quoting undone.
pub fn split_mbox(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut messages: Vec<Vec<u8>> = Vec::new();
    let mut current: Option<Vec<u8>> = None;
    let mut previous_blank = true;
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        if previous_blank && line.starts_with(b"From ") {
            if let Some(mut m) = current.take() {
                // The empty line before the separator belongs to the mbox, not the message.
                if m.ends_with(b"\r\n\r\n") {
                    m.truncate(m.len() - 2);
                } else if m.ends_with(b"\n\n") {
                    m.truncate(m.len() - 1);
                }
                messages.push(m);
            }
            current = Some(Vec::new());
            previous_blank = false;
            continue;
        }
        let content = line.strip_suffix(b"\n").unwrap_or(line);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        previous_blank = content.is_empty();
        if let Some(m) = current.as_mut() {
            let quoted = line.iter().take_while(|&&b| b == b'>').count();
            if quoted > 0 && line[quoted..].starts_with(b"From ") {
                m.extend_from_slice(&line[1..]);
            } else {
                m.extend_from_slice(line);
            }
        }
    }
    if let Some(m) = current {
        messages.push(m);
    }
    messages.retain(|m| !m.iter().all(u8::is_ascii_whitespace));
    messages
}

fn one_line(text: &str, max: usize) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(max)
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "abcdefghijklmnopqrstuvwxyz234567";

    fn dsn(action: &str, status: &str) -> String {
        format!(
            "From: MAILER-DAEMON@mx.example.org\r\n\
             To: bounces+{TOKEN}@bounces.example.com\r\n\
             Subject: Undelivered Mail Returned to Sender\r\n\
             Message-ID: <dsn-1@mx.example.org>\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\
             \r\n\
             --B\r\n\
             Content-Type: text/plain\r\n\
             \r\n\
             I'm sorry to have to inform you that your message could not be delivered.\r\n\
             --B\r\n\
             Content-Type: message/delivery-status\r\n\
             \r\n\
             Reporting-MTA: dns; mx.example.org\r\n\
             \r\n\
             Final-Recipient: rfc822; reader@example.org\r\n\
             Action: {action}\r\n\
             Status: {status}\r\n\
             Diagnostic-Code: smtp; 550 5.1.1 <reader@example.org>: Recipient address\r\n \
             rejected: User unknown\r\n\
             \r\n\
             --B\r\n\
             Content-Type: text/rfc822-headers\r\n\
             \r\n\
             Return-Path: <bounces+{TOKEN}@bounces.example.com>\r\n\
             List-Unsubscribe: <mailto:unsubscribe+{TOKEN}@bounces.example.com>\r\n\
             Subject: AI Glossary Weekly #3\r\n\
             --B--\r\n"
        )
    }

    #[test]
    fn a_permanent_failure_is_a_hard_bounce_with_its_status_and_reason() {
        let r = parse(dsn("failed", "5.1.1").as_bytes(), None);
        assert_eq!(r.kind, Kind::HardBounce);
        assert_eq!(r.status.as_deref(), Some("5.1.1"));
        assert!(r.reason.contains("User unknown"), "{}", r.reason);
        assert_eq!(r.bounce_tokens, vec![TOKEN.to_owned()]);
        // The returned message's List-Unsubscribe is not an unsubscribe request.
        assert!(r.unsubscribe_tokens.is_empty());
        assert_eq!(r.id, "message-id:dsn-1@mx.example.org");
        assert!(r.text.contains("Final-Recipient"));
    }

    #[test]
    fn temporary_failures_delays_and_successes_are_told_apart() {
        assert_eq!(
            parse(dsn("failed", "4.2.2").as_bytes(), None).kind,
            Kind::SoftBounce
        );
        assert_eq!(
            parse(dsn("delayed", "4.4.1").as_bytes(), None).kind,
            Kind::Delayed
        );
        assert_eq!(
            parse(dsn("delivered", "2.0.0").as_bytes(), None).kind,
            Kind::Delivered
        );
    }

    #[test]
    fn an_email_to_the_unsubscribe_address_is_an_unsubscribe_request() {
        let mail = format!(
            "From: reader@example.org\r\nTo: <unsubscribe+{}@bounces.example.com>\r\nSubject: unsubscribe\r\n\r\n",
            TOKEN.to_uppercase()
        );
        let r = parse(mail.as_bytes(), None);
        assert_eq!(r.kind, Kind::Unsubscribe);
        assert_eq!(r.unsubscribe_tokens, vec![TOKEN.to_owned()]);
        // Known only from the envelope (a Postfix pipe's ${recipient}).
        let bare = parse(
            b"From: reader@example.org\r\nSubject: stop\r\n\r\nplease\r\n",
            Some(&format!("unsubscribe+{TOKEN}@b.example.com")),
        );
        assert_eq!(bare.kind, Kind::Unsubscribe);
    }

    #[test]
    fn an_auto_reply_to_the_bounce_address_is_not_a_bounce() {
        let mail = format!(
            "From: reader@example.org\r\nTo: bounces+{TOKEN}@bounces.example.com\r\nSubject: Out of office\r\nAuto-Submitted: auto-replied\r\n\r\nI am away.\r\n"
        );
        assert_eq!(parse(mail.as_bytes(), None).kind, Kind::Other);
        assert_eq!(parse(b"\xff\xfe not mail", None).kind, Kind::Other);
    }

    #[test]
    fn an_mbox_is_split_at_its_separators_and_quoting_is_undone() {
        let mbox = b"From MAILER-DAEMON Mon Nov 23 10:00:00 2026\nSubject: one\n\n>From the start\nbody\n\nFrom MAILER-DAEMON Mon Nov 23 10:01:00 2026\nSubject: two\n\nHello\nFrom after text is content\n";
        assert!(is_mbox(mbox));
        let m = split_mbox(mbox);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0], b"Subject: one\n\nFrom the start\nbody\n");
        // A `From ` line that does not follow an empty line is content.
        assert_eq!(m[1], b"Subject: two\n\nHello\nFrom after text is content\n");
    }

    #[test]
    fn fields_unfold_continuation_lines() {
        let f = fields("Diagnostic-Code: smtp; 550\r\n  user unknown\r\nAction: failed\r\n");
        assert_eq!(f[0].1, "smtp; 550 user unknown");
        assert_eq!(f[1], ("Action".to_owned(), "failed".to_owned()));
    }
}
