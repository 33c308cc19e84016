//! Configuration: `herald.toml` plus environment overrides, in two stages.
//!
//! Stage one reads the file into raw serde structs (unknown keys rejected, each error located
//! by file and line) and applies `HERALD_<SECTION>__<KEY>` overrides (each error named by its
//! variable). Stage two validates the raw values into [`Config`]: typed addresses, a parsed
//! time zone and cron expression, resolved paths and existing directories. Every problem found
//! in stage two is reported at once.
//!
//! Secrets (`HERALD_SMTP_URL`, `HERALD_SECRET`, `HERALD_ADMIN_TOKEN`) come only from the
//! environment and are held in [`Secret`], whose `Debug` and `Display` never show the value.
//!
//! Reads the configuration file and checks that directories exist; nothing else touches the
//! file system, and nothing here touches the network or the clock.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono_tz::Tz;
use serde::Deserialize;
use url::Url;

use crate::domain::{EmailAddress, Mailbox, Secret, Slug};
use crate::schedule::parse_cron;
use crate::selection::OnExhausted;
use crate::toml_source::TomlSource;

/// The file looked for in the working directory when neither `--config` nor `HERALD_CONFIG`
/// names one.
pub const DEFAULT_FILE: &str = "herald.toml";

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

/// The shortest `HERALD_SECRET` accepted: 256 bits.
pub const MIN_SECRET_BYTES: usize = 32;

const SHORT_FORMS: [&str; 7] = [
    ENV_IMAP_PASSWORD,
    ENV_CONFIG,
    ENV_DATABASE_URL,
    ENV_SMTP_URL,
    ENV_SECRET,
    ENV_ADMIN_TOKEN,
    ENV_MAILGUN_WEBHOOK_KEY,
];

/// Where a configuration value came from, so that an error can point at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A line of the configuration file.
    File { path: PathBuf, line: usize },
    /// An environment variable.
    Env(String),
    /// The built-in default.
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File { path, line } => write!(f, "{}:{line}", path.display()),
            Self::Env(var) => write!(f, "environment variable {var}"),
            Self::Default => f.write_str("default value"),
        }
    }
}

/// A configuration problem. Each names the key and where its value came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "no configuration file: {} does not exist (pass --config PATH or set HERALD_CONFIG)",
        .0.display()
    )]
    NotFound(PathBuf),
    #[error("reading configuration file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin}: {}{message}", key.as_deref().map(|k| format!("`{k}`: ")).unwrap_or_default())]
    Invalid {
        key: Option<String>,
        origin: Origin,
        message: String,
    },
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Many(Vec<ConfigError>),
}

