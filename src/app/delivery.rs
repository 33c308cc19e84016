//! Use case: deliver a frozen issue to every recipient in its ledger, exactly once.
//!
//! One coordinator ([`DeliveryRun`]) owns the ledger; `concurrency` workers (a `JoinSet`) own
//! one SMTP connection each. The coordinator's loop is a single step repeated
//! ([`LedgerSession::step`], one [`LedgerBackend`](crate::store) per database): in one transaction
//! it records how the finished attempts ended and claims as many pending rows as there are
//! idle workers, then hands the claimed rows to the workers. So:
//!
//! - a row is claimed (pending -> sending, attempt counted) and committed before its SMTP
//!   transaction starts, and marked after the server answers;
//! - rows in `sending` never outnumber the workers, so a crash leaves at most `concurrency`
//!   ambiguous rows, which are reported and not resent unless asked;
//! - marks are grouped into the next claim's transaction, so the ledger costs one commit per
//!   batch of finished messages rather than two per message.
//!
//! Transient failures go back to pending with exponential backoff and jitter, up to
//! `max_attempts` in one run; rows still failing then wait for the next run. Permanent 5xx
//! replies mark the row failed; a 5.1.x reply also marks the subscriber bounced.

use std::collections::HashMap;
use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::lease::Fence;
use crate::clock::Clock;
use crate::compose::{Addressee, Sender, personal_message};
use crate::domain::{EmailAddress, SigningKey};
use crate::mailer::{Mailer, SendError, Transport};
use crate::render::RenderedIssue;
use crate::store::{
    Claimed, LedgerCounts, LedgerSession, Mark, RelayRate, StepRequest, Store, StoreError,
    StoredIssue,
};

/// How a send behaves.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    pub concurrency: usize,
    /// Messages per second across all workers; `None` is unlimited.
    pub rate_per_second: Option<f64>,
    pub max_per_hour: Option<u32>,
    /// Attempts per row in one run.
    pub max_attempts: u32,
    /// First retry delay; doubled for each further attempt.
    pub retry_base: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// Identifies this run in the ledger (`claimed_by`), so a crashed run's rows can be told
    /// from this run's.
    pub run_id: String,
    /// The holder of the lease this run delivers under (the sender's or a worker's), and the
    /// process's deadline for it: rows are claimed only while the database has the lease
    /// unexpired in this name, and no message starts after the deadline. `None` for a run
    /// under no lease (tests, benchmarks).
    pub lease: Option<(String, Fence)>,
    /// Wakes the delivery workers (PostgreSQL) when the run starts: the sender does, workers
    /// do not.
    pub wake_workers: bool,
}

/// What a worker task reports for a message it did not start because the lease deadline had
/// passed (the row goes back to pending, its attempt not counted).
const LEASE_EXPIRED: &str = "the lease expired before this message was started";

/// What happened to an issue's ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendSummary {
    pub issue_number: u32,
    pub counts: LedgerCounts,
    /// Rows a crashed earlier run left in `sending`.
    pub ambiguous: u64,
    /// Whether the issue is finished (no pending rows left).
    pub finished: bool,
    /// Why the run stopped early because no SMTP session could be opened (after
    /// [`UNREACHABLE_FAILURES`] failures in a row, or none succeeding within
    /// [`UNREACHABLE_WINDOW`]); the rows it could not send are still pending.
    pub unreachable: Option<String>,
}

/// How long a PostgreSQL step waits for more outcomes to carry (see `deliver`).
const GATHER: Duration = Duration::from_millis(2);

/// Consecutive failures to open an SMTP session after which a run stops.
pub const UNREACHABLE_FAILURES: u32 = 10;
/// A run in which no session opens for this long stops.
pub const UNREACHABLE_WINDOW: Duration = Duration::from_secs(60);

/// Progress reports for a terminal bar or log lines.
pub trait Progress: Send + Sync {
    /// `done` of `total` messages were delivered (or failed for good) in this run.
    fn update(&self, done: u64, total: u64);
    /// The run is over.
    fn finish(&self);
}

