//! The HTTP server loop: HTTP/1.1, one task per connection, with the limits that keep
//! outsiders from wearing the server down.
//!
//! - **Header timeout**: a client has `[http] header_timeout_seconds` to send a request's
//!   headers, from the moment the connection opens or its previous response was written;
//!   a connection that sends nothing (or trickles a header byte by byte) is closed then. This
//!   is also the keep-alive idle timeout.
//! - **Connection cap**: at most `[http] max_connections` connections at once. When a new one
//!   arrives at the cap, the oldest connection with no request in flight is closed to make
//!   room (idle connections are the cheap way to exhaust a server); only when every
//!   connection is busy is the new one refused.
//! - **File descriptors**: [`raise_fd_limit`] lifts the soft `RLIMIT_NOFILE` to the hard
//!   limit at start (the default soft limit of 1,024 is what 1,100 idle connections exhaust),
//!   and the cap is kept below it, so that `accept` keeps working and `/healthz` stays
//!   reachable. Should `accept` still fail for lack of descriptors, the oldest idle
//!   connection is closed and accepting goes on.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tracing::{debug, info, warn};

/// Descriptors kept back from the connection cap for the store, SMTP, feeds and files.
const RESERVED_FDS: u64 = 128;

/// How long a closing connection may take to finish the request it is serving.
const DRAIN: Duration = Duration::from_secs(10);

/// The server's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Time to send a request's headers (and the keep-alive idle timeout).
    pub header_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
}

impl Limits {
    /// These limits with the cap lowered, if need be, to fit `fd_limit` descriptors.
    #[must_use]
    pub fn fitted_to(self, fd_limit: Option<u64>) -> Self {
        let Some(limit) = fd_limit else { return self };
        let room =
            usize::try_from(limit.saturating_sub(RESERVED_FDS).max(16)).unwrap_or(usize::MAX);
        if room < self.max_connections {
            warn!(
                max_connections = self.max_connections,
                fd_limit = limit,
                lowered_to = room,
                "[http] max_connections is above what the file descriptor limit allows \
                 (raise LimitNOFILE); using the lower figure"
            );
        }
        Self {
            max_connections: self.max_connections.min(room),
            ..self
        }
    }
}

/// Raises the soft limit on open files to the hard limit and returns the soft limit now in
/// force (`None` when it cannot be read, or is unlimited).
pub fn raise_fd_limit() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    // `None` is unlimited.
    let current = limit.current?;
    if limit.maximum.is_some_and(|max| max <= current) {
        return Some(current);
    }
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => {
            debug!(from = current, to = ?limit.maximum, "raised the open file limit");
            limit.maximum
        }
        Err(e) => {
            warn!(error = %e, "could not raise the open file limit");
            Some(current)
        }
    }
}

/// One open connection, as the cap sees it.
struct Open {
    /// Requests in flight on it.
    busy: Arc<AtomicUsize>,
    /// Closes it.
    close: CancellationToken,
}

/// The open connections, oldest first.
#[derive(Default)]
struct Registry {
    next: u64,
    open: BTreeMap<u64, Open>,
}

impl Registry {
    /// Asks the oldest connection with no request in flight to close; `false` when every
    /// connection is busy.
    fn close_oldest_idle(&mut self) -> bool {
        let oldest = self
            .open
            .values()
            .find(|c| c.busy.load(Ordering::SeqCst) == 0 && !c.close.is_cancelled());
        match oldest {
            Some(c) => {
                c.close.cancel();
                true
            }
            None => false,
        }
    }

    /// Connections open and not asked to close.
    fn live(&self) -> usize {
        self.open
            .values()
            .filter(|c| !c.close.is_cancelled())
            .count()
    }
}

