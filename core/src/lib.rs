//! Herald's pure core: everything between the files and the message bytes that needs no
//! I/O. It takes values (text, bytes, `now`) and returns values; the `herald` crate reads the
//! files, talks to the database and the network, and keeps the clock.
//!
//! This crate has no async runtime, database, HTTP client or SMTP transport among its
//! dependencies, and `clippy.toml` beside it forbids reading the clock or the file system,
//! so the compiler keeps it pure.
//!
//! | module | what it does |
//! |---|---|
//! | [`domain`] | types parsed at the edge: addresses, slugs, terms, tokens, states |
//! | [`toml_source`] | locate keys and lines in TOML text for error messages |
//! | [`glossary`] | parse one term file; validate the whole set |
//! | [`subscriber_file`] | parse subscriber CSV files; decide what an import does |
//! | [`news`] | parse feeds and the curated file; canonical URLs, clean text, de-duplication |
//! | [`selection`] | the next term and links, given the history |
//! | [`schedule`] | when issues are due (time zones, catch-up, review windows) |
//! | [`render`] | Tera: issue plan -> rendered issue (HTML with inlined CSS, text) |
//! | [`compose`] | rendered issue + recipient -> a complete MIME message |
//! | [`dkim`] | DKIM signatures over a message's final bytes |
//! | [`feedback`] | read bounce reports, complaint reports, unsubscribe mails and provider webhooks |
//!
//! Dependencies point down this table's order, never up.

#![forbid(unsafe_code)]
#![warn(clippy::too_many_lines)]

// Types first; then content parsing; then choosing; then rendering and composing.
pub mod domain;

pub mod toml_source;

pub mod glossary;

pub mod subscriber_file;

pub mod news;

pub mod selection;

pub mod schedule;

pub mod render;

pub mod compose;

pub mod dkim;

pub mod feedback;
