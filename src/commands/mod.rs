//! The CLI: each subcommand parses its arguments, calls the application layer, prints what
//! happened and says how it went as an [`Exit`] code. This is the top of the house, so
//! errors are `anyhow` here.

mod bounces;
mod check;
mod feeds;
mod glossary;
mod issues;
pub mod output;
mod preview;
mod preview_server;
mod queue;
mod run;
mod schedule;
mod send;
mod stats;
mod store;
mod subscribers;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;

use crate::Exit;
use crate::app::App;
use crate::cli::{Cli, Command, Role};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, Environment};

/// Runs one command line.
///
/// # Errors
/// Any failure, with its context chain; a [`crate::config::ConfigError`] in the chain means
/// exit code 2.
pub async fn run(cli: Cli, env: Environment) -> anyhow::Result<Exit> {
    let cwd = std::env::current_dir().context("reading the working directory")?;
    let config = Config::load(cli.config.as_deref(), &env, &cwd)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    match cli.command {
        // These need no store.
        Command::Glossary(cmd) => return glossary::run(&config, cmd),
        Command::Run(args) if args.role == Role::Worker => {
            return run::worker(config, clock).await;
        }
        Command::Worker => return run::worker(config, clock).await,
        Command::Run(_) => return run::run(config, clock).await,
        _ => {}
    }
    let app = App::open(config, clock).await?;
    let exit = match cli.command {
        Command::Check(args) => check::run(&app, args.offline).await,
        Command::Subscribers(cmd) => subscribers::run(&app, cmd).await,
        Command::Preview(args) => preview::run(&app, args).await,
        Command::Queue(cmd) => queue::run(&app, cmd).await,
        Command::Feeds(args) => feeds::run(&app, args).await,
        Command::Send(args) => send::run(&app, args).await,
        Command::Issues(cmd) => issues::run(&app, cmd).await,
        Command::Schedule(flag) => schedule::run(&app, flag.json).await,
        Command::Stats(args) => stats::run(&app, args).await,
        Command::Bounces(cmd) => bounces::run(&app, cmd).await,
        Command::Store(cmd) => store::run(&app, cmd).await,
        Command::Glossary(_) | Command::Run(_) | Command::Worker => {
            unreachable!("dispatched above")
        }
    };
    app.close().await;
    exit
}

/// A path as shown to people: relative to the working directory when it is below it.
fn shown(path: &std::path::Path) -> PathBuf {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(&cwd).ok().map(PathBuf::from))
        .unwrap_or_else(|| path.to_path_buf())
}