/// Progress that reports nothing.
#[derive(Debug, Default)]
pub struct Silent;

impl Progress for Silent {
    fn update(&self, _: u64, _: u64) {}
    fn finish(&self) {}
}

/// A delivery failure that stops the run (not a failed message, which is recorded instead).
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the outbox cannot be used: {0}")]
    Outbox(std::io::Error),
    #[error("every delivery worker stopped unexpectedly")]
    WorkersGone,
}

type Outcome = (i64, Result<String, SendError>);

/// The retry delay for a row's `attempt`-th failure in this run: exponential from `base`,
/// capped at `max`, with ±20% jitter derived from the row (so retries of many rows spread
/// out, and a test can predict them).
pub(super) fn backoff(base: Duration, max: Duration, delivery_id: i64, attempt: u32) -> Duration {
    let exp = base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
        .min(max);
    let mut h: u64 =
        0x9e37_79b9_7f4a_7c15 ^ (delivery_id as u64).wrapping_mul(31) ^ u64::from(attempt);
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    let factor = 0.8 + (h % 1000) as f64 / 2500.0; // 0.8 ..= 1.2
    exp.mul_f64(factor)
}

fn limiter(per_second: Option<f64>, per_hour: Option<u32>) -> Vec<Arc<DefaultDirectRateLimiter>> {
    let mut limiters = Vec::new();
    if let Some(rate) = per_second {
        let period = Duration::from_secs_f64(1.0 / rate);
        if let Some(q) = Quota::with_period(period) {
            limiters.push(Arc::new(RateLimiter::direct(q)));
        }
    }
    if let Some(n) = per_hour.and_then(NonZeroU32::new) {
        limiters.push(Arc::new(RateLimiter::direct(Quota::per_hour(n))));
    }
    limiters
}

/// Everything the workers share.
struct Shared {
    rendered: RenderedIssue,
    sender: Sender,
    key: SigningKey,
    date: DateTime<Utc>,
    limiters: Vec<Arc<DefaultDirectRateLimiter>>,
    fence: Option<Fence>,
}

/// What a delivery run is given.
pub struct DeliveryRequest<'a> {
    pub store: &'a Store,
    pub clock: &'a dyn Clock,
    /// The frozen issue to deliver.
    pub issue: &'a StoredIssue,
    /// Its rendering, as frozen.
    pub rendered: RenderedIssue,
    /// From, Reply-To, list name and DKIM signer.
    pub sender: Sender,
    /// Signs the unsubscribe and bounce addresses.
    pub key: SigningKey,
    pub transport: Transport,
    pub settings: &'a DeliverySettings,
    pub progress: &'a dyn Progress,
}

/// Sends the pending rows of `request.issue` until none is left for this run, or `shutdown`
/// completes (then the messages in flight are finished and nothing new is claimed). Its span
/// (issue, run) is the one every delivery path runs in: `App::deliver` and the workers' add
/// none of their own.
///
/// # Errors
/// [`DeliveryError`] when the store fails; failed messages are recorded, not returned.
#[tracing::instrument(skip_all, fields(issue = request.issue.number, run = %request.settings.run_id))]
pub async fn deliver(
    request: DeliveryRequest<'_>,
    shutdown: impl Future<Output = ()>,
) -> Result<SendSummary, DeliveryError> {
    let mut shutdown = std::pin::pin!(shutdown);
    DeliveryRun::start(request).await?.run(&mut shutdown).await
}

/// Whether the SMTP server can be reached: a server that cannot stops the run once, with one
/// message, instead of every row failing on its own.
struct Reachability {
    started: std::time::Instant,
    /// Whether any SMTP session opened in this run.
    sessions_opened: bool,
    /// Consecutive failures to open a session.
    failures_in_a_row: u32,
    /// Why the run stopped, once it did.
    unreachable: Option<String>,
}

