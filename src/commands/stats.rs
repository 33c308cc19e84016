//! `herald stats [N] [--json]`: what happened after each issue went out.

use crate::Exit;
use crate::app::App;
use crate::cli::StatsArgs;

pub(super) async fn run(app: &App, args: StatsArgs) -> anyhow::Result<Exit> {
    let stats = app.issue_stats(args.number).await?;
    if let Some(n) = args.number
        && stats.is_empty()
    {
        anyhow::bail!("no issue #{n} has gone out");
    }
    if args.json {
        crate::say!("{}", serde_json::to_string_pretty(&stats)?);
        return Ok(Exit::Success);
    }
    if stats.is_empty() {
        crate::say!("no issue has gone out yet");
        return Ok(Exit::Success);
    }
    let tz = app.config().schedule.timezone;
    crate::say!(
        "{:>5}  {:<16}  {:<28}  {:>10}  {:>10}  {:>8}  {:>12}  {:>11}  {:>7}  {:>10}  {:>12}",
        "issue",
        "went out",
        "term",
        "recipients",
        "delivered",
        "bounces",
        "later: hard",
        "complaints",
        "refused",
        "unfinished",
        "unsub. 7 days"
    );
    let percent = |n: i64, of: i64| {
        if of == 0 {
            "-".to_owned()
        } else {
            format!("{n} ({:.1}%)", n as f64 * 100.0 / of as f64)
        }
    };
    for s in &stats {
        crate::say!(
            "{:>5}  {:<16}  {:<28}  {:>10}  {:>10}  {:>8}  {:>12}  {:>11}  {:>7}  {:>10}  {:>12}",
            s.number,
            s.sent_at.with_timezone(&tz).format("%Y-%m-%d %H:%M"),
            s.term,
            s.recipients,
            s.delivered,
            percent(s.bounced, s.recipients),
            format!("{} (+{} soft)", s.bounced_later, s.soft_bounced_later),
            percent(s.complaints, s.delivered),
            s.failed,
            s.unfinished,
            percent(s.unsubscribed_7d, s.delivered),
        );
        if s.clicks.iter().any(|c| c.clicks > 0) {
            for c in &s.clicks {
                crate::say!(
                    "       link {}: {} clicks  {}",
                    c.position + 1,
                    c.clicks,
                    c.url
                );
            }
        }
    }
    Ok(Exit::Success)
}
