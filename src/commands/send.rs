//! `herald send [--dry-run] [--to EMAIL] [--retry-ambiguous]`.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::Exit;
use crate::app::lease::run_id;
use crate::app::send::{SendOutcome, SendRequest};
use crate::app::{App, AppError, Progress, SendSummary};
use crate::cli::SendArgs;
use crate::domain::EmailAddress;
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
    if args.dry_run || args.to.is_some() {
        let glossary = app.glossary()?;
        let renderer = app.renderer()?;
        return preview_send(app, &args, &glossary, &renderer).await;
    }
    let run = run_id("send", app.now());
    if !app.take_sender_lease(&run).await? {
        return Err(AppError::LeaseHeld.into());
    }
    let heartbeat = app.heartbeat(&run);
    let result = send(app, &args, &run).await;
    drop(heartbeat);
    app.release_sender_lease(&run).await?;
    result
}

async fn send(app: &App, args: &SendArgs, run: &str) -> anyhow::Result<Exit> {
    let reporter = Reporter::new();
    let request = SendRequest {
        run_id: run,
        slot: None,
        retry_ambiguous: args.retry_ambiguous,
        progress: &reporter,
    };
    let report = app
        .send_now(request, async {
            if let Err(e) = tokio::signal::ctrl_c().await {
                tracing::warn!(error = %e, "cannot listen for ctrl-c");
                std::future::pending::<()>().await;
            }
        })
        .await?;
    if args.retry_ambiguous {
        crate::say!(
            "{} ambiguous deliveries put back to pending",
            report.retried
        );
    }
    let (summary, subject, resumed) = match report.outcome {
        SendOutcome::SmtpUnreachable { reason } => {
            crate::say!(
                "SMTP server unreachable ({reason}): no issue was frozen; run `herald send` again when it answers"
            );
            return Ok(Exit::Pending);
        }
        SendOutcome::FrozenForReview { number, goes_out } => {
            let local = goes_out.with_timezone(&app.config().schedule.timezone);
            crate::say!(
                "issue #{number} is frozen for review: the editors got a review copy, and it goes out at {} \
                 (`herald send` again then, or `herald run`; `herald issues release {number}` approves it sooner)",
                local.format("%Y-%m-%d %H:%M %Z")
            );
            return Ok(Exit::Success);
        }
        SendOutcome::Exhausted { cycle } => return Err(AppError::Exhausted { cycle }.into()),
        SendOutcome::NoTerms => return Err(AppError::NoTerms.into()),
        SendOutcome::Held { number } => bail!(
            "issue #{number} is held by an editor: `herald issues release {number}` lets it go out"
        ),
        SendOutcome::Waiting { number, until } => bail!(
            "issue #{number} is frozen for review and goes out at {until}; `herald run` sends it then"
        ),
        SendOutcome::Interrupted { number } => {
            crate::say!(
                "interrupted before issue #{number} was delivered: run `herald send` again"
            );
            return Ok(Exit::Pending);
        }
        SendOutcome::Delivered {
            summary,
            subject,
            resumed,
            ..
        } => (summary, subject, resumed),
    };
    let n = summary.issue_number;
    if resumed {
        crate::say!("resuming issue #{n} ({subject})");
    } else {
        crate::say!("issue #{n}: {subject}");
    }
    print_summary(app, &summary);
    Ok(exit_for(&summary))
}

/// What `herald send` prints after a delivery run.
fn print_summary(app: &App, summary: &SendSummary) {
    let c = &summary.counts;
    crate::say!(
        "issue #{}: sent {}, failed permanently {}, bounced {}, pending {}, ambiguous {}, skipped {}",
        summary.issue_number,
        c.sent,
        c.failed,
        c.bounced,
        c.pending,
        summary.ambiguous,
        c.skipped
    );
    if let Transport::Outbox(dir) = app.transport() {
        crate::say!("messages written to {}", super::shown(dir).display());
    }
    if summary.ambiguous > 0 {
        crate::say!(
            "{} deliveries are ambiguous (sent, but no reply came, or a send was interrupted): see `herald issues show {n}`; \
             settle them with `herald issues resolve {n} --sent` or `--unsent`, or resend them with `herald send --retry-ambiguous`",
            summary.ambiguous,
            n = summary.issue_number
        );
    }
    if let Some(reason) = &summary.unreachable {
        crate::say!(
            "SMTP server unreachable ({reason}): the run stopped; {} deliveries are still pending, none counted as attempted. \
             Run `herald send` again when the server is back",
            c.pending
        );
    } else if c.pending > 0 {
        crate::say!(
            "{} deliveries are still pending: run `herald send` again to resume",
            c.pending
        );
    }
}

/// Exit 3 while anything is left to do (pending rows, an unreachable server, unresolved
/// ambiguous rows), 0 when the issue is done.
fn exit_for(summary: &SendSummary) -> Exit {
    if summary.unreachable.is_some() || summary.counts.pending > 0 || summary.ambiguous > 0 {
        Exit::Pending
    } else {
        Exit::Success
    }
}

/// `--dry-run` and `--to`: compose without recording.
async fn preview_send(
    app: &App,
    args: &SendArgs,
    glossary: &Glossary,
    renderer: &Renderer,
) -> anyhow::Result<Exit> {
    let now = app.now();
    let next = app.next_issue(glossary, renderer, now).await?;
    let (number, rendered, date) = (next.number, next.rendered, next.date);
    if let Some(to) = &args.to {
        let email = EmailAddress::parse(to).with_context(|| format!("--to `{to}`"))?;
        let message = crate::compose::test_copy(
            &rendered,
            app.sender(),
            &email,
            date,
            app.now().timestamp_millis(),
        )?;
        let reply = app.send_service_message(&email, &message).await?;
        crate::say!(
            "test copy of issue #{number} sent to {email} ({} bytes): {reply}",
            message.formatted().len()
        );
        return Ok(Exit::Success);
    }
    let sizes = app.dry_run_sizes(&rendered, date).await?;
    crate::say!("dry run of issue #{number}: {}", rendered.subject);
    crate::say!(
        "would send {} messages ({} bytes in all, largest {} bytes) to the confirmed subscribers in the store",
        sizes.messages,
        sizes.total_bytes,
        sizes.largest_bytes
    );
    crate::say!(
        "subscriber files in {} are imported first by a real send",
        super::shown(&app.config().subscribers_dir).display()
    );
    Ok(Exit::Success)
}
