//! Use case: the sender lease, and the workers' leases. One process sends at a time (a
//! `herald send` or the daemon holding the lease); the holder renews it with one heartbeat,
//! and a lease left by a process on this host that no longer exists is taken over at once.
//! Each delivery worker holds a lease of its own (`worker:ID`) the same way.
//!
//! A lease is fenced twice. In the database: a run claims rows only while its lease is
//! unexpired and in its name (see the store's claim). In the process: the holder knows its
//! own deadline (when it last renewed, plus the lease time, less a margin for clock
//! difference between hosts), and a delivery stops before its next message once that has
//! passed, even when the database cannot be reached to ask.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tracing::warn;

use super::App;
use crate::clock::Clock;
use crate::store::{Store, StoreError};

/// The name of the lease that makes one sender at a time.
pub const SENDER_LEASE: &str = "sender";

/// The name of a worker's own lease.
pub fn worker_lease(worker: &str) -> String {
    format!("worker:{worker}")
}

/// A process's own knowledge of how long its lease lasts: the deadline before which it may
/// start a message. Renewals move it forward; nothing moves it back.
#[derive(Debug, Clone)]
pub struct Fence(Arc<Mutex<Option<Instant>>>);

impl Default for Fence {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(None)))
    }
}

impl Fence {
    /// The lease was taken or renewed by a request sent at `asked`, for `ttl`.
    fn renewed(&self, asked: Instant, ttl: chrono::Duration) {
        let ttl = ttl.to_std().unwrap_or(Duration::from_secs(60));
        // Another host judges expiry by its own clock: keep a tenth (at most 5 s) in hand.
        let margin = (ttl / 10).min(Duration::from_secs(5));
        let deadline = asked + ttl.saturating_sub(margin);
        let mut d = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if d.is_none_or(|current| deadline > current) {
            *d = Some(deadline);
        }
    }

    /// Whether the deadline has passed (or no lease was ever taken).
    pub fn expired(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none_or(|deadline| Instant::now() >= deadline)
    }
}

/// A name for a run, unique enough to tell runs apart in leases and the ledger:
/// `KIND@HOST:PID:MILLIS`.
pub fn run_id(kind: &str, now: DateTime<Utc>) -> String {
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

impl App {
    /// Takes (or renews) the sender lease for `run`, taking it over from a dead process on
    /// this host. Returns whether `run` holds it now.
    ///
    /// # Errors
    /// A database error.
    #[tracing::instrument(skip_all)]
    pub async fn take_sender_lease(&self, run: &str) -> Result<bool, StoreError> {
        self.take_lease(SENDER_LEASE, run).await
    }

    /// Takes (or renews) the lease `name` for `run`, taking it over from a dead process on
    /// this host; on success this process's [`Fence`] moves forward. Returns whether `run`
    /// holds it now.
    ///
    /// # Errors
    /// A database error.
    #[tracing::instrument(skip_all)]
    pub async fn take_lease(&self, name: &str, run: &str) -> Result<bool, StoreError> {
        let asked = Instant::now();
        let now = self.clock.now();
        let until = now + self.lease_ttl();
        if self.store.acquire_lease(name, run, now, until).await? {
            self.fence.renewed(asked, self.lease_ttl());
            return Ok(true);
        }
        if let Some((holder, _)) = self.store.lease_holder(name).await?
            && holder_is_dead(&holder)
        {
            warn!(lease = name, previous = %holder, "the previous holder on this host is gone: taking over its lease");
            let taken = self
                .store
                .take_over_lease(name, &holder, run, until)
                .await?;
            if taken {
                self.fence.renewed(asked, self.lease_ttl());
            }
            return Ok(taken);
        }
        Ok(false)
    }

    /// Gives up the sender lease held by `run`.
    ///
    /// # Errors
    /// A database error.
    #[tracing::instrument(skip_all)]
    pub async fn release_sender_lease(&self, run: &str) -> Result<(), StoreError> {
        self.store.release_lease(SENDER_LEASE, run).await
    }

    /// Gives up the lease `name` held by `run`.
    ///
    /// # Errors
    /// A database error.
    #[tracing::instrument(skip_all)]
    pub async fn release_lease(&self, name: &str, run: &str) -> Result<(), StoreError> {
        self.store.release_lease(name, run).await
    }

    /// How long the sender lease lasts without a heartbeat (`[delivery] lease_seconds`).
    fn lease_ttl(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.config.delivery.lease)
            .unwrap_or(chrono::Duration::seconds(60))
    }

    /// Starts the heartbeat that renews the sender lease of `run` every quarter of the lease
    /// time (four chances before it expires) for as long as `run` holds it. The heartbeat
    /// stops when the returned guard is dropped.
    pub fn heartbeat(&self, run: &str) -> Heartbeat {
        self.lease_heartbeat(SENDER_LEASE, run)
    }

    /// [`App::heartbeat`] for the lease `name`.
    pub fn lease_heartbeat(&self, name: &str, run: &str) -> Heartbeat {
        let beat = Beat {
            store: self.store.clone(),
            clock: self.clock.clone(),
            fence: self.fence.clone(),
            name: name.to_owned(),
            run: run.to_owned(),
            ttl: self.lease_ttl(),
        };
        Heartbeat(tokio::spawn(beat.run()))
    }

    /// This process's lease deadline.
    pub fn fence(&self) -> Fence {
        self.fence.clone()
    }
}

/// What a heartbeat renews.
struct Beat {
    store: Store,
    clock: Arc<dyn Clock>,
    fence: Fence,
    name: String,
    run: String,
    ttl: chrono::Duration,
}

impl Beat {
    async fn run(self) {
        let Self {
            store,
            clock,
            fence,
            name,
            run,
            ttl,
        } = self;
        let every = (ttl / 4).to_std().unwrap_or(Duration::from_secs(15));
        loop {
            tokio::time::sleep(every).await;
            let asked = Instant::now();
            let now = clock.now();
            match store.lease_holder(&name).await {
                Ok(Some((holder, _))) if holder == run => {
                    match store.acquire_lease(&name, &run, now, now + ttl).await {
                        Ok(true) => fence.renewed(asked, ttl),
                        Ok(false) => {
                            warn!(lease = %name, run = %run, "the lease was taken by another process")
                        }
                        Err(e) => {
                            warn!(lease = %name, run = %run, error = %e, "could not renew the lease")
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => warn!(lease = %name, run = %run, error = %e, "could not read the lease"),
            }
        }
    }
}

/// The running heartbeat of a lease; dropping it stops the heartbeat.
#[derive(Debug)]
pub struct Heartbeat(tokio::task::JoinHandle<()>);

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}
