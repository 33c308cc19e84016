//! Feeds served from a local HTTP server: real-world samples, conditional GET, timeouts,
//! oversized bodies, redirects, Retry-After, de-duplication and never repeating a link.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{TimeZone, Utc};
use herald::app::{App, Planned};
use herald::config::FeedSource;
use herald::feeds::{FeedFetcher, FetchError, FetchOutcome, FetchSettings, Validators};
use url::Url;

use crate::harness::{CONFIG, Sandbox, repo, serve};

/// The app as a send builds it, with this store, fetcher and a fixed clock.
fn app(
    config: &herald::config::Config,
    store: &herald::store::Store,
    fetcher: &FeedFetcher,
    now: chrono::DateTime<Utc>,
) -> App {
    App::with_store(
        config.clone(),
        store.clone(),
        std::sync::Arc::new(herald::clock::FixedClock(now)),
    )
    .unwrap()
    .with_fetcher(fetcher.clone())
}

fn fixtures() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(repo().join("tests/fixtures/feeds"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "README.md")
        .collect();
    names.sort();
    names
}

async fn fixture(Path(name): Path<String>) -> Response {
    match std::fs::read(repo().join("tests/fixtures/feeds").join(&name)) {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/xml")], bytes).into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

fn feed(name: &str, url: String) -> FeedSource {
    FeedSource {
        name: name.into(),
        url: Url::parse(&url).unwrap(),
        max_items: None,
    }
}

fn rss(items: &[(&str, &str)]) -> String {
    let items: String = items
        .iter()
        .map(|(title, link)| {
            format!(
                "<item><title>{title}</title><link>{}</link><pubDate>Mon, 23 Nov 2026 10:00:00 GMT</pubDate></item>",
                link.replace('&', "&amp;")
            )
        })
        .collect();
    format!(
        "<?xml version=\"1.0\"?><rss version=\"2.0\"><channel><title>T</title>{items}</channel></rss>"
    )
}

#[tokio::test]
async fn every_real_world_sample_yields_items_or_a_per_feed_error_and_the_issue_still_builds() {
    let addr = serve(Router::new().route("/feeds/{name}", get(fixture))).await;
    let s = Sandbox::new();
    let feeds: String = fixtures()
        .iter()
        .map(|n| format!("[[news.feeds]]\nname = \"{n}\"\nurl = \"http://{addr}/feeds/{n}\"\n\n"))
        .collect();
    s.write(
        "herald.toml",
        format!("{CONFIG}\n[news]\nmax_age_days = 3650\nlinks_per_issue = 50\n\n{feeds}"),
    );
    let config = s.config();
    let store = s.store().await;
    let fetcher = FeedFetcher::new(FetchSettings::default()).unwrap();
    let now = Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, 0).unwrap();
    let batches = app(&config, &store, &fetcher, now)
        .fetch_feeds(now)
        .await
        .unwrap();
    let states = store.feed_states().await.unwrap();
    assert_eq!(batches.len(), fixtures().len());
    let mut with_items = 0;
    for (batch, feed) in batches.iter().zip(&config.news.feeds) {
        let state = &states[feed.url.as_str()];
        if batch.links.is_empty() {
            // Either a clear error, or a valid feed that simply has no linked entries.
            assert!(
                state.last_error.is_some() || state.last_success_at.is_some(),
                "{} left no trace",
                feed.name
            );
        } else {
            with_items += 1;
            assert!(state.last_success_at.is_some());
            for link in &batch.links {
                assert!(link.url.starts_with("http"), "{}: {}", feed.name, link.url);
                assert!(!link.title.contains('<'), "{}: {:?}", feed.name, link.title);
            }
        }
    }
    assert!(with_items >= 55, "only {with_items} samples gave items");
    let invalid = &states[config
        .news
        .feeds
        .iter()
        .find(|f| f.name == "rss_2.0_invalid_1.xml")
        .map_or("", |f| f.url.as_str())];
    assert!(invalid.last_error.is_some() || invalid.items_seen > 0);

    let (glossary, _) = herald::files::load_glossary(&config.glossary_dir);
    let planned = app(&config, &store, &fetcher, now)
        .plan(&glossary, now, None)
        .await
        .unwrap();
    let Planned::Ready { plan, .. } = planned else {
        panic!("an issue is planned")
    };
    assert!(!plan.links.is_empty());
    let mut urls = std::collections::HashSet::new();
    assert!(
        plan.links
            .iter()
            .all(|l| urls.insert(l.canonical_url.clone())),
        "links are unique"
    );
}

#[tokio::test]
async fn a_304_reuses_the_stored_items() {
    let hits = Arc::new(AtomicUsize::new(0));
    let conditional = Arc::new(AtomicUsize::new(0));
    let (h, c) = (hits.clone(), conditional.clone());
    let router = Router::new().route(
        "/feed",
        get(move |headers: HeaderMap| {
            let (h, c) = (h.clone(), c.clone());
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                if headers
                    .get(header::IF_NONE_MATCH)
                    .is_some_and(|v| v == "\"v1\"")
                {
                    c.fetch_add(1, Ordering::SeqCst);
                    return StatusCode::NOT_MODIFIED.into_response();
                }
                (
                    [
                        (header::ETAG, "\"v1\""),
                        (header::LAST_MODIFIED, "Mon, 23 Nov 2026 10:00:00 GMT"),
                    ],
                    rss(&[("Cached story", "https://news.example/cached")]),
                )
                    .into_response()
            }
        }),
    );
    let addr = serve(router).await;
    let s = Sandbox::new();
    s.write(
        "herald.toml",
        format!("{CONFIG}\n[[news.feeds]]\nname = \"Cache\"\nurl = \"http://{addr}/feed\"\n"),
    );
    let config = s.config();
    let store = s.store().await;
    let fetcher = FeedFetcher::new(FetchSettings::default()).unwrap();
    let now = Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, 0).unwrap();
    let first = app(&config, &store, &fetcher, now)
        .fetch_feeds(now)
        .await
        .unwrap();
    let second = app(&config, &store, &fetcher, now)
        .fetch_feeds(now)
        .await
        .unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    assert_eq!(
        conditional.load(Ordering::SeqCst),
        1,
        "the second request was conditional and got 304"
    );
    assert_eq!(first[0].links, second[0].links);
    assert_eq!(second[0].links[0].title, "Cached story");
    let state = &store.feed_states().await.unwrap()[config.news.feeds[0].url.as_str()];
    assert_eq!(state.etag.as_deref(), Some("\"v1\""));
    assert_eq!(state.consecutive_failures, 0);
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_without_stopping_anything() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket); // accept, then say nothing
        }
    });
    let settings = FetchSettings {
        total_timeout: Duration::from_millis(800),
        read_timeout: Duration::from_millis(800),
        ..FetchSettings::default()
    };
    let fetcher = FeedFetcher::new(settings).unwrap();
    let started = Instant::now();
    let outcome = fetcher
        .fetch(
            &feed("Silent", format!("http://{addr}/")),
            Validators::default(),
        )
        .await;
    assert!(
        matches!(outcome, FetchOutcome::Failed(FetchError::Timeout)),
        "{outcome:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn an_oversized_body_is_refused() {
    let big = format!(
        "{}{}",
        "<!-- padding -->".repeat(400_000),
        rss(&[("x", "https://x.example/")])
    );
    let router = Router::new()
        .route(
            "/big",
            get(move || {
                let b = big.clone();
                async move { b }
            }),
        )
        .route(
            "/chunked",
            get(|| async {
                let chunks = futures::stream::iter(
                    (0..700).map(|_| Ok::<_, std::io::Error>(vec![b' '; 10_000])),
                );
                axum::body::Body::from_stream(chunks)
            }),
        );
    let addr = serve(router).await;
    let fetcher = FeedFetcher::new(FetchSettings::default()).unwrap();
    for path in ["big", "chunked"] {
        let outcome = fetcher
            .fetch(
                &feed("Big", format!("http://{addr}/{path}")),
                Validators::default(),
            )
            .await;
        assert!(
            matches!(outcome, FetchOutcome::Failed(FetchError::TooLarge(_))),
            "{path}: {outcome:?}"
        );
    }
}

