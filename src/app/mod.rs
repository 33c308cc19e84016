//! The application layer: every use case of Herald, written once, on one [`App`].
//!
//! The CLI commands, the daemon and the HTTP routes are thin callers of this layer: they
//! parse input, call a method here, and print or render the answer. Anything that decides
//! (what to send, to whom, when, whether a request is allowed) is a method here, and the
//! fields of [`App`] are private: a command that prints rows calls a read-only listing method
//! (see [`report`]). This layer uses the
//! adapters (store, mailer, feeds, files) and the pure core; it never imports `commands`,
//! `daemon` or `http`.
//!
//! | module | use case |
//! |---|---|
//! | [`issue`] | plan the next issue; prepare the issue to send (the frozen one, or a new one frozen now); the next issue as it would be sent (previews, test copies) |
//! | [`delivery`] | deliver a frozen issue to its ledger, exactly once |
//! | [`subscribers`] | import subscriber files |
//! | [`editorial`] | hold and release, the editors' review copy |
//! | [`subscription`] | subscribe, confirm (and welcome), unsubscribe |
//! | [`mail_queue`] | send the queued confirmation and welcome emails, retrying while the SMTP server is down |
//! | [`lease`] | the sender lease and its one heartbeat |
//! | [`preview`] | the next issue as one subscriber gets it, recording nothing |
//! | [`report`] | the issues so far and their ledgers |
//! | [`feed_cache`] | the feeds as last fetched (no network): cached items and each feed's health |
//! | [`supply`] | enough terms and links for the next issues? |
//! | [`send`] | send now: the one send policy of `herald send` and the daemon (integrity check, retrying ambiguous rows, SMTP pre-flight, review freeze) |
//! | [`tick`] | one step of the daemon's schedule |
//! | [`site`] | what the web pages show: archive, glossary, health, metrics |
//! | [`web`] | what a glossary search shows, the unsubscribe links of copies no subscriber gets, the enabled webhooks |
//! | [`content`] | the glossary, templates and curated links, kept in memory by the daemon and reloaded on change |
//! | [`check`] | `herald check`'s template and page rendering |

pub mod check;
pub mod content;
pub mod deliverability;
pub mod delivery;
pub mod editorial;
pub mod feed_cache;
pub mod feedback;
pub mod issue;
pub mod lease;
pub mod mail_queue;
pub mod preview;
pub mod report;
pub mod send;
pub mod site;
pub mod store_copy;
pub mod subscribers;
pub mod subscription;
pub mod supply;
pub mod tick;
pub mod web;
pub mod worker;

use std::sync::Arc;

use tracing::warn;

use crate::clock::Clock;
use crate::compose::{ComposeError, Sender};
use crate::config::Config;
use crate::domain::SigningKey;
use crate::feeds::FeedFetcher;
use crate::files::FileError;
use crate::glossary::GlossaryError;
use crate::mailer::{SendError, Transport};
use crate::render::{NewsletterInfo, RenderError};
use crate::store::{Store, StoreError};

pub use delivery::{DeliveryError, DeliverySettings, Progress, SendSummary, Silent};
pub use issue::{Planned, Prepared};
pub use site::Health;
pub use tick::TickOutcome;

/// The development signing key: public, so only fit for previews and local files.
pub const DEVELOPMENT_KEY: &str = "herald-development-key-not-secret";

