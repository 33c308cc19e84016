//! `herald check`: validate everything an issue depends on and print a short summary.

use super::glossary::{ReportTo, check_errors, load_and_report};
use super::shown;
use crate::Exit;
use crate::app::App;
use crate::subscriber_file;

pub(super) async fn run(app: &App, offline: bool) -> anyhow::Result<Exit> {
    let config = &app.config();
    let mut failed = false;
    println!("configuration: {} ok", shown(&config.file).display());

    let (glossary, report) = load_and_report(config, ReportTo::Stdout);
    failed |= check_errors(&report) > 0;
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
    let files = crate::files::subscriber_csv_files(&config.subscribers_dir)?;
    for file in &files {
        let bytes = crate::files::read(file)?;
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

    match app.check_templates(&glossary) {
        Ok(sizes) => println!(
            "templates: {} ok ({sizes})",
            shown(&config.templates_dir).display()
        ),
        Err(e) => {
            println!("templates: {e:#}");
            failed = true;
        }
    }

    let setup = app.sending_setup();
    for problem in &setup.errors {
        println!("error: {problem}");
        failed = true;
    }
    for warning in &setup.warnings {
        println!("warning: {warning}");
    }
    for alert in app.feedback_alerts().await? {
        println!("alert: {alert}");
    }

    match app.check_dkim() {
        Ok(Some(what)) => println!("dkim: {what}"),
        Ok(None) => {}
        Err(e) => {
            println!("dkim: {e}");
            failed = true;
        }
    }
    if offline {
        println!("smtp: not checked (--offline)");
    } else {
        match app.check_smtp().await {
            Ok(Some(found)) => println!("smtp: {found}"),
            Ok(None) => println!(
                "smtp: none configured: messages go to {} as .eml files",
                shown(&config.delivery.outbox).display()
            ),
            Err(e) => {
                println!("smtp: unreachable: {e}");
                failed = true;
            }
        }
    }
    let counts = app.subscriber_counts().await?;
    let states = app.feed_states().await?;
    if !glossary.is_empty() {
        for warning in app.supply(&glossary, app.now()).await?.warnings() {
            println!("warning: {warning}");
        }
    }
    for (name, failures, error) in crate::app::issue::failing_feeds(config, &states) {
        println!("warning: feed `{name}` failed {failures} times in a row: {error}");
    }

    let categories = glossary.categories();
    println!(
        "glossary: {} terms in {} categories ({}), {} errors, {} warnings",
        glossary.len(),
        categories.len(),
        categories.join(", "),
        check_errors(&report),
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
