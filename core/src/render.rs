//! Rendering: an [`IssuePlan`] into an email-safe HTML part and a plain-text part, with Tera.
//!
//! Pure apart from [`Renderer::load`], which reads the template files. Rendering happens once
//! per issue: templates are rendered with placeholders where the personal parts go (name,
//! email, greeting, unsubscribe link), CSS is inlined once (css-inline keeps `@media` rules
//! for mobile and dark mode in a `<style>` tag), and the result is split into literal segments
//! and slots. Personalising for one subscriber ([`RenderedIssue::personalize`]) is then only
//! concatenation, with the HTML slots escaped.
//!
//! Templates (Tera 2; HTML templates end in `.html`, so their variables are escaped):
//! `issue.html` (extending `base.html`), `issue.txt`, and partials. The context is described
//! in the README.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use pulldown_cmark::{Event, Parser, Tag, TagEnd};
use serde::Serialize;

use crate::domain::{NewsLink, Term};

/// Gmail clips messages whose HTML is larger than this, hiding the unsubscribe link.
pub const MAX_HTML_BYTES: usize = 102 * 1024;

/// Width of the plain-text part; only lines holding a URL may be longer.
pub const TEXT_WIDTH: usize = 78;

/// Everything an issue says, before rendering.
#[derive(Debug, Clone)]
pub struct IssuePlan {
    pub number: u32,
    /// When the issue goes out (the schedule slot, or the time of a manual send).
    pub date: DateTime<Utc>,
    pub term: Term,
    /// The related terms that exist in the glossary, with their display names.
    pub related: Vec<(String, String)>,
    pub links: Vec<NewsLink>,
}

/// What the templates need to know about the newsletter.
#[derive(Debug, Clone)]
pub struct NewsletterInfo {
    pub name: String,
    /// Ends in `/`.
    pub base_url: String,
    pub timezone: Tz,
    /// The sender's postal address, for the footers.
    pub postal_address: Option<String>,
}

/// A template problem, found at load or render time.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("reading templates in {dir}: {message}")]
    Read { dir: String, message: String },
    #[error("template `{0}` is missing")]
    Missing(&'static str),
    #[error("template error: {0}")]
    Template(String),
    #[error("inlining CSS: {0}")]
    Inline(String),
    #[error(
        "the HTML part is {0} bytes; Gmail clips messages above {MAX_HTML_BYTES} bytes and hides the unsubscribe link"
    )]
    TooLarge(usize),
}

fn template_error(e: tera::Error) -> RenderError {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        message.push_str(&format!(": {s}"));
        source = s.source();
    }
    RenderError::Template(message)
}

/// The personal parts of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Name,
    Email,
    Greeting,
    UnsubscribeUrl,
}

impl Field {
    const ALL: [Field; 4] = [
        Self::Name,
        Self::Email,
        Self::Greeting,
        Self::UnsubscribeUrl,
    ];

    fn placeholder(self) -> &'static str {
        match self {
            Self::Name => "%%herald.name%%",
            Self::Email => "%%herald.email%%",
            Self::Greeting => "%%herald.greeting%%",
            Self::UnsubscribeUrl => "%%herald.unsubscribe_url%%",
        }
    }
}

/// A rendered document split at its personal slots.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Slotted {
    source: String,
    parts: Vec<(std::ops::Range<usize>, Option<Field>)>,
    /// The literal parts, quoted-printable encoded once (CRLF line ends), for the message.
    encoded: Vec<Vec<u8>>,
}

/// Longest encoded line; leaves room for the soft line break written around each slot.
const QP_LINE: usize = 74;

fn quoted_printable(text: &str) -> Vec<u8> {
    let crlf = text.replace("\r\n", "\n").replace('\n', "\r\n");
    quoted_printable::encode_with_options(
        crlf,
        quoted_printable::Options::default().line_length_limit(QP_LINE),
    )
    .into_bytes()
}

impl Slotted {
    fn new(source: String) -> Self {
        let mut parts = Vec::new();
        let mut at = 0;
        loop {
            let next = Field::ALL
                .iter()
                .filter_map(|f| source[at..].find(f.placeholder()).map(|i| (at + i, *f)))
                .min_by_key(|(i, _)| *i);
            match next {
                Some((i, field)) => {
                    parts.push((at..i, None));
                    parts.push((i..i, Some(field)));
                    at = i + field.placeholder().len();
                }
                None => {
                    parts.push((at..source.len(), None));
                    break;
                }
            }
        }
        let encoded = parts
            .iter()
            .map(|(range, field)| match field {
                None => quoted_printable(&source[range.clone()]),
                Some(_) => Vec::new(),
            })
            .collect();
        Self {
            source,
            parts,
            encoded,
        }
    }

