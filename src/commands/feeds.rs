//! `herald feeds [--fetch] [--json]`: each configured feed with its health.

use serde::Serialize;

use crate::Exit;
use crate::app::App;
use crate::cli::FeedsArgs;

#[derive(Serialize)]
struct FeedRow {
    name: String,
    url: String,
    last_success_at: Option<String>,
    last_error: Option<String>,
    last_error_at: Option<String>,
    consecutive_failures: i64,
    items_seen: i64,
    permanent_url: Option<String>,
}

pub(super) async fn run(app: &App, args: FeedsArgs) -> anyhow::Result<Exit> {
    let config = app.config();
    if args.fetch {
        app.fetch_feeds(app.now()).await?;
    }
    let states = app.feed_states().await?;
    let rows: Vec<FeedRow> = config
        .news
        .feeds
        .iter()
        .map(|f| {
            let s = states.get(f.url.as_str());
            FeedRow {
                name: f.name.clone(),
                url: f.url.to_string(),
                last_success_at: s.and_then(|s| s.last_success_at).map(|t| t.to_rfc3339()),
                last_error: s.and_then(|s| s.last_error.clone()),
                last_error_at: s.and_then(|s| s.last_error_at).map(|t| t.to_rfc3339()),
                consecutive_failures: s.map_or(0, |s| s.consecutive_failures),
                items_seen: s.map_or(0, |s| s.items_seen),
                permanent_url: s.and_then(|s| s.permanent_url.clone()),
            }
        })
        .collect();
    if args.json {
        crate::say!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(Exit::Success);
    }
    if rows.is_empty() {
        crate::say!(
            "no feeds configured ([[news.feeds]] in {})",
            config.file.display()
        );
    }
    for r in &rows {
        crate::say!("{}  {}", r.name, r.url);
        crate::say!(
            "    last success: {}   items: {}   consecutive failures: {}",
            r.last_success_at.as_deref().unwrap_or("never"),
            r.items_seen,
            r.consecutive_failures
        );
        if let Some(e) = &r.last_error {
            crate::say!(
                "    last error:   {} ({})",
                e,
                r.last_error_at.as_deref().unwrap_or("?")
            );
        }
        if let Some(p) = &r.permanent_url {
            crate::say!("    moved to:     {p}");
        }
    }
    Ok(Exit::Success)
}
