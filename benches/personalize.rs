//! The per-subscriber path: personalise a rendered issue and build the complete MIME message
//! (`cargo bench --bench personalize`). Target: at least 20,000 messages per second on one
//! core. Rendering and CSS inlining happen once per issue and are measured separately.

use std::path::Path;

use chrono::{TimeZone, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use herald::compose::{Addressee, Sender, personal_message};
use herald::domain::{EmailAddress, Mailbox, NewsLink, SigningKey};
use herald::render::{IssuePlan, NewsletterInfo};

fn rendered() -> herald::render::RenderedIssue {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (glossary, _) = herald::files::load_glossary(&root.join("glossary"));
    let term = glossary.find("transformer").expect("shipped term").clone();
    let links = (1..=5)
        .map(|n| NewsLink {
            title: format!("A news headline about language models, number {n}"),
            url: format!("https://news.example.com/2026/11/story-{n}"),
            canonical_url: format!("https://news.example.com/2026/11/story-{n}"),
            source: "Example News".into(),
            summary: "A two-sentence summary of the story, cut at a word boundary. It tells the reader why the story matters.".into(),
            published: None,
            curated: false,
        })
        .collect();
    let plan = IssuePlan {
        number: 12,
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
        .expect("templates load")
        .render_issue(&plan, &info)
        .expect("issue renders")
}

fn per_subscriber(c: &mut Criterion) {
    let rendered = rendered();
    let sender = Sender {
        from: Mailbox::parse("AI Glossary Weekly <weekly@example.com>").unwrap(),
        reply_to: Some(EmailAddress::parse("editors@example.com").unwrap()),
        list_name: "AI Glossary Weekly".into(),
        base_url: "https://news.example.com/".into(),
        dkim: None,
        bounce_domain: None,
    };
    let key = SigningKey::new("bench-key-0123456789abcdef0123456789abcdef");
    let date = Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, 0).unwrap();
    let emails: Vec<EmailAddress> = (0..1000)
        .map(|i| EmailAddress::parse(&format!("reader{i}@example.org")).unwrap())
        .collect();
    let size = personal_message(
        "issue",
        &rendered,
        &sender,
        Addressee {
            id: 1,
            email: &emails[0],
            name: "Ada Lovelace",
            first_name: "",
        },
        &key,
        date,
    )
    .unwrap()
    .formatted()
    .len();
    eprintln!("message size: {size} bytes");

    let mut group = c.benchmark_group("per_subscriber");
    group.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    group.bench_function("personalize_and_build_message", |b| {
        b.iter(|| {
            i = (i + 1) % emails.len();
            let message = personal_message(
                "issue",
                &rendered,
                &sender,
                Addressee {
                    id: i as i64,
                    email: &emails[i],
                    name: "Ada Lovelace",
                    first_name: "",
                },
                &key,
                date,
            )
            .unwrap();
            std::hint::black_box(message.formatted())
        })
    });
    group.finish();

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let renderer = herald::files::load_templates(&root.join("templates")).unwrap();
    let (glossary, _) = herald::files::load_glossary(&root.join("glossary"));
    let term = glossary.find("transformer").unwrap().clone();
    let plan = IssuePlan {
        number: 12,
        date,
        related: glossary.related_names(&term),
        term,
        links: Vec::new(),
    };
    let info = NewsletterInfo {
        name: "AI Glossary Weekly".into(),
        base_url: "https://news.example.com/".into(),
        timezone: "Europe/Berlin".parse().unwrap(),
        postal_address: None,
    };
    c.bench_function("per_issue/render_and_inline", |b| {
        b.iter(|| std::hint::black_box(renderer.render_issue(&plan, &info).unwrap()))
    });
}

criterion_group!(benches, per_subscriber);
criterion_main!(benches);
