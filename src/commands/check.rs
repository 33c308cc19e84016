//! `herald check`: validate everything an issue depends on and print a short summary.

use super::glossary::{ReportTo, load_and_report};
use super::subscribers::csv_files;
use super::{Context, shown};
use crate::Exit;
use crate::subscriber_file;

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
    let files = csv_files(&config.subscribers_dir)?;
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

    let store = ctx.store().await?;
    let counts = store.subscriber_counts().await?;
    store.close().await;

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
