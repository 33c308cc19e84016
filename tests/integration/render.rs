//! Rendering: email-safe HTML, a readable text part, escaping, and the complete message.

use chrono::{TimeZone, Utc};
use herald::compose::{Addressee, Sender, personal_message};
use herald::domain::{EmailAddress, Mailbox, NewsLink, SigningKey};
use herald::render::{IssuePlan, MAX_HTML_BYTES, NewsletterInfo, Recipient, TEXT_WIDTH};

use crate::harness::repo;

fn fixed_issue() -> (IssuePlan, NewsletterInfo) {
    let (g, _) = herald::files::load_glossary(&repo().join("glossary"));
    let mut term = g.find("transformer").unwrap().clone();
    term.term = "Transformer <script>alert(1)</script> & friends".into();
    let link = |n: u32, title: &str, source: &str| {
        NewsLink {
        title: title.into(),
        url: format!("https://news.example.com/{n}?a=1&b=2"),
        canonical_url: format!("https://news.example.com/{n}"),
        source: source.into(),
        summary: "Researchers compared attention variants & found <b>surprising</b> results on long documents, which matter for anyone building retrieval systems today.".into(),
        published: Some(Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap()),
        curated: false,
    }
    };
    let plan = IssuePlan {
        number: 7,
        date: Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, 0).unwrap(),
        related: g.related_names(&term),
        term,
        links: vec![
            link(
                1,
                "<script>alert('x')</script> Fish & Chips model",
                "Tom & Jerry's <Feed>",
            ),
            link(2, "A plain headline", "Example News"),
        ],
    };
    let info = NewsletterInfo {
        name: "AI Glossary Weekly".into(),
        base_url: "https://news.example.com/".into(),
        timezone: "Europe/Berlin".parse().unwrap(),
        postal_address: Some("1 Example Street, 12345 Example City, Exampleland".into()),
    };
    (plan, info)
}

fn render() -> (herald::render::RenderedIssue, herald::render::Personalized) {
    let renderer = herald::files::load_templates(&repo().join("templates")).unwrap();
    let (plan, info) = fixed_issue();
    let rendered = renderer.render_issue(&plan, &info).unwrap();
    let personal = rendered.personalize(&Recipient {
        name: "Ada <Lovelace> & Co",
        first_name: "",
        email: "ada@example.com",
        unsubscribe_url: "https://news.example.com/u/TOKEN",
    });
    (rendered, personal)
}

#[test]
fn the_html_and_text_of_a_fixed_issue_match_their_snapshots() {
    let (rendered, personal) = render();
    assert_eq!(
        rendered.subject,
        "Transformer <script>alert(1)</script> & friends — AI Glossary Weekly #7"
    );
    insta::assert_snapshot!("issue_html", personal.html);
    insta::assert_snapshot!("issue_text", personal.text);
}

