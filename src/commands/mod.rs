//! The CLI's use cases: each subcommand loads what it needs, does its work and says how it
//! went as an [`Exit`] code. This is the top of the house, so errors are `anyhow` here.

mod check;
mod glossary;
mod subscribers;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;

use crate::Exit;
use crate::cli::{Cli, Command};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, Environment};
use crate::store::Store;

pub use subscribers::{FileImport, import_file};

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
    }
}

/// A path as shown to people: relative to the working directory when it is below it.
fn shown(path: &std::path::Path) -> PathBuf {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(&cwd).ok().map(PathBuf::from))
        .unwrap_or_else(|| path.to_path_buf())
}