    /// Fills the slots straight into the quoted-printable encoding: the literal parts were
    /// encoded once, so only the personal values are encoded here. Each value sits between
    /// soft line breaks, which keeps every line within the limit whatever its length.
    fn fill_encoded(&self, value: impl Fn(Field) -> String) -> Vec<u8> {
        let total: usize = self.encoded.iter().map(Vec::len).sum();
        let mut out = Vec::with_capacity(total + 256);
        for ((_, field), literal) in self.parts.iter().zip(&self.encoded) {
            match field {
                None => out.extend_from_slice(literal),
                Some(f) => {
                    out.extend_from_slice(b"=\r\n");
                    out.extend_from_slice(&quoted_printable(&value(*f)));
                    out.extend_from_slice(b"=\r\n");
                }
            }
        }
        out
    }

    fn fill(&self, value: impl Fn(Field) -> String) -> String {
        let values: Vec<(Field, String)> = Field::ALL.iter().map(|f| (*f, value(*f))).collect();
        let personal: usize = self
            .parts
            .iter()
            .filter_map(|(_, f)| *f)
            .map(|f| {
                values
                    .iter()
                    .find(|(g, _)| *g == f)
                    .map_or(0, |(_, v)| v.len())
            })
            .sum();
        let mut out = String::with_capacity(self.source.len() + personal);
        for (range, field) in &self.parts {
            match field {
                None => out.push_str(&self.source[range.clone()]),
                Some(f) => {
                    if let Some((_, v)) = values.iter().find(|(g, _)| g == f) {
                        out.push_str(v);
                    }
                }
            }
        }
        out
    }

    /// The document with generic values, for the web archive (no personal data).
    fn generic(&self, unsubscribe_url: &str) -> String {
        self.fill(|f| match f {
            Field::Name | Field::Email => String::new(),
            Field::Greeting => "Hello,".to_owned(),
            Field::UnsubscribeUrl => unsubscribe_url.to_owned(),
        })
    }
}

/// One subscriber's personal parts.
#[derive(Debug, Clone, Copy)]
pub struct Recipient<'a> {
    pub name: &'a str,
    /// The first name to greet them by; empty when unknown.
    pub first_name: &'a str,
    pub email: &'a str,
    pub unsubscribe_url: &'a str,
}

/// An issue rendered once, ready to be personalised for each subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedIssue {
    pub number: u32,
    pub subject: String,
    pub preheader: String,
    html: Slotted,
    text: Slotted,
}

/// One subscriber's HTML and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Personalized {
    pub html: String,
    pub text: String,
}

/// One subscriber's HTML and text, already quoted-printable encoded with CRLF line ends:
/// ready to be a message body without further work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedParts {
    pub html: Vec<u8>,
    pub text: Vec<u8>,
}

impl RenderedIssue {
    /// Fills in one subscriber's name, email, greeting and unsubscribe link: concatenation
    /// only, with the HTML values escaped.
    pub fn personalize(&self, r: &Recipient<'_>) -> Personalized {
        let raw = |f: Field| personal_value(r, f);
        Personalized {
            html: self.html.fill(|f| escape_html(&raw(f))),
            text: self.text.fill(raw),
        }
    }

    /// [`RenderedIssue::personalize`], straight into the message's transfer encoding: the
    /// per-subscriber path of a send.
    pub fn personalize_encoded(&self, r: &Recipient<'_>) -> EncodedParts {
        let raw = |f: Field| personal_value(r, f);
        EncodedParts {
            html: self.html.fill_encoded(|f| escape_html(&raw(f))),
            text: self.text.fill_encoded(raw),
        }
    }

    /// The HTML with no personal data, for the web archive.
    pub fn web_html(&self, subscribe_url: &str) -> String {
        self.html.generic(subscribe_url)
    }

    /// The HTML as rendered, with placeholders (what is frozen in the store).
    pub fn html_template(&self) -> &str {
        &self.html.source
    }

    /// The text as rendered, with placeholders (what is frozen in the store).
    pub fn text_template(&self) -> &str {
        &self.text.source
    }

