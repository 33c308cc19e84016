//! `herald bounces ingest`: returned messages from a file, an mbox, a Maildir, a directory
//! or standard input.

use std::io::Read as _;

use anyhow::Context as _;

use crate::Exit;
use crate::app::App;
use crate::app::feedback::IngestCounts;
use crate::cli::{BouncesCommand, IngestArgs};
use crate::feedback::{is_mbox, split_mbox};

pub(super) async fn run(app: &App, cmd: BouncesCommand) -> anyhow::Result<Exit> {
    match cmd {
        BouncesCommand::Ingest(args) => ingest(app, args).await,
        BouncesCommand::Poll(flag) => {
            let Some(counts) = app.poll_bounce_mailbox().await? else {
                anyhow::bail!(crate::config::ConfigError::Invalid {
                    key: Some("bounces.imap_url".into()),
                    origin: crate::config::Origin::Default,
                    message: "is not set: there is no bounce mailbox to read".into(),
                });
            };
            print_counts(&counts, flag.json)?;
            Ok(Exit::Success)
        }
    }
}

async fn ingest(app: &App, args: IngestArgs) -> anyhow::Result<Exit> {
    let mut counts = IngestCounts::default();
    let stdin = args.path.as_ref().is_none_or(|p| p.as_os_str() == "-");
    if stdin {
        let mut raw = Vec::new();
        std::io::stdin()
            .read_to_end(&mut raw)
            .context("reading the message from standard input")?;
        let outcome = app
            .ingest_feedback(&raw, args.recipient.as_deref(), "stdin")
            .await?;
        counts.add(&outcome);
    } else {
        let path = args.path.as_deref().expect("a path when not stdin");
        for file in crate::files::message_files(path)? {
            let raw = crate::files::read(&file)?;
            let shown = file.display().to_string();
            if is_mbox(&raw) {
                for (i, message) in split_mbox(&raw).iter().enumerate() {
                    let source = format!("{shown} (message {})", i + 1);
                    let outcome = app
                        .ingest_feedback(message, args.recipient.as_deref(), &source)
                        .await?;
                    counts.add(&outcome);
                }
            } else {
                let outcome = app
                    .ingest_feedback(&raw, args.recipient.as_deref(), &shown)
                    .await?;
                counts.add(&outcome);
            }
        }
    }
    // An issue whose complaints or bounces cross the providers' thresholds is logged as an
    // error, for the operator's alerting.
    app.log_feedback_alerts().await?;
    print_counts(&counts, args.json)?;
    Ok(Exit::Success)
}

fn print_counts(counts: &IngestCounts, json: bool) -> anyhow::Result<()> {
    if json {
        crate::say!("{}", serde_json::to_string_pretty(counts)?);
    } else {
        crate::say!(
            "read {} messages: {} hard bounces, {} soft bounces, {} complaints, {} unsubscribes \
             ({} subscribers suppressed or unsubscribed), {} already recorded, {} ignored",
            counts.messages,
            counts.hard_bounces,
            counts.soft_bounces,
            counts.complaints,
            counts.unsubscribes,
            counts.suppressed,
            counts.duplicates,
            counts.ignored
        );
    }
    Ok(())
}
