//! `herald run`: the schedule and the web server, until shutdown.
//!
//! Front end. tokio-cron-scheduler only wakes the daemon (a repeated job of exactly
//! `poll_seconds`); what each wake-up does is one [`App::tick`] (which sends under the same
//! send policy as `herald send`), and the sender lease is renewed by the app's one heartbeat.
//! Beside the ticks run the web server (and the private `/metrics` listener), the content
//! reloader, the mail queue and, when configured, the bounce mailbox poller. Shutdown (SIGTERM, SIGINT, or the future a test
//! passes) stops claiming deliveries, finishes the messages in flight, closes the HTTP server
//! and releases the lease.

use std::future::Future;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::app::lease::run_id;
use crate::app::{App, AppError, TickOutcome};
use crate::clock::Clock;
use crate::config::Config;

/// Why the daemon could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    App(#[from] AppError),
    #[error("listening on {addr} ([http] listen): {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("the HTTP server: {0}")]
    Http(std::io::Error),
    #[error("the scheduler: {0}")]
    Scheduler(#[from] tokio_cron_scheduler::JobSchedulerError),
    #[error("releasing the sender lease: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// A daemon: the app, this daemon's id in leases and the ledger, and its shutdown switch.
pub struct Daemon {
    pub app: Arc<App>,
    /// This daemon's id in leases and the ledger.
    pub run_id: String,
    pub cancel: CancellationToken,
}

impl Daemon {
    /// Builds the app for a daemon called `run_id`.
    ///
    /// # Errors
    /// When the store cannot be opened.
    pub async fn new(
        config: Config,
        clock: Arc<dyn Clock>,
        run_id: String,
    ) -> Result<Self, AppError> {
        Ok(Self {
            app: Arc::new(App::open(config, clock).await?),
            run_id,
            cancel: CancellationToken::new(),
        })
    }

    /// One step of the schedule ([`App::tick`]).
    ///
    /// # Errors
    /// A store, template or glossary failure.
    pub async fn tick(&self) -> Result<TickOutcome, AppError> {
        self.app.tick(&self.run_id, &self.cancel).await
    }
}

/// Runs the daemon on `listener` until `shutdown` completes.
///
/// # Errors
/// When the scheduler or the HTTP server cannot start, or the lease cannot be released.
pub async fn run_with_listener(
    daemon: Daemon,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let daemon = Arc::new(daemon);
    // SIGHUP reloads the content; its handler is in place before anything is served, so a
    // reload right after start never meets the default action (ending the process).
    let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(DaemonError::Http)?;
    // Loaded before the first request is served.
    daemon.app.enable_content_cache();
    daemon.app.warn_about_sending_setup();
    let servers = serve_http(&daemon, listener).await?;
    let every =
        std::time::Duration::from_secs(u64::from(daemon.app.config().schedule.poll_seconds));
    let (mut scheduler, wake_rx) = wake_ups(every).await?;
    let (watcher, reloader) = watch_and_reload(&daemon, hangup);
    // Confirmation and welcome emails, queued by the web requests.
    let mail_queue = {
        let app = daemon.app.clone();
        let cancel = daemon.cancel.clone();
        tokio::spawn(async move { app.run_mail_queue(cancel).await })
    };
    let bounce_poller = poll_bounce_mailbox(&daemon);
    // The heartbeat keeps the lease while a long send runs.
    let heartbeat = daemon.app.heartbeat(&daemon.run_id);
    let ticker = tick_on_wake_ups(&daemon, wake_rx);

    shutdown.await;
    info!("shutting down: finishing messages in flight");
    daemon.cancel.cancel();
    ended(ticker.await, "the scheduler task");
    drop(heartbeat);
    drop(watcher);
    ended(reloader.await, "the content reloader");
    ended(mail_queue.await, "the mail queue task");
    if let Some(poller) = bounce_poller {
        ended(poller.await, "the bounce mailbox task");
    }
    if let Err(e) = scheduler.shutdown().await {
        warn!(error = %e, "stopping the scheduler");
    }
    for server in servers {
        match server.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "an HTTP server stopped with an error"),
            Err(e) => warn!(error = %e, "an HTTP server task ended abnormally"),
        }
    }
    daemon.app.release_sender_lease(&daemon.run_id).await?;
    daemon.app.close().await;
    info!("stopped");
    Ok(())
}