/// Why a use case failed.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("rendering: {0}")]
    Render(#[from] RenderError),
    #[error("composing a message: {0}")]
    Compose(#[from] ComposeError),
    #[error("sending: {0}")]
    Send(#[from] SendError),
    #[error("the bounce mailbox: {0}")]
    Imap(#[from] crate::mailer::imap::ImapError),
    #[error(transparent)]
    Files(#[from] FileError),
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
    #[error(
        "{}\nthe glossary has {} errors; run `herald glossary check`",
        .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"),
        .0.len()
    )]
    Glossary(Vec<GlossaryError>),
    #[error(
        "no issue: every term was sent in cycle {cycle} and [schedule] on_exhausted is \"stop\"; \
         add terms to the glossary or set on_exhausted = \"restart\""
    )]
    Exhausted { cycle: u32 },
    #[error("no issue: the glossary has no terms")]
    NoTerms,
    #[error("no term `{0}` in the glossary")]
    UnknownTerm(String),
    #[error("setting up the HTTP client for feeds: {0}")]
    HttpClient(#[from] reqwest::Error),
    #[error("reading subscriber file {}: {source}", file.display())]
    SubscriberFile {
        file: std::path::PathBuf,
        source: crate::subscriber_file::SubscriberFileError,
    },
    #[error("another herald is sending (the sender lease is held); try again when it is done")]
    LeaseHeld,
    #[error("{0}")]
    Refused(String),
}

/// What a use case needs, built once: the configuration, the store, the clock, the signing
/// key, the mail transport and the sender, and the feed fetcher.
pub struct App {
    config: Config,
    store: Store,
    clock: Arc<dyn Clock>,
    /// Signs unsubscribe, confirmation and hold links.
    key: SigningKey,
    transport: Transport,
    /// From, Reply-To, list name and DKIM signer, as every message carries them.
    sender: Sender,
    fetcher: FeedFetcher,
    /// What the daemon reports at `/healthz` and `/metrics`.
    health: Health,
    /// Wakes the mail queue when an email was queued.
    mail_queue: tokio::sync::Notify,
    /// The daemon's glossary, templates and curated links in memory.
    content: content::ContentCache,
    /// This process's lease deadline (see [`lease::Fence`]).
    fence: lease::Fence,
    /// Whether an SMTP server that did not answer at a scheduled send was reported already
    /// (the daemon says so once per outage, not at every wake-up).
    smtp_down_reported: std::sync::atomic::AtomicBool,
}

impl App {
    /// Opens the store named by the configuration (applying migrations) and prepares the
    /// transport, the signing key and the sender.
    ///
    /// # Errors
    /// When the store cannot be opened or the HTTP client cannot be built.
    #[tracing::instrument(skip_all)]
    pub async fn open(config: Config, clock: Arc<dyn Clock>) -> Result<Self, AppError> {
        let store = Store::open(&config.store_url).await?;
        Self::with_store(config, store, clock)
    }

    /// Builds the app around an open store.
    ///
    /// # Errors
    /// When the HTTP client for feeds cannot be built.
    pub fn with_store(
        config: Config,
        store: Store,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, AppError> {
        let transport = match &config.smtp {
            Some(smtp) => Transport::Smtp(smtp.clone()),
            None => Transport::Outbox(config.delivery.outbox.clone()),
        };
        // The configuration refuses SMTP without HERALD_SECRET, so the development key
        // only ever signs links in files on this machine (the outbox, previews).
        let key = match config.signing_key() {
            Some(secret) => SigningKey::new(secret.expose()),
            None => SigningKey::new(DEVELOPMENT_KEY),
        };
        let sender = Sender {
            from: config.newsletter.from.clone(),
            reply_to: config.newsletter.reply_to.clone(),
            list_name: config.newsletter.name.clone(),
            base_url: config.newsletter.base_url.to_string(),
            dkim: config.delivery.dkim.as_ref().map(|d| d.signer.clone()),
            bounce_domain: config.bounces.domain.clone(),
        };
        let health = Health::default();
        health.started(clock.now());
        Ok(Self {
            fetcher: FeedFetcher::new(Default::default())?,
            config,
            store,
            clock,
            key,
            transport,
            sender,
            health,
            mail_queue: tokio::sync::Notify::new(),
            content: content::ContentCache::default(),
            fence: lease::Fence::default(),
            smtp_down_reported: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The validated configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The clock every use case reads the time from.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The time now, from [`App::clock`].
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }

    /// The key that signs links (unsubscribe, confirmation, hold, preferences).
    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// Where messages go: the SMTP relay or the outbox directory.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// From, Reply-To, list name and DKIM signer, as every message carries them.
    pub fn sender(&self) -> &Sender {
        &self.sender
    }

    /// What the daemon reports at `/healthz` and `/metrics`.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// The daemon's glossary, templates and curated links in memory.
    pub fn content(&self) -> &content::ContentCache {
        &self.content
    }

    /// Replaces the feed fetcher (tests use short timeouts).
    pub fn with_fetcher(mut self, fetcher: FeedFetcher) -> Self {
        self.fetcher = fetcher;
        self
    }

    /// Says so when links are signed with the public development key (no `HERALD_SECRET`).
    pub fn warn_if_development_key(&self) {
        if self.config.signing_key().is_none() {
            warn!(
                "HERALD_SECRET is not set: signing links with the development key; set it before sending real mail"
            );
        }
    }

    /// Sends one service message (confirmation, welcome, review or test copy) on a
    /// connection of its own, from the newsletter's address. Returns the server's reply.
    ///
    /// # Errors
    /// [`SendError`] when the message is not accepted.
    #[tracing::instrument(skip_all)]
    pub async fn send_service_message(
        &self,
        to: &crate::domain::EmailAddress,
        message: &crate::compose::Composed,
    ) -> Result<String, SendError> {
        crate::mailer::Mailer::send_once(
            &self.transport,
            &self.sender.from.email,
            to,
            &message.formatted(),
        )
        .await
    }

    /// Opens and closes an SMTP session as a send would (the pre-flight check). `None` when
    /// mail goes to the outbox.
    ///
    /// # Errors
    /// [`SendError::Unreachable`] with the reason.
    #[tracing::instrument(skip_all)]
    pub async fn check_smtp(&self) -> Result<Option<String>, SendError> {
        match &self.transport {
            Transport::Smtp(settings) => crate::mailer::Mailer::probe(settings).await.map(Some),
            Transport::Outbox(_) => Ok(None),
        }
    }

    /// The newsletter facts templates need.
    pub fn newsletter_info(&self) -> NewsletterInfo {
        newsletter_info(&self.config)
    }

    /// Closes the store's connections.
    #[tracing::instrument(skip_all)]
    pub async fn close(&self) {
        self.store.close().await;
    }
}

/// The newsletter facts templates need, from a configuration.
pub fn newsletter_info(config: &Config) -> NewsletterInfo {
    NewsletterInfo {
        name: config.newsletter.name.clone(),
        base_url: config.newsletter.base_url.to_string(),
        timezone: config.schedule.timezone,
        postal_address: config.newsletter.postal_address.clone(),
    }
}