impl Reachability {
    /// Counts one outcome; `Some(reason)` the first time the server is judged unreachable.
    fn note(&mut self, result: &Result<String, SendError>) -> Option<String> {
        match result {
            Err(SendError::Unreachable(e)) if e == LEASE_EXPIRED => None,
            Err(SendError::Unreachable(e)) => {
                self.failures_in_a_row += 1;
                let judged = self.failures_in_a_row >= UNREACHABLE_FAILURES
                    || (!self.sessions_opened && self.started.elapsed() >= UNREACHABLE_WINDOW);
                if self.unreachable.is_none() && judged {
                    self.unreachable = Some(e.clone());
                    return Some(e.clone());
                }
                None
            }
            // A reply, a 4xx, a dropped transaction or a message without a reply: a session
            // did open.
            _ => {
                self.sessions_opened = true;
                self.failures_in_a_row = 0;
                None
            }
        }
    }
}

/// One delivery run: the coordinator's state between steps. The coordinator owns the ledger;
/// a pool of `concurrency` workers owns one SMTP connection each. Each turn of [`run`]
/// collects the workers' outcomes, marks them and claims as many rows as there are idle
/// workers in one ledger step, and hands the claimed rows out.
///
/// [`run`]: DeliveryRun::run
struct DeliveryRun<'a> {
    store: &'a Store,
    clock: &'a dyn Clock,
    issue: &'a StoredIssue,
    settings: &'a DeliverySettings,
    progress: &'a dyn Progress,
    ledger: LedgerSession<'a>,
    shared: Arc<Shared>,
    /// The relay whose rate limits live in the database (PostgreSQL), as `host:port`.
    shared_relay: Option<String>,
    /// On PostgreSQL a step costs a round trip and a commit whatever it carries: it waits up
    /// to [`GATHER`] for the outcomes of every message in flight.
    gather: bool,
    workers: usize,
    jobs: mpsc::Sender<Claimed>,
    outcomes_rx: mpsc::Receiver<Outcome>,
    pool: JoinSet<()>,
    /// Outcomes received and not yet marked.
    outcomes: Vec<Outcome>,
    /// Attempts in this run of the rows that will be retried in it (only those, so memory
    /// stays flat however many subscribers there are).
    run_attempts: HashMap<i64, u32>,
    /// Messages handed to workers and not yet answered.
    in_flight: usize,
    /// Messages that ended for good in this run (sent or failed permanently).
    done: u64,
    /// Pending rows when the run started, for progress.
    total: u64,
    /// No new row is claimed: a shutdown, the lease's deadline, or an unreachable server.
    stopping: bool,
    reachability: Reachability,
}

