//! The mail transport: SMTP (lettre, tokio, rustls) or `.eml` files in the outbox.
//!
//! Adapter. One [`Mailer`] per delivery worker, holding one SMTP connection that is reused
//! across messages and re-opened after any error. Three details matter for throughput and
//! correctness:
//!
//! - **TCP_NODELAY.** lettre 0.11 never sets it, and it writes a message body and the final
//!   `.` in two writes, so Nagle's algorithm holds every message about 40 ms. Herald opens the
//!   TCP stream itself with `set_nodelay(true)` and hands it to lettre's
//!   `AsyncSmtpConnection` (plain and STARTTLS), or wraps it in TLS first (implicit TLS), so
//!   every mode gets the fix.
//! - **A timeout around the whole transaction** (connect, EHLO, TLS, AUTH, MAIL, RCPT, DATA),
//!   since lettre's own timeout covers only parts of it.
//! - **Errors by kind**, never by guessing: 4xx replies, dropped connections and timeouts
//!   are transient; 5xx replies are permanent, and a 5.1.x enhanced status (unknown
//!   mailbox) is a bounce.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, AsyncTokioStream, Certificate, TlsParameters,
};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncFileTransport, AsyncTransport, Tokio1Executor};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::config::{Security, SmtpSettings};
use crate::domain::EmailAddress;

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

    fn tls_parameters(&self) -> Result<TlsParameters, SendError> {
        let mut builder = TlsParameters::builder(self.host.clone());
        if let Some(path) = &self.tls_ca {
            let pem = std::fs::read(path).map_err(|e| {
                SendError::Transient(format!("reading tls_ca {}: {e}", path.display()))
            })?;
            let cert = Certificate::from_pem(&pem)
                .map_err(|e| SendError::Transient(format!("tls_ca {}: {e}", path.display())))?;
            builder = builder.add_root_certificate(cert);
        }
        builder
            .build_rustls()
            .map_err(|e| SendError::Transient(format!("TLS setup: {e}")))
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

fn classify(e: &lettre::transport::smtp::Error) -> SendError {
    let message = e.to_string();
    if e.is_permanent() {
        // RFC 3463 enhanced status codes: 5.1.x are addressing failures (unknown mailbox,
        // bad destination system ...), which mean the address itself is dead.
        let bounce = message
            .split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ':')
            .any(|token| {
                let mut parts = token.split('.');
                parts.next() == Some("5")
                    && parts.next() == Some("1")
                    && parts
                        .next()
                        .is_some_and(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_digit()))
                    && parts.next().is_none()
            });
        SendError::Permanent { message, bounce }
    } else {
        SendError::Transient(message)
    }
}

/// A TLS stream opened by Herald over a TCP stream with TCP_NODELAY, presented to lettre as a
/// plain transport (implicit TLS).
#[derive(Debug)]
struct ImplicitTls {
    inner: TlsStream<TcpStream>,
    peer: SocketAddr,
}

impl AsyncRead for ImplicitTls {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ImplicitTls {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for ImplicitTls {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.peer)
    }
}

