//! Herald's integration tests: one binary, a module per feature. Each test gets its own
//! temporary directory, configuration and database (SQLite, or PostgreSQL when the suite runs
//! again on it: see `postgres.rs`) from [`harness::Sandbox`].

mod bounces;
mod browser;
mod config;
mod daemon;
mod delivery;
mod dkim;
mod feeds;
mod glossary;
mod harness;
mod imap;
mod layers;
mod postgres;
mod preview;
mod render;
mod rotation;
mod schedule;
mod schema;
mod site;
mod smtp;
mod smtp_client;
mod spamassassin;
mod store;
mod subscribers;
mod web_limits;