impl<'a> DeliveryRun<'a> {
    /// Reports what an interrupted run left, wakes the workers if asked, and starts the pool.
    async fn start(request: DeliveryRequest<'a>) -> Result<Self, DeliveryError> {
        let DeliveryRequest {
            store,
            clock,
            issue,
            rendered,
            sender,
            key,
            transport,
            settings,
            progress,
        } = request;
        let ambiguous = store
            .ambiguous_count(issue.id, &settings.run_id, clock.now())
            .await?;
        if settings.wake_workers {
            store.notify_workers().await?;
        }
        if ambiguous > 0 {
            warn!(
                issue = issue.number,
                ambiguous,
                "rows were left in `sending` by an interrupted send: they may or may not have been delivered, \
                 so they are not resent; see `herald issues show {}` and `herald send --retry-ambiguous`",
                issue.number
            );
        }
        let total = store.ledger_counts(issue.id).await?.pending;
        // On PostgreSQL a relay's limits are shared by every process sending through it: they
        // are kept in the database, and tokens are taken before rows are claimed (so a
        // claimed row is started at once). Otherwise this process keeps them.
        let limited = settings.rate_per_second.is_some() || settings.max_per_hour.is_some();
        let shared_relay = match &transport {
            Transport::Smtp(smtp) if store.is_postgres() && limited => {
                Some(format!("{}:{}", smtp.host, smtp.port))
            }
            _ => None,
        };
        let ledger = store.ledger_session().await?;
        info!(issue = issue.number, pending = total, "delivering");
        let shared = Arc::new(Shared {
            rendered,
            sender,
            key,
            date: issue.send_after.unwrap_or(issue.created_at),
            limiters: if shared_relay.is_some() {
                Vec::new()
            } else {
                limiter(settings.rate_per_second, settings.max_per_hour)
            },
            fence: settings.lease.as_ref().map(|(_, fence)| fence.clone()),
        });
        let workers = settings.concurrency.max(1);
        let (jobs, outcomes_rx, pool) = start_workers(workers, &transport, &shared)?;
        Ok(Self {
            store,
            clock,
            issue,
            settings,
            progress,
            ledger,
            shared,
            shared_relay,
            gather: store.is_postgres(),
            workers,
            jobs,
            outcomes_rx,
            pool,
            outcomes: Vec::new(),
            run_attempts: HashMap::new(),
            in_flight: 0,
            done: 0,
            total,
            stopping: false,
            reachability: Reachability {
                started: std::time::Instant::now(),
                sessions_opened: false,
                failures_in_a_row: 0,
                unreachable: None,
            },
        })
    }

    /// Steps until no row is left for this run, or the run stops; then the summary.
    async fn run<F: Future<Output = ()>>(
        mut self,
        shutdown: &mut Pin<&mut F>,
    ) -> Result<SendSummary, DeliveryError> {
        loop {
            // A shutdown that came while nothing waited for it (before the first claim, or
            // while marks were being written) is noticed before anything new is claimed.
            if !self.stopping && futures::FutureExt::now_or_never(shutdown.as_mut()).is_some() {
                self.stop_for_shutdown();
            }
            self.collect(shutdown).await?;
            self.check_fence();
            self.tally();
            let marks = self.marks();
            let (free, token_wait) = self.capacity().await?;
            let claimed_any = self.step(&marks, free).await?;
            if self.in_flight > 0 || claimed_any {
                continue;
            }
            if self.stopping {
                break;
            }
            // The relay's shared limit: wait for its next token.
            if let Some(wait) = token_wait {
                self.pause(wait.max(Duration::from_millis(5)), shutdown)
                    .await;
                continue;
            }
            if !self.wait_for_retry(shutdown).await? {
                break;
            }
        }
        self.finish().await
    }

    fn stop_for_shutdown(&mut self) {
        self.stopping = true;
        info!(
            in_flight = self.in_flight,
            "stopping: finishing the messages in flight, claiming no more"
        );
    }

    /// Gathers the workers' outcomes: waits for at least one while messages are in flight
    /// (or for the shutdown), takes every one already there, and on PostgreSQL waits up to
    /// [`GATHER`] for the rest of those in flight.
    async fn collect<F: Future<Output = ()>>(
        &mut self,
        shutdown: &mut Pin<&mut F>,
    ) -> Result<(), DeliveryError> {
        if self.in_flight > 0 && self.outcomes.is_empty() {
            tokio::select! {
                got = self.outcomes_rx.recv() => match got {
                    Some(o) => self.outcomes.push(o),
                    // Every worker is gone (only a panic does that): stop, leaving the rows
                    // they held in `sending`, to be reported as ambiguous.
                    None => return Err(DeliveryError::WorkersGone),
                },
                () = shutdown.as_mut(), if !self.stopping => self.stop_for_shutdown(),
            }
        }
        while let Ok(o) = self.outcomes_rx.try_recv() {
            self.outcomes.push(o);
        }
        if self.gather && !self.stopping && !self.outcomes.is_empty() {
            let until = tokio::time::Instant::now() + GATHER;
            while self.outcomes.len() < self.in_flight {
                match tokio::time::timeout_at(until, self.outcomes_rx.recv()).await {
                    Ok(Some(o)) => self.outcomes.push(o),
                    Ok(None) | Err(_) => break,
                }
            }
        }
        self.in_flight -= self.outcomes.len();
        Ok(())
    }

