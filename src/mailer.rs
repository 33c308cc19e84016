//! The mail transport: Herald's own SMTP client ([`session`]: tokio, rustls) or `.eml` files
//! in the outbox (lettre's file transport, the only part of lettre used here besides its
//! message builder in the core).
//!
//! Adapter. One [`Mailer`] per delivery worker, holding one SMTP session that is reused across
//! messages and re-opened after any error. What matters for throughput and correctness:
//!
//! - **One write per message** where it can be: the envelope commands are pipelined when the
//!   server offers PIPELINING, the body goes out dot-stuffed with its final dot in one
//!   vectored write, and the socket has `TCP_NODELAY`.
//! - **A timeout around the whole transaction** (connect, EHLO, TLS, AUTH, MAIL, RCPT, DATA).
//! - **Errors by kind**, never by guessing: 4xx replies, dropped connections and timeouts
//!   are transient; 5xx replies are permanent, and a 5.1.x enhanced status (unknown
//!   mailbox) is a bounce; a message whose reply never came is ambiguous.
//! - **AUTH only over TLS** unless `[smtp] allow_plaintext_auth` says otherwise (checked when
//!   the configuration loads).

pub mod imap;
mod session;

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use lettre::address::Envelope;
use lettre::{AsyncFileTransport, AsyncTransport, Tokio1Executor};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::config::SmtpSettings;
use crate::domain::EmailAddress;
use session::Session;

/// Where mail goes.
#[derive(Debug, Clone)]
pub enum Transport {
    /// `.eml` files in this directory (lettre's file transport).
    Outbox(PathBuf),
    Smtp(SmtpSettings),
}

impl SmtpSettings {
    /// The rustls configuration for implicit TLS: the webpki roots plus `tls_ca`.
    fn rustls_config(&self) -> Result<std::sync::Arc<rustls::ClientConfig>, SendError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = &self.tls_ca {
            let bad = |e: &dyn std::fmt::Display| {
                SendError::Transient(format!("tls_ca {}: {e}", path.display()))
            };
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(&e))? {
                roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
            }
        }
        let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| SendError::Transient(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(std::sync::Arc::new(config))
    }
}

/// Why a message was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth retrying later: 4xx, connection problems, timeouts.
    #[error("{0}")]
    Transient(String),
    /// Will never succeed: 5xx. `bounce` when the mailbox does not exist (5.1.x).
    #[error("{message}")]
    Permanent { message: String, bounce: bool },
    /// The message was written to the end (the final `.`), but no reply came (a timeout or
    /// a dropped connection): the server may or may not have accepted it. Never retried
    /// without an operator's word.
    #[error("{0}")]
    Ambiguous(String),
    /// No SMTP session could be opened (connection refused or timed out, TLS or greeting
    /// failed, authentication refused): nothing was sent, and the message was not attempted.
    #[error("{0}")]
    Unreachable(String),
}

/// Sends messages for one worker.
pub struct Mailer {
    transport: Transport,
    outbox: Option<AsyncFileTransport<Tokio1Executor>>,
    connection: Option<Session>,
    nodelay: Option<bool>,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Mailer({:?}, connected: {})",
            self.transport,
            self.connection.is_some()
        )
    }
}

impl Mailer {
    /// A mailer for `transport`; connects on first use.
    ///
    /// # Errors
    /// When the outbox directory cannot be created.
    pub fn new(transport: Transport) -> io::Result<Self> {
        let outbox = match &transport {
            Transport::Outbox(dir) => {
                std::fs::create_dir_all(dir)?;
                Some(AsyncFileTransport::<Tokio1Executor>::new(dir))
            }
            Transport::Smtp(_) => None,
        };
        Ok(Self {
            transport,
            outbox,
            connection: None,
            nodelay: None,
        })
    }

    /// Whether the current (or last) SMTP connection's socket had TCP_NODELAY set.
    pub fn connection_nodelay(&self) -> Option<bool> {
        self.nodelay
    }

