//! `herald run`: the daemon, until SIGTERM or SIGINT.

use std::sync::Arc;

use crate::Exit;
use crate::clock::Clock;
use crate::config::Config;

/// Completes on SIGTERM or SIGINT (ctrl-c).
async fn termination() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    () = ctrl_c() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM: only ctrl-c stops the daemon");
                ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    ctrl_c().await;
}

/// Completes on ctrl-c; if that signal cannot be watched, never (the process is then
/// stopped by other means).
async fn ctrl_c() {
    if let Err(e) = tokio::signal::ctrl_c().await {
        tracing::warn!(error = %e, "cannot listen for ctrl-c");
        std::future::pending::<()>().await;
    }
}

pub(super) async fn run(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Exit> {
    // The daemon serves signed links (confirm, unsubscribe, hold) to the world: never with
    // the public development key.
    require_secret(
        &config,
        "`herald run` serves signed links (confirm, unsubscribe, hold)",
    )?;
    crate::daemon::run(config, clock, termination()).await?;
    Ok(Exit::Success)
}

/// `herald worker` (`herald run --role worker`): delivers until SIGTERM or SIGINT.
pub(super) async fn worker(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Exit> {
    require_secret(
        &config,
        "a worker mails signed unsubscribe links that the web instances must accept",
    )?;
    crate::daemon::run_worker(config, clock, termination()).await?;
    Ok(Exit::Success)
}

fn require_secret(config: &Config, why: &str) -> Result<(), crate::config::ConfigError> {
    if config.signing_key().is_some() {
        return Ok(());
    }
    Err(crate::config::ConfigError::Invalid {
        key: None,
        origin: crate::config::Origin::Env(crate::config::ENV_SECRET.into()),
        message: format!(
            "not set: {why} and will not sign them with the public development key; set it (for example `openssl rand -hex 32`)"
        ),
    })
}
