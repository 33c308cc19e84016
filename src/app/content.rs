//! Use case: the content the daemon works from (glossary, templates, curated links), loaded
//! once, kept in memory, and reloaded when its files change or on SIGHUP.
//!
//! A one-shot command reads the files each time it asks (it runs once). The daemon enables
//! the cache: pages and issues then use the last version that loaded cleanly. A reload that
//! fails validation (a glossary file with an error, a template that does not parse) keeps that
//! version and records the errors, with file and line, for the log and `/healthz`; the daemon
//! never serves a half-loaded glossary.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use chrono::{DateTime, Utc};
use tracing::{error, info, warn};

use super::{App, AppError};
use crate::domain::NewsLink;
use crate::glossary::Glossary;
use crate::render::Renderer;

/// One version of the content, loaded cleanly.
#[derive(Debug)]
pub struct Loaded {
    pub glossary: Arc<Glossary>,
    pub renderer: Arc<Renderer>,
    pub curated: Arc<Vec<NewsLink>>,
    /// 1 for the first load, one more for each reload that succeeded.
    pub version: u64,
    pub loaded_at: DateTime<Utc>,
}

/// The last reload that failed, while the previous version stays in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadError {
    pub at: DateTime<Utc>,
    /// One line per problem, each naming its file (and line, where there is one).
    pub errors: Vec<String>,
}

/// The daemon's content, shared by every request.
#[derive(Debug, Default)]
pub struct ContentCache {
    enabled: AtomicBool,
    versions: AtomicU64,
    current: RwLock<Option<Arc<Loaded>>>,
    last_error: RwLock<Option<ReloadError>>,
}

impl ContentCache {
    /// The version in use, when the cache is on and something loaded.
    pub fn current(&self) -> Option<Arc<Loaded>> {
        if !self.enabled.load(Ordering::SeqCst) {
            return None;
        }
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The last failed reload, unless a later one succeeded.
    pub fn last_error(&self) -> Option<ReloadError> {
        self.last_error
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::SeqCst)
    }
}

impl App {
    /// Turns the content cache on (the daemon) and loads the content.
    pub fn enable_content_cache(&self) {
        // Loaded first, so that no request in between loads it a second time.
        self.reload_content();
        self.content.enabled.store(true, Ordering::SeqCst);
    }

    /// Loads the glossary, templates and curated links from their files. On success they
    /// replace the version in use; on failure the version in use stays and the errors are
    /// logged and kept for `/healthz`. Returns the version in use afterwards, if any.
    pub fn reload_content(&self) -> Option<u64> {
        let now = self.clock.now();
        match self.load_content() {
            Ok((glossary, renderer, curated)) => {
                let version = self.content.versions.fetch_add(1, Ordering::SeqCst) + 1;
                let loaded = Arc::new(Loaded {
                    glossary: Arc::new(glossary),
                    renderer: Arc::new(renderer),
                    curated: Arc::new(curated),
                    version,
                    loaded_at: now,
                });
                info!(
                    version,
                    terms = loaded.glossary.len(),
                    "loaded the glossary, templates and curated links"
                );
                *self
                    .content
                    .current
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = Some(loaded);
                *self
                    .content
                    .last_error
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = None;
                Some(version)
            }
            Err(errors) => {
                let kept = self
                    .content
                    .current
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .as_ref()
                    .map(|c| c.version);
                for e in &errors {
                    error!(kept_version = ?kept, "content reload failed: {e}");
                }
                *self
                    .content
                    .last_error
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) =
                    Some(ReloadError { at: now, errors });
                kept
            }
        }
    }

    /// Everything, or every error found (all of them, not just the first).
    fn load_content(&self) -> Result<(Glossary, Renderer, Vec<NewsLink>), Vec<String>> {
        let (glossary, report) = crate::files::load_glossary(&self.config.glossary_dir);
        let mut errors: Vec<String> = report.errors.iter().map(ToString::to_string).collect();
        let renderer = crate::files::load_templates(&self.config.templates_dir)
            .map_err(|e| errors.push(format!("templates: {e}")))
            .ok();
        match renderer {
            Some(renderer) if errors.is_empty() => {
                Ok((glossary, renderer, super::issue::load_curated(&self.config)))
            }
            _ => Err(errors),
        }
    }

    /// The glossary: the version in memory (daemon), or read from the files now.
    ///
    /// # Errors
    /// [`AppError::Glossary`] when the files have errors and no clean version is loaded.
    pub fn glossary(&self) -> Result<Arc<Glossary>, AppError> {
        if let Some(c) = self.loaded() {
            return Ok(c.glossary.clone());
        }
        let (glossary, report) = crate::files::load_glossary(&self.config.glossary_dir);
        if report.errors.is_empty() {
            Ok(Arc::new(glossary))
        } else {
            Err(AppError::Glossary(report.errors))
        }
    }

    /// The templates: the version in memory (daemon), or read from the files now.
    ///
    /// # Errors
    /// [`AppError::Render`] when a template is missing or broken and no clean version is
    /// loaded.
    pub fn renderer(&self) -> Result<Arc<Renderer>, AppError> {
        if let Some(c) = self.loaded() {
            return Ok(c.renderer.clone());
        }
        Ok(Arc::new(crate::files::load_templates(
            &self.config.templates_dir,
        )?))
    }

    /// The curated links: the version in memory (daemon), or read from the file now (a
    /// missing or broken file is logged and contributes nothing).
    pub fn curated(&self) -> Arc<Vec<NewsLink>> {
        match self.loaded() {
            Some(c) => c.curated.clone(),
            None => Arc::new(super::issue::load_curated(&self.config)),
        }
    }

    /// The glossary for web pages: the version in memory, or, when none loaded cleanly,
    /// the terms that parse (logged).
    pub fn glossary_for_pages(&self) -> Arc<Glossary> {
        if let Some(c) = self.loaded() {
            return c.glossary.clone();
        }
        let (glossary, report) = crate::files::load_glossary(&self.config.glossary_dir);
        if !report.errors.is_empty() {
            warn!(
                errors = report.errors.len(),
                first = %report.errors[0],
                "the glossary has errors: pages show the terms that parse"
            );
        }
        Arc::new(glossary)
    }

    /// The version in memory; with the cache on and nothing loaded yet (the files were
    /// broken at start), tries loading again first.
    fn loaded(&self) -> Option<Arc<Loaded>> {
        if !self.content.is_enabled() {
            return None;
        }
        if let Some(c) = self.content.current() {
            return Some(c);
        }
        self.reload_content();
        self.content.current()
    }
}