#[test]
fn the_html_part_is_email_safe() {
    let (_, personal) = render();
    let html = &personal.html;
    assert!(html.len() < MAX_HTML_BYTES, "{} bytes", html.len());
    assert!(!html.contains("<script"), "no script element survives");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; friends"));
    assert!(html.contains("Fish &amp; Chips"));
    assert!(html.contains("Ada &lt;Lovelace&gt; &amp; Co"));
    for forbidden in ["<form", "<link", "javascript:", "<iframe"] {
        assert!(!html.to_lowercase().contains(forbidden), "{forbidden}");
    }
    assert!(html.contains(r#"role="presentation""#));
    assert!(html.contains(r#"width="600""#));
    assert!(html.contains(r#"<meta name="color-scheme" content="light dark">"#));
    // The encoding comes first in <head>; the Outlook-only fixed-width table and settings.
    assert!(
        html.contains(r#"<head><meta charset="utf-8">"#),
        "{}",
        &html[..300]
    );
    assert!(html.contains("<!--[if mso]><table role=\"presentation\" width=\"600\""));
    assert!(html.contains("<o:PixelsPerInch>96</o:PixelsPerInch>"));
    assert!(html.contains(r#"role="article""#) && html.contains("aria-label="));
    assert!(html.contains("max-width: 600px"), "fluid, capped at 600 px");
    assert!(
        html.contains("@media only screen and (max-width: 620px)"),
        "mobile rules kept"
    );
    assert!(
        html.contains("@media (prefers-color-scheme: dark)"),
        "dark-mode rules kept"
    );
    // Styles are inlined: the heading carries its own style attribute.
    let h1 = &html[html.find("<h1").unwrap()..];
    assert!(
        h1[..h1.find('>').unwrap()].contains("style=\""),
        "{}",
        &h1[..80]
    );
    // Only the @media rules remain in a style block.
    let style = &html[html.find("<style>").unwrap()..html.find("</style>").unwrap()];
    assert!(
        !style.contains(".text {"),
        "plain rules were inlined, not kept: {style}"
    );
    // A hidden preheader comes first in the body, and the unsubscribe link is visible.
    let body = &html[html.find("<body").unwrap()..];
    assert!(body.find("display: none").unwrap() < body.find("<table").unwrap());
    // The preheader has no text colour of its own (a colour equal to the background scores
    // HTML_FONT_LOW_CONTRAST in SpamAssassin) and is padded to about 100 characters, so the
    // inbox preview never runs into the body.
    let preheader = &body[body.find("<div").unwrap()..];
    let preheader = &preheader[..preheader.find("</div>").unwrap()];
    let style = &preheader[..preheader.find('>').unwrap()];
    assert!(
        style.contains("display: none") && !style.contains("color"),
        "{style}"
    );
    let shown = html_escape::decode_html_entities(&preheader[preheader.find('>').unwrap() + 1..])
        .into_owned();
    let text = shown.split('\u{2007}').next().unwrap().chars().count();
    let total = shown.chars().count();
    assert!(
        total >= 100 && total <= text.max(100) + 8,
        "{total} characters for a preheader of {text}: {preheader}"
    );
    assert!(html.contains(r#"<a href="https://news.example.com/u/TOKEN""#));
    assert!(html.contains(">Unsubscribe</a>"));
}

#[test]
fn the_text_part_is_readable_in_a_terminal() {
    let (_, personal) = render();
    for line in personal.text.lines() {
        assert!(
            line.chars().count() <= TEXT_WIDTH || line.contains("://"),
            "too wide: {line:?}"
        );
    }
    assert!(
        personal
            .text
            .contains("Transformer <script>alert(1)</script> & friends")
    );
    assert!(
        personal
            .text
            .contains("[1] <script>alert('x')</script> Fish & Chips model")
    );
    assert!(
        personal
            .text
            .contains("\n    https://news.example.com/1?a=1&b=2\n")
    );
    assert!(
        personal
            .text
            .trim_end()
            .ends_with("https://news.example.com/u/TOKEN"),
        "unsubscribe URL at the end"
    );
    assert!(!personal.text.contains("**"), "markdown is reduced to text");
}

#[test]
fn the_message_is_multipart_alternative_with_every_header() {
    let (rendered, _) = render();
    let sender = Sender {
        from: Mailbox::parse("AI Glossary Weekly <weekly@example.com>").unwrap(),
        reply_to: Some(EmailAddress::parse("editors@example.com").unwrap()),
        list_name: "AI Glossary Weekly".into(),
        base_url: "https://news.example.com/".into(),
        dkim: None,
        bounce_domain: None,
    };
    let to = EmailAddress::parse("eve@example.com").unwrap();
    let key = SigningKey::new("test-key");
    let date = Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, 0).unwrap();
    let name = "Eve\" <x@evil.test>\r\nBcc: x@evil.test";
    let clean = herald::domain::SubscriberName::clean(name);
    let message = personal_message(
        "issue",
        &rendered,
        &sender,
        Addressee {
            id: 42,
            email: &to,
            name: clean.as_str(),
            first_name: "",
        },
        &key,
        date,
    )
    .unwrap();
    let bytes = message.formatted();
    let again = personal_message(
        "issue",
        &rendered,
        &sender,
        Addressee {
            id: 42,
            email: &to,
            name: clean.as_str(),
            first_name: "",
        },
        &key,
        date,
    )
    .unwrap();
    assert_eq!(bytes, again.formatted(), "composition is deterministic");

    let parsed = mail_parser::MessageParser::default()
        .parse(&bytes)
        .expect("parses");
    assert_eq!(parsed.subject(), Some(rendered.subject.as_str()));
    assert_eq!(parsed.message_id(), Some("issue-7.42@example.com"));
    assert_eq!(
        parsed.to().unwrap().first().unwrap().address(),
        Some("eve@example.com")
    );
    assert_eq!(
        parsed.from().unwrap().first().unwrap().address(),
        Some("weekly@example.com")
    );
    assert_eq!(
        parsed.reply_to().unwrap().first().unwrap().address(),
        Some("editors@example.com")
    );
    assert!(parsed.date().is_some());
    assert_eq!(parsed.text_body_count(), 1);
    assert_eq!(parsed.html_body_count(), 1);
    assert!(parsed.body_text(0).unwrap().contains("Transformer"));
    assert!(parsed.body_html(0).unwrap().contains("<h1"));
    let raw = String::from_utf8_lossy(&bytes);
    let headers = &raw[..raw.find("\r\n\r\n").unwrap()];
    assert!(headers.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"));
    assert!(headers.contains("Precedence: bulk"));
    assert!(headers.contains("List-Id: \"AI Glossary Weekly\" <aiglossaryweekly.example.com>"));
    assert!(headers.contains("List-Archive: <https://news.example.com/archive>"));
    assert!(
        headers.contains("Feedback-ID: issue7:aiglossaryweekly:newsletter:example.com"),
        "{headers}"
    );
    let token = key.sign(herald::domain::Purpose::Unsubscribe, 42, 0);
    assert!(headers.contains(&format!(
        "List-Unsubscribe: <https://news.example.com/u/{token}>"
    )));
    // The hostile name cannot add a header: no line starts with Bcc.
    assert!(
        !headers
            .lines()
            .any(|l| l.to_ascii_lowercase().starts_with("bcc:")),
        "{headers}"
    );
    assert!(parsed.bcc().is_none());
    // The encoded bodies decode to exactly what personalising gives.
    let plain = rendered.personalize(&herald::render::Recipient {
        name: clean.as_str(),
        first_name: "",
        email: "eve@example.com",
        unsubscribe_url: &format!("https://news.example.com/u/{token}"),
    });
    assert_eq!(
        parsed.body_text(0).unwrap().replace("\r\n", "\n"),
        plain.text
    );
    assert_eq!(
        parsed.body_html(0).unwrap().replace("\r\n", "\n"),
        plain.html
    );
    // Text comes before HTML.
    assert!(raw.find("text/plain").unwrap() < raw.find("text/html").unwrap());
}

#[test]
fn herald_check_catches_a_broken_template() {
    let s = crate::harness::Sandbox::new();
    let path = s.path("templates/partials/links.html");
    let text = std::fs::read_to_string(&path).unwrap();
    s.write(
        "templates/partials/links.html",
        text.replace("{{ link.title }}", "{{ link.headline }}"),
    );
    let run = s.herald(&["check"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout
            .contains("templates: issue.html / issue.txt: template error"),
        "{run:?}"
    );
    assert!(run.stdout.contains("headline"), "{run:?}");

    s.write(
        "templates/partials/links.html",
        text.replace("{% endfor %}", ""),
    );
    let run = s.herald(&["check"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stdout.contains("templates:"), "{run:?}");
}

#[test]
fn herald_check_catches_a_broken_web_page_template() {
    let s = crate::harness::Sandbox::new();
    s.write(
        "templates/web/message.html",
        "{% extends \"web/layout.html\" %}{% block body %}{{ headline }}{% endblock body %}",
    );
    let run = s.herald(&["check"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stdout.contains("web/message.html"), "{run:?}");
}

#[test]
fn the_layout_carries_what_readers_and_clients_expect() {
    let (_, personal) = render();
    let html = &personal.html;
    // A "view in browser" link at the top, a wordmark, the greeting above the headline.
    let view = html
        .find("View this issue in your browser")
        .expect("view in browser");
    let wordmark = html.find(r#"class="wordmark""#).expect("wordmark");
    let greeting = html.find("Hi Ada").expect("greeting");
    let headline = html.find("<h1").unwrap();
    assert!(view < wordmark && wordmark < greeting && greeting < headline);
    // News items name their site and date; a forwarded copy says how to subscribe.
    assert!(
        html.contains("Example News · news.example.com · 27 Nov 2026"),
        "{html}"
    );
    assert!(html.contains("Forwarded to you?"));
    // Dark mode gives every text and link a colour: the footer's and its links' too.
    let style = &html[html.find("<style>").unwrap()..html.find("</style>").unwrap()];
    for rule in [
        ".footer a { color:",
        ".masthead, .topnote, .topnote a, .link-meta, .related, .footer { color:",
    ] {
        assert!(style.contains(rule), "{rule}: {style}");
    }
    // The text part: the signature separator is "-- " on a line of its own.
    let text = &personal.text;
    assert!(text.lines().any(|l| l == "-- "), "{text}");
    assert!(text.contains("Forwarded to you? Subscribe: https://news.example.com/"));
    assert!(text.find("Hi Ada").unwrap() < text.find("THIS WEEK'S TERM").unwrap());
}