    /// Rebuilds a rendered issue from its frozen parts.
    pub fn from_frozen(
        number: u32,
        subject: String,
        preheader: String,
        html: String,
        text: String,
    ) -> Self {
        Self {
            number,
            subject,
            preheader,
            html: Slotted::new(html),
            text: Slotted::new(text),
        }
    }
}

/// How a subscriber is greeted: by their first name when it is known; else by the name as
/// given, unless it has a comma (a "Hopper, Grace" would read "Hi Hopper, Grace,"); else
/// without a name.
///
/// ```
/// use herald_core::render::greeting;
/// assert_eq!(greeting("Grace", "Grace Hopper"), "Hi Grace,");
/// assert_eq!(greeting("", "Grace Hopper"), "Hi Grace Hopper,");
/// assert_eq!(greeting("", "Hopper, Grace"), "Hi,");
/// assert_eq!(greeting("", ""), "Hello,");
/// ```
pub fn greeting(first_name: &str, name: &str) -> String {
    if !first_name.is_empty() {
        format!("Hi {first_name},")
    } else if name.is_empty() {
        "Hello,".to_owned()
    } else if name.contains(',') {
        "Hi,".to_owned()
    } else {
        format!("Hi {name},")
    }
}

fn personal_value(r: &Recipient<'_>, field: Field) -> String {
    match field {
        Field::Name => r.name.to_owned(),
        Field::Email => r.email.to_owned(),
        Field::Greeting => greeting(r.first_name, r.name),
        Field::UnsubscribeUrl => r.unsubscribe_url.to_owned(),
    }
}

fn escape_html(value: &str) -> String {
    html_escape::encode_double_quoted_attribute(value).into_owned()
}

#[derive(Serialize)]
struct NewsletterContext<'a> {
    name: &'a str,
    base_url: &'a str,
    archive_url: String,
    glossary_url: String,
    /// Empty when not configured.
    postal_address: &'a str,
}

#[derive(Serialize)]
struct IssueContext {
    number: u32,
    date: String,
    date_iso: String,
    subject: String,
    preheader: String,
}

#[derive(Serialize)]
struct RelatedContext {
    term: String,
    slug: String,
    url: String,
}

#[derive(Serialize)]
struct TermContext<'a> {
    term: &'a str,
    slug: &'a str,
    category: &'a str,
    summary: &'a str,
    example: &'a str,
    explanation_html: String,
    explanation_text: String,
    url: String,
    related: Vec<RelatedContext>,
}

#[derive(Serialize)]
struct LinkContext<'a> {
    number: usize,
    title: &'a str,
    url: &'a str,
    source: &'a str,
    summary: &'a str,
    /// The site the link leads to (`example.com`), from its real address even when the
    /// link goes through Herald's click redirect.
    domain: String,
    /// When the source published it (`27 Nov 2026`), empty when it does not say.
    date: String,
}

/// Moves `<meta charset>` to the very start of `<head>` (the inliner puts the kept @media
/// rules there): a client must know the encoding before it reads anything else.
fn charset_first(html: String) -> String {
    const META: &str = "<meta charset=\"utf-8\">";
    match (html.find("<head>"), html.find(META)) {
        (Some(head), Some(meta)) if meta > head + "<head>".len() => {
            let mut out = String::with_capacity(html.len());
            let after_head = head + "<head>".len();
            out.push_str(&html[..after_head]);
            out.push_str(META);
            out.push_str(&html[after_head..meta]);
            out.push_str(&html[meta + META.len()..]);
            out
        }
        _ => html,
    }
}

/// The host of a URL without a leading `www.`; empty when it has none.
fn site_domain(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .map(|h| h.strip_prefix("www.").map(str::to_owned).unwrap_or(h))
        .unwrap_or_default()
}

#[derive(Serialize)]
struct SubscriberContext {
    name: &'static str,
    email: &'static str,
    greeting: &'static str,
}

/// Loaded templates.
#[derive(Debug)]
pub struct Renderer {
    tera: tera::Tera,
}

impl Renderer {
    /// Builds a renderer from `(name, source)` pairs.
    ///
    /// # Errors
    /// [`RenderError`] for a syntax error or a missing `issue.html` / `issue.txt`.
    pub fn from_sources(sources: Vec<(String, String)>) -> Result<Self, RenderError> {
        let mut tera = tera::Tera::new();
        tera.add_raw_templates(sources).map_err(template_error)?;
        for required in ["issue.html", "issue.txt"] {
            if !tera.contains_template(required) {
                return Err(RenderError::Missing(required));
            }
        }
        Ok(Self { tera })
    }

