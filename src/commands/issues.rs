//! `herald issues list | show N`: past issues and their ledgers.

use anyhow::bail;
use serde::Serialize;

use crate::Exit;
use crate::app::App;
use crate::cli::IssuesCommand;
use crate::domain::DeliveryStatus;
use crate::store::{DeliveryRow, LedgerCounts};

#[derive(Serialize)]
struct IssueLine {
    number: u32,
    term: String,
    subject: String,
    status: String,
    created_at: String,
    finished_at: Option<String>,
    recipients: u64,
    sent: u64,
    failed: u64,
    bounced: u64,
    pending: u64,
    /// Rows in `sending`: in flight during a send, ambiguous after a crash.
    sending: u64,
    skipped: u64,
}

#[derive(Serialize)]
struct IssueDetail {
    #[serde(flatten)]
    line: IssueLine,
    links: Vec<String>,
    failures: Vec<DeliveryRow>,
    ambiguous: Vec<DeliveryRow>,
    pending_with_errors: Vec<DeliveryRow>,
}

fn line(issue: &crate::store::StoredIssue, c: LedgerCounts) -> IssueLine {
    IssueLine {
        number: issue.number,
        term: issue.term.to_string(),
        subject: issue.subject.clone(),
        status: issue.status.to_string(),
        created_at: issue.created_at.to_rfc3339(),
        finished_at: issue.finished_at.map(|t| t.to_rfc3339()),
        recipients: c.total(),
        sent: c.sent,
        failed: c.failed,
        bounced: c.bounced,
        pending: c.pending,
        sending: c.sending,
        skipped: c.skipped,
    }
}

pub(super) async fn run(app: &App, cmd: IssuesCommand) -> anyhow::Result<Exit> {
    let store = &app.store;
    match cmd {
        IssuesCommand::List(flag) => {
            let mut lines = Vec::new();
            for issue in store.issues().await? {
                let counts = store.ledger_counts(issue.id).await?;
                lines.push(line(&issue, counts));
            }
            if flag.json {
                println!("{}", serde_json::to_string_pretty(&lines)?);
            } else if lines.is_empty() {
                println!("no issues yet: `herald send` makes the first");
            } else {
                println!(
                    "{:>5}  {:<8}  {:<32}  {:>6} {:>6} {:>7} {:>7} {:>7}",
                    "ISSUE", "STATUS", "TERM", "SENT", "FAILED", "BOUNCED", "PENDING", "SENDING"
                );
                for l in &lines {
                    println!(
                        "{:>5}  {:<8}  {:<32}  {:>6} {:>6} {:>7} {:>7} {:>7}",
                        l.number,
                        l.status,
                        l.term,
                        l.sent,
                        l.failed,
                        l.bounced,
                        l.pending,
                        l.sending
                    );
                }
            }
        }
        IssuesCommand::Show { number, json } => {
            let Some(issue) = store.issue(number).await? else {
                bail!("no issue #{number} (see `herald issues list`)");
            };
            let counts = store.ledger_counts(issue.id).await?;
            let detail = IssueDetail {
                line: line(&issue, counts),
                links: store
                    .issue_links(issue.id)
                    .await?
                    .into_iter()
                    .map(|l| l.url)
                    .collect(),
                failures: store
                    .deliveries_with_status(
                        issue.id,
                        &[DeliveryStatus::Failed, DeliveryStatus::Bounced],
                        1000,
                    )
                    .await?,
                ambiguous: store
                    .deliveries_with_status(issue.id, &[DeliveryStatus::Sending], 1000)
                    .await?,
                pending_with_errors: store
                    .deliveries_with_status(issue.id, &[DeliveryStatus::Pending], 1000)
                    .await?
                    .into_iter()
                    .filter(|r| r.last_error.is_some())
                    .collect(),
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&detail)?);
            } else {
                let l = &detail.line;
                println!("issue #{} [{}] {}", l.number, l.status, l.subject);
                println!(
                    "term: {}   created: {}   finished: {}",
                    l.term,
                    l.created_at,
                    l.finished_at.as_deref().unwrap_or("-")
                );
                println!(
                    "recipients {}: sent {}, failed {}, bounced {}, pending {}, sending/ambiguous {}, skipped {}",
                    l.recipients, l.sent, l.failed, l.bounced, l.pending, l.sending, l.skipped
                );
                for link in &detail.links {
                    println!("link: {link}");
                }
                for r in &detail.failures {
                    println!(
                        "{}: {} after {} attempts: {}",
                        r.status,
                        r.email,
                        r.attempts,
                        r.last_error.as_deref().unwrap_or("")
                    );
                }
                for r in &detail.ambiguous {
                    println!(
                        "ambiguous: {} (claimed {} by {}; may or may not have been delivered; `herald send --retry-ambiguous` resends)",
                        r.email,
                        r.claimed_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
                        r.claimed_by.as_deref().unwrap_or("?")
                    );
                }
                for r in &detail.pending_with_errors {
                    println!(
                        "pending: {} after {} attempts: {}",
                        r.email,
                        r.attempts,
                        r.last_error.as_deref().unwrap_or("")
                    );
                }
            }
        }
        IssuesCommand::Hold { number } => {
            if !app.hold_issue(number).await? {
                bail!(
                    "issue #{number} is not waiting for its slot, so it cannot be held (see `herald issues list`)"
                );
            }
            println!(
                "issue #{number} is held: it will not go out until `herald issues release {number}`"
            );
        }
        IssuesCommand::Release { number } => {
            if !app.release_issue(number).await? {
                bail!("issue #{number} is not held");
            }
            println!(
                "issue #{number} is released: it goes out at its slot (or at the daemon's next tick if the slot has passed)"
            );
        }
    }
    Ok(Exit::Success)
}
