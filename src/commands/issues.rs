//! `herald issues list | show N`: past issues and their ledgers.

use anyhow::bail;
use serde::Serialize;

use crate::Exit;
use crate::app::App;
use crate::app::report::IssueSummary;
use crate::cli::IssuesCommand;
use crate::store::DeliveryRow;

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

fn line(summary: &IssueSummary) -> IssueLine {
    let (issue, c) = (&summary.issue, summary.counts);
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
    match cmd {
        IssuesCommand::List(flag) => list(app, flag.json).await?,
        IssuesCommand::Show { number, json } => show(app, number, json).await?,
        IssuesCommand::Hold { number } => {
            if !app.hold_issue(number).await? {
                bail!(
                    "issue #{number} is not waiting for its slot, so it cannot be held (see `herald issues list`)"
                );
            }
            crate::say!(
                "issue #{number} is held: it will not go out until `herald issues release {number}`"
            );
        }
        IssuesCommand::Release { number } => {
            if !app.release_issue(number).await? {
                bail!("issue #{number} is neither held nor waiting for its review window");
            }
            crate::say!(
                "issue #{number} is released: it goes out at its slot (or at the daemon's next tick if the slot has passed)"
            );
        }
        IssuesCommand::Refreeze { number, replan } => {
            let issue = app.refreeze_issue(number, replan).await?;
            crate::say!(
                "issue #{number} is frozen again: {} ({}); {}",
                issue.subject,
                issue.term,
                if app.config().schedule.editors.is_empty() {
                    "`herald preview` shows it".to_owned()
                } else {
                    format!("the editors got a new review copy; it is {}", issue.status)
                }
            );
        }
        IssuesCommand::Resolve { number, sent, .. } => {
            let n = app.resolve_ambiguous(number, sent).await?;
            crate::say!(
                "issue #{number}: {n} ambiguous deliveries marked {}",
                if sent {
                    "delivered"
                } else {
                    "not delivered: the next `herald send` sends them"
                }
            );
        }
        IssuesCommand::Discard { number } => {
            if !app.discard_issue(number).await? {
                bail!(
                    "issue #{number} cannot be discarded: only a frozen or held issue that sent nothing can (see `herald issues list`)"
                );
            }
            crate::say!(
                "issue #{number} is discarded: its term and links are back in the pool, and the next issue is #{number}"
            );
        }
    }
    Ok(Exit::Success)
}

/// `herald issues list [--json]`.
async fn list(app: &App, json: bool) -> anyhow::Result<()> {
    let lines: Vec<IssueLine> = app.issue_summaries().await?.iter().map(line).collect();
    if json {
        crate::say!("{}", serde_json::to_string_pretty(&lines)?);
    } else if lines.is_empty() {
        crate::say!("no issues yet: `herald send` makes the first");
    } else {
        crate::say!(
            "{:>5}  {:<8}  {:<32}  {:>6} {:>6} {:>7} {:>7} {:>7}",
            "ISSUE",
            "STATUS",
            "TERM",
            "SENT",
            "FAILED",
            "BOUNCED",
            "PENDING",
            "SENDING"
        );
        for l in &lines {
            crate::say!(
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
    Ok(())
}

/// `herald issues show N [--json]`.
async fn show(app: &App, number: u32, json: bool) -> anyhow::Result<()> {
    let Some(report) = app.issue_report(number).await? else {
        bail!("no issue #{number} (see `herald issues list`)");
    };
    let detail = IssueDetail {
        line: line(&report.summary),
        links: report.links,
        failures: report.failures,
        ambiguous: report.ambiguous,
        pending_with_errors: report.pending_with_errors,
    };
    if json {
        crate::say!("{}", serde_json::to_string_pretty(&detail)?);
    } else {
        let l = &detail.line;
        crate::say!("issue #{} [{}] {}", l.number, l.status, l.subject);
        crate::say!(
            "term: {}   created: {}   finished: {}",
            l.term,
            l.created_at,
            l.finished_at.as_deref().unwrap_or("-")
        );
        crate::say!(
            "recipients {}: sent {}, failed {}, bounced {}, pending {}, sending/ambiguous {}, skipped {}",
            l.recipients,
            l.sent,
            l.failed,
            l.bounced,
            l.pending,
            l.sending,
            l.skipped
        );
        for link in &detail.links {
            crate::say!("link: {link}");
        }
        for r in &detail.failures {
            crate::say!(
                "{}: {} after {} attempts: {}",
                r.status,
                r.email,
                r.attempts,
                r.last_error.as_deref().unwrap_or("")
            );
        }
        for r in &detail.ambiguous {
            crate::say!(
                "ambiguous: {} (claimed {} by {}; may or may not have been delivered; `herald send --retry-ambiguous` resends)",
                r.email,
                r.claimed_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
                r.claimed_by.as_deref().unwrap_or("?")
            );
        }
        for r in &detail.pending_with_errors {
            crate::say!(
                "pending: {} after {} attempts: {}",
                r.email,
                r.attempts,
                r.last_error.as_deref().unwrap_or("")
            );
        }
    }
    Ok(())
}
