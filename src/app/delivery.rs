//! Use case: deliver a frozen issue to every recipient in its ledger, exactly once.
//!
//! One coordinator owns the ledger; `concurrency` workers own one SMTP connection each. The
//! coordinator's loop is a single step repeated ([`Store::ledger_step`]): in one transaction
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
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{Mutex, mpsc};
use tracing::{info, warn};

use super::lease::Fence;
use crate::clock::Clock;
use crate::compose::{Addressee, Sender, personal_message};
use crate::domain::{EmailAddress, SigningKey};
use crate::mailer::{Mailer, SendError, Transport};
use crate::render::RenderedIssue;
use crate::store::{Claimed, LedgerCounts, Mark, RelayRate, Store, StoreError, StoredIssue};

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

/// Sends the pending rows of `issue` until none is left for this run, or `shutdown`
/// completes (then the messages in flight are finished and nothing new is claimed).
///
/// # Errors
/// [`DeliveryError`] when the store fails; failed messages are recorded, not returned.
#[allow(clippy::too_many_arguments)]
pub async fn deliver(
    store: &Store,
    clock: &dyn Clock,
    issue: &StoredIssue,
    rendered: RenderedIssue,
    sender: Sender,
    key: SigningKey,
    transport: Transport,
    settings: &DeliverySettings,
    progress: &dyn Progress,
    shutdown: impl Future<Output = ()>,
) -> Result<SendSummary, DeliveryError> {
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
    // are kept in the database, and tokens are taken before rows are claimed (so a claimed
    // row is started at once). Otherwise this process keeps them.
    let rate = RelayRate {
        per_second: settings.rate_per_second,
        per_hour: settings.max_per_hour,
    };
    let shared_relay = match &transport {
        Transport::Smtp(smtp)
            if store.is_postgres() && (rate.per_second.is_some() || rate.per_hour.is_some()) =>
        {
            Some(format!("{}:{}", smtp.host, smtp.port))
        }
        _ => None,
    };
    let mut ledger = store.ledger_session().await?;
    let gather = store.is_postgres();
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
    let lease = settings.lease.as_ref().map(|(holder, _)| holder.as_str());
    let workers = settings.concurrency.max(1);
    let (job_tx, job_rx) = mpsc::channel::<Claimed>(workers);
    let job_rx = Arc::new(Mutex::new(job_rx));
    let (out_tx, mut out_rx) = mpsc::channel::<Outcome>(workers * 2);
    let mut handles = Vec::with_capacity(workers);
    for _ in 0..workers {
        let mut mailer = Mailer::new(transport.clone()).map_err(DeliveryError::Outbox)?;
        let (jobs, out, shared) = (job_rx.clone(), out_tx.clone(), shared.clone());
        handles.push(tokio::spawn(async move {
            loop {
                let job = { jobs.lock().await.recv().await };
                let Some(job) = job else { break };
                let result = send_one(&mut mailer, &shared, &job).await;
                if out.send((job.delivery_id, result)).await.is_err() {
                    break;
                }
            }
            mailer.close().await;
        }));
    }
    drop(out_tx);

    let mut shutdown = std::pin::pin!(shutdown);
    let mut stopping = false;
    let mut in_flight = 0usize;
    let mut done = 0u64;
    let mut run_attempts: HashMap<i64, u32> = HashMap::new();
    let mut outcomes: Vec<Outcome> = Vec::new();
    // An SMTP server that cannot be reached stops the run once, with one message, instead of
    // every row failing on its own.
    let started = std::time::Instant::now();
    let mut sessions_opened = false;
    let mut unreachable_in_a_row = 0u32;
    let mut unreachable: Option<String> = None;
    loop {
        // A shutdown that came while nothing waited for it (before the first claim, or while
        // marks were being written) is noticed before anything new is claimed.
        if !stopping && futures::FutureExt::now_or_never(shutdown.as_mut()).is_some() {
            stopping = true;
            info!(
                in_flight,
                "stopping: finishing the messages in flight, claiming no more"
            );
        }
        // Wait for at least one outcome when messages are in flight.
        if in_flight > 0 && outcomes.is_empty() {
            tokio::select! {
                got = out_rx.recv() => match got {
                    Some(o) => outcomes.push(o),
                    // Every worker is gone (only a panic does that): stop, leaving the rows
                    // they held in `sending`, to be reported as ambiguous.
                    None => return Err(DeliveryError::WorkersGone),
                },
                () = &mut shutdown, if !stopping => {
                    stopping = true;
                    info!(in_flight, "stopping: finishing the messages in flight, claiming no more");
                }
            }
        }
        while let Ok(o) = out_rx.try_recv() {
            outcomes.push(o);
        }
        // On PostgreSQL a step costs a round trip and a commit whatever it carries: gather
        // the outcomes of every message in flight, or wait at most GATHER, before it.
        if gather && !stopping && !outcomes.is_empty() {
            let want = in_flight;
            let until = tokio::time::Instant::now() + GATHER;
            while outcomes.len() < want {
                match tokio::time::timeout_at(until, out_rx.recv()).await {
                    Ok(Some(o)) => outcomes.push(o),
                    Ok(None) | Err(_) => break,
                }
            }
        }
        in_flight -= outcomes.len();
        // Past the lease deadline nothing new starts: another process may hold the lease now.
        if !stopping && shared.fence.as_ref().is_some_and(Fence::expired) {
            stopping = true;
            warn!(
                issue = issue.number,
                in_flight, "the lease expired: stopping before the next message"
            );
        }
        for (_, result) in &outcomes {
            match result {
                Err(SendError::Unreachable(e)) if e == LEASE_EXPIRED => {}
                Err(SendError::Unreachable(e)) => {
                    unreachable_in_a_row += 1;
                    if unreachable.is_none()
                        && (unreachable_in_a_row >= UNREACHABLE_FAILURES
                            || (!sessions_opened && started.elapsed() >= UNREACHABLE_WINDOW))
                    {
                        warn!(
                            issue = issue.number,
                            "SMTP server unreachable: {e}; stopping this run, the rest stays pending"
                        );
                        unreachable = Some(e.clone());
                        stopping = true;
                    }
                }
                Err(SendError::Transient(_) | SendError::Ambiguous(_)) => {
                    // A 4xx, a dropped transaction or a message without a reply: a session
                    // did open.
                    sessions_opened = true;
                    unreachable_in_a_row = 0;
                }
                Ok(_) | Err(SendError::Permanent { .. }) => {
                    sessions_opened = true;
                    unreachable_in_a_row = 0;
                    done += 1;
                }
            }
        }
        let now = clock.now();
        let marks: Vec<(i64, Mark)> = outcomes
            .drain(..)
            .map(|(id, result)| {
                let attempts = run_attempts.get(&id).copied().unwrap_or(1);
                let m = mark(result, id, attempts, settings, now);
                // Only rows that will be retried in this run are remembered, so memory
                // stays flat however many subscribers there are.
                if !matches!(
                    m,
                    Mark::Retry {
                        give_up_this_run: false,
                        ..
                    }
                ) {
                    run_attempts.remove(&id);
                }
                (id, m)
            })
            .collect();
        let mut free = if stopping { 0 } else { workers - in_flight };
        let mut token_wait = None;
        if let Some(relay) = &shared_relay
            && free > 0
        {
            let want = u32::try_from(free).unwrap_or(u32::MAX);
            let (granted, wait) = store.take_send_tokens(relay, rate, want, now).await?;
            if granted == 0 {
                token_wait = Some(wait);
            }
            free = granted as usize;
        }
        let claimed = ledger
            .step(crate::store::StepRequest {
                issue_id: issue.id,
                run: &settings.run_id,
                lease,
                marks: &marks,
                claim: free,
                now,
            })
            .await?;
        for m in &marks {
            if let (id, Mark::Retry { error, .. }) = m {
                warn!(delivery = id, "transient failure, will retry: {error}");
            }
        }
        progress.update(done, total.max(done));
        let claimed_any = !claimed.is_empty();
        for job in claimed {
            *run_attempts.entry(job.delivery_id).or_default() += 1;
            in_flight += 1;
            if job_tx.send(job).await.is_err() {
                break;
            }
        }
        if in_flight > 0 || claimed_any {
            continue;
        }
        if stopping {
            break;
        }
        // The relay's shared limit: wait for its next token.
        if let Some(wait) = token_wait {
            tokio::select! {
                () = tokio::time::sleep(wait.max(Duration::from_millis(5))) => {}
                () = &mut shutdown, if !stopping => stopping = true,
            }
            continue;
        }
        // Nothing in flight and nothing claimable now: wait for the next retry, if any.
        match store.next_retry_at(issue.id, &settings.run_id).await? {
            None => break,
            Some(at) => {
                let wait = (at - clock.now())
                    .to_std()
                    .unwrap_or_default()
                    .min(settings.retry_max);
                tokio::select! {
                    () = tokio::time::sleep(wait.max(Duration::from_millis(10))) => {}
                    () = &mut shutdown, if !stopping => stopping = true,
                }
                if stopping {
                    break;
                }
            }
        }
    }
    drop(job_tx);
    for h in handles {
        if let Err(e) = h.await {
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
        unreachable,
    })
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
        deliver(
            &self.store,
            self.clock.as_ref(),
            issue,
            rendered,
            self.sender.clone(),
            self.key.clone(),
            self.transport.clone(),
            settings,
            progress,
            shutdown,
        )
        .await
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