#[tokio::test]
async fn redirects_are_followed_and_permanent_ones_remembered() {
    let old_hits = Arc::new(AtomicUsize::new(0));
    let o = old_hits.clone();
    let router = Router::new()
        .route(
            "/old",
            get(move || {
                let o = o.clone();
                async move {
                    o.fetch_add(1, Ordering::SeqCst);
                    (StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, "/new")])
                }
            }),
        )
        .route(
            "/temp",
            get(|| async { (StatusCode::FOUND, [(header::LOCATION, "/new")]) }),
        )
        .route(
            "/new",
            get(|| async { rss(&[("Moved story", "https://news.example/moved")]) }),
        );
    let addr = serve(router).await;
    let s = Sandbox::new();
    s.write(
        "herald.toml",
        format!("{CONFIG}\n[[news.feeds]]\nname = \"Moved\"\nurl = \"http://{addr}/old\"\n\n[[news.feeds]]\nname = \"Temp\"\nurl = \"http://{addr}/temp\"\n"),
    );
    let config = s.config();
    let store = s.store().await;
    let fetcher = FeedFetcher::new(FetchSettings::default()).unwrap();
    let now = Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, 0).unwrap();
    let batches = app(&config, &store, &fetcher, now)
        .fetch_feeds(now)
        .await
        .unwrap();
    assert_eq!(batches[0].links[0].title, "Moved story");
    assert_eq!(batches[1].links[0].title, "Moved story");
    let states = store.feed_states().await.unwrap();
    assert_eq!(
        states[config.news.feeds[0].url.as_str()]
            .permanent_url
            .as_deref(),
        Some(format!("http://{addr}/new").as_str())
    );
    assert_eq!(
        states[config.news.feeds[1].url.as_str()].permanent_url,
        None,
        "a 302 is not remembered"
    );
    app(&config, &store, &fetcher, now)
        .fetch_feeds(now)
        .await
        .unwrap();
    assert_eq!(
        old_hits.load(Ordering::SeqCst),
        1,
        "the moved feed is fetched at its new address"
    );
}

