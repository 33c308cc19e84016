//! Stage one: the raw configuration, exactly the shape of `herald.toml`, and the environment
//! variables that override it.
//!
//! The file is read into serde structs with unknown keys rejected, each error located by file
//! and line; then each `HERALD_<SECTION>__<KEY>` override is applied in turn, each error named
//! by its variable. The values stay as written (strings, signed integers): checking them is
//! stage two's job (`validate`), and nothing here judges a value, touches the file system
//! (the caller passes the file's text), reads the process's environment (the caller passes
//! it as an [`Environment`]), the network or the clock.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::error::{ConfigError, Origin};
use crate::toml_source::TomlSource;

/// Environment variables as a map, so that loading is testable without touching the process.
pub type Environment = BTreeMap<String, String>;

/// Environment variables with a fixed meaning (besides the `HERALD_<SECTION>__<KEY>` form).
pub const ENV_CONFIG: &str = "HERALD_CONFIG";
/// Short form of `HERALD_STORE__URL`.
pub const ENV_DATABASE_URL: &str = "HERALD_DATABASE_URL";
/// The SMTP server, with credentials: a secret.
pub const ENV_SMTP_URL: &str = "HERALD_SMTP_URL";
/// The key that signs unsubscribe and confirmation tokens: a secret.
pub const ENV_SECRET: &str = "HERALD_SECRET";
/// The bearer token for the editors' preview page: a secret.
pub const ENV_ADMIN_TOKEN: &str = "HERALD_ADMIN_TOKEN";

/// The bounce mailbox's password, for `[bounces] imap_url`: a secret.
pub const ENV_IMAP_PASSWORD: &str = "HERALD_IMAP_PASSWORD";

/// Mailgun's webhook signing key, for `POST /webhooks/mailgun`: a secret.
pub const ENV_MAILGUN_WEBHOOK_KEY: &str = "HERALD_MAILGUN_WEBHOOK_KEY";

const SHORT_FORMS: [&str; 7] = [
    ENV_IMAP_PASSWORD,
    ENV_CONFIG,
    ENV_DATABASE_URL,
    ENV_SMTP_URL,
    ENV_SECRET,
    ENV_ADMIN_TOKEN,
    ENV_MAILGUN_WEBHOOK_KEY,
];

/// What stage one hands to stage two.
pub(super) struct RawInput {
    /// The file with every override applied.
    pub(super) raw: RawConfig,
    /// The file's text, to find the line of a key an error names.
    pub(super) source: TomlSource,
    /// The keys set from the environment, each with its variable.
    pub(super) env_keys: BTreeMap<String, String>,
}

/// Reads `text`, the contents of the file at `path`, and applies the overrides in `env`.
///
/// # Errors
/// [`ConfigError::Invalid`] at the first problem: a TOML syntax error or an unknown key (by
/// file and line), or an override that does not fit (by variable).
pub(super) fn read(text: &str, path: &Path, env: &Environment) -> Result<RawInput, ConfigError> {
    let source = TomlSource::parse(text).map_err(|e| {
        let lines = TomlSource::lines_only(text);
        toml_error(&e, path, &lines)
    })?;
    // The file alone first: its errors point at lines.
    toml::from_str::<RawConfig>(text).map_err(|e| toml_error(&e, path, &source))?;
    let mut table: toml::Table = toml::from_str(text).map_err(|e| toml_error(&e, path, &source))?;

    // Then each override in turn: errors name the variable.
    let mut env_keys = BTreeMap::new();
    for (var, key, value) in overrides(env)? {
        set_path(&mut table, &key, value);
        if let Err(e) = RawConfig::deserialize(table.clone()) {
            return Err(ConfigError::Invalid {
                key: Some(key.join(".")),
                origin: Origin::Env(var),
                message: format!("{} (quote a string value as '\"...\"')", e.message()),
            });
        }
        env_keys.insert(key.join("."), var);
    }
    let raw = RawConfig::deserialize(table).map_err(|e| ConfigError::Invalid {
        key: None,
        origin: Origin::File {
            path: path.to_path_buf(),
            line: 1,
        },
        message: e.message().to_owned(),
    })?;
    Ok(RawInput {
        raw,
        source,
        env_keys,
    })
}

