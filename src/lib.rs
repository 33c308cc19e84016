//! Herald: a newsletter and content pipeline for an AI glossary.
//!
//! Data flows one way: **files and feeds -> content -> issue plan -> rendered issue ->
//! messages -> SMTP**, with the store recording each step. The crate is layered, and each
//! layer uses only the layers below it:
//!
//! | layer | modules | what it owns | may use |
//! |---|---|---|---|
//! | pure core (crate `herald-core`, re-exported here) | [`domain`], [`toml_source`], [`glossary`], [`subscriber_file`], [`news`], [`selection`], [`schedule`], [`render`], [`compose`], [`dkim`], [`feedback`] | values in, values out: parsing, choosing, rendering, composing, signing, reading bounce and complaint reports | nothing else: no I/O, no clock, no configuration |
//! | configuration and time | [`config`], [`clock`] | `herald.toml` + environment -> a validated [`config::Config`]; the one reader of the time | the core |
//! | adapters | [`store`], [`mailer`], [`feeds`], [`files`] | the database, SMTP and the outbox, feeds over HTTP, content files (glossary, templates, curated links, subscriber files) | the core, `config` |
//! | application | [`app`] | every use case, once, on one [`app::App`] with private fields: the send policy, next issue, delivery, subscriber import, review and hold, the subscription flow, feedback, the leases, the daemon tick, the pages' data, checks | adapters, core, `config`, `clock` |
//! | front ends | [`http`] (one router per audience), [`daemon`], [`commands`] (+ [`cli`]) | parse input, call the app, render or print, exit codes | `app` and the layers below; only `daemon` uses `http` |
//!
//! `tests/integration/layers.rs` fails the build's tests when an import breaks this order.

#![forbid(unsafe_code)]
#![warn(clippy::too_many_lines)]

// The pure core.
pub use herald_core::{
    compose, dkim, domain, feedback, glossary, news, render, schedule, selection, subscriber_file,
    toml_source,
};

// Configuration and time.
pub mod clock;
pub mod config;

// Adapters.
pub mod feeds;
pub mod files;
pub mod mailer;
pub mod store;

// The application layer.
pub mod app;

// Front ends.
pub mod cli;
pub mod commands;
pub mod daemon;
pub mod http;

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
