//! Herald: a newsletter and content pipeline for an AI glossary.
//!
//! Data flows one way: **files and feeds -> content -> issue plan -> rendered issue ->
//! messages -> SMTP**, with the store recording each step.
//!
//! | module | role |
//! |---|---|
//! | [`domain`] | pure types parsed at the edge: [`domain::EmailAddress`], [`domain::Slug`], [`domain::Term`] ... |
//! | [`glossary`] | pure: parse one term file, validate the whole set |
//! | [`subscriber_file`] | pure: parse subscriber CSV files, decide what an import does |
//! | [`toml_source`] | pure: locate keys and lines in TOML text for error messages |
//! | [`config`] | `herald.toml` + environment -> validated [`config::Config`] |
//! | [`store`] | adapter: the database (SQLite), behind one narrow type |
//! | [`clock`] | the one place that reads the time |
//! | [`commands`] | the CLI's use cases, on top of everything else |
//! | [`cli`] | clap definitions only |
//!
//! Dependencies point one way: `cli/commands -> adapters -> pure core -> domain`.

#![forbid(unsafe_code)]

pub mod cli;
pub mod clock;
pub mod commands;
pub mod compose;
pub mod config;
pub mod daemon;
pub mod delivery;
pub mod domain;
pub mod glossary;
pub mod http;
pub mod mailer;
pub mod news;
pub mod next_issue;
pub mod render;
pub mod schedule;
pub mod selection;
pub mod store;
pub mod subscriber_file;
pub mod toml_source;

/// Herald's exit codes, chosen on purpose: scripts rely on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything worked.
    Success = 0,
    /// A validation or operation failure (a broken glossary, a rejected row ...).
    Failure = 1,
    /// A usage or configuration error.
    Usage = 2,
    /// Work is left pending (for example deliveries that the SMTP server did not take);
    /// running the command again resumes it.
    Pending = 3,
}
