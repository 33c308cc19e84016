//! Composition: one subscriber's personalised parts into a complete MIME message.
//!
//! Pure: no I/O, no clock. Date, Message-ID and the MIME boundary come from the inputs, so the
//! same inputs always give the same bytes (a preview can be compared byte for byte with a
//! send). The message is `multipart/alternative` (text first, then HTML), UTF-8, with From,
//! Reply-To, To (the name encoded safely by lettre: a name can never add a header), Subject,
//! Date, Message-ID on the From domain, List-Id, List-Unsubscribe with an HTTPS and a mailto
//! link, `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058) and
//! `Precedence: bulk`.

use chrono::{DateTime, Utc};
use lettre::Message;
use lettre::message::header::{ContentTransferEncoding, ContentType, HeaderName, HeaderValue};
use lettre::message::{Body, Mailbox as LettreMailbox, MultiPart, SinglePart};

use crate::domain::{EmailAddress, Mailbox};
use crate::render::{EncodedParts, Personalized, RenderedIssue};

/// Why a message could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("address `{address}` cannot be used in a message: {reason}")]
    Address { address: String, reason: String },
    #[error("building the message: {0}")]
    Build(String),
    #[error("DKIM: {0}")]
    Dkim(String),
}

/// Everything one message needs besides its body.
#[derive(Debug, Clone)]
pub struct Envelope<'a> {
    pub from: &'a Mailbox,
    pub reply_to: Option<&'a EmailAddress>,
    pub to: &'a EmailAddress,
    /// The subscriber's display name (already free of control characters); may be empty.
    pub to_name: &'a str,
    pub subject: &'a str,
    pub date: DateTime<Utc>,
    /// Stable per issue and subscriber; see [`message_id`].
    pub message_id: String,
    /// The newsletter's name, for List-Id.
    pub list_name: &'a str,
    /// The HTTPS one-click unsubscribe link.
    pub unsubscribe_url: &'a str,
    /// The token in the unsubscribe link, repeated in the mailto subject so a person handling
    /// the mailbox can act on it.
    pub unsubscribe_token: &'a str,
    /// The address of the `mailto:` unsubscribe when Herald reads that mailbox itself
    /// (`unsubscribe+TOKEN@BOUNCE-DOMAIN`); else the mailto goes to the Reply-To address.
    pub unsubscribe_mailto: Option<&'a str>,
    /// The web archive of past issues, for List-Archive.
    pub archive_url: &'a str,
    /// What this message is, for Feedback-ID (`issue7`, `welcome0`, `test7`): mailbox
    /// providers report complaints per value (Gmail's feedback loop).
    pub campaign: &'a str,
}

/// A Message-ID that is stable for an issue and a subscriber and uses the From domain (not
/// the machine's host name). `kind` tells issues from other mail (`issue`, `welcome` ...).
///
/// ```
/// use herald_core::compose::message_id;
/// assert_eq!(message_id("issue", 12, 345, "example.com"), "<issue-12.345@example.com>");
/// ```
pub fn message_id(kind: &str, number: u32, subscriber: i64, domain: &str) -> String {
    format!("<{kind}-{number}.{subscriber}@{}>", ascii_domain(domain))
}

/// A boundary derived from the Message-ID, so it is deterministic and differs per message.
fn boundary(message_id: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325; // FNV-1a
    for b in message_id.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("herald-{hash:016x}")
}

fn ascii_domain(domain: &str) -> String {
    idna::domain_to_ascii(domain).unwrap_or_else(|_| domain.to_owned())
}

fn lettre_mailbox(name: &str, email: &EmailAddress) -> Result<LettreMailbox, ComposeError> {
    let address =
        lettre::Address::new(email.local_part(), ascii_domain(email.domain())).map_err(|e| {
            ComposeError::Address {
                address: email.to_string(),
                reason: e.to_string(),
            }
        })?;
    Ok(LettreMailbox::new(
        (!name.is_empty()).then(|| name.to_owned()),
        address,
    ))
}

fn header(name: &'static str, value: String) -> HeaderValue {
    HeaderValue::new(HeaderName::new_from_ascii_str(name), value)
}

/// A message's two bodies, encoded for transfer.
#[derive(Debug, Clone)]
pub struct Bodies {
    pub text: Body,
    pub html: Body,
}

