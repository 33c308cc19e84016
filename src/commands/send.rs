//! `herald send [--dry-run] [--to EMAIL] [--retry-ambiguous]`.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::Exit;
use crate::app::lease::run_id;
use crate::app::{App, AppError, Prepared, Progress};
use crate::cli::SendArgs;
use crate::compose::{Addressee, personal_message};
use crate::domain::{EmailAddress, SubscriberStatus};
use crate::glossary::Glossary;
use crate::mailer::Transport;
use crate::render::Renderer;

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

pub(super) async fn run(app: &App, args: SendArgs) -> anyhow::Result<Exit> {
    app.warn_if_development_key();
    app.warn_about_sending_setup();
    let glossary = app.glossary()?;
    let renderer = app.renderer()?;
    if args.dry_run || args.to.is_some() {
        return preview_send(app, &args, &glossary, &renderer).await;
    }
    let run = run_id("send", app.clock.now());
    if !app.take_sender_lease(&run).await? {
        return Err(AppError::LeaseHeld.into());
    }
    let heartbeat = app.heartbeat(&run);
    let result = send(app, &args, &glossary, &renderer, &run).await;
    drop(heartbeat);
    app.release_sender_lease(&run).await?;
    result
}

async fn send(
    app: &App,
    args: &SendArgs,
    glossary: &Glossary,
    renderer: &Renderer,
    run: &str,
) -> anyhow::Result<Exit> {
    let now = app.clock.now();
    // A damaged database could lose the ledger's record of who got the issue: stop first.
    app.store.integrity_check().await?;
    if args.retry_ambiguous {
        let n = app.store.retry_ambiguous(run, now).await?;
        println!("{n} ambiguous deliveries put back to pending");
    }
    // A new issue is frozen only when the SMTP server answers: an outage must not freeze an
    // audience nobody can reach yet.
    if app.store.unfinished_issue().await?.is_none()
        && let Err(e) = app.check_smtp().await
    {
        println!(
            "SMTP server unreachable ({e}): no issue was frozen; run `herald send` again when it answers"
        );
        return Ok(Exit::Pending);
    }
    // With a review window, nothing reaches subscribers before the editors had their copy
    // for `review_hours`: a new issue is frozen for review instead of sent.
    if let Some(hours) = app.config.schedule.review_hours
        && app.store.unfinished_issue().await?.is_none()
    {
        let goes_out = now + chrono::Duration::hours(i64::from(hours));
        if let Some(number) = app.freeze_for_review(None, now, goes_out, now).await? {
            let local = goes_out.with_timezone(&app.config.schedule.timezone);
            println!(
                "issue #{number} is frozen for review: the editors got a review copy, and it goes out at {} \
                 (`herald send` again then, or `herald run`; `herald issues release {number}` approves it sooner)",
                local.format("%Y-%m-%d %H:%M %Z")
            );
            return Ok(Exit::Success);
        }
    }
    let prepared = app
        .prepare(glossary, renderer, now, now, None, None)
        .await?;
    let (issue, rendered, resumed) = match prepared {
        Prepared::Ready {
            issue,
            rendered,
            resumed,
            ..
        } => (issue, rendered, resumed),
        Prepared::Exhausted { cycle } => return Err(AppError::Exhausted { cycle }.into()),
        Prepared::NoTerms => return Err(AppError::NoTerms.into()),
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
    let summary = app
        .deliver(&issue, rendered, run.to_owned(), &reporter, async {
            if let Err(e) = tokio::signal::ctrl_c().await {
                tracing::warn!(error = %e, "cannot listen for ctrl-c");
                std::future::pending::<()>().await;
            }
        })
        .await?;
    let c = summary.counts;
    println!(
        "issue #{}: sent {}, failed permanently {}, bounced {}, pending {}, ambiguous {}, skipped {}",
        summary.issue_number, c.sent, c.failed, c.bounced, c.pending, summary.ambiguous, c.skipped
    );
    if let Transport::Outbox(dir) = &app.transport {
        println!("messages written to {}", super::shown(dir).display());
    }
    if summary.ambiguous > 0 {
        println!(
            "{} deliveries are ambiguous (sent, but no reply came, or a send was interrupted): see `herald issues show {n}`; \
             settle them with `herald issues resolve {n} --sent` or `--unsent`, or resend them with `herald send --retry-ambiguous`",
            summary.ambiguous,
            n = summary.issue_number
        );
    }
    if let Some(reason) = &summary.unreachable {
        println!(
            "SMTP server unreachable ({reason}): the run stopped; {} deliveries are still pending, none counted as attempted. \
             Run `herald send` again when the server is back",
            c.pending
        );
        return Ok(Exit::Pending);
    }
    if c.pending > 0 {
        println!(
            "{} deliveries are still pending: run `herald send` again to resume",
            c.pending
        );
        return Ok(Exit::Pending);
    }
    if summary.ambiguous > 0 {
        // Unresolved: the run is not a clean success.
        return Ok(Exit::Pending);
    }
    Ok(Exit::Success)
}

/// `--dry-run` and `--to`: compose without recording.
async fn preview_send(
    app: &App,
    args: &SendArgs,
    glossary: &Glossary,
    renderer: &Renderer,
) -> anyhow::Result<Exit> {
    let now = app.clock.now();
    let next = app.next_issue(glossary, renderer, now).await?;
    let (number, rendered, date) = (next.number, next.rendered, next.date);
    if let Some(to) = &args.to {
        let email = EmailAddress::parse(to).with_context(|| format!("--to `{to}`"))?;
        let message = crate::compose::test_copy(
            &rendered,
            &app.sender,
            &email,
            date,
            app.clock.now().timestamp_millis(),
        )?;
        let reply = app.send_service_message(&email, &message).await?;
        println!(
            "test copy of issue #{number} sent to {email} ({} bytes): {reply}",
            message.formatted().len()
        );
        return Ok(Exit::Success);
    }
    let recipients = app
        .store
        .subscribers(Some(SubscriberStatus::Confirmed))
        .await?;
    let (mut total, mut largest) = (0usize, 0usize);
    for s in &recipients {
        let bytes = personal_message(
            "issue",
            &rendered,
            &app.sender,
            Addressee {
                id: s.id,
                email: &s.email,
                name: &s.name,
                first_name: "",
            },
            &app.key,
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
        super::shown(&app.config.subscribers_dir).display()
    );
    Ok(Exit::Success)
}
