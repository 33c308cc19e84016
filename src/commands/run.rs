//! `herald run`: the daemon, until SIGTERM or SIGINT.

use super::Context;
use crate::Exit;

/// Completes on SIGTERM or SIGINT (ctrl-c).
async fn termination() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

pub(super) async fn run(ctx: Context) -> anyhow::Result<Exit> {
    crate::daemon::run(ctx.config, ctx.clock, termination()).await?;
    Ok(Exit::Success)
}