/// Logs a background task that panicked.
fn ended(joined: Result<(), tokio::task::JoinError>, what: &str) {
    if let Err(e) = joined {
        warn!(error = %e, "{what} ended abnormally");
    }
}

/// An HTTP server task.
type ServerTask = tokio::task::JoinHandle<std::io::Result<()>>;

/// Serves the web pages on `listener`, and `/metrics` without a token on a private address of
/// its own when `[http] metrics_listen` says so.
///
/// # Errors
/// When the metrics address cannot be bound.
async fn serve_http(
    daemon: &Arc<Daemon>,
    listener: tokio::net::TcpListener,
) -> Result<Vec<ServerTask>, DaemonError> {
    let addr = listener.local_addr().map_err(DaemonError::Http)?;
    let http = &daemon.app.config().http;
    let fd_limit = crate::http::server::raise_fd_limit();
    let limits = crate::http::server::Limits {
        header_timeout: http.header_timeout,
        max_connections: http.max_connections,
    }
    .fitted_to(fd_limit);
    let router = crate::http::router(daemon.app.clone());
    let mut servers = vec![tokio::spawn(crate::http::server::serve(
        listener,
        router,
        limits,
        daemon.cancel.clone(),
    ))];
    info!(
        %addr,
        run = %daemon.run_id,
        max_connections = limits.max_connections,
        open_file_limit = ?fd_limit,
        "serving HTTP"
    );
    if let Some(metrics_addr) = http.metrics_listen {
        let listener = tokio::net::TcpListener::bind(metrics_addr)
            .await
            .map_err(|source| DaemonError::Listen {
                addr: metrics_addr,
                source,
            })?;
        info!(addr = %listener.local_addr().map_err(DaemonError::Http)?, "serving /metrics");
        let router = crate::http::metrics_router(daemon.app.clone());
        let cancel = daemon.cancel.clone();
        servers.push(tokio::spawn(crate::http::server::serve(
            listener, router, limits, cancel,
        )));
    }
    Ok(servers)
}

/// The glossary, templates and curated links, in memory: reloaded when a file changes (a
/// burst of events, as an editor saves, is one reload) and on SIGHUP. Returns the file
/// watcher (dropping it stops watching) and the reloader task.
fn watch_and_reload(
    daemon: &Arc<Daemon>,
    mut hangup: tokio::signal::unix::Signal,
) -> (
    Option<notify::RecommendedWatcher>,
    tokio::task::JoinHandle<()>,
) {
    let (changed_tx, mut changed_rx) = tokio::sync::mpsc::channel::<()>(1);
    let watcher = match crate::files::watch_content(daemon.app.config(), move || {
        // A full channel means a reload is pending already.
        let _already_pending = changed_tx.try_send(());
    }) {
        Ok(w) => Some(w),
        Err(e) => {
            warn!(error = %e, "cannot watch the content files; reload with SIGHUP");
            None
        }
    };
    let app = daemon.app.clone();
    let cancel = daemon.cancel.clone();
    let reloader = tokio::spawn(async move {
        loop {
            tokio::select! {
                Some(()) = changed_rx.recv() => {
                    // Let the burst of events an editor's save makes settle.
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                    while changed_rx.try_recv().is_ok() {}
                    info!("content files changed: reloading");
                }
                Some(()) = hangup.recv() => info!("SIGHUP: reloading the content"),
                () = cancel.cancelled() => break,
            }
            app.reload_content();
        }
    });
    (watcher, reloader)
}