    /// Renders a web page template (such as `web/subscribe.html`) with `context`.
    ///
    /// # Errors
    /// [`RenderError::Template`] for a missing template, an undefined variable or a template
    /// error.
    pub fn render_page(&self, name: &str, context: &tera::Context) -> Result<String, RenderError> {
        self.tera.render(name, context).map_err(template_error)
    }

    /// Whether a template of this name was loaded.
    pub fn has(&self, name: &str) -> bool {
        self.tera.contains_template(name)
    }

    /// Renders an issue once, with placeholders for the personal parts.
    ///
    /// # Errors
    /// [`RenderError`] for an undefined variable, a template error, a CSS problem, or an HTML
    /// part too large for Gmail.
    pub fn render_issue(
        &self,
        plan: &IssuePlan,
        newsletter: &NewsletterInfo,
    ) -> Result<RenderedIssue, RenderError> {
        self.render_pair(plan, newsletter, "issue.html", "issue.txt")
    }

    /// Renders another pair of templates (such as `welcome.html` / `welcome.txt`) with the
    /// same context as an issue.
    ///
    /// # Errors
    /// As [`Renderer::render_issue`].
    pub fn render_pair(
        &self,
        plan: &IssuePlan,
        newsletter: &NewsletterInfo,
        html_name: &str,
        text_name: &str,
    ) -> Result<RenderedIssue, RenderError> {
        // Content from outside (feeds, curated links, glossary files) can never become a
        // per-subscriber slot: the slot markers in it are broken before rendering.
        let plan = &defused(plan);
        let subject = format!("{} — {} #{}", plan.term.term, newsletter.name, plan.number);
        let preheader = crate::news::cut_at_word(&plan.term.summary, 140);
        let context = self.context(plan, newsletter, &subject, &preheader);
        let html = self
            .tera
            .render(html_name, &context)
            .map_err(template_error)?;
        let inliner = css_inline::CSSInliner::options()
            .keep_at_rules(true)
            .load_remote_stylesheets(false)
            .build();
        let html = inliner
            .inline(&html)
            .map_err(|e| RenderError::Inline(e.to_string()))?;
        let html = charset_first(html);
        if html.len() > MAX_HTML_BYTES {
            return Err(RenderError::TooLarge(html.len()));
        }
        let text = wrap_text(
            &self
                .tera
                .render(text_name, &context)
                .map_err(template_error)?,
            TEXT_WIDTH,
        );
        Ok(RenderedIssue {
            number: plan.number,
            subject,
            preheader,
            html: Slotted::new(html),
            text: Slotted::new(text),
        })
    }

    fn context(
        &self,
        plan: &IssuePlan,
        n: &NewsletterInfo,
        subject: &str,
        preheader: &str,
    ) -> tera::Context {
        let local = plan.date.with_timezone(&n.timezone);
        let term = &plan.term;
        let explanation_html = markdown_to_html(&term.body);
        let mut c = tera::Context::new();
        c.insert(
            "newsletter",
            &NewsletterContext {
                name: &n.name,
                base_url: &n.base_url,
                archive_url: format!("{}archive", n.base_url),
                glossary_url: format!("{}glossary", n.base_url),
                postal_address: n.postal_address.as_deref().unwrap_or_default(),
            },
        );
        c.insert(
            "issue",
            &IssueContext {
                number: plan.number,
                date: local.format("%A, %-d %B %Y").to_string(),
                date_iso: local.format("%Y-%m-%d").to_string(),
                subject: subject.to_owned(),
                preheader: preheader.to_owned(),
            },
        );
        c.insert(
            "term",
            &TermContext {
                term: &term.term,
                slug: term.slug.as_str(),
                category: &term.category,
                summary: &term.summary,
                example: &term.example,
                explanation_html,
                explanation_text: markdown_to_text(&term.body),
                url: format!("{}glossary/{}", n.base_url, term.slug),
                related: plan
                    .related
                    .iter()
                    .map(|(slug, name)| RelatedContext {
                        term: name.clone(),
                        slug: slug.clone(),
                        url: format!("{}glossary/{slug}", n.base_url),
                    })
                    .collect(),
            },
        );
        let links: Vec<LinkContext> = plan
            .links
            .iter()
            .enumerate()
            .map(|(i, l)| LinkContext {
                number: i + 1,
                title: &l.title,
                url: &l.url,
                source: &l.source,
                summary: &l.summary,
                domain: site_domain(&l.canonical_url),
                date: l
                    .published
                    .map(|d| d.with_timezone(&n.timezone).format("%-d %b %Y").to_string())
                    .unwrap_or_default(),
            })
            .collect();
        c.insert("links", &links);
        c.insert(
            "subscriber",
            &SubscriberContext {
                name: Field::Name.placeholder(),
                email: Field::Email.placeholder(),
                greeting: Field::Greeting.placeholder(),
            },
        );
        c.insert("unsubscribe_url", Field::UnsubscribeUrl.placeholder());
        c.insert(
            "archive_url",
            &format!("{}archive/{}", n.base_url, plan.number),
        );
        c.insert("preheader", preheader);
        // Invisible fillers after the preheader, so that the inbox preview (about 100
        // characters) shows the preheader and not the start of the body.
        c.insert(
            "preheader_padding",
            // Each filler is two characters.
            &"&#8199;&#847;".repeat(
                100usize
                    .saturating_sub(preheader.chars().count())
                    .div_ceil(2)
                    .max(4),
            ),
        );
        c
    }
}

