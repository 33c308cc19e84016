//! `herald preview --serve`: the next issue on a local page, at desktop and phone widths, with
//! its text part and headers, reloaded in the browser whenever a file under `glossary/`,
//! `templates/` or the curated links' directory changes. A broken template or term file shows
//! on the page with its file and line; the server keeps running.
//!
//! Feeds are fetched once at start; every later render uses them as fetched, so an edit does
//! not fetch every feed again.

use std::convert::Infallible;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use futures::Stream;
use html_escape::encode_text as text;
use tokio::sync::broadcast;

use crate::Exit;
use crate::app::App;
use crate::app::issue::Feeds;
use crate::app::preview::Preview;
use crate::cli::PreviewArgs;

struct Live {
    app: App,
    term: Option<String>,
    subscriber: Option<String>,
    changes: broadcast::Sender<()>,
}

impl Live {
    async fn render(&self) -> Result<Preview, String> {
        self.app
            .preview(
                self.term.as_deref(),
                self.subscriber.as_deref(),
                Feeds::Cached,
            )
            .await
            .map_err(|e| e.to_string())
    }
}

pub(super) async fn serve(app: &App, args: &PreviewArgs) -> anyhow::Result<Exit> {
    let live_app = App::open(app.config().clone(), app.clock().clone()).await?;
    // One fetch now, so the page shows the links a send would carry.
    if let Err(e) = live_app
        .preview(
            args.term.as_deref(),
            args.subscriber.as_deref(),
            Feeds::Fetch,
        )
        .await
    {
        tracing::warn!("the first render failed (the page shows why): {e}");
    }
    let (changes, _) = broadcast::channel(16);
    let live = Arc::new(Live {
        app: live_app,
        term: args.term.clone(),
        subscriber: args.subscriber.clone(),
        changes: changes.clone(),
    });

    // File events come on notify's own thread; each one wakes every open page.
    let notify_tx = changes.clone();
    let watcher = crate::files::watch_content(app.config(), move || {
        // No page open is fine: nobody to tell.
        if notify_tx.send(()).is_err() {
            tracing::trace!("a file changed; no page is open");
        }
    })
    .context("starting the file watcher")?;

    let router = Router::new()
        .route("/", get(page))
        .route("/issue.html", get(issue_html))
        .route("/events", get(events))
        .with_state(live);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {} (--listen)", args.listen))?;
    let addr = listener.local_addr()?;
    crate::say!(
        "preview: http://{addr}/ (reloads when {} change; ctrl-c stops)",
        [
            Some(&app.config().glossary_dir),
            Some(&app.config().templates_dir),
            app.config().news.curated.as_ref()
        ]
        .into_iter()
        .flatten()
        .map(|d| super::shown(d).display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
    );
    use std::io::Write as _;
    std::io::stdout()
        .flush()
        .context("writing to standard output")?;
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            if let Err(e) = tokio::signal::ctrl_c().await {
                tracing::warn!(error = %e, "cannot listen for ctrl-c");
                std::future::pending::<()>().await;
            }
        })
        .await
        .context("serving the preview")?;
    drop(watcher);
    Ok(Exit::Success)
}

const PAGE_STYLE: &str = "body{margin:0;font:15px/1.5 -apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;background:#e5e7eb;color:#111827}\
header{padding:12px 20px;background:#fff;border-bottom:1px solid #d1d5db}\
.frames{display:flex;flex-wrap:wrap;gap:20px;padding:20px;align-items:flex-start}\
figure{margin:0}figcaption{font-size:13px;color:#374151;margin-bottom:4px}\
iframe{background:#fff;border:1px solid #9ca3af;height:1200px}\
pre{white-space:pre-wrap;background:#fff;border:1px solid #d1d5db;padding:12px;margin:0 20px 20px;max-width:900px;overflow-x:auto}\
.error{background:#fef2f2;border-color:#b91c1c;color:#7f1d1d}h2{font-size:16px;margin:20px 20px 8px}";

/// Reloads the page when the server says a file changed (server-sent events; no build step).
const RELOAD: &str =
    "<script>new EventSource('/events').onmessage = () => location.reload();</script>";

async fn page(State(live): State<Arc<Live>>) -> Response {
    let body = match live.render().await {
        Ok(p) => {
            let notes: String = p
                .skipped
                .iter()
                .map(|s| format!("<p>Note: {}</p>", text(&s.to_string())))
                .collect();
            format!(
                "<header><strong>{}</strong><br>Issue #{} (cycle {}) to {} &middot; term: {} &middot; {} links{notes}</header>\
                 <div class=\"frames\">\
                 <figure><figcaption>Desktop (800 px)</figcaption><iframe title=\"The issue at desktop width\" src=\"/issue.html\" width=\"800\"></iframe></figure>\
                 <figure><figcaption>Phone (375 px)</figcaption><iframe title=\"The issue at phone width\" src=\"/issue.html\" width=\"375\"></iframe></figure>\
                 </div><h2>Text part</h2><pre>{}</pre><h2>Headers</h2><pre>{}</pre>",
                text(&p.subject),
                p.plan.number,
                p.cycle,
                text(p.to.as_str()),
                text(&p.plan.term.term),
                p.plan.links.len(),
                text(&p.text),
                text(&p.headers()),
            )
        }
        Err(e) => format!(
            "<header><strong>The next issue cannot be made</strong> &middot; fix the file named below; this page reloads when you save it</header>\
             <h2>Error</h2><pre class=\"error\">{}</pre>",
            text(&e)
        ),
    };
    let html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Herald preview</title><style>{PAGE_STYLE}</style></head><body>{body}{RELOAD}</body></html>"
    );
    no_cache(Html(html).into_response())
}

async fn issue_html(State(live): State<Arc<Live>>) -> Response {
    let html = match live.render().await {
        Ok(p) => p.html,
        Err(e) => format!(
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"></head><body><pre>{}</pre></body></html>",
            text(&e)
        ),
    };
    no_cache(Html(html).into_response())
}

async fn events(
    State(live): State<Arc<Live>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = live.changes.subscribe();
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        match rx.recv().await {
            // A missed change (a burst of saves) still means: reload.
            Ok(()) | Err(broadcast::error::RecvError::Lagged(_)) => {
                Some((Ok(Event::default().data("reload")), rx))
            }
            Err(broadcast::error::RecvError::Closed) => None,
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

fn no_cache(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
