//! `herald send [--dry-run] [--to EMAIL] [--retry-ambiguous]`.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use chrono::Utc;

use super::{Context, load_glossary, signing_key};
use crate::Exit;
use crate::cli::SendArgs;
use crate::compose::{Addressee, Sender, personal_message};
use crate::delivery::{self, DeliverySettings, Progress};
use crate::domain::{EmailAddress, SubscriberStatus};
use crate::mailer::{Mailer, SmtpSettings, Transport};
use crate::news::FeedFetcher;
use crate::next_issue::{self, Prepared};
use crate::render::Renderer;

use crate::daemon::{LEASE_TTL, SENDER_LEASE};

/// The transport the configuration asks for: SMTP when `HERALD_SMTP_URL` is set, else the
/// outbox.
///
/// # Errors
/// When the SMTP URL is malformed.
pub fn transport(config: &crate::config::Config) -> anyhow::Result<Transport> {
    Ok(match &config.secrets.smtp_url {
        Some(url) => Transport::Smtp(SmtpSettings::from_url(
            url,
            config.newsletter.from.email.domain(),
            config.delivery.timeout,
        )?),
        None => Transport::Outbox(config.delivery.outbox.clone()),
    })
}

/// Delivery settings from the configuration, for a run called `run_id`.
pub fn settings(config: &crate::config::Config, run_id: String) -> DeliverySettings {
    DeliverySettings {
        concurrency: config.delivery.concurrency,
        rate_per_second: config.delivery.rate_per_second,
        max_per_hour: config.delivery.max_per_hour,
        max_attempts: config.delivery.max_attempts,
        retry_base: config.delivery.retry_base,
        retry_max: config.delivery.retry_max,
        run_id,
    }
}

/// A name for this run, unique enough to tell runs apart in the ledger:
/// `KIND@HOST:PID:MILLIS`.
pub fn run_id(kind: &str, now: chrono::DateTime<Utc>) -> String {
    format!(
        "{kind}@{}:{}:{}",
        this_host(),
        std::process::id(),
        now.timestamp_millis()
    )
}

fn this_host() -> String {
    hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "localhost".into())
}

/// Whether a run id names a process on this host that no longer exists (it crashed or was
/// killed), so that its lease can be taken over at once instead of waiting for it to expire.
fn holder_is_dead(holder: &str) -> bool {
    let Some((_, rest)) = holder.split_once('@') else {
        return false;
    };
    let mut parts = rest.rsplitn(3, ':');
    let (_millis, pid, host) = (parts.next(), parts.next(), parts.next());
    match (host, pid.and_then(|p| p.parse::<u32>().ok())) {
        (Some(host), Some(pid)) if host == this_host() && pid != std::process::id() => {
            let proc_dir = std::path::Path::new("/proc");
            proc_dir.is_dir() && !proc_dir.join(pid.to_string()).exists()
        }
        _ => false,
    }
}

/// Takes (or renews) the lease `name` for `run`, taking it over from a dead process on this
/// host.
///
/// # Errors
/// A database error.
pub async fn take_lease(
    store: &crate::store::Store,
    name: &str,
    run: &str,
    now: chrono::DateTime<Utc>,
    ttl: Duration,
) -> anyhow::Result<bool> {
    if store.acquire_lease(name, run, now, now + ttl).await? {
        return Ok(true);
    }
    if let Some((holder, _)) = store.lease_holder(name).await?
        && holder_is_dead(&holder)
    {
        tracing::warn!(previous = %holder, "the previous sender on this host is gone: taking over its lease");
        return Ok(store.take_over_lease(name, &holder, run, now + ttl).await?);
    }
    Ok(false)
}

/// A progress bar on a terminal, a log line every few seconds otherwise.
struct Reporter {
    bar: Option<indicatif::ProgressBar>,
    last: Mutex<Instant>,
    started: Instant,
}

impl Reporter {
    fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {per_sec} ETA {eta}",
                )
                .expect("valid template"),
            );
            bar
        });
        Self {
            bar,
            last: Mutex::new(Instant::now()),
            started: Instant::now(),
        }
    }
}