#[tokio::test]
async fn errors_and_retry_after_are_per_feed() {
    let tries = Arc::new(AtomicUsize::new(0));
    let t = tries.clone();
    let router = Router::new()
        .route("/500", get(|| async { StatusCode::INTERNAL_SERVER_ERROR }))
        .route("/garbage", get(|| async { "this is not xml at all" }))
        .route(
            "/busy",
            get(|| async {
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::RETRY_AFTER, "3600")],
                )
            }),
        )
        .route(
            "/brief",
            get(move || {
                let t = t.clone();
                async move {
                    if t.fetch_add(1, Ordering::SeqCst) == 0 {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            [(header::RETRY_AFTER, "1")],
                        )
                            .into_response()
                    } else {
                        rss(&[("After the wait", "https://news.example/wait")]).into_response()
                    }
                }
            }),
        );
    let addr = serve(router).await;
    let fetcher = FeedFetcher::new(FetchSettings::default()).unwrap();
    let get_ = |p: &str| feed(p, format!("http://{addr}/{p}"));
    let refused = feed("Refused", "http://127.0.0.1:9/".into());
    assert!(matches!(
        fetcher.fetch(&get_("500"), Validators::default()).await,
        FetchOutcome::Failed(FetchError::Status(500))
    ));
    assert!(matches!(
        fetcher.fetch(&get_("garbage"), Validators::default()).await,
        FetchOutcome::Failed(FetchError::Parse(_))
    ));
    assert!(matches!(
        fetcher.fetch(&get_("busy"), Validators::default()).await,
        FetchOutcome::Failed(FetchError::RetryAfter(3600))
    ));
    assert!(matches!(
        fetcher.fetch(&refused, Validators::default()).await,
        FetchOutcome::Failed(FetchError::Connect(_))
    ));
    match fetcher.fetch(&get_("brief"), Validators::default()).await {
        FetchOutcome::Fetched { links, .. } => assert_eq!(links[0].title, "After the wait"),
        other => panic!("{other:?}"),
    }
    assert_eq!(tries.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn the_same_article_from_two_feeds_appears_once_and_a_sent_link_never_again() {
    let router = Router::new()
        .route(
            "/a",
            get(|| async {
                rss(&[
                    (
                        "GPT model tops benchmark",
                        "https://news.example/story?utm_source=a&id=1",
                    ),
                    ("Already sent story", "https://news.example/sent"),
                ])
            }),
        )
        .route(
            "/b",
            get(|| async {
                rss(&[(
                    "GPT Model Tops Benchmark!",
                    "https://NEWS.example/story?id=1&fbclid=zz#top",
                )])
            }),
        );
    let addr = serve(router).await;
    let s = Sandbox::new();
    s.write(
        "herald.toml",
        format!("{CONFIG}\n[[news.feeds]]\nname = \"A\"\nurl = \"http://{addr}/a\"\n\n[[news.feeds]]\nname = \"B\"\nurl = \"http://{addr}/b\"\n"),
    );
    let config = s.config();
    let store = s.store().await;
    // An earlier issue carried https://news.example/sent.
    let db = s.db().await;
    db.execute("INSERT INTO issues (id, number, cycle, term_slug, subject, preheader, html, text, created_at) VALUES (1, 1, 1, 'agi', 's', 'p', 'h', 't', '2026-11-01T08:00:00Z')")
        .await.unwrap();
    db.execute("INSERT INTO links_sent (issue_id, position, canonical_url, url, title, source) VALUES (1, 0, 'https://news.example/sent', 'https://news.example/sent', 'Already sent story', 'A')")
        .await.unwrap();
    db.close().await;
    let fetcher = FeedFetcher::new(FetchSettings::default()).unwrap();
    let (glossary, _) = herald::files::load_glossary(&config.glossary_dir);
    let now = Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, 0).unwrap();
    let Planned::Ready { plan, .. } = app(&config, &store, &fetcher, now)
        .plan(&glossary, now, None)
        .await
        .unwrap()
    else {
        panic!("an issue is planned")
    };
    let urls: Vec<&str> = plan
        .links
        .iter()
        .map(|l| l.canonical_url.as_str())
        .collect();
    assert_eq!(urls, ["https://news.example/story?id=1"]);
    assert_eq!(plan.number, 2);
}