    /// Past the lease deadline nothing new starts: another process may hold the lease now.
    fn check_fence(&mut self) {
        if !self.stopping && self.shared.fence.as_ref().is_some_and(Fence::expired) {
            self.stopping = true;
            warn!(
                issue = self.issue.number,
                in_flight = self.in_flight,
                "the lease expired: stopping before the next message"
            );
        }
    }

    /// Counts the collected outcomes: progress, and whether the server is reachable.
    fn tally(&mut self) {
        for (_, result) in &self.outcomes {
            if matches!(result, Ok(_) | Err(SendError::Permanent { .. })) {
                self.done += 1;
            }
            if let Some(e) = self.reachability.note(result) {
                warn!(
                    issue = self.issue.number,
                    "SMTP server unreachable: {e}; stopping this run, the rest stays pending"
                );
                self.stopping = true;
            }
        }
    }

    /// The collected outcomes as ledger marks.
    fn marks(&mut self) -> Vec<(i64, Mark)> {
        let now = self.clock.now();
        let (settings, attempts) = (self.settings, &mut self.run_attempts);
        self.outcomes
            .drain(..)
            .map(|(id, result)| {
                let tries = attempts.get(&id).copied().unwrap_or(1);
                let m = mark(result, id, tries, settings, now);
                if !matches!(
                    m,
                    Mark::Retry {
                        give_up_this_run: false,
                        ..
                    }
                ) {
                    attempts.remove(&id);
                }
                (id, m)
            })
            .collect()
    }

    /// How many rows may be claimed now (idle workers, and the relay's shared tokens), and
    /// how long to wait for the next token when none was granted.
    async fn capacity(&mut self) -> Result<(usize, Option<Duration>), DeliveryError> {
        let free = if self.stopping {
            0
        } else {
            self.workers - self.in_flight
        };
        let Some(relay) = self.shared_relay.as_deref().filter(|_| free > 0) else {
            return Ok((free, None));
        };
        let rate = RelayRate {
            per_second: self.settings.rate_per_second,
            per_hour: self.settings.max_per_hour,
        };
        let want = u32::try_from(free).unwrap_or(u32::MAX);
        let (granted, wait) = self
            .store
            .take_send_tokens(relay, rate, want, self.clock.now())
            .await?;
        Ok((granted as usize, (granted == 0).then_some(wait)))
    }

    /// One ledger step (the marks and up to `free` claims in one transaction), then the
    /// claimed rows go to the workers. Whether any row was claimed.
    async fn step(&mut self, marks: &[(i64, Mark)], free: usize) -> Result<bool, DeliveryError> {
        let lease = self
            .settings
            .lease
            .as_ref()
            .map(|(holder, _)| holder.as_str());
        let claimed = self
            .ledger
            .step(StepRequest {
                issue_id: self.issue.id,
                run: &self.settings.run_id,
                lease,
                marks,
                claim: free,
                now: self.clock.now(),
            })
            .await?;
        for (id, m) in marks {
            if let Mark::Retry { error, .. } = m {
                warn!(delivery = id, "transient failure, will retry: {error}");
            }
        }
        self.progress.update(self.done, self.total.max(self.done));
        let claimed_any = !claimed.is_empty();
        for job in claimed {
            *self.run_attempts.entry(job.delivery_id).or_default() += 1;
            self.in_flight += 1;
            if self.jobs.send(job).await.is_err() {
                break;
            }
        }
        Ok(claimed_any)
    }