impl From<Personalized> for Bodies {
    /// Lets lettre choose each part's transfer encoding.
    fn from(p: Personalized) -> Self {
        Self {
            text: Body::new(p.text),
            html: Body::new(p.html),
        }
    }
}

impl From<EncodedParts> for Bodies {
    /// Parts already quoted-printable encoded by [`crate::render::RenderedIssue::personalize_encoded`].
    fn from(p: EncodedParts) -> Self {
        Self {
            text: Body::dangerous_pre_encoded(p.text, ContentTransferEncoding::QuotedPrintable),
            html: Body::dangerous_pre_encoded(p.html, ContentTransferEncoding::QuotedPrintable),
        }
    }
}

/// Builds the message.
///
/// # Errors
/// [`ComposeError`] when an address cannot be expressed in a message.
pub fn compose(envelope: &Envelope<'_>, body: impl Into<Bodies>) -> Result<Message, ComposeError> {
    let body = body.into();
    let from_domain = ascii_domain(envelope.from.email.domain());
    let list_label: String = envelope
        .list_name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_lowercase();
    let list_label = if list_label.is_empty() {
        "newsletter".to_owned()
    } else {
        list_label
    };
    let list_phrase: String = envelope
        .list_name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == ' ')
        .collect();
    let mailto = match envelope.unsubscribe_mailto {
        Some(address) => format!("mailto:{address}?subject=unsubscribe"),
        None => format!(
            "mailto:{}?subject=unsubscribe%20{}",
            envelope.reply_to.unwrap_or(&envelope.from.email),
            envelope.unsubscribe_token
        ),
    };
    let from = lettre_mailbox(&envelope.from.name, &envelope.from.email)?;
    let to = lettre_mailbox(envelope.to_name, envelope.to)?;
    // Given explicitly, the SMTP envelope is not derived again by parsing the From and To
    // headers back (a tenth of the time of composing a message).
    let smtp_envelope =
        lettre::address::Envelope::new(Some(from.email.clone()), vec![to.email.clone()])
            .map_err(|e| ComposeError::Build(e.to_string()))?;
    let mut builder = Message::builder()
        .envelope(smtp_envelope)
        .from(from)
        .to(to)
        .subject(envelope.subject)
        .date(envelope.date.into())
        .message_id(Some(envelope.message_id.clone()))
        .raw_header(header(
            "List-Id",
            format!("\"{}\" <{list_label}.{from_domain}>", list_phrase.trim()),
        ))
        .raw_header(header(
            "List-Unsubscribe",
            format!("<{}>, <{mailto}>", envelope.unsubscribe_url),
        ))
        .raw_header(header(
            "List-Unsubscribe-Post",
            "List-Unsubscribe=One-Click".to_owned(),
        ))
        .raw_header(header(
            "List-Archive",
            format!("<{}>", envelope.archive_url),
        ))
        .raw_header(header(
            "Feedback-ID",
            format!(
                "{}:{list_label}:newsletter:{from_domain}",
                envelope
                    .campaign
                    .chars()
                    .filter(char::is_ascii_alphanumeric)
                    .collect::<String>()
            ),
        ))
        .raw_header(header("Precedence", "bulk".to_owned()));
    if let Some(reply_to) = envelope.reply_to {
        builder = builder.reply_to(lettre_mailbox("", reply_to)?);
    }
    builder
        .multipart(
            MultiPart::alternative()
                .boundary(boundary(&envelope.message_id))
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(body.text),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(body.html),
                ),
        )
        .map_err(|e| ComposeError::Build(e.to_string()))
}

/// Who sends the newsletter, from the configuration.
#[derive(Debug, Clone)]
pub struct Sender {
    pub from: Mailbox,
    pub reply_to: Option<EmailAddress>,
    pub list_name: String,
    /// Public address of Herald's pages, ending in `/`.
    pub base_url: String,
    /// DKIM signing, when `[delivery.dkim]` is configured (built once from the configuration).
    pub dkim: Option<std::sync::Arc<crate::dkim::DkimSigner>>,
    /// `[bounces] domain`: where bounces and `mailto:` unsubscribes come back to Herald.
    pub bounce_domain: Option<String>,
}

