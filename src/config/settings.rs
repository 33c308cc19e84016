//! The validated configuration: typed values, each section a struct, ready to use.
//!
//! Types only. They are built by stage two (`validate`) and by nothing else in the crate:
//! no parsing, no defaults and no checks live here, so a value of these types has passed every
//! check the configuration makes. Secrets are held in [`Secret`], which never prints.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chrono_tz::Tz;
use url::Url;

use super::smtp::SmtpSettings;
use crate::domain::{EmailAddress, Mailbox, Secret, Slug};
use crate::selection::OnExhausted;

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
    pub timeout: Duration,
    /// First retry delay after a transient failure; doubled per attempt.
    pub retry_base: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// How long the sender lease lasts without a heartbeat (renewed every quarter of it).
    pub lease: Duration,
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