    /// Sleeps for `wait`, or until the shutdown.
    async fn pause<F: Future<Output = ()>>(&mut self, wait: Duration, shutdown: &mut Pin<&mut F>) {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.as_mut(), if !self.stopping => self.stopping = true,
        }
    }

    /// Nothing in flight and nothing claimable now: waits for the next retry of this run.
    /// `false` when there is none (or the run was stopped meanwhile).
    async fn wait_for_retry<F: Future<Output = ()>>(
        &mut self,
        shutdown: &mut Pin<&mut F>,
    ) -> Result<bool, DeliveryError> {
        let next = self
            .store
            .next_retry_at(self.issue.id, &self.settings.run_id)
            .await?;
        let Some(at) = next else {
            return Ok(false);
        };
        let wait = (at - self.clock.now())
            .to_std()
            .unwrap_or_default()
            .min(self.settings.retry_max);
        self.pause(wait.max(Duration::from_millis(10)), shutdown)
            .await;
        Ok(!self.stopping)
    }

    /// Stops the workers, finishes the issue if no row is left, and sums the ledger up.
    async fn finish(self) -> Result<SendSummary, DeliveryError> {
        let Self {
            store,
            clock,
            issue,
            settings,
            progress,
            ledger,
            jobs,
            mut pool,
            reachability,
            ..
        } = self;
        drop(jobs);
        while let Some(joined) = pool.join_next().await {
            if let Err(e) = joined {
                warn!(error = %e, "a delivery worker ended abnormally");
            }
        }
        progress.finish();
        drop(ledger);
        let finished = store.finish_issue_if_done(issue.id, clock.now()).await?;
        let counts = store.ledger_counts(issue.id).await?;
        let ambiguous = store
            .ambiguous_count(issue.id, &settings.run_id, clock.now())
            .await?;
        Ok(SendSummary {
            issue_number: issue.number,
            counts,
            ambiguous,
            finished,
            unreachable: reachability.unreachable,
        })
    }
}

/// The workers' side of a run: where claimed rows go, where outcomes come from, the tasks.
type Workers = (mpsc::Sender<Claimed>, mpsc::Receiver<Outcome>, JoinSet<()>);

/// Starts `workers` tasks, each with an SMTP connection (or the outbox) of its own, taking
/// claimed rows from one channel and reporting outcomes on another.
fn start_workers(
    workers: usize,
    transport: &Transport,
    shared: &Arc<Shared>,
) -> Result<Workers, DeliveryError> {
    let (job_tx, job_rx) = mpsc::channel::<Claimed>(workers);
    let job_rx = Arc::new(Mutex::new(job_rx));
    let (out_tx, out_rx) = mpsc::channel::<Outcome>(workers * 2);
    let mut pool = JoinSet::new();
    for _ in 0..workers {
        let mut mailer = Mailer::new(transport.clone()).map_err(DeliveryError::Outbox)?;
        let (jobs, out, shared) = (job_rx.clone(), out_tx.clone(), shared.clone());
        pool.spawn(async move {
            loop {
                let job = { jobs.lock().await.recv().await };
                let Some(job) = job else { break };
                let result = send_one(&mut mailer, &shared, &job).await;
                if out.send((job.delivery_id, result)).await.is_err() {
                    break;
                }
            }
            mailer.close().await;
        });
    }
    Ok((job_tx, out_rx, pool))
}

fn mark(
    result: Result<String, SendError>,
    id: i64,
    attempts: u32,
    s: &DeliverySettings,
    now: DateTime<Utc>,
) -> Mark {
    match result {
        Ok(reply) => Mark::Sent { reply },
        Err(SendError::Permanent {
            message,
            bounce: true,
        }) => Mark::Bounced { error: message },
        Err(SendError::Permanent { message, .. }) => Mark::Failed { error: message },
        Err(SendError::Unreachable(_)) => Mark::Unclaim,
        Err(SendError::Ambiguous(error)) => Mark::Ambiguous { error },
        Err(SendError::Transient(error)) => {
            let delay = backoff(s.retry_base, s.retry_max, id, attempts);
            Mark::Retry {
                error,
                retry_at: now + chrono::Duration::from_std(delay).unwrap_or_default(),
                give_up_this_run: attempts >= s.max_attempts,
            }
        }
    }
}

