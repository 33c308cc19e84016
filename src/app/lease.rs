//! Use case: the sender lease. One process sends at a time (a `herald send` or the daemon
//! holding the lease); the holder renews it with one heartbeat, and a lease left by a process
//! on this host that no longer exists is taken over at once.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::warn;

use super::App;
use crate::clock::Clock;
use crate::store::{Store, StoreError};

/// The name of the lease that makes one sender at a time.
const SENDER_LEASE: &str = "sender";

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
    pub async fn take_sender_lease(&self, run: &str) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let until = now + self.lease_ttl();
        if self
            .store
            .acquire_lease(SENDER_LEASE, run, now, until)
            .await?
        {
            return Ok(true);
        }
        if let Some((holder, _)) = self.store.lease_holder(SENDER_LEASE).await?
            && holder_is_dead(&holder)
        {
            warn!(previous = %holder, "the previous sender on this host is gone: taking over its lease");
            return self
                .store
                .take_over_lease(SENDER_LEASE, &holder, run, until)
                .await;
        }
        Ok(false)
    }

    /// Gives up the sender lease held by `run`.
    ///
    /// # Errors
    /// A database error.
    pub async fn release_sender_lease(&self, run: &str) -> Result<(), StoreError> {
        self.store.release_lease(SENDER_LEASE, run).await
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
        let (store, clock, run) = (self.store.clone(), self.clock.clone(), run.to_owned());
        Heartbeat(tokio::spawn(beat(store, clock, run, self.lease_ttl())))
    }
}

async fn beat(store: Store, clock: Arc<dyn Clock>, run: String, ttl: chrono::Duration) {
    let every = (ttl / 4).to_std().unwrap_or(Duration::from_secs(15));
    loop {
        tokio::time::sleep(every).await;
        let now = clock.now();
        match store.lease_holder(SENDER_LEASE).await {
            Ok(Some((holder, _))) if holder == run => {
                match store
                    .acquire_lease(SENDER_LEASE, &run, now, now + ttl)
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => warn!(run = %run, "the sender lease was taken by another process"),
                    Err(e) => warn!(run = %run, error = %e, "could not renew the sender lease"),
                }
            }
            Ok(_) => {}
            Err(e) => warn!(run = %run, error = %e, "could not read the sender lease"),
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