/// A DKIM signer: RSA key in PKCS#1 PEM form, rsa-sha256, relaxed/relaxed, the
/// [`crate::dkim::SIGNED_HEADERS`] (over-signing [`crate::dkim::OVERSIGNED_HEADERS`]).
///
/// # Errors
/// [`ComposeError::Dkim`] when the key cannot be read or parsed.
pub fn dkim_signer(
    domain: &str,
    selector: &str,
    private_key_pem: &str,
) -> Result<crate::dkim::DkimSigner, ComposeError> {
    crate::dkim::DkimSigner::new(domain, selector, private_key_pem)
        .map_err(|e| ComposeError::Dkim(e.to_string()))
}

/// A composed message, DKIM-signed over its final bytes when they are taken.
#[derive(Debug, Clone)]
pub struct Composed {
    message: Message,
    dkim: Option<std::sync::Arc<crate::dkim::DkimSigner>>,
}

impl Composed {
    fn new(message: Message, sender: &Sender) -> Self {
        Self {
            message,
            dkim: sender.dkim.clone(),
        }
    }

    /// The message as it goes out: lettre's bytes, signed when DKIM is configured.
    pub fn formatted(&self) -> Vec<u8> {
        let raw = self.message.formatted();
        match &self.dkim {
            Some(signer) => signer.sign(&raw),
            None => raw,
        }
    }

    /// The message before signing.
    pub fn message(&self) -> &Message {
        &self.message
    }
}

impl Sender {
    /// The one-click unsubscribe link for a token.
    pub fn unsubscribe_url(&self, token: &str) -> String {
        format!("{}u/{token}", self.base_url)
    }
}

/// One subscriber, as a message needs them.
#[derive(Debug, Clone, Copy)]
pub struct Addressee<'a> {
    pub id: i64,
    pub email: &'a EmailAddress,
    pub name: &'a str,
    /// The first name to greet them by; empty when unknown.
    pub first_name: &'a str,
}

/// The per-subscriber path: sign the unsubscribe token, personalise the rendered issue and
/// build the complete message. `kind` names the mail in its Message-ID (`issue`, `welcome`).
///
/// # Errors
/// [`ComposeError`] when an address cannot be expressed in a message.
pub fn personal_message(
    kind: &str,
    rendered: &crate::render::RenderedIssue,
    sender: &Sender,
    to: Addressee<'_>,
    key: &crate::domain::SigningKey,
    date: DateTime<Utc>,
) -> Result<Composed, ComposeError> {
    let token = key.sign(crate::domain::Purpose::Unsubscribe, to.id, 0);
    let unsubscribe_url = sender.unsubscribe_url(&token);
    let mailto = sender.bounce_domain.as_ref().map(|domain| {
        format!(
            "{}{}@{domain}",
            crate::feedback::UNSUBSCRIBE_PREFIX,
            key.sign_address(crate::domain::Purpose::MailUnsubscribe, to.id)
        )
    });
    let body = rendered.personalize_encoded(&crate::render::Recipient {
        name: to.name,
        first_name: to.first_name,
        email: to.email.as_str(),
        unsubscribe_url: &unsubscribe_url,
    });
    let envelope = Envelope {
        from: &sender.from,
        reply_to: sender.reply_to.as_ref(),
        to: to.email,
        to_name: to.name,
        subject: &rendered.subject,
        date,
        message_id: message_id(kind, rendered.number, to.id, sender.from.email.domain()),
        list_name: &sender.list_name,
        unsubscribe_url: &unsubscribe_url,
        unsubscribe_token: &token,
        unsubscribe_mailto: mailto.as_deref(),
        archive_url: &format!("{}archive", sender.base_url),
        campaign: &format!(
            "{}{}",
            kind.split('-').next().unwrap_or(kind),
            rendered.number
        ),
    };
    Ok(Composed::new(compose(&envelope, body)?, sender))
}

/// What kind of copy of an issue a message is, when it is not the one subscribers get.
#[derive(Debug, Clone, Copy)]
pub enum CopyNote<'a> {
    /// `herald send --to`: a test copy for the sender.
    Test,
    /// The editors' review copy: when the issue goes out and how to hold it.
    Review {
        hold_url: &'a str,
        /// The planned send time, as people read it.
        goes_out: &'a str,
        /// What the editors should know about how the issue was made (a queued term
        /// passed over ...).
        notes: &'a [String],
    },
}

