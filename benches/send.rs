//! End-to-end send benchmark: one issue of about 20 KB to N subscribers through the whole
//! path (ledger in SQLite, render, compose, SMTP to a sink on loopback).
//!
//! `cargo bench --bench send` runs 10,000 and 100,000 subscribers against a minimal SMTP sink
//! started in this process. Environment:
//!
//! - `HERALD_BENCH_COUNTS`: comma-separated subscriber counts (default `10000,100000`);
//! - `HERALD_BENCH_SMTP_URL`: send to this server instead (e.g. Postfix's `smtp-sink`; see
//!   `benches/compare-smtp-source.sh`, which also times `smtp-source` in the same run);
//! - `HERALD_BENCH_CONCURRENCY`: SMTP connections (default 8).
//!
//! Prints messages per second and the process's peak RSS (VmHWM) after each count: the peak
//! must not grow with the number of subscribers, because the ledger is streamed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use herald::app::delivery::{DeliveryRequest, DeliverySettings, Silent, deliver};
use herald::clock::SystemClock;
use herald::compose::Sender;
use herald::config::SmtpSettings;
use herald::domain::Secret;
use herald::domain::{Mailbox, NewsLink, SigningKey};
use herald::mailer::Transport;
use herald::render::{IssuePlan, NewsletterInfo};
use herald::store::{FrozenIssue, Store};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// A minimal SMTP sink: accepts every message, keeps only counts.
async fn sink(messages: Arc<AtomicU64>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let messages = messages.clone();
            tokio::spawn(async move {
                socket.set_nodelay(true).ok();
                let (r, mut w) = socket.into_split();
                let mut r = BufReader::with_capacity(64 * 1024, r);
                let _ = w.write_all(b"220 sink ESMTP\r\n").await;
                let mut line = Vec::with_capacity(1024);
                loop {
                    line.clear();
                    if r.read_until(b'\n', &mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let upper = line.to_ascii_uppercase();
                    let reply: &[u8] = if upper.starts_with(b"EHLO") {
                        b"250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"
                    } else if upper.starts_with(b"DATA") {
                        if w.write_all(b"354 go ahead\r\n").await.is_err() {
                            return;
                        }
                        loop {
                            line.clear();
                            if r.read_until(b'\n', &mut line).await.unwrap_or(0) == 0 {
                                return;
                            }
                            if line == b".\r\n" {
                                break;
                            }
                        }
                        messages.fetch_add(1, Ordering::Relaxed);
                        b"250 2.0.0 queued\r\n"
                    } else if upper.starts_with(b"QUIT") {
                        let _ = w.write_all(b"221 bye\r\n").await;
                        return;
                    } else {
                        b"250 ok\r\n"
                    };
                    if w.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

async fn seed(store_url: &str, n: u64) {
    let pool = sqlx::SqlitePool::connect(store_url).await.unwrap();
    sqlx::query(
        "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < ?1)
         INSERT INTO subscribers (email, email_key, name, status, source, created_at, updated_at)
         SELECT 'reader' || i || '@example.org', 'reader' || i || '@example.org', 'Reader ' || i,
                'confirmed', 'bench', '2026-11-01T00:00:00Z', '2026-11-01T00:00:00Z' FROM c",
    )
    .bind(n as i64)
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
}

fn rendered() -> herald::render::RenderedIssue {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let (glossary, _) = herald::files::load_glossary(&root.join("glossary"));
    let term = glossary.find("transformer").unwrap().clone();
    let links = (1..=6)
        .map(|n| NewsLink {
            title: format!("Researchers publish a new result about efficient attention, part {n}"),
            url: format!("https://news.example.com/2026/11/efficient-attention-{n}"),
            canonical_url: format!("https://news.example.com/2026/11/efficient-attention-{n}"),
            source: "Example News".into(),
            summary: "A summary of the story in two or three sentences, cut at a word boundary so that it reads well. \
                      It says what happened, who did it and why it matters to people who build with language models, \
                      which is what a reader wants before deciding to click."
                .into(),
            published: None,
            curated: false,
        })
        .collect();
    let plan = IssuePlan {
        number: 1,
        date: Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, 0).unwrap(),
        related: glossary.related_names(&term),
        term,
        links,
    };
    let info = NewsletterInfo {
        name: "AI Glossary Weekly".into(),
        base_url: "https://news.example.com/".into(),
        timezone: "Europe/Berlin".parse().unwrap(),
        postal_address: None,
    };
    herald::files::load_templates(&root.join("templates"))
        .unwrap()
        .render_issue(&plan, &info)
        .unwrap()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let counts: Vec<u64> = std::env::var("HERALD_BENCH_COUNTS")
        .unwrap_or_else(|_| "10000,100000".into())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .collect();
    let concurrency: usize = std::env::var("HERALD_BENCH_CONCURRENCY")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(8);
    let sunk = Arc::new(AtomicU64::new(0));
    let url = match std::env::var("HERALD_BENCH_SMTP_URL") {
        Ok(url) => url,
        Err(_) => format!("smtp://{}", sink(sunk.clone()).await),
    };
    let rendered = rendered();
    let sender = Sender {
        from: Mailbox::parse("AI Glossary Weekly <weekly@example.com>").unwrap(),
        reply_to: None,
        list_name: "AI Glossary Weekly".into(),
        base_url: "https://news.example.com/".into(),
        dkim: None,
        bounce_domain: None,
    };
    let sample = herald::compose::personal_message(
        "issue",
        &rendered,
        &sender,
        herald::compose::Addressee {
            id: 1,
            email: &herald::domain::EmailAddress::parse("reader1@example.org").unwrap(),
            name: "Reader 1",
            first_name: "",
        },
        &SigningKey::new("bench"),
        Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, 0).unwrap(),
    )
    .unwrap()
    .formatted()
    .len();
    println!("target: {url}; concurrency {concurrency}; message size {sample} bytes");
    println!(
        "{:>10} {:>10} {:>12} {:>14}",
        "messages", "seconds", "messages/s", "peak RSS MiB"
    );
    for n in counts {
        let dir = tempfile::tempdir().unwrap();
        let store_url = format!("sqlite://{}", dir.path().join("bench.db").display());
        let store = Store::open(&store_url).await.unwrap();
        seed(&store_url, n).await;
        let frozen = FrozenIssue {
            number: 1,
            cycle: 1,
            term_slug: &herald::domain::Slug::parse("transformer").unwrap(),
            subject: &rendered.subject,
            preheader: &rendered.preheader,
            html: rendered.html_template(),
            text: rendered.text_template(),
            web_html: "",
            links: &[],
            slot_key: None,
            send_after: None,
            status: herald::domain::IssueStatus::Sending,
        };
        store
            .freeze_issue(&frozen, herald::clock::Clock::now(&SystemClock))
            .await
            .unwrap();
        let issue = store.issue(1).await.unwrap().unwrap();
        let transport = Transport::Smtp(
            SmtpSettings::from_url(
                &Secret::new(url.clone()),
                "example.com",
                Duration::from_secs(60),
            )
            .unwrap(),
        );
        let settings = DeliverySettings {
            concurrency,
            rate_per_second: None,
            max_per_hour: None,
            max_attempts: 3,
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_secs(1),
            run_id: "bench".into(),
            lease: None,
            wake_workers: false,
        };
        let started = Instant::now();
        let request = DeliveryRequest {
            store: &store,
            clock: &SystemClock,
            issue: &issue,
            rendered: rendered.clone(),
            sender: sender.clone(),
            key: SigningKey::new("bench"),
            transport,
            settings: &settings,
            progress: &Silent,
        };
        let summary = deliver(request, std::future::pending()).await.unwrap();
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(summary.counts.sent, n, "every message was accepted");
        println!(
            "{:>10} {:>10.2} {:>12.0} {:>14.1}",
            n,
            secs,
            n as f64 / secs,
            peak_rss_kib() as f64 / 1024.0
        );
        store.close().await;
    }
}
