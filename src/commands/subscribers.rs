//! `herald subscribers import | add | remove | list | export`.

use anyhow::{Context as _, bail};

use super::shown;
use crate::Exit;
use crate::app::App;
use crate::cli::SubscribersCommand;
use crate::domain::{EmailAddress, SubscriberName, SubscriberStatus};
use crate::store::AddOutcome;

fn parse_email(input: &str) -> anyhow::Result<EmailAddress> {
    EmailAddress::parse(input)
        .with_context(|| format!("`{}` is not a valid address", input.escape_debug()))
}

/// A cell that a spreadsheet will not run as a formula: one starting with `=`, `+`, `-`, `@`
/// (or a tab or carriage return) gets a leading `'`.
fn spreadsheet_safe(cell: &str) -> std::borrow::Cow<'_, str> {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        std::borrow::Cow::Owned(format!("'{cell}"))
    } else {
        std::borrow::Cow::Borrowed(cell)
    }
}

pub(super) async fn run(app: &App, cmd: SubscribersCommand) -> anyhow::Result<Exit> {
    let now = app.now();
    match cmd {
        SubscribersCommand::Import { file } => {
            let result = app.import_one_subscriber_file(&file, now).await?;
            for r in &result.rejected {
                crate::say!(
                    "{}:{}: rejected: {}",
                    shown(&file).display(),
                    r.line,
                    r.reason
                );
            }
            let c = result.counts;
            crate::say!(
                "added {}, updated {}, unchanged {}, suppressed {}, rejected {}",
                c.added,
                c.updated,
                c.unchanged,
                c.suppressed,
                c.rejected
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
            match app
                .add_subscriber(&email, &name, "cli", resubscribe)
                .await?
            {
                AddOutcome::Added => crate::say!("added {email}"),
                AddOutcome::AlreadyActive => crate::say!("{email} is already subscribed"),
                AddOutcome::Reactivated => crate::say!("re-subscribed {email}"),
                AddOutcome::Suppressed(status) => {
                    bail!("{email} is {status}: pass --resubscribe if they asked to come back")
                }
            }
            Ok(Exit::Success)
        }
        SubscribersCommand::Remove { email } => {
            let email = parse_email(&email)?;
            match app.remove_subscriber(&email).await? {
                None => bail!("{email} is not a subscriber"),
                Some(SubscriberStatus::Unsubscribed) => {
                    crate::say!("{email} was already unsubscribed")
                }
                Some(_) => crate::say!("unsubscribed {email}"),
            }
            Ok(Exit::Success)
        }
        SubscribersCommand::List { status, json } => {
            let status = status
                .as_deref()
                .map(SubscriberStatus::parse)
                .transpose()
                .context("--status")?;
            // Streamed row by row: a million subscribers list in constant memory.
            use futures::TryStreamExt as _;
            use std::io::Write as _;
            let mut rows = std::pin::pin!(app.subscriber_stream(status));
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            if json {
                write!(out, "[")?;
                let mut first = true;
                while let Some(s) = rows.try_next().await? {
                    write!(out, "{}\n  ", if first { "" } else { "," })?;
                    serde_json::to_writer(&mut out, &s)?;
                    first = false;
                }
                writeln!(out, "{}]", if first { "" } else { "\n" })?;
            } else {
                writeln!(out, "{:40}  {:12}  NAME", "EMAIL", "STATUS")?;
                while let Some(s) = rows.try_next().await? {
                    writeln!(out, "{:40}  {:12}  {}", s.email, s.status.as_str(), s.name)?;
                }
            }
            out.flush()?;
            Ok(Exit::Success)
        }
        SubscribersCommand::Export => {
            let mut out = csv::Writer::from_writer(std::io::stdout().lock());
            out.write_record(["email", "name", "status"])?;
            use futures::TryStreamExt as _;
            let mut rows = std::pin::pin!(app.subscriber_stream(None));
            while let Some(s) = rows.try_next().await? {
                out.write_record([
                    s.email.as_str(),
                    &spreadsheet_safe(&s.name),
                    s.status.as_str(),
                ])?;
            }
            out.flush()?;
            Ok(Exit::Success)
        }
    }
}