fn toml_error(e: &toml::de::Error, path: &Path, source: &TomlSource) -> ConfigError {
    let offset = e.span().map(|s| s.start).unwrap_or(0);
    ConfigError::Invalid {
        key: source.key_at(offset).map(str::to_owned),
        origin: Origin::File {
            path: path.to_path_buf(),
            line: source.line_of(offset),
        },
        message: e.message().trim().to_owned(),
    }
}

/// The `HERALD_<SECTION>__<KEY>` variables, as (variable, key path, value), sorted by name.
fn overrides(env: &Environment) -> Result<Vec<(String, Vec<String>, toml::Value)>, ConfigError> {
    let mut out = Vec::new();
    let database_url = env.get(ENV_DATABASE_URL);
    for (var, value) in env {
        let Some(rest) = var.strip_prefix("HERALD_") else {
            continue;
        };
        if SHORT_FORMS.contains(&var.as_str()) {
            continue;
        }
        if !rest.contains("__") {
            return Err(ConfigError::Invalid {
                key: None,
                origin: Origin::Env(var.clone()),
                message: format!(
                    "unknown variable; Herald reads {}, and HERALD_<SECTION>__<KEY> for any configuration key",
                    SHORT_FORMS.join(", ")
                ),
            });
        }
        let key: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        if key == ["store", "url"] && database_url.is_some() {
            return Err(ConfigError::Invalid {
                key: Some("store.url".into()),
                origin: Origin::Env(var.clone()),
                message: format!("set either {var} or {ENV_DATABASE_URL}, not both"),
            });
        }
        out.push((var.clone(), key, env_value(value)));
    }
    if let Some(url) = database_url {
        out.push((
            ENV_DATABASE_URL.into(),
            vec!["store".into(), "url".into()],
            toml::Value::String(url.clone()),
        ));
    }
    Ok(out)
}

/// An override is read as a TOML value when it is one (`8`, `true`, `["a", "b"]`, `"text"`),
/// and as a plain string otherwise (`AI Weekly`, `0 0 9 * * Mon`).
fn env_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

fn set_path(table: &mut toml::Table, key: &[String], value: toml::Value) {
    let (last, parents) = key
        .split_last()
        .expect("override keys have at least two parts");
    let mut current = table;
    for part in parents {
        let entry = current
            .entry(part.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        current = entry.as_table_mut().expect("just made a table");
    }
    current.insert(last.clone(), value);
}

// ---------------------------------------------------------------------------------------------
// The file's shape, section by section.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) newsletter: RawNewsletter,
    #[serde(default)]
    pub(super) glossary: RawDir,
    #[serde(default)]
    pub(super) templates: RawDir,
    #[serde(default)]
    pub(super) subscribers: RawDir,
    #[serde(default)]
    pub(super) news: RawNews,
    #[serde(default)]
    pub(super) store: RawStore,
    #[serde(default)]
    pub(super) delivery: RawDelivery,
    #[serde(default)]
    pub(super) schedule: RawSchedule,
    #[serde(default)]
    pub(super) http: RawHttp,
    #[serde(default)]
    pub(super) bounces: RawBounces,
    #[serde(default)]
    pub(super) tracking: RawTracking,
    #[serde(default)]
    pub(super) smtp: RawSmtp,
}

