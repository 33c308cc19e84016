//! Herald's integration tests: one binary, a module per feature. Each test gets its own
//! temporary directory, configuration and SQLite database from [`harness::Sandbox`].

mod config;
mod glossary;
mod harness;
mod store;
mod subscribers;
