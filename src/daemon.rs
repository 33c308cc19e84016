//! `herald run`: the schedule, the sender lease and the web server, until shutdown.
//!
//! tokio-cron-scheduler only wakes the daemon (every `poll_seconds`); due times are computed
//! by [`crate::schedule`] with croner and chrono-tz, so a send stays at the configured local
//! time across daylight-saving changes, and a slot missed while the daemon was down is caught
//! up (within `catch_up_hours`) instead of dropped. Each slot is recorded in the store under a
//! unique key, and an issue made for a slot carries that key (also unique), so one slot yields
//! at most one issue whatever restarts or extra daemons happen. Only the daemon holding the
//! sender lease (renewed by a heartbeat) acts; another waits and takes over when the lease
//! expires. Shutdown (SIGTERM, SIGINT) stops claiming deliveries, finishes the messages in
//! flight, closes the HTTP server and releases the lease.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::clock::Clock;
use crate::compose::Sender;
use crate::config::Config;
use crate::delivery::{self, Silent};
use crate::domain::{EmailAddress, Purpose};
use crate::http::{AppState, Health};
use crate::mailer::{Mailer, Transport};
use crate::news::FeedFetcher;
use crate::next_issue::{self, Prepared};
use crate::render::Renderer;
use crate::schedule::{self, SlotDecision};
use crate::store::Store;

/// The name of the lease that makes one sender at a time.
pub const SENDER_LEASE: &str = "sender";
/// How long a lease lasts without a heartbeat.
pub const LEASE_TTL: Duration = Duration::from_secs(60);

/// What one tick did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TickOutcome {
    /// Another daemon holds the sender lease.
    Standby,
    /// Nothing was due.
    Idle,
    /// An issue was delivered (or resumed); `finished` when no row is left pending.
    Delivered { number: u32, finished: bool },
    /// An issue was frozen for review and the editors were sent a copy.
    FrozenForReview { number: u32 },
    /// The latest slot was too old to send.
    Missed { slot: String },
    /// The glossary is exhausted (`on_exhausted = "stop"`) or empty.
    NoIssue { reason: String },
    /// The unfinished issue is held or waiting for its slot.
    Waiting { number: u32 },
}

/// The daemon's state: shared with the HTTP handlers.
pub struct Daemon {
    pub app: Arc<AppState>,
    /// This daemon's id in leases and the ledger.
    pub run_id: String,
    pub cancel: CancellationToken,
}

impl Daemon {
    /// Opens the store and prepares the transport, the signing key and the sender.
    ///
    /// # Errors
    /// When the store cannot be opened, the SMTP URL is malformed, `HERALD_SECRET` is missing
    /// for SMTP, or the DKIM key cannot be read.
    pub async fn new(
        config: Config,
        clock: Arc<dyn Clock>,
        run_id: String,
    ) -> anyhow::Result<Self> {
        let store = Store::open(&config.store_url)
            .await
            .with_context(|| format!("opening the store {}", config.store_url))?;
        let transport = crate::commands::transport(&config)?;
        let key = crate::commands::signing_key(&config, !matches!(transport, Transport::Smtp(_)))?;
        let mut sender = Sender::from_config(&config);
        sender.dkim = crate::compose::load_dkim(&config)?;
        let health = Arc::new(Health::default());
        health
            .started
            .store(clock.now().timestamp(), Ordering::Relaxed);
        let app = Arc::new(AppState::new(
            config, store, clock, key, transport, sender, health,
        ));
        Ok(Self {
            app,
            run_id,
            cancel: CancellationToken::new(),
        })
    }

    fn config(&self) -> &Config {
        &self.app.config
    }

    /// Takes or renews the sender lease.
    async fn hold_lease(&self) -> anyhow::Result<bool> {
        let now = self.app.clock.now();
        crate::commands::take_lease(&self.app.store, SENDER_LEASE, &self.run_id, now, LEASE_TTL)
            .await
    }