// ---------------------------------------------------------------------------------------------
// Stage one: raw structs, exactly the file's shape.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    newsletter: RawNewsletter,
    #[serde(default)]
    glossary: RawDir,
    #[serde(default)]
    templates: RawDir,
    #[serde(default)]
    subscribers: RawDir,
    #[serde(default)]
    news: RawNews,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    delivery: RawDelivery,
    #[serde(default)]
    schedule: RawSchedule,
    #[serde(default)]
    http: RawHttp,
    #[serde(default)]
    bounces: RawBounces,
    #[serde(default)]
    tracking: RawTracking,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawTracking {
    clicks: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawBounces {
    domain: Option<String>,
    soft_bounce_limit: i64,
    imap_url: Option<String>,
    imap_processed: String,
    imap_poll_seconds: i64,
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
struct RawNewsletter {
    name: String,
    from: String,
    reply_to: Option<String>,
    base_url: String,
    postal_address: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDir {
    dir: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawNews {
    curated: Option<String>,
    links_per_issue: i64,
    min_links: i64,
    max_age_days: i64,
    keywords: Vec<String>,
    feeds: Vec<RawFeed>,
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
struct RawFeed {
    name: String,
    url: String,
    max_items: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawStore {
    url: String,
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
struct RawDelivery {
    outbox: String,
    concurrency: i64,
    rate_per_second: f64,
    max_per_hour: Option<i64>,
    max_attempts: i64,
    timeout_seconds: i64,
    retry_base_ms: i64,
    retry_max_ms: i64,
    lease_seconds: i64,
    sender_delivers: bool,
    dkim: Option<RawDkim>,
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
struct RawDkim {
    domain: String,
    selector: String,
    private_key_path: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSchedule {
    cron: String,
    timezone: String,
    catch_up_hours: i64,
    queue: Vec<String>,
    on_exhausted: String,
    review_hours: Option<i64>,
    editors: Vec<String>,
    poll_seconds: i64,
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
struct RawHttp {
    listen: String,
    metrics_listen: Option<String>,
    trusted_proxies: Vec<String>,
    header_timeout_seconds: i64,
    max_connections: i64,
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

// ---------------------------------------------------------------------------------------------
// Stage two: the validated configuration.

/// The validated configuration. Every path is absolute or relative to the working directory.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was read from.
    pub file: PathBuf,
    pub newsletter: Newsletter,
    /// Directory of glossary term files.
    pub glossary_dir: PathBuf,
    /// Directory of Tera templates.
    pub templates_dir: PathBuf,
    /// Directory of subscriber CSV files imported before each send.
    pub subscribers_dir: PathBuf,
    pub news: News,
    /// Database location, e.g. `sqlite:///srv/herald/herald.db`.
    pub store_url: String,
    pub delivery: Delivery,
    pub schedule: Schedule,
    pub http: Http,
    pub bounces: Bounces,
    /// `[tracking] clicks`: news links go through Herald's redirect, counted per link.
    pub track_clicks: bool,
    /// `HERALD_SMTP_URL`, parsed; `None` means the outbox.
    pub smtp: Option<SmtpSettings>,
    pub secrets: Secrets,
}

/// `[newsletter]`.
#[derive(Debug, Clone)]
pub struct Newsletter {
    pub name: String,
    pub from: Mailbox,
    pub reply_to: Option<EmailAddress>,
    /// Public address of the web pages, always ending in `/`.
    pub base_url: Url,
    /// The sender's postal address, printed in every issue's footer (CAN-SPAM, and the
    /// mailbox providers' rules for bulk senders); required when sending over SMTP.
    pub postal_address: Option<String>,
}

/// `[news]`.
#[derive(Debug, Clone)]
pub struct News {
    /// The editor-curated links file, if any.
    pub curated: Option<PathBuf>,
    pub links_per_issue: usize,
    /// Fewer links than this in the next issue is reported (check, preview, review copy,
    /// metrics).
    pub min_links: usize,
    pub max_age_days: u32,
    /// Words that raise a link's rank when they appear in its title or summary.
    pub keywords: Vec<String>,
    pub feeds: Vec<FeedSource>,
}

/// One `[[news.feeds]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedSource {
    pub name: String,
    pub url: Url,
    pub max_items: Option<usize>,
}

/// `[delivery]`.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Where the file transport writes `.eml` files.
    pub outbox: PathBuf,
    pub concurrency: usize,
    /// Messages per second across all workers; `None` means unlimited.
    pub rate_per_second: Option<f64>,
    pub max_per_hour: Option<u32>,
    pub max_attempts: u32,
    /// Limit for one whole SMTP transaction.
    pub timeout: std::time::Duration,
    /// First retry delay after a transient failure; doubled per attempt.
    pub retry_base: std::time::Duration,
    /// Longest retry delay.
    pub retry_max: std::time::Duration,
    /// How long the sender lease lasts without a heartbeat (renewed every quarter of it).
    pub lease: std::time::Duration,
    /// Whether the sender delivers too (`true`), or only freezes, wakes the workers and
    /// follows their progress (`false`: every message goes through `herald worker`s).
    pub sender_delivers: bool,
    pub dkim: Option<Dkim>,
}

/// `[bounces]`: where bounces, complaints and unsubscribe emails come back.
#[derive(Debug, Clone)]
pub struct Bounces {
    /// The domain of the per-delivery envelope sender (`bounces+TOKEN@DOMAIN`) and of the
    /// `mailto:` unsubscribe address (`unsubscribe+TOKEN@DOMAIN`), in ASCII form; `None`
    /// keeps the From address as envelope sender and the Reply-To address for unsubscribes.
    pub domain: Option<String>,
    /// Soft bounces in a row (one per issue) after which an address is suppressed.
    pub soft_bounce_limit: u32,
    /// `imap_url`: the mailbox the daemon reads returned messages from.
    pub imap: Option<ImapSettings>,
    /// How often the daemon reads it.
    pub imap_poll: Duration,
}

/// The bounce mailbox: `[bounces] imap_url` (`imaps://USER@HOST[:PORT]/MAILBOX`, or `imap://`
/// for a server on the same host), its password from `HERALD_IMAP_PASSWORD`.
#[derive(Debug, Clone)]
pub struct ImapSettings {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    pub user: String,
    /// `HERALD_IMAP_PASSWORD`; `None` when it is not set.
    pub password: Option<Secret>,
    pub mailbox: String,
    /// Where read messages are moved (`[bounces] imap_processed`, default `Processed`).
    pub processed: String,
}

/// `[delivery.dkim]`, with its key read and parsed when the configuration is loaded.
#[derive(Debug, Clone)]
pub struct Dkim {
    pub domain: String,
    pub selector: String,
    pub private_key_path: PathBuf,
    /// The signer built from the key file.
    pub signer: std::sync::Arc<crate::dkim::DkimSigner>,
}

/// `[schedule]`.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// The cron expression as written (six fields, seconds first).
    pub cron_expression: String,
    pub cron: croner::Cron,
    pub timezone: Tz,
    pub catch_up_hours: u32,
    /// Slugs to feature next, in order (checked against the glossary by `herald check`).
    pub queue: Vec<Slug>,
    pub on_exhausted: OnExhausted,
    pub review_hours: Option<u32>,
    pub editors: Vec<EmailAddress>,
    /// How often the daemon wakes to look at the schedule (seconds; the due times themselves
    /// come from `cron`).
    pub poll_seconds: u32,
}

/// `[http]`.
#[derive(Debug, Clone)]
pub struct Http {
    pub listen: SocketAddr,
    /// A separate address that serves `/metrics` without a token (for a scraper on a
    /// private network); without it, `/metrics` needs `HERALD_ADMIN_TOKEN`.
    pub metrics_listen: Option<SocketAddr>,
    /// Reverse proxies whose `X-Forwarded-For` / `Forwarded` headers name the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Time a client has to send a request's headers; also the keep-alive idle timeout.
    pub header_timeout: Duration,
    /// Connections open at once (lowered to fit the open file limit).
    pub max_connections: usize,
}

/// Values that only the environment may provide.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    /// `HERALD_SMTP_URL`: without it, mail goes to the outbox as `.eml` files.
    pub smtp_url: Option<Secret>,
    /// `HERALD_SECRET`: the token signing key.
    pub signing_key: Option<Secret>,
    /// `HERALD_ADMIN_TOKEN`: enables `GET /preview`.
    pub admin_token: Option<Secret>,
    /// `HERALD_MAILGUN_WEBHOOK_KEY`: enables `POST /webhooks/mailgun`.
    pub mailgun_webhook_key: Option<Secret>,
}

// ---------------------------------------------------------------------------------------------
// The SMTP URL, parsed when the configuration is loaded.

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// No TLS (a local relay): `smtp://host:port`.
    None,
    /// STARTTLS if the server offers it: `smtp://host:port?tls=opportunistic`.
    Opportunistic,
    /// STARTTLS, or fail: `smtp://host:587?tls=required`.
    StartTls,
    /// TLS from the first byte: `smtps://host:465`.
    Implicit,
}

/// A parsed `HERALD_SMTP_URL`.
#[derive(Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub(crate) credentials: Option<(String, Secret)>,
    /// An extra trusted root certificate (PEM), for a relay with a private CA: `?tls_ca=PATH`.
    pub tls_ca: Option<PathBuf>,
    /// The EHLO name: `?hello=NAME`, else the From domain.
    pub hello: String,
    /// Limit for one whole SMTP transaction.
    pub timeout: Duration,
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the credentials.
        write!(
            f,
            "SmtpSettings {{ host: {:?}, port: {}, security: {:?}, auth: {} }}",
            self.host,
            self.port,
            self.security,
            self.credentials.is_some()
        )
    }
}

/// A problem with `HERALD_SMTP_URL`. The message never contains the URL (it may hold a
/// password).
#[derive(Debug, thiserror::Error)]
#[error("HERALD_SMTP_URL: {0}")]
pub struct SmtpUrlError(pub String);

impl SmtpSettings {
    /// Parses `smtp://[user:pass@]host[:port][?tls=required|opportunistic][&tls_ca=PATH][&hello=NAME]`
    /// or `smtps://[user:pass@]host[:port]`.
    ///
    /// # Errors
    /// [`SmtpUrlError`] naming the part that is wrong.
    pub fn from_url(
        url: &Secret,
        default_hello: &str,
        timeout: Duration,
    ) -> Result<Self, SmtpUrlError> {
        let url = Url::parse(url.expose()).map_err(|e| SmtpUrlError(format!("not a URL ({e})")))?;
        let mut security = match url.scheme() {
            "smtp" => Security::None,
            "smtps" => Security::Implicit,
            other => {
                return Err(SmtpUrlError(format!(
                    "scheme `{other}` is not smtp or smtps"
                )));
            }
        };
        let host = url
            .host_str()
            .ok_or_else(|| SmtpUrlError("no host".into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = url.port().unwrap_or(if security == Security::Implicit {
            465
        } else {
            25
        });
        let mut tls_ca = None;
        let mut hello = default_hello.to_owned();
        for (key, value) in url.query_pairs() {
            match (key.as_ref(), value.as_ref()) {
                ("tls", "required") if security == Security::None => security = Security::StartTls,
                ("tls", "opportunistic") if security == Security::None => {
                    security = Security::Opportunistic
                }
                ("tls", "none") if security == Security::None => {}
                ("tls", other) => {
                    return Err(SmtpUrlError(format!(
                        "tls={other} is not one of required, opportunistic, none (smtps:// is implicit TLS)"
                    )));
                }
                ("tls_ca", path) => tls_ca = Some(PathBuf::from(path)),
                ("hello", name) => hello = name.to_owned(),
                (other, _) => return Err(SmtpUrlError(format!("unknown parameter `{other}`"))),
            }
        }
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let credentials = (!url.username().is_empty()).then(|| {
            (
                decode(url.username()),
                Secret::new(decode(url.password().unwrap_or(""))),
            )
        });
        Ok(Self {
            host,
            port,
            security,
            credentials,
            tls_ca,
            hello,
            timeout,
        })
    }
}

/// Environment variables as a map, so that loading is testable without touching the process.
pub type Environment = BTreeMap<String, String>;

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
        let source = TomlSource::parse(text).map_err(|e| {
            let lines = TomlSource::lines_only(text);
            toml_error(&e, path, &lines)
        })?;
        // Stage one, the file alone: errors point at lines.
        toml::from_str::<RawConfig>(text).map_err(|e| toml_error(&e, path, &source))?;
        let mut table: toml::Table =
            toml::from_str(text).map_err(|e| toml_error(&e, path, &source))?;

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

        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let mut v = Validator {
            file: path.to_path_buf(),
            source,
            env_keys,
            file_dir: if dir.as_os_str().is_empty() {
                cwd.to_path_buf()
            } else {
                dir
            },
            cwd: cwd.to_path_buf(),
            errors: Vec::new(),
        };
        let config = v.validate(raw, env);
        match (config, v.errors.len()) {
            (Some(config), 0) => Ok(config),
            _ if v.errors.len() == 1 => Err(v.errors.remove(0)),
            _ => Err(ConfigError::Many(v.errors)),
        }
    }

    /// The signing key for tokens, or `None` when `HERALD_SECRET` is unset.
    pub fn signing_key(&self) -> Option<&Secret> {
        self.secrets.signing_key.as_ref()
    }
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

/// Whether `url` names a PostgreSQL database (`postgres://` or `postgresql://`).
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
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

struct Validator {
    file: PathBuf,
    source: TomlSource,
    env_keys: BTreeMap<String, String>,
    file_dir: PathBuf,
    cwd: PathBuf,
    errors: Vec<ConfigError>,
}

impl Validator {
    fn origin(&self, key: &str) -> Origin {
        if let Some(var) = self.env_keys.get(key) {
            return Origin::Env(var.clone());
        }
        match self.source.key_line(key) {
            Some(line) => Origin::File {
                path: self.file.clone(),
                line,
            },
            None => Origin::Default,
        }
    }

    fn fail(&mut self, key: &str, message: impl Into<String>) {
        let origin = self.origin(key);
        self.errors.push(ConfigError::Invalid {
            key: Some(key.to_owned()),
            origin,
            message: message.into(),
        });
    }

    /// A path relative to the file's directory (or to the working directory when it came
    /// from the environment).
    fn path(&self, key: &str, value: &str) -> PathBuf {
        let p = PathBuf::from(value);
        if p.is_absolute() {
            p
        } else if self.env_keys.contains_key(key) {
            self.cwd.join(p)
        } else {
            self.file_dir.join(p)
        }
    }

    fn existing_dir(&mut self, key: &str, value: Option<&str>, default: &str) -> PathBuf {
        let path = self.path(key, value.unwrap_or(default));
        if !path.is_dir() {
            self.fail(key, format!("directory {} does not exist", path.display()));
        }
        path
    }

    fn count(&mut self, key: &str, value: i64, min: i64, max: i64) -> i64 {
        if value < min || value > max {
            self.fail(
                key,
                format!("{value} is out of range: expected {min} to {max}"),
            );
            return min;
        }
        value
    }

    fn validate(&mut self, raw: RawConfig, env: &Environment) -> Option<Config> {
        let newsletter = self.newsletter(raw.newsletter);
        let glossary_dir =
            self.existing_dir("glossary.dir", raw.glossary.dir.as_deref(), "glossary");
        let templates_dir =
            self.existing_dir("templates.dir", raw.templates.dir.as_deref(), "templates");
        let subscribers_dir = self.existing_dir(
            "subscribers.dir",
            raw.subscribers.dir.as_deref(),
            "subscribers",
        );
        let news = self.news(raw.news);
        let store_url = self.store_url(&raw.store.url);
        let delivery = self.delivery(raw.delivery);
        let schedule = self.schedule(raw.schedule);
        let mut trusted_proxies = Vec::new();
        for (i, value) in raw.http.trusted_proxies.iter().enumerate() {
            let parsed = value
                .parse::<ipnet::IpNet>()
                .or_else(|_| value.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
            match parsed {
                Ok(net) => trusted_proxies.push(net),
                Err(_) => self.fail(
                    &format!("http.trusted_proxies[{i}]"),
                    format!("`{value}` is not an address or a CIDR range such as 10.0.0.0/8"),
                ),
            }
        }
        let soft_bounce_limit = self.count(
            "bounces.soft_bounce_limit",
            raw.bounces.soft_bounce_limit,
            1,
            100,
        ) as u32;
        let bounce_domain = raw.bounces.domain.as_deref().and_then(|d| {
            let ascii = idna::domain_to_ascii(d.trim()).ok().filter(|a| {
                a.contains('.')
                    && a.len() <= 200
                    && a.split('.').all(|label| {
                        !label.is_empty()
                            && !label.starts_with('-')
                            && !label.ends_with('-')
                            && label
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    })
            });
            if ascii.is_none() {
                self.fail(
                    "bounces.domain",
                    format!("`{d}` is not a domain name such as bounces.example.com"),
                );
            }
            ascii
        });
        let imap_poll = Duration::from_secs(self.count(
            "bounces.imap_poll_seconds",
            raw.bounces.imap_poll_seconds,
            5,
            86_400,
        ) as u64);
        let imap = raw.bounces.imap_url.as_deref().and_then(|value| {
            let bad = |this: &mut Self, why: &str| {
                this.fail(
                    "bounces.imap_url",
                    format!("`{value}` {why}: expected imaps://USER@HOST[:PORT]/MAILBOX"),
                );
                None
            };
            let Ok(url) = url::Url::parse(value) else {
                return bad(self, "is not a URL");
            };
            let tls = match url.scheme() {
                "imaps" => true,
                "imap" => false,
                _ => return bad(self, "is not an imap:// or imaps:// URL"),
            };
            if url.password().is_some() {
                return bad(
                    self,
                    "carries a password; set HERALD_IMAP_PASSWORD in the environment instead",
                );
            }
            let Some(host) = url.host_str().map(str::to_owned) else {
                return bad(self, "names no host");
            };
            if url.username().is_empty() {
                return bad(self, "names no user");
            }
            // Needed only by what reads the mailbox (the daemon, `bounces poll`), which
            // refuses to start without it.
            let password = env
                .get(ENV_IMAP_PASSWORD)
                .filter(|v| !v.is_empty())
                .map(Secret::new);
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            let mailbox = decode(url.path().trim_start_matches('/'));
            Some(ImapSettings {
                host,
                port: url.port().unwrap_or(if tls { 993 } else { 143 }),
                tls,
                user: decode(url.username()),
                password,
                mailbox: if mailbox.is_empty() {
                    "INBOX".to_owned()
                } else {
                    mailbox
                },
                processed: raw.bounces.imap_processed.clone(),
            })
        });
        let header_timeout = Duration::from_secs(self.count(
            "http.header_timeout_seconds",
            raw.http.header_timeout_seconds,
            1,
            300,
        ) as u64);
        let max_connections = self.count(
            "http.max_connections",
            raw.http.max_connections,
            16,
            1_000_000,
        ) as usize;
        let metrics_listen =
            raw.http.metrics_listen.as_deref().and_then(|value| {
                match value.parse::<SocketAddr>() {
                    Ok(addr) => Some(addr),
                    Err(_) => {
                        self.fail(
                            "http.metrics_listen",
                            format!("`{value}` is not an address and port such as 127.0.0.1:9090"),
                        );
                        None
                    }
                }
            });
        let listen = match raw.http.listen.parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                self.fail(
                    "http.listen",
                    format!(
                        "`{}` is not an address and port such as 127.0.0.1:8080",
                        raw.http.listen
                    ),
                );
                None
            }
        };
        let secret = |name: &str| env.get(name).filter(|v| !v.is_empty()).map(Secret::new);
        let secrets = Secrets {
            smtp_url: secret(ENV_SMTP_URL),
            signing_key: secret(ENV_SECRET),
            admin_token: secret(ENV_ADMIN_TOKEN),
            mailgun_webhook_key: secret(ENV_MAILGUN_WEBHOOK_KEY),
        };
        let env_error = |var: &str, message: String| ConfigError::Invalid {
            key: None,
            origin: Origin::Env(var.into()),
            message,
        };
        let smtp = secrets.smtp_url.as_ref().and_then(|url| {
            let hello = newsletter
                .as_ref()
                .map_or("localhost", |n| n.from.email.domain());
            match SmtpSettings::from_url(url, hello, delivery.timeout) {
                Ok(settings) => Some(settings),
                Err(e) => {
                    // The message never holds the URL: it may hold a password.
                    self.errors.push(env_error(ENV_SMTP_URL, e.0));
                    None
                }
            }
        });
        if let Some(ca) = smtp.as_ref().and_then(|s| s.tls_ca.as_ref())
            && !ca.is_file()
        {
            self.errors.push(env_error(
                ENV_SMTP_URL,
                format!("tls_ca file {} does not exist", ca.display()),
            ));
        }
        match &secrets.signing_key {
            Some(key) if key.expose().len() < MIN_SECRET_BYTES => self.errors.push(env_error(
                ENV_SECRET,
                format!(
                    "must be at least {MIN_SECRET_BYTES} bytes (for example `openssl rand -hex 32`)"
                ),
            )),
            None if secrets.smtp_url.is_some() => self.errors.push(env_error(
                ENV_SECRET,
                "HERALD_SECRET is not set: sending over SMTP needs a signing key for unsubscribe links (for example `openssl rand -hex 32`)".into(),
            )),
            _ => {}
        }
        if secrets.smtp_url.is_some()
            && newsletter
                .as_ref()
                .is_some_and(|n| n.postal_address.is_none())
        {
            self.fail(
                "newsletter.postal_address",
                "is required when sending over SMTP (HERALD_SMTP_URL is set): bulk email must \
                 carry the sender's postal address (CAN-SPAM; Gmail and Yahoo sender rules)",
            );
        }
        Some(Config {
            file: self.file.clone(),
            newsletter: newsletter?,
            glossary_dir,
            templates_dir,
            subscribers_dir,
            news,
            store_url: store_url?,
            delivery,
            schedule: schedule?,
            http: Http {
                listen: listen?,
                metrics_listen,
                trusted_proxies,
                header_timeout,
                max_connections,
            },
            bounces: Bounces {
                domain: bounce_domain,
                soft_bounce_limit,
                imap,
                imap_poll,
            },
            track_clicks: raw.tracking.clicks,
            smtp,
            secrets,
        })
    }

    fn newsletter(&mut self, raw: RawNewsletter) -> Option<Newsletter> {
        if raw.name.trim().is_empty() || raw.name.chars().any(char::is_control) {
            self.fail(
                "newsletter.name",
                "must be a non-empty name without control characters",
            );
        }
        let from = Mailbox::parse(&raw.from)
            .map_err(|e| self.fail("newsletter.from", format!("`{}`: {e}", raw.from)))
            .ok();
        let reply_to = match raw.reply_to.as_deref() {
            None => None,
            Some(s) => EmailAddress::parse(s)
                .map_err(|e| self.fail("newsletter.reply_to", format!("`{s}`: {e}")))
                .ok(),
        };
        let base_url = match Url::parse(&raw.base_url) {
            Ok(mut url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                if !url.path().ends_with('/') {
                    let path = format!("{}/", url.path());
                    url.set_path(&path);
                }
                Some(url)
            }
            Ok(_) => {
                self.fail(
                    "newsletter.base_url",
                    format!("`{}` must be an http or https URL", raw.base_url),
                );
                None
            }
            Err(e) => {
                self.fail("newsletter.base_url", format!("`{}`: {e}", raw.base_url));
                None
            }
        };
        let postal_address = raw
            .postal_address
            .map(|a| a.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|a| !a.is_empty());
        if postal_address
            .as_deref()
            .is_some_and(|a| a.chars().count() > 200)
        {
            self.fail(
                "newsletter.postal_address",
                "is longer than 200 characters: give the postal address, on one line",
            );
        }
        Some(Newsletter {
            postal_address,
            name: raw.name.trim().to_owned(),
            from: from?,
            reply_to: if raw.reply_to.is_some() {
                Some(reply_to?)
            } else {
                None
            },
            base_url: base_url?,
        })
    }

    fn news(&mut self, raw: RawNews) -> News {
        let curated = raw.curated.as_deref().map(|c| {
            let path = self.path("news.curated", c);
            if !path.is_file() {
                self.fail(
                    "news.curated",
                    format!("file {} does not exist", path.display()),
                );
            }
            path
        });
        let links_per_issue =
            self.count("news.links_per_issue", raw.links_per_issue, 0, 50) as usize;
        let min_links = self.count("news.min_links", raw.min_links, 0, 50) as usize;
        let max_age_days = self.count("news.max_age_days", raw.max_age_days, 1, 3650) as u32;
        let mut names = BTreeSet::new();
        let mut feeds = Vec::new();
        for (i, feed) in raw.feeds.into_iter().enumerate() {
            let key = |field: &str| format!("news.feeds[{i}].{field}");
            let name = feed.name.trim().to_owned();
            if name.is_empty() {
                self.fail(&key("name"), "must not be empty");
            } else if !names.insert(name.to_lowercase()) {
                self.fail(&key("name"), format!("`{name}` is used by another feed"));
            }
            let url = match Url::parse(&feed.url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => Some(u),
                Ok(_) => {
                    self.fail(
                        &key("url"),
                        format!("`{}` must be an http or https URL", feed.url),
                    );
                    None
                }
                Err(e) => {
                    self.fail(&key("url"), format!("`{}`: {e}", feed.url));
                    None
                }
            };
            let max_items = feed
                .max_items
                .map(|n| self.count(&key("max_items"), n, 1, 1000) as usize);
            if let Some(url) = url {
                feeds.push(FeedSource {
                    name,
                    url,
                    max_items,
                });
            }
        }
        News {
            curated,
            links_per_issue,
            min_links,
            max_age_days,
            keywords: raw
                .keywords
                .into_iter()
                .map(|k| k.trim().to_lowercase())
                .filter(|k| !k.is_empty())
                .collect(),
            feeds,
        }
    }

    fn store_url(&mut self, url: &str) -> Option<String> {
        const KEY: &str = "store.url";
        if is_postgres_url(url) {
            // A PostgreSQL server (the store reads the rest of the URL when it connects).
            return Some(url.to_owned());
        }
        let rest = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"));
        let Some(rest) = rest else {
            self.fail(
                KEY,
                format!("`{url}`: expected sqlite://PATH (for example sqlite://herald.db) or postgres://USER@HOST/DATABASE"),
            );
            return None;
        };
        if rest == ":memory:" || rest.starts_with(":memory:?") {
            return Some(format!("sqlite:{rest}"));
        }
        let (file, query) = match rest.split_once('?') {
            Some((f, q)) => (f, format!("?{q}")),
            None => (rest, String::new()),
        };
        if file.is_empty() {
            self.fail(KEY, format!("`{url}` names no database file"));
            return None;
        }
        let path = if self.env_keys.contains_key(KEY) {
            let p = PathBuf::from(file);
            if p.is_absolute() { p } else { self.cwd.join(p) }
        } else {
            self.path(KEY, file)
        };
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
            && !parent.is_dir()
        {
            self.fail(
                KEY,
                format!(
                    "the directory {} of the database does not exist (create it, or point {ENV_DATABASE_URL} / store.url elsewhere)",
                    parent.display()
                ),
            );
            return None;
        }
        Some(format!("sqlite://{}{query}", path.display()))
    }

    fn delivery(&mut self, raw: RawDelivery) -> Delivery {
        let concurrency = self.count("delivery.concurrency", raw.concurrency, 1, 256) as usize;
        let rate_per_second = if raw.rate_per_second.is_finite() && raw.rate_per_second >= 0.0 {
            (raw.rate_per_second > 0.0).then_some(raw.rate_per_second)
        } else {
            self.fail(
                "delivery.rate_per_second",
                "must be 0 (unlimited) or a positive number",
            );
            None
        };
        let max_per_hour = raw
            .max_per_hour
            .map(|n| self.count("delivery.max_per_hour", n, 1, 10_000_000) as u32);
        let max_attempts = self.count("delivery.max_attempts", raw.max_attempts, 1, 100) as u32;
        let timeout = self.count("delivery.timeout_seconds", raw.timeout_seconds, 1, 3600) as u64;
        let retry_base =
            self.count("delivery.retry_base_ms", raw.retry_base_ms, 1, 3_600_000) as u64;
        let retry_max = self.count("delivery.retry_max_ms", raw.retry_max_ms, 1, 3_600_000) as u64;
        let lease_seconds = self.count("delivery.lease_seconds", raw.lease_seconds, 2, 3600) as u64;
        let dkim = raw.dkim.and_then(|d| {
            const KEY: &str = "delivery.dkim.private_key_path";
            let private_key_path = self.path(KEY, &d.private_key_path);
            let pem = match std::fs::read_to_string(&private_key_path) {
                Ok(pem) => pem,
                Err(e) => {
                    self.fail(
                        KEY,
                        format!("cannot read {}: {e}", private_key_path.display()),
                    );
                    return None;
                }
            };
            match crate::compose::dkim_signer(&d.domain, &d.selector, &pem) {
                Ok(signer) => Some(Dkim {
                    domain: d.domain,
                    selector: d.selector,
                    private_key_path,
                    signer: std::sync::Arc::new(signer),
                }),
                Err(e) => {
                    self.fail(KEY, format!("{}: {e}", private_key_path.display()));
                    None
                }
            }
        });
        Delivery {
            outbox: self.path("delivery.outbox", &raw.outbox),
            concurrency,
            rate_per_second,
            max_per_hour,
            max_attempts,
            timeout: std::time::Duration::from_secs(timeout),
            retry_base: std::time::Duration::from_millis(retry_base),
            retry_max: std::time::Duration::from_millis(retry_max.max(retry_base)),
            lease: std::time::Duration::from_secs(lease_seconds),
            sender_delivers: raw.sender_delivers,
            dkim,
        }
    }

    fn schedule(&mut self, raw: RawSchedule) -> Option<Schedule> {
        let cron = match parse_cron(&raw.cron) {
            Ok(cron) => Some(cron),
            Err(e) => {
                self.fail("schedule.cron", format!("`{}`: {e}", raw.cron));
                None
            }
        };
        let timezone = match Tz::from_str(&raw.timezone) {
            Ok(tz) => Some(tz),
            Err(_) => {
                self.fail(
                    "schedule.timezone",
                    format!(
                        "`{}` is not an IANA time zone such as Europe/Berlin",
                        raw.timezone
                    ),
                );
                None
            }
        };
        let catch_up_hours =
            self.count("schedule.catch_up_hours", raw.catch_up_hours, 0, 24 * 14) as u32;
        let mut queue = Vec::new();
        for (i, s) in raw.queue.iter().enumerate() {
            match Slug::parse(s) {
                Ok(slug) => queue.push(slug),
                Err(e) => self.fail(&format!("schedule.queue[{i}]"), e.to_string()),
            }
        }
        let on_exhausted = match raw.on_exhausted.as_str() {
            "restart" => OnExhausted::Restart,
            "stop" => OnExhausted::Stop,
            other => {
                self.fail(
                    "schedule.on_exhausted",
                    format!("`{other}`: expected \"restart\" or \"stop\""),
                );
                OnExhausted::Restart
            }
        };
        let review_hours = raw
            .review_hours
            .map(|h| self.count("schedule.review_hours", h, 1, 24 * 6) as u32);
        let mut editors = Vec::new();
        for (i, e) in raw.editors.iter().enumerate() {
            match EmailAddress::parse(e) {
                Ok(a) => editors.push(a),
                Err(err) => self.fail(&format!("schedule.editors[{i}]"), format!("`{e}`: {err}")),
            }
        }
        let poll_seconds = self.count("schedule.poll_seconds", raw.poll_seconds, 1, 3600) as u32;
        Some(Schedule {
            poll_seconds,
            cron_expression: raw.cron.clone(),
            cron: cron?,
            timezone: timezone?,
            catch_up_hours,
            queue,
            on_exhausted,
            review_hours,
            editors,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn parse(url: &str) -> Result<SmtpSettings, SmtpUrlError> {
        SmtpSettings::from_url(&Secret::new(url), "example.com", Duration::from_secs(30))
    }

    #[test]
    fn smtp_urls_cover_the_three_modes_and_keep_passwords_out_of_debug() {
        let plain = parse("smtp://127.0.0.1:2525").unwrap();
        assert_eq!((plain.port, plain.security), (2525, Security::None));
        let starttls = parse("smtp://mail.example.com:587?tls=required").unwrap();
        assert_eq!(starttls.security, Security::StartTls);
        let implicit = parse("smtps://user%40x:p%40ss@mail.example.com").unwrap();
        assert_eq!(
            (implicit.port, implicit.security),
            (465, Security::Implicit)
        );
        let (user, pass) = implicit.credentials.clone().unwrap();
        assert_eq!((user.as_str(), pass.expose()), ("user@x", "p@ss"));
        assert!(!format!("{implicit:?}").contains("p@ss"));
        assert!(parse("http://x").is_err());
        assert!(parse("smtp://x?tls=maybe").is_err());
        let err = parse("smtp://u:hunter2@x?bogus=1").unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }

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

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "[redacted] [redacted]");
    }

    #[test]
    fn six_field_cron_is_required() {
        assert!(parse_cron("0 0 9 * * Mon").is_ok());
        assert!(parse_cron("0 9 * * Mon").is_err());
    }
}
