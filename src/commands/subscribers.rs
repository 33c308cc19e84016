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
    let store = &app.store;
    let now = app.clock.now();
    match cmd {
        SubscribersCommand::Import { file } => {
            let result = app.import_subscriber_file(&file, now).await?;
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
                let width = list
                    .iter()
                    .map(|s| s.email.as_str().len())
                    .max()
                    .unwrap_or(5)
                    .max(5);
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