#[test]
fn links_go_out_without_their_tracking_parameters() {
    let s = Sandbox::new();
    s.write(
        "news/curated.toml",
        "[[link]]\ntitle = \"A tracked story\"\nurl = \"https://news.example/story?utm_source=feed&utm_medium=rss&id=42&fbclid=abc&mc_eid=9#part-2\"\n",
    );
    s.write(
        "subscribers/list.csv",
        "email,name\nreader@example.com,Reader\n",
    );
    s.write(
        "herald.toml",
        format!("{CONFIG}\n[news]\ncurated = \"news/curated.toml\"\n"),
    );
    let run = s.herald(&["send"]);
    assert_eq!(run.code, 0, "{run:?}");
    let eml = std::fs::read_dir(s.path("outbox"))
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .next()
        .expect("one message");
    let message = mail_parser::MessageParser::default().parse(&eml).unwrap();
    let html = message.body_html(0).unwrap();
    let text = message.body_text(0).unwrap();
    for part in [html.as_ref(), text.as_ref()] {
        assert!(
            part.contains("https://news.example/story?id=42#part-2"),
            "{part}"
        );
        for tracker in ["utm_", "fbclid", "mc_eid"] {
            assert!(!part.contains(tracker), "{tracker} went out: {part}");
        }
    }
}

