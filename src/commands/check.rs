//! `herald check`: validate everything an issue depends on and print a short summary.

use super::glossary::{ReportTo, load_and_report};
use super::{Context, shown};
use crate::Exit;
use crate::subscriber_file;

/// Renders the templates against a sample issue (the first term, links whose titles need
/// escaping) and builds a message from it, so template errors surface here and not at send
/// time. Returns a description of the sizes.
fn check_templates(ctx: &Context, glossary: &crate::glossary::Glossary) -> anyhow::Result<String> {
    use anyhow::Context as _;

    let config = &ctx.config;
    let renderer = crate::render::Renderer::load(&config.templates_dir)?;
    let Some(term) = glossary.terms().first() else {
        anyhow::bail!("no glossary term to render a sample issue with");
    };
    let sample_link = |n: u32, title: &str| crate::domain::NewsLink {
        title: title.to_owned(),
        url: format!("https://news.example.com/{n}?a=1&b=2"),
        canonical_url: format!("https://news.example.com/{n}"),
        source: "Sample <Feed> & Co".to_owned(),
        summary: "A sample summary with <tags> & ampersands.".to_owned(),
        published: None,
        curated: n == 1,
    };
    let plan = crate::render::IssuePlan {
        number: 1,
        date: ctx.clock.now(),
        term: term.clone(),
        related: crate::next_issue::related_names(glossary, term),
        links: vec![
            sample_link(1, "A <script> & a title"),
            sample_link(2, "Second link"),
        ],
    };
    let info = crate::next_issue::newsletter_info(config);
    let rendered = renderer
        .render_issue(&plan, &info)
        .context("issue.html / issue.txt")?;
    let email = crate::domain::EmailAddress::parse("reader@example.com")?;
    let message = crate::compose::personal_message(
        "issue",
        &rendered,
        &crate::compose::Sender::from_config(config),
        crate::compose::Addressee {
            id: 1,
            email: &email,
            name: "Sample Reader",
        },
        &crate::domain::SigningKey::new(super::DEVELOPMENT_KEY),
        plan.date,
    )?;
    let personal = rendered.personalize(&crate::render::Recipient {
        name: "Sample Reader",
        email: email.as_str(),
        unsubscribe_url: "https://example.com/u/x",
    });
    let mut extra = String::new();
    for (html, text) in [("welcome.html", "welcome.txt")] {
        if renderer.has(html) || renderer.has(text) {
            renderer
                .render_pair(&plan, &info, html, text)
                .with_context(|| format!("{html} / {text}"))?;
            extra.push_str(&format!(", {html} and {text} ok"));
        }
    }
    if renderer.has("web/layout.html") {
        let pages = crate::http::check_page_templates(
            &renderer,
            &config.newsletter.name,
            config.newsletter.base_url.as_str(),
        )?;
        extra.push_str(&format!(", {pages} web pages ok"));
    }
    Ok(format!(
        "sample issue: html {} bytes, text {} bytes, message {} bytes{extra}",
        personal.html.len(),
        personal.text.len(),
        message.formatted().len()
    ))
}

pub(super) async fn run(ctx: &Context) -> anyhow::Result<Exit> {
    let config = &ctx.config;
    let mut failed = false;
    println!("configuration: {} ok", shown(&config.file).display());

    let (glossary, report) = load_and_report(ctx, ReportTo::Stdout);
    failed |= !report.errors.is_empty();
    for (i, slug) in config.schedule.queue.iter().enumerate() {
        if glossary.get(slug).is_none() {
            println!(
                "{}: `schedule.queue[{i}]`: unknown term `{slug}`",
                shown(&config.file).display()
            );
            failed = true;
        }
    }

    let mut rows = 0;
    let mut rejected = 0;
    let files = crate::next_issue::subscriber_csv_files(&config.subscribers_dir)?;
    for file in &files {
        let bytes = std::fs::read(file)?;
        match subscriber_file::parse(&bytes) {
            Ok(parsed) => {
                rows += parsed.rows.len();
                rejected += parsed.rejected.len();
                for r in &parsed.rejected {
                    println!(
                        "{}:{}: rejected: {}",
                        shown(file).display(),
                        r.line,
                        r.reason
                    );
                }
            }
            Err(e) => {
                println!("{}: {e}", shown(file).display());
                rejected += 1;
            }
        }
    }
    failed |= rejected > 0;

    match check_templates(ctx, &glossary) {
        Ok(sizes) => println!(
            "templates: {} ok ({sizes})",
            shown(&config.templates_dir).display()
        ),
        Err(e) => {
            println!("templates: {e:#}");
            failed = true;
        }
    }

    let store = ctx.store().await?;
    let counts = store.subscriber_counts().await?;
    let history = store.term_history().await?;
    let states = store.feed_states().await?;
    store.close().await;
    let remaining = crate::selection::remaining_in_cycle(&glossary, &history);
    if !glossary.is_empty() && remaining < crate::next_issue::LOW_TERMS_WARNING {
        println!(
            "warning: only {remaining} terms remain unsent in cycle {}: add terms to {}",
            history.current_cycle(),
            shown(&config.glossary_dir).display()
        );
    }
    for (name, failures, error) in crate::next_issue::failing_feeds(config, &states) {
        println!("warning: feed `{name}` failed {failures} times in a row: {error}");
    }

    let categories = glossary.categories();
    println!(
        "glossary: {} terms in {} categories ({}), {} errors, {} warnings",
        glossary.len(),
        categories.len(),
        categories.join(", "),
        report.errors.len(),
        report.warnings.len()
    );
    println!(
        "subscriber files: {} files, {rows} rows, {rejected} rejected",
        files.len()
    );
    let by_status: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    println!("subscribers: {}", by_status.join(", "));
    if failed {
        println!("check failed");
        Ok(Exit::Failure)
    } else {
        println!("check passed");
        Ok(Exit::Success)
    }
}