    /// One step of the schedule: send what is due, freeze for review what is about to be, or
    /// nothing. Tests call it directly; [`run`] calls it on every wake-up.
    ///
    /// # Errors
    /// A store, template or glossary failure.
    pub async fn tick(&self) -> anyhow::Result<TickOutcome> {
        let app = &self.app;
        let now = app.clock.now();
        app.health
            .last_tick
            .store(now.timestamp(), Ordering::Relaxed);
        if !self.hold_lease().await? {
            return Ok(TickOutcome::Standby);
        }
        let config = self.config();
        let store = &app.store;

        // An unfinished issue comes first: resume it, or wait for its slot.
        if let Some(issue) = store.unfinished_issue().await? {
            if issue.status == "held" || issue.send_after.is_some_and(|t| t > now) {
                return Ok(TickOutcome::Waiting {
                    number: issue.number,
                });
            }
            return self.prepare_and_deliver(None, now).await;
        }

        let latest = schedule::latest_slot(&config.schedule.cron, config.schedule.timezone, now);
        let key = latest.map(schedule::slot_key);
        let handled = match &key {
            Some(k) => store.slot_recorded(k).await?,
            None => true,
        };
        let mut missed = None;
        match schedule::decide(latest, handled, now, config.schedule.catch_up_hours) {
            SlotDecision::Send(slot) => {
                let key = schedule::slot_key(slot);
                if !store.claim_slot(&key, slot, "claimed", "", now).await? {
                    return Ok(TickOutcome::Idle);
                }
                info!(slot = %key, "slot due: sending");
                return self.prepare_and_deliver(Some((key, slot)), now).await;
            }
            SlotDecision::Missed(slot) => {
                let key = schedule::slot_key(slot);
                if store
                    .claim_slot(
                        &key,
                        slot,
                        "missed",
                        &format!(
                            "noticed {} h late, beyond catch_up_hours",
                            (now - slot).num_hours()
                        ),
                        now,
                    )
                    .await?
                {
                    warn!(slot = %key, "a slot passed while the daemon was down, longer ago than catch_up_hours: skipped");
                    missed = Some(key);
                }
            }
            SlotDecision::Nothing => {}
        }

        if let Some(hours) = config.schedule.review_hours
            && let Some(next) =
                schedule::next_slot(&config.schedule.cron, config.schedule.timezone, now)
            && schedule::review_open(next, hours, now)
        {
            let key = schedule::slot_key(next);
            if !store.slot_recorded(&key).await?
                && store
                    .claim_slot(&key, next, "claimed", "frozen for review", now)
                    .await?
            {
                return self.freeze_for_review(&key, next, now).await;
            }
        }
        Ok(missed.map_or(TickOutcome::Idle, |slot| TickOutcome::Missed { slot }))
    }

    async fn tools(&self) -> anyhow::Result<(crate::glossary::Glossary, Renderer, FeedFetcher)> {
        let config = self.config();
        let glossary = crate::commands::load_glossary(config)?;
        let renderer = Renderer::load(&config.templates_dir)?;
        let fetcher = FeedFetcher::new(Default::default())?;
        Ok((glossary, renderer, fetcher))
    }