impl CopyNote<'_> {
    fn subject_prefix(self) -> &'static str {
        match self {
            Self::Test => "[Test] ",
            Self::Review { .. } => "[Review] ",
        }
    }

    fn text(self, number: u32) -> String {
        match self {
            Self::Test => format!(
                "TEST COPY of issue #{number}: subscribers have not received it, and its unsubscribe link does nothing."
            ),
            Self::Review {
                hold_url,
                goes_out,
                notes,
            } => {
                let mut text = format!(
                    "REVIEW COPY of issue #{number}: it goes out {goes_out}.\nTo stop it, open {hold_url} or run: herald issues hold {number}"
                );
                for note in notes {
                    text.push_str(&format!("\nNote: {note}."));
                }
                text
            }
        }
    }

    fn html(self, number: u32) -> String {
        let box_style = "font-family:sans-serif;font-size:15px;line-height:1.5;background:#fef3c7;color:#1f2937;padding:12px 16px;border:1px solid #b45309;margin:0 0 12px 0";
        match self {
            Self::Test => format!(
                "<div role=\"note\" style=\"{box_style}\"><strong>Test copy</strong> of issue #{number}: subscribers have not received it, and its unsubscribe link does nothing.</div>"
            ),
            Self::Review {
                hold_url,
                goes_out,
                notes,
            } => {
                let notes: String = notes
                    .iter()
                    .map(|n| format!("<br>Note: {}.", html_escape::encode_text(n)))
                    .collect();
                format!(
                    "<div role=\"note\" style=\"{box_style}\"><strong>Review copy</strong> of issue #{number}: it goes out {}. <a href=\"{}\" style=\"color:#1d4ed8\">Hold this issue</a> (or run <code>herald issues hold {number}</code>).{notes}</div>",
                    html_escape::encode_text(goes_out),
                    html_escape::encode_double_quoted_attribute(hold_url),
                )
            }
        }
    }
}

/// The rendered issue marked as a test or review copy: the subject prefixed (`[Test]`,
/// `[Review]`), a note at the top of both parts (for a review copy with the planned send time
/// and the hold link), and for a test copy the same note at the end, above nothing a
/// subscriber would rely on.
pub fn mark_copy(rendered: &RenderedIssue, note: CopyNote<'_>) -> RenderedIssue {
    let number = rendered.number;
    let banner = note.html(number);
    let mut html = rendered.html_template().to_owned();
    // After the opening `<body ...>` tag, whatever its attributes; else at the very start.
    let at = html
        .find("<body")
        .and_then(|i| html[i..].find('>').map(|j| i + j + 1))
        .unwrap_or(0);
    html.insert_str(at, &banner);
    let mut text = format!("{}\n\n{}", note.text(number), rendered.text_template());
    if let CopyNote::Test = note {
        match html.rfind("</body>") {
            Some(end) => html.insert_str(end, &banner),
            None => html.push_str(&banner),
        }
        text.push_str(&format!("\n\n{}\n", note.text(number)));
    }
    RenderedIssue::from_frozen(
        number,
        format!("{}{}", note.subject_prefix(), rendered.subject),
        rendered.preheader.clone(),
        html,
        text,
    )
}

/// A test copy of an issue for `herald send --to`: marked as such, with a Message-ID of its
/// own for every copy (`nonce`: mail clients drop a second message with the same id), and an
/// unsubscribe link that leads to a page explaining it is a test copy.
///
/// # Errors
/// [`ComposeError`] when an address cannot be expressed in a message.
pub fn test_copy(
    rendered: &RenderedIssue,
    sender: &Sender,
    to: &EmailAddress,
    date: DateTime<Utc>,
    nonce: i64,
) -> Result<Composed, ComposeError> {
    let marked = mark_copy(rendered, CopyNote::Test);
    let unsubscribe_url = format!("{}u/test-copy", sender.base_url);
    let body = marked.personalize_encoded(&crate::render::Recipient {
        name: "",
        first_name: "",
        email: to.as_str(),
        unsubscribe_url: &unsubscribe_url,
    });
    let envelope = Envelope {
        from: &sender.from,
        reply_to: sender.reply_to.as_ref(),
        to,
        to_name: "",
        subject: &marked.subject,
        date,
        message_id: format!(
            "<test-{}.{nonce}@{}>",
            rendered.number,
            ascii_domain(sender.from.email.domain())
        ),
        list_name: &sender.list_name,
        unsubscribe_url: &unsubscribe_url,
        unsubscribe_token: "test-copy",
        unsubscribe_mailto: None,
        archive_url: &format!("{}archive", sender.base_url),
        campaign: &format!("test{}", rendered.number),
    };
    Ok(Composed::new(compose(&envelope, body)?, sender))
}

