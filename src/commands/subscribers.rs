//! `herald subscribers import | add | remove | list | export`.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};

use super::{Context, shown};
use crate::Exit;
use crate::cli::SubscribersCommand;
use crate::domain::{EmailAddress, SubscriberName, SubscriberStatus};
use crate::store::{AddOutcome, ImportCounts, Store};
use crate::subscriber_file::{self, RejectedRow};

/// The outcome of importing one file.
#[derive(Debug, Clone, Default)]
pub struct FileImport {
    pub counts: ImportCounts,
    pub rejected: Vec<RejectedRow>,
}

/// Reads, parses and imports one subscriber file (the good rows; bad rows are returned with
/// their line numbers and reasons).
///
/// # Errors
/// When the file cannot be read, its header is unusable, or the database fails.
pub async fn import_file(
    store: &Store,
    path: &Path,
    now: DateTime<Utc>,
) -> anyhow::Result<FileImport> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("reading subscriber file {}", path.display()))?;
    let parsed =
        subscriber_file::parse(&bytes).with_context(|| format!("{}", shown(path).display()))?;
    let source = format!(
        "import:{}",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    );
    let mut counts = store
        .import_subscribers(&parsed.rows, &source, now)
        .await
        .with_context(|| format!("importing {}", path.display()))?;
    counts.rejected = parsed.rejected.len() as u64;
    Ok(FileImport {
        counts,
        rejected: parsed.rejected,
    })
}

/// The CSV files of a subscribers directory, sorted.
///
/// # Errors
/// When the directory cannot be read.
pub fn csv_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading subscribers directory {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")))
        .collect();
    files.sort();
    Ok(files)
}

fn parse_email(input: &str) -> anyhow::Result<EmailAddress> {
    EmailAddress::parse(input)
        .with_context(|| format!("`{}` is not a valid address", input.escape_debug()))
}

pub(super) async fn run(ctx: &Context, cmd: SubscribersCommand) -> anyhow::Result<Exit> {
    let store = ctx.store().await?;
    let now = ctx.clock.now();
    match cmd {
        SubscribersCommand::Import { file } => {
            let result = import_file(&store, &file, now).await?;
            for r in &result.rejected {
                println!(
                    "{}:{}: rejected: {}",
                    shown(&file).display(),
                    r.line,
                    r.reason
                );
            }
            let c = result.counts;
            println!(
                "added {}, updated {}, unchanged {}, suppressed {}, rejected {}",
                c.added, c.updated, c.unchanged, c.suppressed, c.rejected
            );
            Ok(if c.rejected == 0 {
                Exit::Success
            } else {
                Exit::Failure
            })
        }
        SubscribersCommand::Add {
            email,
            name,
            resubscribe,
        } => {
            let email = parse_email(&email)?;
            let name = SubscriberName::clean(name.as_deref().unwrap_or(""));
            match store
                .add_subscriber(&email, &name, "cli", resubscribe, now)
                .await?
            {
                AddOutcome::Added => println!("added {email}"),
                AddOutcome::AlreadyActive => println!("{email} is already subscribed"),
                AddOutcome::Reactivated => println!("re-subscribed {email}"),
                AddOutcome::Suppressed(status) => {
                    bail!("{email} is {status}: pass --resubscribe if they asked to come back")
                }
            }
            Ok(Exit::Success)
        }
        SubscribersCommand::Remove { email } => {
            let email = parse_email(&email)?;
            match store.unsubscribe(&email, now).await? {
                None => bail!("{email} is not a subscriber"),
                Some(SubscriberStatus::Unsubscribed) => {
                    println!("{email} was already unsubscribed")
                }
                Some(_) => println!("unsubscribed {email}"),
            }
            Ok(Exit::Success)
        }
        SubscribersCommand::List { status, json } => {
            let status = status
                .as_deref()
                .map(SubscriberStatus::parse)
                .transpose()
                .context("--status")?;
            let list = store.subscribers(status).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                let width = list.iter().map(|s| s.email.len()).max().unwrap_or(5).max(5);
                println!("{:width$}  {:12}  NAME", "EMAIL", "STATUS");
                for s in &list {
                    println!("{:width$}  {:12}  {}", s.email, s.status.as_str(), s.name);
                }
            }
            Ok(Exit::Success)
        }
        SubscribersCommand::Export => {
            let mut out = csv::Writer::from_writer(std::io::stdout().lock());
            out.write_record(["email", "name", "status"])?;
            for s in store.subscribers(None).await? {
                out.write_record([s.email.as_str(), s.name.as_str(), s.status.as_str()])?;
            }
            out.flush()?;
            Ok(Exit::Success)
        }
    }
}
