//! A small IMAP4rev1 client (RFC 3501) for the bounce mailbox: log in, list the messages of
//! one mailbox, fetch each, and move it to a processed folder once Herald has recorded it.
//!
//! Adapter. Implicit TLS (`imaps://`, rustls with the webpki roots) or plain (`imap://`, for
//! a server on the same host). Only the commands Herald needs: LOGIN, SELECT, CREATE,
//! UID SEARCH, UID FETCH BODY.PEEK[], UID MOVE (RFC 6851) or, without it, UID COPY +
//! UID STORE \Deleted + EXPUNGE, and LOGOUT. Literals are read by their announced length, and
//! a response larger than the message cap is refused.

use std::time::Duration;

use rustls_pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The largest message fetched (a bounce with the returned message attached).
const MAX_MESSAGE: usize = 25 * 1024 * 1024;
/// Time allowed for any one command.
const TIMEOUT: Duration = Duration::from_secs(60);

/// What went wrong talking to the IMAP server.
#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    #[error("{0}")]
    Io(String),
    #[error("the IMAP server refused `{command}`: {reply}")]
    Refused { command: String, reply: String },
    #[error("the IMAP server sent something unexpected: {0}")]
    Protocol(String),
}

pub use crate::config::ImapSettings;

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A logged-in session with the mailbox selected.
pub struct ImapSession {
    io: BufReader<Box<dyn Stream>>,
    tag: u32,
    can_move: bool,
    settings: ImapSettings,
}

fn io_error(e: impl std::fmt::Display) -> ImapError {
    ImapError::Io(e.to_string())
}

/// An IMAP quoted string.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

impl ImapSession {
    /// Connects, logs in and selects the mailbox.
    ///
    /// # Errors
    /// [`ImapError`] from the first step that failed.
    pub async fn open(settings: &ImapSettings) -> Result<Self, ImapError> {
        let Some(password) = &settings.password else {
            return Err(ImapError::Io(
                "HERALD_IMAP_PASSWORD is not set: the mailbox's password comes from the environment"
                    .into(),
            ));
        };
        let tcp = tokio::time::timeout(
            TIMEOUT,
            TcpStream::connect((settings.host.as_str(), settings.port)),
        )
        .await
        .map_err(|_| {
            ImapError::Io(format!(
                "connecting to {}:{} timed out",
                settings.host, settings.port
            ))
        })?
        .map_err(|e| {
            ImapError::Io(format!(
                "connecting to {}:{}: {e}",
                settings.host, settings.port
            ))
        })?;
        let stream: Box<dyn Stream> = if settings.tls {
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(io_error)?
            .with_root_certificates(roots)
            .with_no_client_auth();
            let name = ServerName::try_from(settings.host.clone()).map_err(io_error)?;
            Box::new(
                tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
                    .connect(name, tcp)
                    .await
                    .map_err(|e| {
                        ImapError::Io(format!("TLS handshake with {}: {e}", settings.host))
                    })?,
            )
        } else {
            Box::new(tcp)
        };
        let mut session = Self {
            io: BufReader::new(stream),
            tag: 0,
            can_move: false,
            settings: settings.clone(),
        };
        let greeting = session.line().await?;
        if !greeting.starts_with("* OK") && !greeting.starts_with("* PREAUTH") {
            return Err(ImapError::Protocol(format!("greeting: {greeting}")));
        }
        session
            .command(&format!(
                "LOGIN {} {}",
                quoted(&settings.user),
                quoted(password.expose())
            ))
            .await
            .map_err(|e| match e {
                // Never repeat the command: it carries the password.
                ImapError::Refused { reply, .. } => ImapError::Refused {
                    command: "LOGIN".into(),
                    reply,
                },
                other => other,
            })?;
        let capability = session.command("CAPABILITY").await?;
        session.can_move = capability.iter().any(|l| {
            l.to_ascii_uppercase()
                .split_whitespace()
                .any(|w| w == "MOVE")
        });
        session
            .command(&format!("SELECT {}", quoted(&settings.mailbox)))
            .await?;
        Ok(session)
    }

    /// The UIDs of the messages in the mailbox, oldest first.
    ///
    /// # Errors
    /// [`ImapError`].
    pub async fn uids(&mut self) -> Result<Vec<u32>, ImapError> {
        let lines = self.command("UID SEARCH ALL").await?;
        let mut uids: Vec<u32> = lines
            .iter()
            .filter_map(|l| l.strip_prefix("* SEARCH"))
            .flat_map(|rest| rest.split_whitespace().filter_map(|n| n.parse().ok()))
            .collect();
        uids.sort_unstable();
        Ok(uids)
    }