    async fn prepare_and_deliver(
        &self,
        slot: Option<(String, chrono::DateTime<chrono::Utc>)>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> anyhow::Result<TickOutcome> {
        let app = &self.app;
        let config = self.config();
        let (glossary, renderer, fetcher) = self.tools().await?;
        let issue_time = slot.as_ref().map_or(now, |(_, t)| *t);
        let prepared = next_issue::prepare(
            config,
            &glossary,
            &renderer,
            &app.store,
            &fetcher,
            now,
            issue_time,
            slot.as_ref().map(|(k, _)| k.as_str()),
            false,
        )
        .await;
        let prepared = match prepared {
            Ok(p) => p,
            Err(e) => {
                // Nothing was frozen: let the next tick try this slot again (within the
                // catch-up window), so fixing the cause is enough.
                if let Some((key, _)) = &slot {
                    app.store.forget_slot(key).await?;
                }
                return Err(e.into());
            }
        };
        let (issue, rendered) = match prepared {
            Prepared::Ready {
                issue, rendered, ..
            } => (issue, rendered),
            Prepared::Exhausted { cycle } => {
                let reason =
                    format!("every term was sent in cycle {cycle} and on_exhausted is \"stop\"");
                warn!("no issue: {reason}");
                if let Some((key, _)) = &slot {
                    app.store
                        .finish_slot(key, "exhausted", None, &reason, now)
                        .await?;
                }
                return Ok(TickOutcome::NoIssue { reason });
            }
            Prepared::NoTerms => {
                let reason = "the glossary has no terms".to_owned();
                if let Some((key, _)) = &slot {
                    app.store
                        .finish_slot(key, "failed", None, &reason, now)
                        .await?;
                }
                return Ok(TickOutcome::NoIssue { reason });
            }
            Prepared::Held { number } | Prepared::Waiting { number, .. } => {
                return Ok(TickOutcome::Waiting { number });
            }
        };
        let started = Instant::now();
        // Each delivery run has an id of its own, so rows this daemon deferred in an earlier
        // run are retried in this one.
        let run = format!("{}/{}", self.run_id, now.timestamp_millis());
        let settings = crate::commands::delivery_settings(config, run);
        let cancel = self.cancel.clone();
        let summary = delivery::deliver(
            &app.store,
            app.clock.as_ref(),
            &issue,
            rendered,
            app.sender.clone(),
            app.key.clone(),
            app.transport.clone(),
            &settings,
            &Silent,
            async move { cancel.cancelled().await },
        )
        .await?;
        app.health
            .last_send_ms
            .store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        let c = summary.counts;
        info!(
            issue = issue.number,
            sent = c.sent,
            failed = c.failed,
            bounced = c.bounced,
            pending = c.pending,
            ambiguous = summary.ambiguous,
            "delivery run finished"
        );
        let slot_key = slot.map(|(k, _)| k).or(issue.slot_key.clone());
        if let Some(key) = slot_key {
            let outcome = if summary.finished { "sent" } else { "claimed" };
            app.store
                .finish_slot(
                    &key,
                    outcome,
                    Some(issue.number),
                    &format!("sent {}, pending {}", c.sent, c.pending),
                    app.clock.now(),
                )
                .await?;
        }
        Ok(TickOutcome::Delivered {
            number: issue.number,
            finished: summary.finished,
        })
    }

    async fn freeze_for_review(
        &self,
        key: &str,
        slot: chrono::DateTime<chrono::Utc>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> anyhow::Result<TickOutcome> {
        let app = &self.app;
        let config = self.config();
        let (glossary, renderer, fetcher) = self.tools().await?;
        let prepared = next_issue::prepare(
            config,
            &glossary,
            &renderer,
            &app.store,
            &fetcher,
            now,
            slot,
            Some(key),
            true,
        )
        .await?;
        let Prepared::Ready {
            issue, rendered, ..
        } = prepared
        else {
            return Ok(TickOutcome::Idle);
        };
        let token = app
            .key
            .sign(Purpose::Hold, i64::from(issue.number), now.timestamp());
        let hold_url = format!("{}hold/{token}", config.newsletter.base_url);
        let local = slot
            .with_timezone(&config.schedule.timezone)
            .format("%A %-d %B %Y, %H:%M %Z");
        for editor in &config.schedule.editors {
            let personal = rendered.personalize(&crate::render::Recipient {
                name: "",
                email: editor.as_str(),
                unsubscribe_url: &format!("{}u/review-copy", config.newsletter.base_url),
            });
            let note = format!(
                "Review copy of issue #{} ({}). It goes out {local}.\nTo stop it, open {hold_url} or run `herald issues hold {}`.\n\n",
                issue.number, issue.subject, issue.number
            );
            let banner = format!(
                "<div style=\"font-family:sans-serif;background:#fef3c7;padding:12px;border:1px solid #f59e0b\">Review copy of issue #{}: it goes out {local}. <a href=\"{}\">Hold this issue</a></div>",
                issue.number,
                html_escape::encode_double_quoted_attribute(&hold_url)
            );
            let html = personal
                .html
                .replacen("<body>", &format!("<body>{banner}"), 1);
            let message = crate::compose::simple_message(
                &app.sender,
                editor,
                "",
                &format!("[Review] {}", issue.subject),
                &crate::compose::message_id(
                    "review",
                    issue.number,
                    0,
                    app.sender.from.email.domain(),
                ),
                now,
                format!("{note}{}", personal.text),
                html,
            )?;
            if let Err(e) = Mailer::send_once(
                &app.transport,
                &app.sender.from.email,
                editor,
                &message.formatted(),
            )
            .await
            {
                warn!(editor = %editor, error = %e, "could not send the review copy");
            }
        }
        info!(issue = issue.number, slot = %key, "frozen for review; editors notified");
        Ok(TickOutcome::FrozenForReview {
            number: issue.number,
        })
    }
}

/// Sends the welcome email with the latest issue (or, before the first issue, the term the
/// next issue will feature) to a newly confirmed subscriber.
///
/// # Errors
/// When the glossary or templates fail, or the message cannot be sent.
pub async fn send_welcome(
    s: &AppState,
    id: i64,
    email: &EmailAddress,
    name: &str,
) -> anyhow::Result<()> {
    let config = &s.config;
    let glossary = crate::glossary::load_dir(&config.glossary_dir).0;
    let renderer = Renderer::load(&config.templates_dir)?;
    let latest = s
        .store
        .issues()
        .await?
        .into_iter()
        .find(|i| matches!(i.status.as_str(), "sending" | "sent"));
    let (number, term, links, date) = match &latest {
        Some(issue) => {
            let term = crate::domain::Slug::parse(&issue.term)
                .ok()
                .and_then(|slug| glossary.get(&slug).cloned());
            (
                issue.number,
                term,
                s.store.issue_links(issue.id).await?,
                issue.send_after.unwrap_or(issue.created_at),
            )
        }
        None => (0, None, Vec::new(), s.clock.now()),
    };
    let term = match term {
        Some(t) => t,
        None => {
            let history = s.store.term_history().await?;
            match crate::selection::next_term(
                &glossary,
                &history,
                &[],
                config.schedule.on_exhausted,
            ) {
                crate::selection::TermChoice::Next { term, .. } => term.clone(),
                _ => anyhow::bail!("no glossary term for the welcome email"),
            }
        }
    };
    let plan = crate::render::IssuePlan {
        number,
        date,
        related: next_issue::related_names(&glossary, &term),
        term,
        links,
    };
    let (html, txt) = if renderer.has("welcome.html") {
        ("welcome.html", "welcome.txt")
    } else {
        ("issue.html", "issue.txt")
    };
    let mut rendered =
        renderer.render_pair(&plan, &next_issue::newsletter_info(config), html, txt)?;
    rendered.subject = format!("Welcome to {}", config.newsletter.name);
    let message = crate::http::welcome_message(s, &rendered, id, email, name)?;
    Mailer::send_once(
        &s.transport,
        &s.sender.from.email,
        email,
        &message.formatted(),
    )
    .await?;
    info!(subscriber = id, "sent the welcome email");
    Ok(())
}

/// The next issue's HTML as it would be sent, for `GET /preview`: records nothing.
///
/// # Errors
/// When the glossary, templates or store fail.
pub async fn preview_html(s: &AppState) -> anyhow::Result<String> {
    let config = &s.config;
    let glossary = crate::commands::load_glossary(config)?;
    let renderer = Renderer::load(&config.templates_dir)?;
    let fetcher = FeedFetcher::new(Default::default())?;
    let now = s.clock.now();
    let date =
        schedule::next_slot(&config.schedule.cron, config.schedule.timezone, now).unwrap_or(now);
    let rendered = match s.store.unfinished_issue().await? {
        Some(issue) => crate::render::RenderedIssue::from_frozen(
            issue.number,
            issue.subject,
            issue.preheader,
            issue.html,
            issue.text,
        ),
        None => match next_issue::plan(config, &glossary, &s.store, &fetcher, date, None).await? {
            next_issue::Planned::Ready { plan, .. } => {
                renderer.render_issue(&plan, &next_issue::newsletter_info(config))?
            }
            next_issue::Planned::Exhausted { cycle } => {
                anyhow::bail!("every term was sent in cycle {cycle}")
            }
            next_issue::Planned::NoTerms => anyhow::bail!("the glossary has no terms"),
        },
    };
    Ok(rendered
        .personalize(&crate::render::Recipient {
            name: "Editor",
            email: "editor@example.com",
            unsubscribe_url: &format!("{}u/preview", config.newsletter.base_url),
        })
        .html)
}

/// Runs the daemon on `listener` until `shutdown` completes.
///
/// # Errors
/// When the store, the scheduler or the HTTP server cannot start.
pub async fn run_with_listener(
    daemon: Daemon,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let daemon = Arc::new(daemon);
    let addr = listener.local_addr()?;
    let app = crate::http::router(daemon.app.clone());
    let http_cancel = daemon.cancel.clone();
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(async move { http_cancel.cancelled().await })
        .await
    });
    info!(%addr, run = %daemon.run_id, "serving HTTP");