    /// Sends one message; returns the server's reply (or the file written).
    ///
    /// # Errors
    /// [`SendError`], transient or permanent.
    pub async fn send(
        &mut self,
        from: &EmailAddress,
        to: &EmailAddress,
        message: &[u8],
    ) -> Result<String, SendError> {
        if let Some(outbox) = &self.outbox {
            let envelope = envelope(from, to)?;
            let id = outbox
                .send_raw(&envelope, message)
                .await
                .map_err(|e| SendError::Transient(format!("writing to the outbox: {e}")))?;
            return Ok(format!("written {id}.eml"));
        }
        let Transport::Smtp(settings) = &self.transport else {
            unreachable!("a mailer without an outbox has SMTP settings")
        };
        let timeout = settings.timeout;
        let (from, to) = (smtp_address(from), smtp_address(to));
        // Whether the message's final `.` may have reached the server: from then on, a
        // failure without a reply is ambiguous, not transient.
        let data_sent = std::sync::atomic::AtomicBool::new(false);
        let result = tokio::time::timeout(timeout, async {
            if self.connection.is_none() {
                let (session, nodelay) = Session::open(settings).await.map_err(unreachable)?;
                self.connection = Some(session);
                self.nodelay = Some(nodelay);
            }
            let session = self.connection.as_mut().expect("just connected");
            session.send(&from, &to, message, &data_sent).await
        })
        .await;
        match result {
            Ok(Ok(reply)) => Ok(format!("{} {}", reply.code, reply.one_line())
                .chars()
                .take(500)
                .collect()),
            Ok(Err(e)) => {
                self.connection = None;
                Err(e)
            }
            Err(_) if data_sent.load(std::sync::atomic::Ordering::SeqCst) => {
                self.connection = None;
                Err(SendError::Ambiguous(format!(
                    "no reply within {} s after the message was sent: it may or may not have been accepted",
                    timeout.as_secs_f64()
                )))
            }
            Err(_) if self.connection.is_none() => Err(SendError::Unreachable(format!(
                "connecting to {}:{} took longer than {} s",
                settings.host,
                settings.port,
                timeout.as_secs_f64()
            ))),
            Err(_) => {
                self.connection = None;
                Err(SendError::Transient(format!(
                    "the SMTP transaction took longer than {} s",
                    timeout.as_secs_f64()
                )))
            }
        }
    }

    /// Opens an SMTP session as a send would (EHLO, STARTTLS or TLS as configured, AUTH when
    /// credentials are set), then closes it: the pre-flight check. Returns what was found.
    ///
    /// # Errors
    /// [`SendError::Unreachable`] with the reason.
    pub async fn probe(settings: &SmtpSettings) -> Result<String, SendError> {
        let connected = tokio::time::timeout(settings.timeout, Session::open(settings))
            .await
            .map_err(|_| {
                SendError::Unreachable(format!(
                    "connecting to {}:{} took longer than {} s",
                    settings.host,
                    settings.port,
                    settings.timeout.as_secs_f64()
                ))
            })?
            .map_err(unreachable)?;
        let (mut connection, _) = connected;
        let tls = if connection.is_encrypted() {
            "TLS"
        } else {
            "no TLS"
        };
        let auth = if settings.credentials.is_some() {
            ", authenticated"
        } else {
            ""
        };
        if let Err(e) = tokio::time::timeout(Duration::from_secs(5), connection.quit()).await {
            tracing::debug!(error = %e, "QUIT timed out after the probe");
        }
        Ok(format!(
            "{}:{} answered (EHLO {}, {tls}{auth})",
            settings.host, settings.port, settings.hello
        ))
    }

    /// Sends one message on a connection of its own, then closes it: for the occasional
    /// service message (confirmation, welcome, review copy, test copy).
    ///
    /// # Errors
    /// [`SendError`], or a transient error when the outbox cannot be created.
    pub async fn send_once(
        transport: &Transport,
        from: &EmailAddress,
        to: &EmailAddress,
        message: &[u8],
    ) -> Result<String, SendError> {
        let mut mailer = Self::new(transport.clone())
            .map_err(|e| SendError::Transient(format!("the outbox cannot be used: {e}")))?;
        let reply = mailer.send(from, to, message).await;
        mailer.close().await;
        reply
    }

    /// Closes the SMTP connection politely (QUIT).
    pub async fn close(&mut self) {
        if let Some(mut c) = self.connection.take() {
            // QUIT is a courtesy: the connection is dropped either way.
            match tokio::time::timeout(Duration::from_secs(5), c.quit()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "QUIT was not answered cleanly"),
                Err(_) => tracing::debug!("QUIT timed out"),
            }
        }
    }
}

/// A failure while opening a session: nothing could be sent.
fn unreachable(e: SendError) -> SendError {
    match e {
        SendError::Transient(m) | SendError::Permanent { message: m, .. } => {
            SendError::Unreachable(m)
        }
        other => other,
    }
}

fn envelope(from: &EmailAddress, to: &EmailAddress) -> Result<Envelope, SendError> {
    let address = |e: &EmailAddress| {
        let domain = idna::domain_to_ascii(e.domain()).unwrap_or_else(|_| e.domain().to_owned());
        lettre::Address::new(e.local_part(), domain).map_err(|err| SendError::Permanent {
            message: format!("address {e} cannot be used: {err}"),
            bounce: false,
        })
    };
    Envelope::new(Some(address(from)?), vec![address(to)?]).map_err(|e| SendError::Permanent {
        message: format!("envelope: {e}"),
        bounce: false,
    })
}

/// An address as SMTP carries it: the domain in its ASCII (IDNA) form, the local part as it
/// is (non-ASCII local parts need SMTPUTF8, which the session checks).
fn smtp_address(e: &EmailAddress) -> String {
    let domain = e.domain();
    if domain.is_ascii() {
        format!("{}@{}", e.local_part(), domain)
    } else {
        let ascii = idna::domain_to_ascii(domain).unwrap_or_else(|_| domain.to_owned());
        format!("{}@{ascii}", e.local_part())
    }
}
