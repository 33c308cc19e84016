//! Stage two: the raw values, checked and typed into a [`Config`].
//!
//! One function per section (`newsletter`, `news`, `store_url`, `delivery`, `schedule`,
//! `http`, `bounces`), then the secrets and the rules that span sections (SMTP needs a
//! signing key and a postal address, and AUTH needs TLS unless the operator allows otherwise).
//! Every problem is collected, not just the first, so one start-up reports them all, each
//! naming its key and where the value came from.
//!
//! The file system is read only to check that configured directories and files exist and to
//! read the DKIM key; nothing here writes, touches the network or reads the clock, and no
//! message ever contains a secret's value.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono_tz::Tz;
use url::Url;

use super::error::{ConfigError, Origin};
use super::raw::{
    ENV_ADMIN_TOKEN, ENV_DATABASE_URL, ENV_IMAP_PASSWORD, ENV_MAILGUN_WEBHOOK_KEY, ENV_SECRET,
    ENV_SMTP_URL, Environment, RawBounces, RawDelivery, RawDkim, RawFeed, RawHttp, RawInput,
    RawNews, RawNewsletter, RawSchedule,
};
use super::settings::{
    Bounces, Config, Delivery, Dkim, FeedSource, Http, ImapSettings, News, Newsletter, Schedule,
    Secrets,
};
use super::smtp::SmtpSettings;
use crate::domain::{EmailAddress, Mailbox, Secret, Slug};
use crate::schedule::parse_cron;
use crate::selection::OnExhausted;
use crate::toml_source::TomlSource;

/// The shortest `HERALD_SECRET` accepted: 256 bits.
pub const MIN_SECRET_BYTES: usize = 32;