#[test]
fn text_from_outside_can_never_receive_a_subscribers_address_or_unsubscribe_link() {
    let s = Sandbox::new();
    s.write(
        "news/curated.toml",
        "[[link]]\ntitle = \"Win a prize, %%herald.email%% and %%herald.unsubscribe_url%%\"\nurl = \"https://evil.example/claim#%%herald.unsubscribe_url%%\"\nnote = \"Dear %%herald.name%%, %%herald.greeting%%\"\n",
    );
    s.write(
        "subscribers/list.csv",
        "email,name\nvictim@example.com,Victim Person\nother@example.com,Other\n",
    );
    s.write(
        "herald.toml",
        format!("{CONFIG}\n[news]\ncurated = \"news/curated.toml\"\n"),
    );
    let run = s.herald(&["send"]);
    assert_eq!(run.code, 0, "{run:?}");
    for entry in std::fs::read_dir(s.path("outbox")).unwrap() {
        let raw = std::fs::read(entry.unwrap().path()).unwrap();
        let message = mail_parser::MessageParser::default().parse(&raw).unwrap();
        let to = message
            .to()
            .unwrap()
            .first()
            .unwrap()
            .address()
            .unwrap()
            .to_owned();
        for part in [
            message.body_html(0).unwrap().into_owned(),
            message.body_text(0).unwrap().into_owned(),
        ] {
            let claim = &part[part.find("Win a prize").expect("the link is there")..];
            let claim = &claim[..claim.find('\n').unwrap_or(claim.len()).min(400)];
            assert!(!claim.contains(&to), "{to}'s address leaked into: {claim}");
            assert!(
                !claim.contains("/u/"),
                "an unsubscribe link leaked into: {claim}"
            );
            assert!(!part.contains("evil.example/claim#https"), "{part}");
            assert!(!part.contains("Dear Victim"), "{part}");
        }
    }
}

/// A host that answers slowly gets at most two of Herald's connections at a time, its queued
/// feeds do not time out while they wait, and another host's feed is not held up by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_host_gets_two_connections_and_delays_only_its_own_feeds() {
    #[derive(Default)]
    struct Slow {
        open: AtomicUsize,
        most: AtomicUsize,
        finished: AtomicUsize,
    }
    let slow = Arc::new(Slow::default());
    let body = rss(&[("A story", "https://example.com/a")]);
    let slow_router = {
        let (slow, body) = (slow.clone(), body.clone());
        Router::new().route(
            "/{n}",
            get(move || {
                let (slow, body) = (slow.clone(), body.clone());
                async move {
                    let now = slow.open.fetch_add(1, Ordering::SeqCst) + 1;
                    slow.most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(400)).await;
                    slow.open.fetch_sub(1, Ordering::SeqCst);
                    slow.finished.fetch_add(1, Ordering::SeqCst);
                    body
                }
            }),
        )
    };
    let slow_addr = serve(slow_router).await;
    let fast_addr = serve(Router::new().route("/", get(move || async move { body }))).await;
    let settings = FetchSettings {
        // Six feeds at two at a time take three rounds: more than one request's timeout,
        // so a timeout that counted the wait would fail the last ones.
        total_timeout: Duration::from_millis(1_000),
        ..FetchSettings::default()
    };
    let fetcher = FeedFetcher::new(settings).unwrap();
    let slow_feeds: Vec<FeedSource> = (0..6)
        .map(|n| feed(&format!("Slow {n}"), format!("http://{slow_addr}/{n}")))
        .collect();
    let fast_feed = feed("Fast", format!("http://{fast_addr}/"));
    let fast = async {
        let outcome = fetcher.fetch(&fast_feed, Validators::default()).await;
        (outcome, slow.finished.load(Ordering::SeqCst))
    };
    let slows = futures::future::join_all(
        slow_feeds
            .iter()
            .map(|f| fetcher.fetch(f, Validators::default())),
    );
    let ((fast_outcome, slow_done_before_fast), slow_outcomes) = tokio::join!(fast, slows);
    assert!(
        matches!(fast_outcome, FetchOutcome::Fetched { .. }),
        "{fast_outcome:?}"
    );
    assert_eq!(
        slow_done_before_fast, 0,
        "the fast host waited for the slow one"
    );
    for outcome in &slow_outcomes {
        assert!(
            matches!(outcome, FetchOutcome::Fetched { .. }),
            "{outcome:?}"
        );
    }
    assert_eq!(
        slow.most.load(Ordering::SeqCst),
        2,
        "connections to one host at once"
    );
}