    // tokio-cron-scheduler only wakes us; due times are computed by `schedule`.
    let (wake_tx, mut wake_rx) = tokio::sync::mpsc::channel::<()>(1);
    let mut scheduler = tokio_cron_scheduler::JobScheduler::new().await?;
    let poll = daemon.config().schedule.poll_seconds;
    let every = if poll < 60 && 60 % poll == 0 {
        format!("*/{poll} * * * * *")
    } else {
        "0 * * * * *".to_owned()
    };
    scheduler
        .add(tokio_cron_scheduler::Job::new_async(
            every.as_str(),
            move |_, _| {
                let tx = wake_tx.clone();
                Box::pin(async move {
                    let _ = tx.try_send(());
                })
            },
        )?)
        .await?;
    scheduler.start().await?;

    // The heartbeat keeps the lease while a long send runs.
    let beat = {
        let d = daemon.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(LEASE_TTL / 4).await;
                let now = d.app.clock.now();
                if let Ok(Some((holder, _))) = d.app.store.lease_holder(SENDER_LEASE).await
                    && holder == d.run_id
                {
                    let _ = d
                        .app
                        .store
                        .acquire_lease(SENDER_LEASE, &d.run_id, now, now + LEASE_TTL)
                        .await;
                }
            }
        })
    };

    let ticker = {
        let d = daemon.clone();
        tokio::spawn(async move {
            loop {
                match d.tick().await {
                    Ok(TickOutcome::Idle | TickOutcome::Standby) => {}
                    Ok(outcome) => info!(?outcome, "tick"),
                    Err(e) => {
                        warn!(error = %format!("{e:#}"), "tick failed; trying again at the next wake-up")
                    }
                }
                tokio::select! {
                    got = wake_rx.recv() => if got.is_none() { break },
                    () = d.cancel.cancelled() => break,
                }
            }
        })
    };

    shutdown.await;
    info!("shutting down: finishing messages in flight");
    daemon.cancel.cancel();
    let _ = ticker.await;
    beat.abort();
    let _ = scheduler.shutdown().await;
    let _ = server.await;
    daemon
        .app
        .store
        .release_lease(SENDER_LEASE, &daemon.run_id)
        .await?;
    daemon.app.store.close().await;
    info!("stopped");
    Ok(())
}

/// Runs the daemon on `[http] listen` until `shutdown` completes.
///
/// # Errors
/// As [`run_with_listener`], or when the address cannot be bound.
pub async fn run(
    config: Config,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let listen = config.http.listen;
    let run_id = crate::commands::run_id("daemon", clock.now());
    let daemon = Daemon::new(config, clock, run_id).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen} ([http] listen)"))?;
    run_with_listener(daemon, listener, shutdown).await
}
