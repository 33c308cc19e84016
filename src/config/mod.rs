//! Configuration: `herald.toml` plus environment overrides, in two stages.
//!
//! Stage one (`raw`) reads the file into raw serde structs (unknown keys rejected, each error
//! located by file and line) and applies `HERALD_<SECTION>__<KEY>` overrides (each error named
//! by its variable). Stage two (`validate`) checks the raw values into [`Config`]
//! (`settings`): typed addresses, a parsed time zone and cron expression, resolved paths and
//! existing directories, the SMTP URL parsed (`smtp`). Every problem found in stage two is
//! reported at once. Errors and their origins are in `error`.
//!
//! Secrets (`HERALD_SMTP_URL`, `HERALD_SECRET`, `HERALD_ADMIN_TOKEN`) come only from the
//! environment and are held in [`Secret`], whose `Debug` and `Display` never show the value.
//!
//! This file only finds the file and runs the two stages; callers name every type through it
//! (`config::Config`, `config::SmtpSettings`), never through a submodule. Reads the
//! configuration file and checks that directories exist; nothing else touches the file
//! system, and nothing here touches the network or the clock.

use std::path::{Path, PathBuf};

use crate::domain::Secret;

mod error;
mod raw;
mod settings;
mod smtp;
mod validate;

pub use error::{ConfigError, Origin};
pub use raw::{
    ENV_ADMIN_TOKEN, ENV_CONFIG, ENV_DATABASE_URL, ENV_IMAP_PASSWORD, ENV_MAILGUN_WEBHOOK_KEY,
    ENV_SECRET, ENV_SMTP_URL, Environment,
};
pub use settings::{
    Bounces, Config, Delivery, Dkim, FeedSource, Http, ImapSettings, News, Newsletter, Schedule,
    Secrets,
};
pub use smtp::{Security, SmtpSettings, SmtpUrlError};
pub use validate::{MIN_SECRET_BYTES, is_postgres_url};

/// The file looked for in the working directory when neither `--config` nor `HERALD_CONFIG`
/// names one.
pub const DEFAULT_FILE: &str = "herald.toml";

impl Config {
    /// Finds and loads the configuration: `explicit` (from `--config`), else `HERALD_CONFIG`,
    /// else `herald.toml` in `cwd`.
    ///
    /// # Errors
    /// [`ConfigError`] naming the key and the file line or variable at fault.
    pub fn load(
        explicit: Option<&Path>,
        env: &Environment,
        cwd: &Path,
    ) -> Result<Self, ConfigError> {
        let path = explicit
            .map(Path::to_path_buf)
            .or_else(|| env.get(ENV_CONFIG).map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_FILE));
        let path = if path.is_absolute() {
            path
        } else {
            cwd.join(path)
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ConfigError::NotFound(path));
            }
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        Self::from_text(&text, &path, env, cwd)
    }

    /// Loads from `text`, the contents of the file at `path`.
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn from_text(
        text: &str,
        path: &Path,
        env: &Environment,
        cwd: &Path,
    ) -> Result<Self, ConfigError> {
        let input = raw::read(text, path, env)?;
        validate::validate(input, path, cwd, env)
    }

    /// The signing key for tokens, or `None` when `HERALD_SECRET` is unset.
    pub fn signing_key(&self) -> Option<&Secret> {
        self.secrets.signing_key.as_ref()
    }
}
