//! `herald preview`: the next issue, composed exactly as the send will compose it, written to
//! files. Records no issue, term or link (feed fetches update the feed cache, as any fetch
//! does).

use anyhow::Context as _;

use super::shown;
use crate::Exit;
use crate::app::App;
use crate::app::issue::Feeds;
use crate::cli::PreviewArgs;

pub(super) async fn run(app: &App, args: PreviewArgs) -> anyhow::Result<Exit> {
    let config = app.config();
    app.warn_if_development_key();
    if args.serve {
        return super::preview_server::serve(app, &args).await;
    }
    let preview = app
        .preview(
            args.term.as_deref(),
            args.subscriber.as_deref(),
            Feeds::Fetch,
        )
        .await?;
    for skip in &preview.skipped {
        crate::say!("note:     {skip}");
    }
    let (plan, cycle, email) = (&preview.plan, preview.cycle, &preview.to);
    let eml = &preview.eml;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    for (file, bytes) in [
        ("issue.html", preview.html.as_bytes()),
        ("issue.txt", preview.text.as_bytes()),
        ("issue.eml", eml.as_slice()),
    ] {
        let path = args.out.join(file);
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    let local = plan.date.with_timezone(&config.schedule.timezone);
    crate::say!(
        "issue:    #{} (cycle {cycle}), dated {}",
        plan.number,
        local.format("%Y-%m-%d %H:%M %Z")
    );
    crate::say!("subject:  {}", preview.subject);
    crate::say!(
        "term:     {} ({}, {})",
        plan.term.term,
        plan.term.slug,
        plan.term.category
    );
    crate::say!("to:       {email}");
    crate::say!("links:    {}", plan.links.len());
    if plan.links.len() < config.news.min_links {
        crate::say!(
            "warning:  the issue carries {} links, fewer than [news] min_links = {}",
            plan.links.len(),
            config.news.min_links
        );
    }
    for link in &plan.links {
        crate::say!("  - {} [{}]\n    {}", link.title, link.source, link.url);
    }
    crate::say!(
        "sizes:    html {} bytes, text {} bytes, message {} bytes",
        preview.html.len(),
        preview.text.len(),
        eml.len()
    );
    crate::say!(
        "written:  {}/issue.html, issue.txt, issue.eml",
        shown(&args.out).display()
    );
    Ok(Exit::Success)
}