/// The start of every slot marker (see [`Field::placeholder`]).
const MARKER: &str = "%%herald.";
/// What a marker in content becomes: the same text with an invisible word joiner in it, so
/// it reads the same and can never be filled in.
const DEFUSED_MARKER: &str = "%%\u{2060}herald.";

/// `text` with any slot marker broken.
fn defuse(text: &str) -> String {
    text.replace(MARKER, DEFUSED_MARKER)
}

/// A copy of `plan` whose every piece of content has its slot markers broken.
fn defused(plan: &IssuePlan) -> IssuePlan {
    let mut plan = plan.clone();
    let t = &mut plan.term;
    for field in [
        &mut t.term,
        &mut t.category,
        &mut t.summary,
        &mut t.example,
        &mut t.body,
    ] {
        *field = defuse(field);
    }
    for (_, name) in &mut plan.related {
        *name = defuse(name);
    }
    for link in &mut plan.links {
        for field in [
            &mut link.title,
            &mut link.url,
            &mut link.source,
            &mut link.summary,
        ] {
            *field = defuse(field);
        }
    }
    plan
}

/// Markdown to HTML that is safe in an email and on a web page: only an allow-list of tags
/// and attributes survives (no `script`, `iframe`, `style`, event handlers or `javascript:`
/// links, whatever a term file contains), and links get `rel="noopener noreferrer"`.
///
/// ```
/// use herald_core::render::markdown_to_html;
/// let html = markdown_to_html("**Bold** [x](javascript:alert(1)) <script>alert(2)</script><img src=x onerror=alert(3)>");
/// assert!(html.contains("<strong>Bold</strong>"));
/// assert!(!html.contains("javascript:") && !html.contains("<script") && !html.contains("onerror"));
/// ```
pub fn markdown_to_html(markdown: &str) -> String {
    let mut raw = String::new();
    pulldown_cmark::html::push_html(&mut raw, Parser::new(markdown));
    ammonia::Builder::default()
        .link_rel(Some("noopener noreferrer"))
        .url_schemes(["http", "https", "mailto"].into_iter().collect())
        .clean(&raw)
        .to_string()
}

/// Markdown to readable plain text: paragraphs separated by blank lines, list items with
/// `- `, links as `text (url)`, emphasis dropped, code blocks indented.
pub fn markdown_to_text(markdown: &str) -> String {
    let mut out = String::new();
    let mut link: Option<String> = None;
    let mut in_code = false;
    let mut lists = 0usize;
    for event in Parser::new(markdown) {
        match event {
            Event::Start(Tag::List(_)) => lists += 1,
            Event::End(TagEnd::Paragraph) if lists > 0 => out.push('\n'),
            Event::Start(Tag::Item) => out.push_str("- "),
            Event::End(TagEnd::Item) if !out.ends_with('\n') => out.push('\n'),
            Event::End(TagEnd::List(_)) => {
                lists -= 1;
                out.push('\n');
            }
            Event::End(TagEnd::Paragraph | TagEnd::Heading(_)) => out.push_str("\n\n"),
            Event::Start(Tag::CodeBlock(_)) => in_code = true,
            Event::End(TagEnd::CodeBlock) => {
                in_code = false;
                out.push('\n');
            }
            Event::Start(Tag::Link { dest_url, .. }) => link = Some(dest_url.into_string()),
            Event::End(TagEnd::Link) => {
                if let Some(url) = link.take() {
                    out.push_str(&format!(" ({url})"));
                }
            }
            Event::Text(t) if in_code => {
                for line in t.lines() {
                    out.push_str("    ");
                    out.push_str(line);
                    out.push('\n');
                }
            }
            Event::Text(t) | Event::Code(t) => out.push_str(&t),
            Event::SoftBreak => out.push(' '),
            Event::HardBreak => out.push('\n'),
            _ => {}
        }
    }
    out.trim().to_owned()
}

