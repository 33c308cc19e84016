//! The CLI's use cases: each subcommand loads what it needs, does its work and says how it
//! went as an [`Exit`] code. This is the top of the house, so errors are `anyhow` here.

mod check;
mod feeds;
mod glossary;
mod issues;
mod preview;
mod queue;
mod run;
mod schedule;
mod send;
mod subscribers;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;

use crate::Exit;
use crate::cli::{Cli, Command};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, Environment};
use crate::store::Store;

pub use send::{run_id, settings as delivery_settings, take_lease, transport};

/// What every command gets: the validated configuration and the clock.
#[derive(Debug, Clone)]
pub struct Context {
    pub config: Config,
    pub clock: Arc<dyn Clock>,
}

impl Context {
    /// Opens the store named by the configuration, applying migrations.
    ///
    /// # Errors
    /// When the database cannot be opened or migrated.
    pub async fn store(&self) -> anyhow::Result<Store> {
        Store::open(&self.config.store_url)
            .await
            .with_context(|| format!("opening the store {}", self.config.store_url))
    }
}

/// Runs one command line.
///
/// # Errors
/// Any failure, with its context chain; a [`crate::config::ConfigError`] in the chain means
/// exit code 2.
pub async fn run(cli: Cli, env: Environment) -> anyhow::Result<Exit> {
    let cwd = std::env::current_dir().context("reading the working directory")?;
    let config = Config::load(cli.config.as_deref(), &env, &cwd)?;
    let ctx = Context {
        config,
        clock: Arc::new(SystemClock),
    };
    match cli.command {
        Command::Check => check::run(&ctx).await,
        Command::Glossary(cmd) => glossary::run(&ctx, cmd),
        Command::Subscribers(cmd) => subscribers::run(&ctx, cmd).await,
        Command::Preview(args) => preview::run(&ctx, args).await,
        Command::Queue(cmd) => queue::run(&ctx, cmd).await,
        Command::Feeds(args) => feeds::run(&ctx, args).await,
        Command::Send(args) => send::run(&ctx, args).await,
        Command::Issues(cmd) => issues::run(&ctx, cmd).await,
        Command::Run => run::run(ctx).await,
        Command::Schedule => schedule::run(&ctx).await,
    }
}

/// The key that signs tokens: `HERALD_SECRET`, or, where `development_ok`, a fixed
/// development key (with a warning), so that previews and the file transport work on a fresh
/// machine.
///
/// # Errors
/// When `HERALD_SECRET` is unset and a development key is not acceptable.
pub fn signing_key(
    config: &Config,
    development_ok: bool,
) -> anyhow::Result<crate::domain::SigningKey> {
    match config.signing_key() {
        Some(secret) => Ok(crate::domain::SigningKey::new(secret.expose())),
        None if development_ok => {
            tracing::warn!(
                "HERALD_SECRET is not set: signing links with the development key; set it before sending real mail"
            );
            Ok(crate::domain::SigningKey::new(DEVELOPMENT_KEY))
        }
        None => anyhow::bail!(
            "HERALD_SECRET is not set: sending over SMTP needs a signing key for unsubscribe links (for example `openssl rand -hex 32`)"
        ),
    }
}

/// The development signing key: public, so only fit for previews and local files.
pub const DEVELOPMENT_KEY: &str = "herald-development-key-not-secret";

/// Loads the glossary, failing when it has errors.
///
/// # Errors
/// When any term file is broken (each problem is printed to standard error first).
pub fn load_glossary(config: &Config) -> anyhow::Result<crate::glossary::Glossary> {
    let (glossary, report) = crate::glossary::load_dir(&config.glossary_dir);
    if !report.errors.is_empty() {
        for e in &report.errors {
            eprintln!("{e}");
        }
        anyhow::bail!(
            "the glossary has {} errors; run `herald glossary check`",
            report.errors.len()
        );
    }
    Ok(glossary)
}

/// A path as shown to people: relative to the working directory when it is below it.
fn shown(path: &std::path::Path) -> PathBuf {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(&cwd).ok().map(PathBuf::from))
        .unwrap_or_else(|| path.to_path_buf())
}