async fn send_one(
    mailer: &mut Mailer,
    shared: &Shared,
    job: &Claimed,
) -> Result<String, SendError> {
    let email = &job.email;
    let message = personal_message(
        "issue",
        &shared.rendered,
        &shared.sender,
        Addressee {
            id: job.subscriber_id,
            email,
            name: &job.name,
            first_name: &job.first_name,
        },
        &shared.key,
        shared.date,
    )
    .map_err(|e| SendError::Permanent {
        message: e.to_string(),
        bounce: false,
    })?;
    // With `[bounces] domain`, each message has an envelope sender of its own (VERP) that
    // names its ledger row, so a bounce says whom it is about without any guessing.
    let verp = match &shared.sender.bounce_domain {
        Some(domain) => Some(
            EmailAddress::parse(&format!(
                "{}{}@{domain}",
                crate::feedback::BOUNCE_PREFIX,
                shared
                    .key
                    .sign_address(crate::domain::Purpose::Bounce, job.delivery_id)
            ))
            .map_err(|e| SendError::Permanent {
                message: format!("the bounce address cannot be used: {e}"),
                bounce: false,
            })?,
        ),
        None => None,
    };
    for limiter in &shared.limiters {
        limiter.until_ready().await;
    }
    // The last moment before the message starts: past the lease deadline it does not.
    if shared.fence.as_ref().is_some_and(Fence::expired) {
        return Err(SendError::Unreachable(LEASE_EXPIRED.to_owned()));
    }
    let envelope_from = verp.as_ref().unwrap_or(&shared.sender.from.email);
    mailer
        .send(envelope_from, email, &message.formatted())
        .await
}

impl DeliverySettings {
    /// The settings `[delivery]` asks for, for a run called `run_id` (`HOLDER` or
    /// `HOLDER/...`, HOLDER the lease holder) under this process's lease `fence`.
    fn from_config(
        config: &crate::config::Config,
        run_id: String,
        fence: Fence,
        wake_workers: bool,
    ) -> Self {
        let holder = run_id.split('/').next().unwrap_or(&run_id).to_owned();
        Self {
            concurrency: config.delivery.concurrency,
            rate_per_second: config.delivery.rate_per_second,
            max_per_hour: config.delivery.max_per_hour,
            max_attempts: config.delivery.max_attempts,
            retry_base: config.delivery.retry_base,
            retry_max: config.delivery.retry_max,
            run_id,
            lease: Some((holder, fence)),
            wake_workers,
        }
    }
}

impl super::App {
    /// Delivers a prepared issue with the configured settings, as run `run_id`, until no
    /// row is left for this run or `shutdown` completes.
    ///
    /// # Errors
    /// [`DeliveryError`] when the store fails.
    pub async fn deliver(
        &self,
        issue: &StoredIssue,
        rendered: RenderedIssue,
        run_id: String,
        progress: &dyn Progress,
        shutdown: impl Future<Output = ()>,
    ) -> Result<SendSummary, DeliveryError> {
        if !self.config.delivery.sender_delivers {
            return self
                .follow_workers(issue, &run_id, progress, shutdown)
                .await;
        }
        let settings = DeliverySettings::from_config(&self.config, run_id, self.fence(), true);
        self.deliver_with(issue, rendered, &settings, progress, shutdown)
            .await
    }