/// Wraps every line longer than `width` at word boundaries, keeping its indentation (and a
/// leading `- ` bullet as hanging indentation). Lines that hold a URL are left alone, so links
/// stay clickable.
pub fn wrap_text(text: &str, width: usize) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 20);
    for line in text.split('\n') {
        if line == "-- " || line == "-- \r" {
            // The signature separator (RFC 3676 4.3) keeps its trailing space: mail clients
            // grey out, and leave out of replies, what follows it.
            out.push_str("-- ");
        } else if line.chars().count() <= width || line.contains("://") {
            out.push_str(line.trim_end());
        } else {
            let indent: String = line.chars().take_while(|c| *c == ' ').collect();
            let rest = &line[indent.len()..];
            let numbered = rest.starts_with('[')
                && rest
                    .find("] ")
                    .is_some_and(|i| i > 1 && rest[1..i].chars().all(|c| c.is_ascii_digit()));
            let hanging = if rest.starts_with("- ") || rest.starts_with("* ") {
                format!("{indent}  ")
            } else if numbered {
                format!("{indent}    ")
            } else {
                indent.clone()
            };
            let options = textwrap::Options::new(width)
                .initial_indent(&indent)
                .subsequent_indent(&hanging)
                .word_splitter(textwrap::WordSplitter::NoHyphenation)
                .break_words(false);
            out.push_str(&textwrap::fill(rest, options));
        }
        out.push('\n');
    }
    // Collapse runs of more than one blank line, which template logic tends to leave.
    let mut collapsed = String::with_capacity(out.len());
    let mut blank = 0;
    for line in out.lines() {
        blank = if line.is_empty() { blank + 1 } else { 0 };
        if blank <= 1 {
            collapsed.push_str(line);
            collapsed.push('\n');
        }
    }
    collapsed.trim_start_matches('\n').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_filled_and_escaped_only_in_html() {
        let s = Slotted::new("a %%herald.name%% b %%herald.unsubscribe_url%%".into());
        let out = s.fill(|f| match f {
            Field::Name => "<Eve>".into(),
            Field::UnsubscribeUrl => "u".into(),
            _ => String::new(),
        });
        assert_eq!(out, "a <Eve> b u");
        assert_eq!(s.generic("x"), "a  b x");
    }

    #[test]
    fn the_encoded_fill_decodes_to_the_plain_fill() {
        let long = "a line of text that goes on for quite a while, longer than any QP line may be";
        let s = Slotted::new(format!(
            "{long} %%herald.name%%{long}\n=equals= and ünïcode %%herald.email%%\n"
        ));
        let value = |f: Field| match f {
            Field::Name => "Zoë = \"quoted\" name".to_owned(),
            _ => "x@example.com".to_owned(),
        };
        let encoded = s.fill_encoded(value);
        for line in encoded.split(|b| *b == b'\n') {
            assert!(line.len() <= 77, "{}", String::from_utf8_lossy(line));
        }
        let decoded =
            quoted_printable::decode(&encoded, quoted_printable::ParseMode::Strict).unwrap();
        assert_eq!(
            String::from_utf8(decoded).unwrap(),
            s.fill(value).replace('\n', "\r\n")
        );
    }

    #[test]
    fn wrapping_keeps_urls_and_indentation() {
        let long = "word ".repeat(30);
        let text = format!(
            "{long}\n    {long}\nhttps://example.com/{}\n",
            "x".repeat(90)
        );
        let wrapped = wrap_text(&text, 78);
        for line in wrapped.lines() {
            assert!(
                line.chars().count() <= 78 || line.contains("://"),
                "{line:?}"
            );
        }
        assert!(wrapped.lines().nth(2).unwrap().starts_with("    word"));
    }

    #[test]
    fn markdown_becomes_plain_text() {
        let md = "**Bold** text with a [link](https://x.example).\n\n- one\n- two\n";
        assert_eq!(
            markdown_to_text(md),
            "Bold text with a link (https://x.example).\n\n- one\n- two"
        );
    }
}