/// `[smtp]`: settings of the relay that are not secret (the relay itself, with its
/// credentials, is `HERALD_SMTP_URL`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawSmtp {
    /// Whether AUTH may go over a connection without TLS (`tls=none` or `tls=opportunistic`
    /// with credentials): only for a relay on this host or a network the operator trusts.
    pub(super) allow_plaintext_auth: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawTracking {
    pub(super) clicks: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawBounces {
    pub(super) domain: Option<String>,
    pub(super) soft_bounce_limit: i64,
    pub(super) imap_url: Option<String>,
    pub(super) imap_processed: String,
    pub(super) imap_poll_seconds: i64,
}

impl Default for RawBounces {
    fn default() -> Self {
        Self {
            domain: None,
            soft_bounce_limit: 3,
            imap_url: None,
            imap_processed: "Processed".into(),
            imap_poll_seconds: 60,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNewsletter {
    pub(super) name: String,
    pub(super) from: String,
    pub(super) reply_to: Option<String>,
    pub(super) base_url: String,
    pub(super) postal_address: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDir {
    pub(super) dir: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawNews {
    pub(super) curated: Option<String>,
    pub(super) links_per_issue: i64,
    pub(super) min_links: i64,
    pub(super) max_age_days: i64,
    pub(super) keywords: Vec<String>,
    pub(super) feeds: Vec<RawFeed>,
}

impl Default for RawNews {
    fn default() -> Self {
        Self {
            curated: None,
            links_per_issue: 5,
            min_links: 3,
            max_age_days: 14,
            keywords: Vec::new(),
            feeds: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFeed {
    pub(super) name: String,
    pub(super) url: String,
    pub(super) max_items: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawStore {
    pub(super) url: String,
}

impl Default for RawStore {
    fn default() -> Self {
        Self {
            url: "sqlite://herald.db".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawDelivery {
    pub(super) outbox: String,
    pub(super) concurrency: i64,
    pub(super) rate_per_second: f64,
    pub(super) max_per_hour: Option<i64>,
    pub(super) max_attempts: i64,
    pub(super) timeout_seconds: i64,
    pub(super) retry_base_ms: i64,
    pub(super) retry_max_ms: i64,
    pub(super) lease_seconds: i64,
    pub(super) sender_delivers: bool,
    pub(super) dkim: Option<RawDkim>,
}

impl Default for RawDelivery {
    fn default() -> Self {
        Self {
            outbox: "outbox".into(),
            concurrency: 4,
            rate_per_second: 0.0,
            max_per_hour: None,
            max_attempts: 5,
            timeout_seconds: 60,
            retry_base_ms: 2000,
            retry_max_ms: 60_000,
            lease_seconds: 60,
            sender_delivers: true,
            dkim: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDkim {
    pub(super) domain: String,
    pub(super) selector: String,
    pub(super) private_key_path: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawSchedule {
    pub(super) cron: String,
    pub(super) timezone: String,
    pub(super) catch_up_hours: i64,
    pub(super) queue: Vec<String>,
    pub(super) on_exhausted: String,
    pub(super) review_hours: Option<i64>,
    pub(super) editors: Vec<String>,
    pub(super) poll_seconds: i64,
}

impl Default for RawSchedule {
    fn default() -> Self {
        Self {
            cron: "0 0 9 * * Mon".into(),
            timezone: "UTC".into(),
            catch_up_hours: 24,
            queue: Vec::new(),
            on_exhausted: "restart".into(),
            review_hours: None,
            editors: Vec::new(),
            poll_seconds: 60,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawHttp {
    pub(super) listen: String,
    pub(super) metrics_listen: Option<String>,
    pub(super) trusted_proxies: Vec<String>,
    pub(super) header_timeout_seconds: i64,
    pub(super) max_connections: i64,
}

impl Default for RawHttp {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            metrics_listen: None,
            trusted_proxies: Vec::new(),
            header_timeout_seconds: 10,
            max_connections: 4096,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_values_are_toml_when_they_parse_and_strings_otherwise() {
        assert_eq!(env_value("8"), toml::Value::Integer(8));
        assert_eq!(env_value("true"), toml::Value::Boolean(true));
        assert_eq!(
            env_value("AI Weekly"),
            toml::Value::String("AI Weekly".into())
        );
        assert_eq!(env_value("\"8\""), toml::Value::String("8".into()));
        assert_eq!(
            env_value("0 0 9 * * Mon"),
            toml::Value::String("0 0 9 * * Mon".into())
        );
    }
}