/// What a service message says, and to whom (see [`simple_message`]).
#[derive(Debug, Clone)]
pub struct ServiceMessage<'a> {
    pub to: &'a EmailAddress,
    /// The recipient's display name, or empty.
    pub to_name: &'a str,
    pub subject: &'a str,
    /// The whole Message-ID (see [`message_id`]); the MIME boundary derives from it.
    pub message_id: &'a str,
    pub date: DateTime<Utc>,
    pub text: String,
    pub html: String,
}

/// A short service message (confirmation, editors' review note): multipart text and HTML,
/// From, Reply-To, To, Subject, Date, Message-ID, DKIM-signed when configured.
///
/// # Errors
/// [`ComposeError`] when an address cannot be expressed in a message.
pub fn simple_message(sender: &Sender, m: ServiceMessage<'_>) -> Result<Composed, ComposeError> {
    let ServiceMessage {
        to,
        to_name,
        subject,
        message_id,
        date,
        text,
        html,
    } = m;
    let mut builder = Message::builder()
        .from(lettre_mailbox(&sender.from.name, &sender.from.email)?)
        .to(lettre_mailbox(to_name, to)?)
        .subject(subject)
        .date(date.into())
        .message_id(Some(message_id.to_owned()));
    if let Some(reply_to) = &sender.reply_to {
        builder = builder.reply_to(lettre_mailbox("", reply_to)?);
    }
    let bodies = Bodies::from(Personalized { html, text });
    let message = builder
        .multipart(
            MultiPart::alternative()
                .boundary(boundary(message_id))
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(bodies.text),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(bodies.html),
                ),
        )
        .map_err(|e| ComposeError::Build(e.to_string()))?;
    Ok(Composed::new(message, sender))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered() -> RenderedIssue {
        RenderedIssue::from_frozen(
            7,
            "Attention — Weekly #7".into(),
            "pre".into(),
            "<html><body style=\"margin:0\"><p>Issue</p></body></html>".into(),
            "Issue text".into(),
        )
    }

    #[test]
    fn a_review_copy_carries_its_note_at_the_top_of_both_parts_with_the_editors_notes() {
        let notes = ["queued term `lora` was skipped".to_owned()];
        let marked = mark_copy(
            &rendered(),
            CopyNote::Review {
                hold_url: "https://n.example/hold/t?a=1&b=2",
                goes_out: "Monday 30 November 2026, 09:00 CET",
                notes: &notes,
            },
        );
        assert_eq!(marked.subject, "[Review] Attention — Weekly #7");
        let html = marked.html_template();
        assert!(
            html.starts_with("<html><body style=\"margin:0\"><div role=\"note\""),
            "{html}"
        );
        assert!(html.contains("href=\"https://n.example/hold/t?a=1&amp;b=2\""));
        assert!(html.contains("Note: queued term `lora` was skipped."));
        let text = marked.text_template();
        assert!(text.starts_with(
            "REVIEW COPY of issue #7: it goes out Monday 30 November 2026, 09:00 CET."
        ));
        assert!(text.contains("Note: queued term `lora` was skipped.\n\nIssue text"));
    }

    #[test]
    fn a_test_copy_says_so_at_the_top_and_in_the_footer() {
        let marked = mark_copy(&rendered(), CopyNote::Test);
        assert_eq!(marked.subject, "[Test] Attention — Weekly #7");
        assert_eq!(marked.html_template().matches("Test copy").count(), 2);
        let footer = &marked.html_template()[marked.html_template().find("Issue").unwrap()..];
        assert!(footer.contains("Test copy"));
        assert!(marked.text_template().trim_end().ends_with("does nothing."));
    }
}