/// Counts a request in flight while it lives.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(busy: &Arc<AtomicUsize>) -> Self {
        busy.fetch_add(1, Ordering::SeqCst);
        Self(busy.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serves `router` on `listener` until `stop` is cancelled, then lets the requests in flight
/// finish (at most [`DRAIN`]).
///
/// # Errors
/// Never today: failed accepts are logged and retried; the result leaves room for one.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let registry = Arc::new(Mutex::new(Registry::default()));
    let tracker = TaskTracker::new();
    let mut last_accept_error = None::<std::time::Instant>;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of descriptors (EMFILE/ENFILE) or a connection reset before accept:
                // make room and go on; never stop serving.
                if last_accept_error.is_none_or(|at| at.elapsed() > Duration::from_secs(5)) {
                    warn!(error = %e, "accepting a connection failed; closing an idle one");
                    last_accept_error = Some(std::time::Instant::now());
                }
                registry
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .close_oldest_idle();
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(20)) => continue,
                    () = stop.cancelled() => break,
                }
            }
        };
        let (id, busy, close) = {
            let mut reg = registry.lock().unwrap_or_else(PoisonError::into_inner);
            if reg.live() >= limits.max_connections && !reg.close_oldest_idle() {
                warn!(%peer, max = limits.max_connections, "every connection is busy; refusing one");
                drop(stream);
                continue;
            }
            let id = reg.next;
            reg.next += 1;
            let busy = Arc::new(AtomicUsize::new(0));
            let close = stop.child_token();
            reg.open.insert(
                id,
                Open {
                    busy: busy.clone(),
                    close: close.clone(),
                },
            );
            (id, busy, close)
        };
        let router = router.clone();
        let registry = registry.clone();
        tracker.spawn(async move {
            serve_connection(stream, peer, router, limits, &busy, &close).await;
            registry
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .open
                .remove(&id);
        });
    }
    tracker.close();
    let open = tracker.len();
    if open > 0 {
        info!(open, "waiting for open HTTP connections to finish");
    }
    tracker.wait().await;
    Ok(())
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: Limits,
    busy: &Arc<AtomicUsize>,
    close: &CancellationToken,
) {
    if let Err(e) = stream.set_nodelay(true) {
        debug!(error = %e, "TCP_NODELAY");
    }
    let service = {
        let busy = busy.clone();
        hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            let in_flight = InFlight::new(&busy);
            request.extensions_mut().insert(ConnectInfo(peer));
            let router = router.clone();
            async move {
                let response = router.oneshot(request).await;
                drop(in_flight);
                response
            }
        })
    };
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = close.cancelled() => {
            // Finish the request in flight, if any, then close; an idle connection closes
            // at once.
            connection.as_mut().graceful_shutdown();
            match tokio::time::timeout(DRAIN, connection.as_mut()).await {
                Ok(result) => result,
                Err(_) => return,
            }
        }
    };
    if let Err(e) = result
        && !e.is_timeout()
        && !e.is_incomplete_message()
    {
        debug!(%peer, error = %e, "HTTP connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_is_kept_below_the_descriptor_limit() {
        let limits = Limits {
            header_timeout: Duration::from_secs(10),
            max_connections: 4096,
        };
        assert_eq!(limits.fitted_to(Some(1024)).max_connections, 1024 - 128);
        assert_eq!(limits.fitted_to(Some(65_536)).max_connections, 4096);
        assert_eq!(limits.fitted_to(None).max_connections, 4096);
        assert_eq!(limits.fitted_to(Some(20)).max_connections, 16);
    }

    #[test]
    fn the_oldest_idle_connection_is_the_one_closed() {
        let mut reg = Registry::default();
        for id in 0..3 {
            reg.open.insert(
                id,
                Open {
                    busy: Arc::new(AtomicUsize::new(usize::from(id == 0))),
                    close: CancellationToken::new(),
                },
            );
        }
        assert!(reg.close_oldest_idle());
        assert!(!reg.open[&0].close.is_cancelled(), "busy: kept");
        assert!(reg.open[&1].close.is_cancelled(), "oldest idle: closed");
        assert!(!reg.open[&2].close.is_cancelled());
        assert_eq!(reg.live(), 2);
        assert!(reg.close_oldest_idle());
        assert!(!reg.close_oldest_idle(), "only a busy one is left");
    }
}