/// The bounce mailbox, read every `imap_poll_seconds` when `[bounces] imap_url` is set.
fn poll_bounce_mailbox(daemon: &Arc<Daemon>) -> Option<tokio::task::JoinHandle<()>> {
    daemon.app.config().bounces.imap.as_ref()?;
    let app = daemon.app.clone();
    let cancel = daemon.cancel.clone();
    let every = app.config().bounces.imap_poll;
    Some(tokio::spawn(async move {
        loop {
            if let Err(e) = app.poll_bounce_mailbox().await {
                warn!(error = %e, "reading the bounce mailbox failed; trying again at the next poll");
            }
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = cancel.cancelled() => break,
            }
        }
    }))
}

/// One tick at start and one at every wake-up, until the daemon stops. A tick that did
/// nothing logs nothing.
fn tick_on_wake_ups(
    daemon: &Arc<Daemon>,
    mut wake_rx: tokio::sync::mpsc::Receiver<()>,
) -> tokio::task::JoinHandle<()> {
    let d = daemon.clone();
    tokio::spawn(async move {
        loop {
            match d.tick().await {
                // An unreachable SMTP server is reported once per outage by the app.
                Ok(
                    TickOutcome::Idle | TickOutcome::Standby | TickOutcome::SmtpUnreachable { .. },
                ) => {}
                Ok(outcome) => info!(?outcome, "tick"),
                Err(e) => {
                    warn!(error = %e, "tick failed; trying again at the next wake-up")
                }
            }
            tokio::select! {
                got = wake_rx.recv() => if got.is_none() { break },
                () = d.cancel.cancelled() => break,
            }
        }
    })
}

/// Starts the scheduler that wakes the daemon every `every` exactly (a repeated job, not a
/// cron expression: 7 s must not become a minute), and returns it with the wake-ups it
/// sends. Only the wake-ups: the due times are computed by `schedule` at each tick.
///
/// # Errors
/// When the scheduler cannot be created or started.
async fn wake_ups(
    every: std::time::Duration,
) -> Result<
    (
        tokio_cron_scheduler::JobScheduler,
        tokio::sync::mpsc::Receiver<()>,
    ),
    DaemonError,
> {
    let (wake_tx, wake_rx) = tokio::sync::mpsc::channel::<()>(1);
    let scheduler = tokio_cron_scheduler::JobScheduler::new().await?;
    scheduler
        .add(tokio_cron_scheduler::Job::new_repeated_async(
            every,
            move |_, _| {
                let tx = wake_tx.clone();
                Box::pin(async move {
                    // A full channel means a wake-up is already pending: nothing is lost.
                    if let Err(tokio::sync::mpsc::error::TrySendError::Closed(())) = tx.try_send(())
                    {
                        warn!("the daemon stopped listening for wake-ups");
                    }
                })
            },
        )?)
        .await?;
    scheduler.start().await?;
    Ok((scheduler, wake_rx))
}

/// Runs the daemon on `[http] listen` until `shutdown` completes.
///
/// # Errors
/// As [`run_with_listener`], or when the address cannot be bound.
pub async fn run(
    config: Config,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let listen = config.http.listen;
    let run_id = run_id("daemon", clock.now());
    let daemon = Daemon::new(config, clock, run_id).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| DaemonError::Listen {
            addr: listen,
            source,
        })?;
    run_with_listener(daemon, listener, shutdown).await
}

/// Runs a delivery worker ([`App::work`]) until `shutdown` completes: the messages in flight
/// are finished, nothing new is claimed, and the worker's lease is released.
///
/// # Errors
/// When the store cannot be opened, or fails at start.
pub async fn run_worker(
    config: Config,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let id = run_id("worker", clock.now());
    let app = App::open(config, clock).await?;
    app.warn_about_sending_setup();
    let cancel = CancellationToken::new();
    let work = app.work(&id, &cancel);
    let mut work = std::pin::pin!(work);
    let result = tokio::select! {
        r = &mut work => r,
        () = shutdown => {
            info!("shutting down: finishing messages in flight");
            cancel.cancel();
            work.await
        }
    };
    app.close().await;
    result?;
    Ok(())
}