impl Progress for Reporter {
    fn update(&self, done: u64, total: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(total);
            bar.set_position(done);
            return;
        }
        let mut last = self.last.lock().expect("not poisoned");
        if last.elapsed() >= Duration::from_secs(5) {
            *last = Instant::now();
            let rate = done as f64 / self.started.elapsed().as_secs_f64().max(0.001);
            tracing::info!(
                done,
                total,
                rate = format!("{rate:.0}/s"),
                "delivery progress"
            );
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

pub(super) async fn run(ctx: &Context, args: SendArgs) -> anyhow::Result<Exit> {
    let config = &ctx.config;
    let transport = transport(config)?;
    let smtp = matches!(transport, Transport::Smtp(_));
    // Over SMTP a real key is required; the outbox may use the development key.
    let key = signing_key(config, !smtp)?;
    let glossary = load_glossary(config)?;
    let renderer = Renderer::load(&config.templates_dir)
        .with_context(|| format!("loading templates from {}", config.templates_dir.display()))?;
    let store = ctx.store().await?;
    let fetcher = FeedFetcher::new(Default::default()).context("setting up the HTTP client")?;
    let mut sender = Sender::from_config(config);
    sender.dkim = crate::compose::load_dkim(config)?;
    let now = ctx.clock.now();

    if args.dry_run || args.to.is_some() {
        return preview_send(
            ctx, &args, &glossary, &renderer, &store, &fetcher, &sender, &key, transport,
        )
        .await;
    }

    let run = run_id("send", now);
    if !take_lease(&store, SENDER_LEASE, &run, now, LEASE_TTL).await? {
        bail!("another herald is sending (the sender lease is held); try again when it is done");
    }
    let heartbeat = {
        let (store, run, clock) = (store.clone(), run.clone(), ctx.clock.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(LEASE_TTL / 3).await;
                let now = clock.now();
                let _ = store
                    .acquire_lease(SENDER_LEASE, &run, now, now + LEASE_TTL)
                    .await;
            }
        })
    };
    let result = send(
        ctx, &args, &glossary, &renderer, &store, &fetcher, sender, key, transport, &run,
    )
    .await;
    heartbeat.abort();
    store.release_lease(SENDER_LEASE, &run).await?;
    store.close().await;
    result
}

#[allow(clippy::too_many_arguments)]
async fn send(
    ctx: &Context,
    args: &SendArgs,
    glossary: &crate::glossary::Glossary,
    renderer: &Renderer,
    store: &crate::store::Store,
    fetcher: &FeedFetcher,
    sender: Sender,
    key: crate::domain::SigningKey,
    transport: Transport,
    run: &str,
) -> anyhow::Result<Exit> {
    let config = &ctx.config;
    let now = ctx.clock.now();
    if args.retry_ambiguous {
        let n = store.retry_ambiguous(run, now).await?;
        println!("{n} ambiguous deliveries put back to pending");
    }
    let prepared = next_issue::prepare(
        config, glossary, renderer, store, fetcher, now, now, None, false,
    )
    .await?;
    let (issue, rendered, resumed) = match prepared {
        Prepared::Ready {
            issue,
            rendered,
            resumed,
        } => (issue, rendered, resumed),
        Prepared::Exhausted { cycle } => bail!(
            "no issue: every term was sent in cycle {cycle} and [schedule] on_exhausted is \"stop\"; \
             add terms to the glossary or set on_exhausted = \"restart\""
        ),
        Prepared::NoTerms => bail!("no issue: the glossary has no terms"),
        Prepared::Held { number } => bail!(
            "issue #{number} is held by an editor: `herald issues release {number}` lets it go out"
        ),
        Prepared::Waiting { number, until } => bail!(
            "issue #{number} is frozen for review and goes out at {until}; `herald run` sends it then"
        ),
    };
    if resumed {
        println!("resuming issue #{} ({})", issue.number, issue.subject);
    } else {
        println!("issue #{}: {}", issue.number, issue.subject);
    }
    let reporter = Reporter::new();
    let summary = delivery::deliver(
        store,
        ctx.clock.as_ref(),
        &issue,
        rendered,
        sender,
        key,
        transport.clone(),
        &settings(config, run.to_owned()),
        &reporter,
        async {
            let _ = tokio::signal::ctrl_c().await;
        },
    )
    .await?;
    let c = summary.counts;
    println!(
        "issue #{}: sent {}, failed permanently {}, bounced {}, pending {}, ambiguous {}, skipped {}",
        summary.issue_number, c.sent, c.failed, c.bounced, c.pending, summary.ambiguous, c.skipped
    );
    if let Transport::Outbox(dir) = &transport {
        println!("messages written to {}", super::shown(dir).display());
    }
    if summary.ambiguous > 0 {
        println!(
            "{} deliveries are ambiguous after an interrupted send: see `herald issues show {}`; \
             `herald send --retry-ambiguous` resends them",
            summary.ambiguous, summary.issue_number
        );
    }
    if c.pending > 0 {
        println!(
            "{} deliveries are still pending: run `herald send` again to resume",
            c.pending
        );
        return Ok(Exit::Pending);
    }
    Ok(Exit::Success)
}