    /// The sender's part when only workers deliver (`[delivery] sender_delivers = false`):
    /// wake them, report their progress over all of them, and finish the issue when no row
    /// is pending or in flight, until `shutdown` or the end of this process's lease.
    ///
    /// # Errors
    /// [`DeliveryError`] when the store fails.
    #[tracing::instrument(skip_all, fields(issue = issue.number, run = run_id))]
    async fn follow_workers(
        &self,
        issue: &StoredIssue,
        run_id: &str,
        progress: &dyn Progress,
        shutdown: impl Future<Output = ()>,
    ) -> Result<SendSummary, DeliveryError> {
        // Counting the ledger reads every row of the issue: every 2 s while rows are pending
        // (the workers need the database more), every 0.1 s at the end.
        const EVERY: Duration = Duration::from_secs(2);
        let store = &self.store;
        store.notify_workers().await?;
        let total = store.ledger_counts(issue.id).await?.pending;
        info!(
            issue = issue.number,
            pending = total,
            "the delivery workers deliver this issue"
        );
        let mut shutdown = std::pin::pin!(shutdown);
        let mut idle_since = std::time::Instant::now();
        let mut last_done = 0;
        let finished = loop {
            let now = self.clock.now();
            let c = store.ledger_counts(issue.id).await?;
            // Finishing looks at the whole ledger under the writers' lock: only once nothing
            // is in flight (the end, or workers that stopped), not every second of the send.
            if (c.sending == 0 || c.pending == 0)
                && store.finish_issue_if_done(issue.id, now).await?
            {
                break true;
            }
            let done = c.sent + c.failed + c.bounced + c.skipped;
            progress.update(done, total.max(done));
            if done != last_done || c.sending > 0 {
                last_done = done;
                idle_since = std::time::Instant::now();
            } else if idle_since.elapsed() >= Duration::from_secs(60) {
                warn!(
                    issue = issue.number,
                    pending = c.pending,
                    "no delivery worker has sent anything for a minute: is `herald worker` running?"
                );
                store.notify_workers().await?;
                idle_since = std::time::Instant::now();
            }
            if self.fence().expired() {
                warn!(
                    issue = issue.number,
                    "the sender lease expired: no longer following the workers"
                );
                break false;
            }
            let every = if c.pending == 0 { EVERY / 20 } else { EVERY };
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = &mut shutdown => break false,
            }
        };
        progress.finish();
        let now = self.clock.now();
        Ok(SendSummary {
            issue_number: issue.number,
            counts: store.ledger_counts(issue.id).await?,
            ambiguous: store.ambiguous_count(issue.id, run_id, now).await?,
            finished,
            unreachable: None,
        })
    }

    /// [`App::deliver`] as a delivery worker `run_id` (`WORKER/...`): it wakes nobody.
    ///
    /// # Errors
    /// [`DeliveryError`] when the store fails.
    pub async fn deliver_as_worker(
        &self,
        issue: &StoredIssue,
        rendered: RenderedIssue,
        run_id: String,
        shutdown: impl Future<Output = ()>,
    ) -> Result<SendSummary, DeliveryError> {
        let settings = DeliverySettings::from_config(&self.config, run_id, self.fence(), false);
        self.deliver_with(issue, rendered, &settings, &Silent, shutdown)
            .await
    }

    async fn deliver_with(
        &self,
        issue: &StoredIssue,
        rendered: RenderedIssue,
        settings: &DeliverySettings,
        progress: &dyn Progress,
        shutdown: impl Future<Output = ()>,
    ) -> Result<SendSummary, DeliveryError> {
        let request = DeliveryRequest {
            store: &self.store,
            clock: self.clock.as_ref(),
            issue,
            rendered,
            sender: self.sender.clone(),
            key: self.key.clone(),
            transport: self.transport.clone(),
            settings,
            progress,
        };
        deliver(request, shutdown).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered_within_20_percent() {
        let base = Duration::from_secs(2);
        let max = Duration::from_secs(60);
        for attempt in 1..=8 {
            let d = backoff(base, max, 7, attempt);
            let nominal = (base * (1 << (attempt - 1))).min(max);
            assert!(
                d >= nominal.mul_f64(0.8) && d <= nominal.mul_f64(1.2),
                "{attempt}: {d:?}"
            );
        }
        assert_ne!(
            backoff(base, max, 1, 3),
            backoff(base, max, 2, 3),
            "jitter spreads rows"
        );
    }
}