/// Sends messages for one worker.
pub struct Mailer {
    transport: Transport,
    outbox: Option<AsyncFileTransport<Tokio1Executor>>,
    connection: Option<AsyncSmtpConnection>,
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
        let envelope = envelope(from, to)?;
        if let Some(outbox) = &self.outbox {
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
        let settings = settings.clone();
        // Whether the message's final `.` may have reached the server: from then on, a
        // failure without a reply is ambiguous, not transient.
        let data_sent = std::sync::atomic::AtomicBool::new(false);
        let result = tokio::time::timeout(timeout, async {
            if self
                .connection
                .as_ref()
                .is_none_or(AsyncSmtpConnection::has_broken)
            {
                self.connection = None;
                let (connection, nodelay) = connect(&settings).await.map_err(unreachable)?;
                self.connection = Some(connection);
                self.nodelay = Some(nodelay);
            }
            let connection = self.connection.as_mut().expect("just connected");
            transaction(connection, &envelope, message, &data_sent).await
        })
        .await;
        match result {
            Ok(Ok(response)) => {
                let text = response.message().collect::<Vec<_>>().join(" ");
                Ok(format!("{} {}", response.code(), text.trim())
                    .chars()
                    .take(500)
                    .collect())
            }
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
        let connected = tokio::time::timeout(settings.timeout, connect(settings))
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

/// One SMTP transaction (MAIL, RCPT, DATA, the message), phase by phase, so that a failure
/// after the message was written is told apart from one before: `data_sent` is set once the
/// message's last bytes may have reached the server.
async fn transaction(
    connection: &mut AsyncSmtpConnection,
    envelope: &Envelope,
    message: &[u8],
    data_sent: &std::sync::atomic::AtomicBool,
) -> Result<lettre::transport::smtp::response::Response, SendError> {
    use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
    use lettre::transport::smtp::extension::{Extension, MailBodyParameter, MailParameter};

    let mut options = Vec::new();
    let ascii = |a: &lettre::Address| AsRef::<str>::as_ref(a).is_ascii();
    let non_ascii =
        envelope.from().is_some_and(|a| !ascii(a)) || envelope.to().iter().any(|a| !ascii(a));
    if non_ascii {
        if !connection
            .server_info()
            .supports_feature(Extension::SmtpUtfEight)
        {
            return Err(SendError::Permanent {
                message: "the address needs SMTPUTF8, which the server does not offer".into(),
                bounce: false,
            });
        }
        options.push(MailParameter::SmtpUtfEight);
    }
    if !message.is_ascii() {
        options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    let fail = |e: lettre::transport::smtp::Error| classify(&e);
    connection
        .command(Mail::new(envelope.from().cloned(), options))
        .await
        .map_err(fail)?;
    for to in envelope.to() {
        connection
            .command(Rcpt::new(to.clone(), vec![]))
            .await
            .map_err(fail)?;
    }
    connection.command(Data).await.map_err(fail)?;
    data_sent.store(true, std::sync::atomic::Ordering::SeqCst);
    connection.message(message).await.map_err(|e| {
        if e.is_permanent() || e.is_transient() {
            // A reply came: the server's word is final either way.
            classify(&e)
        } else {
            SendError::Ambiguous(format!(
                "the connection failed after the message was sent ({e}): it may or may not have been accepted"
            ))
        }
    })
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

/// Opens a connection with TCP_NODELAY in every mode; returns whether the option took.
async fn connect(s: &SmtpSettings) -> Result<(AsyncSmtpConnection, bool), SendError> {
    let connect_err =
        |e: io::Error| SendError::Transient(format!("connecting to {}:{}: {e}", s.host, s.port));
    let tcp = TcpStream::connect((s.host.as_str(), s.port))
        .await
        .map_err(connect_err)?;
    tcp.set_nodelay(true).map_err(connect_err)?;
    let nodelay = tcp.nodelay().unwrap_or(false);
    let peer = tcp.peer_addr().map_err(connect_err)?;
    let hello = ClientId::Domain(s.hello.clone());
    let smtp_err = |e: lettre::transport::smtp::Error| classify(&e);
    let mut connection = match s.security {
        Security::Implicit => {
            let name = ServerName::try_from(s.host.clone())
                .map_err(|e| SendError::Transient(format!("TLS server name {}: {e}", s.host)))?;
            let inner = tokio_rustls::TlsConnector::from(s.rustls_config()?)
                .connect(name, tcp)
                .await
                .map_err(|e| {
                    SendError::Transient(format!("TLS handshake with {}:{}: {e}", s.host, s.port))
                })?;
            let tls = ImplicitTls { inner, peer };
            AsyncSmtpConnection::connect_with_transport(Box::new(tls), &hello)
                .await
                .map_err(smtp_err)?
        }
        _ => AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &hello)
            .await
            .map_err(smtp_err)?,
    };
    match s.security {
        Security::StartTls if !connection.can_starttls() => {
            return Err(SendError::Transient(format!(
                "{}:{} does not offer STARTTLS, and tls=required",
                s.host, s.port
            )));
        }
        Security::StartTls | Security::Opportunistic if connection.can_starttls() => {
            connection
                .starttls(s.tls_parameters()?, &hello)
                .await
                .map_err(smtp_err)?;
        }
        _ => {}
    }
    if let Some((user, password)) = &s.credentials {
        let credentials = Credentials::new(user.clone(), password.expose().to_owned());
        connection
            .auth(&[Mechanism::Plain, Mechanism::Login], &credentials)
            .await
            .map_err(smtp_err)?;
    }
    Ok((connection, nodelay))
}