/// `--dry-run` and `--to`: compose without recording.
#[allow(clippy::too_many_arguments)]
async fn preview_send(
    ctx: &Context,
    args: &SendArgs,
    glossary: &crate::glossary::Glossary,
    renderer: &Renderer,
    store: &crate::store::Store,
    fetcher: &FeedFetcher,
    sender: &Sender,
    key: &crate::domain::SigningKey,
    transport: Transport,
) -> anyhow::Result<Exit> {
    let config = &ctx.config;
    let now = ctx.clock.now();
    let (number, rendered, date) = match store.unfinished_issue().await? {
        Some(issue) => (
            issue.number,
            crate::render::RenderedIssue::from_frozen(
                issue.number,
                issue.subject,
                issue.preheader,
                issue.html,
                issue.text,
            ),
            issue.send_after.unwrap_or(issue.created_at),
        ),
        None => match next_issue::plan(config, glossary, store, fetcher, now, None).await? {
            next_issue::Planned::Ready { plan, .. } => {
                let rendered =
                    renderer.render_issue(&plan, &next_issue::newsletter_info(config))?;
                (plan.number, rendered, now)
            }
            next_issue::Planned::Exhausted { cycle } => {
                bail!("no issue: every term was sent in cycle {cycle}")
            }
            next_issue::Planned::NoTerms => bail!("no issue: the glossary has no terms"),
        },
    };
    if let Some(to) = &args.to {
        let email = EmailAddress::parse(to).with_context(|| format!("--to `{to}`"))?;
        let message = personal_message(
            "test",
            &rendered,
            sender,
            Addressee {
                id: 0,
                email: &email,
                name: "",
            },
            key,
            date,
        )?;
        let bytes = message.formatted();
        let reply = Mailer::send_once(&transport, &sender.from.email, &email, &bytes).await?;
        println!(
            "test copy of issue #{number} sent to {email} ({} bytes): {reply}",
            bytes.len()
        );
        return Ok(Exit::Success);
    }
    let recipients = store.subscribers(Some(SubscriberStatus::Confirmed)).await?;
    let (mut total, mut largest) = (0usize, 0usize);
    for s in &recipients {
        let email = EmailAddress::parse(&s.email)?;
        let bytes = personal_message(
            "issue",
            &rendered,
            sender,
            Addressee {
                id: s.id,
                email: &email,
                name: &s.name,
            },
            key,
            date,
        )?
        .formatted()
        .len();
        total += bytes;
        largest = largest.max(bytes);
    }
    println!("dry run of issue #{number}: {}", rendered.subject);
    println!(
        "would send {} messages ({} bytes in all, largest {} bytes) to the confirmed subscribers in the store",
        recipients.len(),
        total,
        largest
    );
    println!(
        "subscriber files in {} are imported first by a real send",
        super::shown(&config.subscribers_dir).display()
    );
    Ok(Exit::Success)
}
