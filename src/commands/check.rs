//! `herald check`: validate everything an issue depends on and print a short summary.

use super::glossary::{ReportTo, load_and_report};
use super::shown;
use crate::Exit;
use crate::app::App;
use crate::subscriber_file;

pub(super) async fn run(app: &App, offline: bool) -> anyhow::Result<Exit> {
    let config = app.config();
    let mut failed = false;
    crate::say!("configuration: {} ok", shown(&config.file).display());

    let (glossary, report) = load_and_report(config, ReportTo::Check);
    failed |= !report.errors.is_empty();
    for (i, slug) in config.schedule.queue.iter().enumerate() {
        if glossary.get(slug).is_none() {
            crate::say!(
                "{}: `schedule.queue[{i}]`: unknown term `{slug}`",
                shown(&config.file).display()
            );
            failed = true;
        }
    }

    let (files, rows, rejected) = check_subscriber_files(&config.subscribers_dir)?;
    failed |= rejected > 0;

    match app.check_templates(&glossary) {
        Ok(sizes) => crate::say!(
            "templates: {} ok ({sizes})",
            shown(&config.templates_dir).display()
        ),
        Err(e) => {
            crate::say!("templates: {e:#}");
            failed = true;
        }
    }

    failed |= !check_sending(app, offline).await?;
    let counts = app.subscriber_counts().await?;
    let states = app.feed_states().await?;
    if !glossary.is_empty() {
        for warning in app.supply(&glossary, app.now()).await?.warnings() {
            crate::say!("warning: {warning}");
        }
    }
    for (name, failures, error) in crate::app::feed_cache::failing_feeds(config, &states) {
        crate::say!("warning: feed `{name}` failed {failures} times in a row: {error}");
    }

    let categories = glossary.categories();
    crate::say!(
        "glossary: {} terms in {} categories ({}), {} errors, {} warnings",
        glossary.len(),
        categories.len(),
        categories.join(", "),
        report.errors.len(),
        report.warnings.len() + report.publication.len()
    );
    crate::say!(
        "subscriber files: {} files, {rows} rows, {rejected} rejected",
        files.len()
    );
    let by_status: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    crate::say!("subscribers: {}", by_status.join(", "));
    if failed {
        crate::say!("check failed");
        Ok(Exit::Failure)
    } else {
        crate::say!("check passed");
        Ok(Exit::Success)
    }
}

/// Parses every subscriber file and prints its rejected rows: the files, and how many rows
/// were read and rejected (an unreadable file counts as one rejected row).
fn check_subscriber_files(
    dir: &std::path::Path,
) -> anyhow::Result<(Vec<std::path::PathBuf>, usize, usize)> {
    let (mut rows, mut rejected) = (0, 0);
    let files = crate::files::subscriber_csv_files(dir)?;
    for file in &files {
        let bytes = crate::files::read(file)?;
        match subscriber_file::parse(&bytes) {
            Ok(parsed) => {
                rows += parsed.rows.len();
                rejected += parsed.rejected.len();
                for r in &parsed.rejected {
                    crate::say!(
                        "{}:{}: rejected: {}",
                        shown(file).display(),
                        r.line,
                        r.reason
                    );
                }
            }
            Err(e) => {
                crate::say!("{}: {e}", shown(file).display());
                rejected += 1;
            }
        }
    }
    Ok((files, rows, rejected))
}

/// The sending setup, the complaint and bounce alerts, the DKIM key and (unless `offline`)
/// the SMTP server: printed; `false` when something there fails the check.
async fn check_sending(app: &App, offline: bool) -> anyhow::Result<bool> {
    let mut ok = true;
    let setup = app.sending_setup();
    for problem in &setup.errors {
        crate::say!("error: {problem}");
        ok = false;
    }
    for warning in &setup.warnings {
        crate::say!("warning: {warning}");
    }
    for alert in app.feedback_alerts().await? {
        crate::say!("alert: {alert}");
    }
    match app.check_dkim() {
        Ok(Some(what)) => crate::say!("dkim: {what}"),
        Ok(None) => {}
        Err(e) => {
            crate::say!("dkim: {e}");
            ok = false;
        }
    }
    if offline {
        crate::say!("smtp: not checked (--offline)");
        return Ok(ok);
    }
    match app.check_smtp().await {
        Ok(Some(found)) => crate::say!("smtp: {found}"),
        Ok(None) => crate::say!(
            "smtp: none configured: messages go to {} as .eml files",
            shown(&app.config().delivery.outbox).display()
        ),
        Err(e) => {
            crate::say!("smtp: unreachable: {e}");
            ok = false;
        }
    }
    Ok(ok)
}