/// Whether `url` names a PostgreSQL database (`postgres://` or `postgresql://`).
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Validates what stage one read from the file at `file` (with `env`, the environment it
/// was read with; `cwd`, the working directory) into a [`Config`].
///
/// # Errors
/// The one problem found, or [`ConfigError::Many`] with every problem.
pub(super) fn validate(
    input: RawInput,
    file: &Path,
    cwd: &Path,
    env: &Environment,
) -> Result<Config, ConfigError> {
    let dir = file.parent().unwrap_or(Path::new(".")).to_path_buf();
    let mut v = Validator {
        file: file.to_path_buf(),
        source: input.source,
        env_keys: input.env_keys,
        file_dir: if dir.as_os_str().is_empty() {
            cwd.to_path_buf()
        } else {
            dir
        },
        cwd: cwd.to_path_buf(),
        errors: Vec::new(),
    };
    let config = v.config(input.raw, env);
    match (config, v.errors.len()) {
        (Some(config), 0) => Ok(config),
        _ if v.errors.len() == 1 => Err(v.errors.remove(0)),
        _ => Err(ConfigError::Many(v.errors)),
    }
}

/// The checks' state: where values came from, and the problems found so far.
struct Validator {
    /// The configuration file.
    file: PathBuf,
    /// Its text, to find a key's line.
    source: TomlSource,
    /// Keys set from the environment, each with its variable.
    env_keys: BTreeMap<String, String>,
    /// What relative paths in the file are relative to.
    file_dir: PathBuf,
    /// What relative paths from the environment are relative to.
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

    /// A problem with an environment variable that is no configuration key (a secret).
    fn fail_env(&mut self, var: &str, message: impl Into<String>) {
        self.errors.push(ConfigError::Invalid {
            key: None,
            origin: Origin::Env(var.into()),
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

    /// Every section in turn, then the rules that span sections. `None` when a required
    /// value is missing (the problem is in `errors`).
    fn config(&mut self, raw: super::raw::RawConfig, env: &Environment) -> Option<Config> {
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
        let http = self.http(raw.http);
        let bounces = self.bounces(raw.bounces, env);
        let secrets = secrets(env);
        let hello = newsletter
            .as_ref()
            .map_or("localhost", |n| n.from.email.domain());
        let smtp = self.smtp(&secrets, hello, delivery.timeout);
        self.plaintext_auth(smtp.as_ref(), raw.smtp.allow_plaintext_auth);
        self.signing_key(&secrets);
        self.postal_address(&secrets, newsletter.as_ref());
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
            http: http?,
            bounces,
            track_clicks: raw.tracking.clicks,
            smtp,
            secrets,
        })
    }

    /// `[newsletter]`. `None` when `from` or `base_url` is wrong.
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

    /// `[news]` and its feeds.
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
            if let Some(feed) = self.feed(i, feed, &mut names) {
                feeds.push(feed);
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

    /// `news.feeds[i]`; `names` holds the names (lowercase) of the feeds before it. `None`
    /// when its URL is wrong.
    fn feed(
        &mut self,
        i: usize,
        feed: RawFeed,
        names: &mut BTreeSet<String>,
    ) -> Option<FeedSource> {
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
        Some(FeedSource {
            name,
            url: url?,
            max_items,
        })
    }

    /// `store.url`, with a SQLite file's path resolved. `None` when it is wrong.
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

    /// `[delivery]` and its DKIM key.
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
        let dkim = raw.dkim.and_then(|d| self.dkim(d));
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

    /// `[delivery.dkim]`, with its key file read and parsed. `None` when it cannot be.
    fn dkim(&mut self, raw: RawDkim) -> Option<Dkim> {
        const KEY: &str = "delivery.dkim.private_key_path";
        let private_key_path = self.path(KEY, &raw.private_key_path);
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
        match crate::compose::dkim_signer(&raw.domain, &raw.selector, &pem) {
            Ok(signer) => Some(Dkim {
                domain: raw.domain,
                selector: raw.selector,
                private_key_path,
                signer: std::sync::Arc::new(signer),
            }),
            Err(e) => {
                self.fail(KEY, format!("{}: {e}", private_key_path.display()));
                None
            }
        }
    }

    /// `[schedule]`. `None` when the cron expression or the time zone is wrong.
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

    /// `[http]`. `None` when `listen` is not an address.
    fn http(&mut self, raw: RawHttp) -> Option<Http> {
        let mut trusted_proxies = Vec::new();
        for (i, value) in raw.trusted_proxies.iter().enumerate() {
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
        let header_timeout = Duration::from_secs(self.count(
            "http.header_timeout_seconds",
            raw.header_timeout_seconds,
            1,
            300,
        ) as u64);
        let max_connections =
            self.count("http.max_connections", raw.max_connections, 16, 1_000_000) as usize;
        let metrics_listen = raw
            .metrics_listen
            .as_deref()
            .and_then(|value| self.socket_addr("http.metrics_listen", value, "127.0.0.1:9090"));
        let listen = self.socket_addr("http.listen", &raw.listen, "127.0.0.1:8080");
        Some(Http {
            listen: listen?,
            metrics_listen,
            trusted_proxies,
            header_timeout,
            max_connections,
        })
    }

    fn socket_addr(&mut self, key: &str, value: &str, example: &str) -> Option<SocketAddr> {
        let parsed = value.parse::<SocketAddr>().ok();
        if parsed.is_none() {
            self.fail(
                key,
                format!("`{value}` is not an address and port such as {example}"),
            );
        }
        parsed
    }

    /// `[bounces]`, with the mailbox's password from `env`.
    fn bounces(&mut self, raw: RawBounces, env: &Environment) -> Bounces {
        let soft_bounce_limit =
            self.count("bounces.soft_bounce_limit", raw.soft_bounce_limit, 1, 100) as u32;
        let domain = raw.domain.as_deref().and_then(|d| self.bounce_domain(d));
        let imap_poll = Duration::from_secs(self.count(
            "bounces.imap_poll_seconds",
            raw.imap_poll_seconds,
            5,
            86_400,
        ) as u64);
        let imap = raw
            .imap_url
            .as_deref()
            .and_then(|value| self.imap(value, &raw.imap_processed, env));
        Bounces {
            domain,
            soft_bounce_limit,
            imap,
            imap_poll,
        }
    }

    /// `bounces.domain` in ASCII form, or `None` (and a problem) when it is no domain name.
    fn bounce_domain(&mut self, d: &str) -> Option<String> {
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
    }

    /// `bounces.imap_url` (`value`), with `processed` and the password from `env`.
    fn imap(&mut self, value: &str, processed: &str, env: &Environment) -> Option<ImapSettings> {
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
            processed: processed.to_owned(),
        })
    }

    /// `HERALD_SMTP_URL` parsed (EHLO name `hello` unless the URL names one), and its
    /// `tls_ca` file checked. `None` without the variable, or when it is wrong.
    fn smtp(&mut self, secrets: &Secrets, hello: &str, timeout: Duration) -> Option<SmtpSettings> {
        let url = secrets.smtp_url.as_ref()?;
        let smtp = match SmtpSettings::from_url(url, hello, timeout) {
            Ok(settings) => settings,
            Err(e) => {
                // The message never holds the URL: it may hold a password.
                self.fail_env(ENV_SMTP_URL, e.0);
                return None;
            }
        };
        if let Some(ca) = smtp.tls_ca.as_ref()
            && !ca.is_file()
        {
            self.fail_env(
                ENV_SMTP_URL,
                format!("tls_ca file {} does not exist", ca.display()),
            );
        }
        Some(smtp)
    }

    /// AUTH over a connection that may lack TLS sends the password in the clear: refused
    /// unless `[smtp] allow_plaintext_auth` says the path to the relay is trusted.
    fn plaintext_auth(&mut self, smtp: Option<&SmtpSettings>, allowed: bool) {
        let Some(mode) = smtp.and_then(SmtpSettings::plaintext_auth) else {
            return;
        };
        if !allowed {
            self.fail_env(
                ENV_SMTP_URL,
                format!(
                    "carries credentials with {mode}, so AUTH could send the password without \
                     TLS: use smtps:// or tls=required, or, for a relay on this host or a \
                     trusted network, set `allow_plaintext_auth = true` in [smtp] \
                     (HERALD_SMTP__ALLOW_PLAINTEXT_AUTH=true)"
                ),
            );
        }
    }

    /// `HERALD_SECRET`: long enough, and present whenever mail goes over SMTP.
    fn signing_key(&mut self, secrets: &Secrets) {
        match &secrets.signing_key {
            Some(key) if key.expose().len() < MIN_SECRET_BYTES => self.fail_env(
                ENV_SECRET,
                format!(
                    "must be at least {MIN_SECRET_BYTES} bytes (for example `openssl rand -hex 32`)"
                ),
            ),
            None if secrets.smtp_url.is_some() => self.fail_env(
                ENV_SECRET,
                "HERALD_SECRET is not set: sending over SMTP needs a signing key for unsubscribe links (for example `openssl rand -hex 32`)",
            ),
            _ => {}
        }
    }

    /// `newsletter.postal_address`: required whenever mail goes over SMTP.
    fn postal_address(&mut self, secrets: &Secrets, newsletter: Option<&Newsletter>) {
        if secrets.smtp_url.is_some() && newsletter.is_some_and(|n| n.postal_address.is_none()) {
            self.fail(
                "newsletter.postal_address",
                "is required when sending over SMTP (HERALD_SMTP_URL is set): bulk email must \
                 carry the sender's postal address (CAN-SPAM; Gmail and Yahoo sender rules)",
            );
        }
    }
}

/// The secrets, from the environment only (an empty variable counts as unset).
fn secrets(env: &Environment) -> Secrets {
    let secret = |name: &str| env.get(name).filter(|v| !v.is_empty()).map(Secret::new);
    Secrets {
        smtp_url: secret(ENV_SMTP_URL),
        signing_key: secret(ENV_SECRET),
        admin_token: secret(ENV_ADMIN_TOKEN),
        mailgun_webhook_key: secret(ENV_MAILGUN_WEBHOOK_KEY),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