    /// One message's bytes (without marking it seen).
    ///
    /// # Errors
    /// [`ImapError`], also when the server sends no message for `uid`.
    pub async fn fetch(&mut self, uid: u32) -> Result<Vec<u8>, ImapError> {
        let tag = self.next_tag();
        self.send(&format!("{tag} UID FETCH {uid} BODY.PEEK[]"))
            .await?;
        let mut body = None;
        loop {
            let (line, literal) = self.response_line().await?;
            if let Some(rest) = line.strip_prefix(&format!("{tag} ")) {
                if !rest.starts_with("OK") {
                    return Err(ImapError::Refused {
                        command: format!("UID FETCH {uid}"),
                        reply: rest.to_owned(),
                    });
                }
                break;
            }
            if body.is_none() && line.contains("FETCH") {
                body = literal;
            }
        }
        body.ok_or_else(|| ImapError::Protocol(format!("no message for UID {uid}")))
    }

    /// Moves a message to the processed folder (created when missing).
    ///
    /// # Errors
    /// [`ImapError`].
    pub async fn processed(&mut self, uid: u32) -> Result<(), ImapError> {
        let folder = quoted(&self.settings.processed);
        if let Err(ImapError::Refused { .. }) = self.command(&format!("CREATE {folder}")).await {
            // It exists already (servers answer NO to CREATE of an existing folder).
        }
        if self.can_move {
            self.command(&format!("UID MOVE {uid} {folder}")).await?;
        } else {
            self.command(&format!("UID COPY {uid} {folder}")).await?;
            self.command(&format!("UID STORE {uid} +FLAGS.SILENT (\\Deleted)"))
                .await?;
            self.command("EXPUNGE").await?;
        }
        Ok(())
    }

    /// Logs out.
    pub async fn logout(mut self) {
        let _ = self.command("LOGOUT").await;
    }

    fn next_tag(&mut self) -> String {
        self.tag += 1;
        format!("h{}", self.tag)
    }

    async fn send(&mut self, line: &str) -> Result<(), ImapError> {
        let io = self.io.get_mut();
        tokio::time::timeout(TIMEOUT, async {
            io.write_all(line.as_bytes()).await?;
            io.write_all(b"\r\n").await?;
            io.flush().await
        })
        .await
        .map_err(|_| ImapError::Io("writing to the IMAP server timed out".into()))?
        .map_err(io_error)
    }

    /// Sends a command and reads to its tagged reply; returns the untagged lines.
    async fn command(&mut self, command: &str) -> Result<Vec<String>, ImapError> {
        let tag = self.next_tag();
        self.send(&format!("{tag} {command}")).await?;
        let mut lines = Vec::new();
        loop {
            let (line, _) = self.response_line().await?;
            if let Some(rest) = line.strip_prefix(&format!("{tag} ")) {
                if rest.starts_with("OK") {
                    return Ok(lines);
                }
                let shown = command.split_whitespace().next().unwrap_or("").to_owned();
                return Err(ImapError::Refused {
                    command: if shown == "LOGIN" {
                        shown
                    } else {
                        command.to_owned()
                    },
                    reply: rest.to_owned(),
                });
            }
            lines.push(line);
        }
    }

    async fn line(&mut self) -> Result<String, ImapError> {
        let mut buf = Vec::new();
        let n = tokio::time::timeout(
            TIMEOUT,
            (&mut self.io).take(64 * 1024).read_until(b'\n', &mut buf),
        )
        .await
        .map_err(|_| ImapError::Io("the IMAP server did not answer in time".into()))?
        .map_err(io_error)?;
        if n == 0 {
            return Err(ImapError::Io(
                "the IMAP server closed the connection".into(),
            ));
        }
        if buf.last() != Some(&b'\n') {
            return Err(ImapError::Protocol(
                "a response line longer than 64 KB".into(),
            ));
        }
        Ok(String::from_utf8_lossy(&buf)
            .trim_end_matches(['\r', '\n'])
            .to_owned())
    }

    /// One response line, with the literal it announces (`{N}` at its end) read whole; the
    /// line's rest after the literal is appended to it.
    async fn response_line(&mut self) -> Result<(String, Option<Vec<u8>>), ImapError> {
        let mut line = self.line().await?;
        let mut literal = None;
        while let Some(size) = line
            .strip_suffix('}')
            .and_then(|l| l.rsplit_once('{'))
            .and_then(|(_, n)| n.trim_end_matches('+').parse::<usize>().ok())
        {
            if size > MAX_MESSAGE {
                return Err(ImapError::Protocol(format!(
                    "a message of {size} bytes, more than the {MAX_MESSAGE} accepted"
                )));
            }
            let mut bytes = vec![0; size];
            tokio::time::timeout(TIMEOUT, self.io.read_exact(&mut bytes))
                .await
                .map_err(|_| ImapError::Io("reading a message timed out".into()))?
                .map_err(io_error)?;
            if literal.is_none() {
                literal = Some(bytes);
            }
            let rest = self.line().await?;
            line.push_str(&rest);
        }
        Ok((line, literal))
    }
}
