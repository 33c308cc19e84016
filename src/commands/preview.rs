//! `herald preview`: the next issue, composed exactly as the send will compose it, written to
//! files. Records no issue, term or link (feed fetches update the feed cache, as any fetch
//! does).

use anyhow::{Context as _, bail};

use super::shown;
use crate::Exit;
use crate::app::{App, Planned};
use crate::cli::PreviewArgs;
use crate::compose::{Addressee, personal_message};
use crate::domain::EmailAddress;
use crate::schedule::next_slot;

/// Who a preview is addressed to when nobody is named and there is no confirmed subscriber.
const SAMPLE_READER: &str = "reader@example.com";

pub(super) async fn run(app: &App, args: PreviewArgs) -> anyhow::Result<Exit> {
    let config = &app.config;
    app.warn_if_development_key();
    let glossary = app.glossary()?;
    let renderer = app.renderer()?;
    let store = &app.store;
    let now = app.clock.now();
    // The issue is dated at the next scheduled slot, so two previews agree byte for byte.
    let date = next_slot(&config.schedule.cron, config.schedule.timezone, now).unwrap_or(now);
    let planned = app.plan(&glossary, date, args.term.as_deref()).await?;
    let (plan, cycle) = match planned {
        Planned::Ready {
            plan,
            cycle,
            skipped,
            ..
        } => {
            for skip in &skipped {
                println!("note:     {skip}");
            }
            (plan, cycle)
        }
        Planned::Exhausted { cycle } => {
            bail!(
                "every term was sent in cycle {cycle} and [schedule] on_exhausted is \"stop\": no issue to preview"
            )
        }
        Planned::NoTerms => bail!("the glossary has no terms"),
    };
    let rendered = renderer
        .render_issue(&plan, &app.newsletter_info())
        .context("rendering the issue")?;

    let (id, email, name) = match &args.subscriber {
        Some(raw) => {
            let email =
                EmailAddress::parse(raw).with_context(|| format!("--subscriber `{raw}`"))?;
            match store.subscriber(&email).await? {
                Some(s) => (s.id, email, s.name),
                None => (0, email, String::new()),
            }
        }
        None => match store
            .subscribers(Some(crate::domain::SubscriberStatus::Confirmed))
            .await?
            .first()
        {
            Some(s) => (s.id, s.email.clone(), s.name.clone()),
            None => (0, EmailAddress::parse(SAMPLE_READER)?, String::new()),
        },
    };
    let (key, sender) = (&app.key, &app.sender);
    let message = personal_message(
        "issue",
        &rendered,
        sender,
        Addressee {
            id,
            email: &email,
            name: &name,
            first_name: "",
        },
        key,
        plan.date,
    )?;
    let token = key.sign(crate::domain::Purpose::Unsubscribe, id, 0);
    let personal = rendered.personalize(&crate::render::Recipient {
        name: &name,
        first_name: "",
        email: email.as_str(),
        unsubscribe_url: &sender.unsubscribe_url(&token),
    });
    let eml = message.formatted();

    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    for (file, bytes) in [
        ("issue.html", personal.html.as_bytes()),
        ("issue.txt", personal.text.as_bytes()),
        ("issue.eml", eml.as_slice()),
    ] {
        let path = args.out.join(file);
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    let local = plan.date.with_timezone(&config.schedule.timezone);
    println!(
        "issue:    #{} (cycle {cycle}), dated {}",
        plan.number,
        local.format("%Y-%m-%d %H:%M %Z")
    );
    println!("subject:  {}", rendered.subject);
    println!(
        "term:     {} ({}, {})",
        plan.term.term, plan.term.slug, plan.term.category
    );
    println!("to:       {email}");
    println!("links:    {}", plan.links.len());
    if plan.links.len() < config.news.min_links {
        println!(
            "warning:  the issue carries {} links, fewer than [news] min_links = {}",
            plan.links.len(),
            config.news.min_links
        );
    }
    for link in &plan.links {
        println!("  - {} [{}]\n    {}", link.title, link.source, link.url);
    }
    println!(
        "sizes:    html {} bytes, text {} bytes, message {} bytes",
        personal.html.len(),
        personal.text.len(),
        eml.len()
    );
    println!(
        "written:  {}/issue.html, issue.txt, issue.eml",
        shown(&args.out).display()
    );
    Ok(Exit::Success)
}
