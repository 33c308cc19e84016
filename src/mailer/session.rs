//! One SMTP client session (RFC 5321), written for the delivery hot path.
//!
//! lettre builds the messages and writes the outbox; the sessions are Herald's own, because
//! a bulk send spends most of its time here and lettre's connection sends one command per
//! round trip and dot-stuffs the body a byte at a time. A session:
//!
//! - opens TCP with `TCP_NODELAY`, then implicit TLS, or STARTTLS after EHLO (rustls, the
//!   webpki roots plus `tls_ca`), then AUTH PLAIN or LOGIN;
//! - sends `MAIL`, `RCPT` and `DATA` in one write when the server offers PIPELINING
//!   (RFC 2920), one at a time otherwise, and reads every reply before judging;
//! - writes each message in one buffer, line ends normalised to CRLF and dot-stuffed in one
//!   pass (memchr), ending with `.`;
//! - refuses a server that sends bytes after its STARTTLS reply (they would be read as if
//!   they had come over TLS: the command injection of CVE-2011-0411), bounds the length of
//!   reply lines, and never writes a credential to a log.
//!
//! A session whose transaction failed is dropped, never reused: the next message opens a
//! new one.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use base64::Engine as _;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::SendError;
use crate::config::{Security, SmtpSettings};

/// Longest reply line accepted (RFC 5321 allows 512 octets; servers send more in practice).
const MAX_LINE: u64 = 8192;
/// Most lines in one reply (an EHLO lists a few dozen at most).
const MAX_LINES: usize = 256;

/// The byte stream under a session.
enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only while STARTTLS moves the TCP stream into TLS.
    Closed,
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the SMTP session is closed")
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Self::Closed => Poll::Ready(Err(closed())),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Self::Closed => Poll::Ready(Err(closed())),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            Self::Closed => Poll::Ready(Err(closed())),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
            Self::Closed => false,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Self::Closed => Poll::Ready(Err(closed())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Self::Closed => Poll::Ready(Err(closed())),
        }
    }
}

/// A server reply: its code and its lines' text (after the code), one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Reply {
    pub code: u16,
    pub text: String,
}

impl Reply {
    fn is(&self, class: u16) -> bool {
        self.code / 100 == class
    }

    /// The reply as a failure: 5xx permanent (a bounce when its enhanced status is 5.1.x,
    /// RFC 3463: the address itself is dead), anything else transient.
    pub(super) fn error(&self) -> SendError {
        if self.is(5) {
            SendError::Permanent {
                message: format!("permanent error ({}): {}", self.code, self.one_line()),
                bounce: is_address_failure(&self.text),
            }
        } else {
            SendError::Transient(format!(
                "transient error ({}): {}",
                self.code,
                self.one_line()
            ))
        }
    }

    /// The text on one line, as logs and the ledger keep it.
    pub(super) fn one_line(&self) -> String {
        self.text.replace('\n', " ")
    }
}

/// Whether a reply text carries an enhanced status code 5.1.x.
fn is_address_failure(text: &str) -> bool {
    text.split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ':')
        .any(|token| {
            let mut parts = token.split('.');
            parts.next() == Some("5")
                && parts.next() == Some("1")
                && parts
                    .next()
                    .is_some_and(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_digit()))
                && parts.next().is_none()
        })
}

/// What the server's EHLO reply offered.
#[derive(Debug, Default, Clone)]
struct Extensions {
    pipelining: bool,
    eight_bit_mime: bool,
    smtp_utf8: bool,
    starttls: bool,
    auth: Vec<String>,
}

impl Extensions {
    fn parse(reply: &str) -> Self {
        let mut ext = Self::default();
        // The first line names the server; each further line is one keyword.
        for keyword in reply.split('\n').skip(1) {
            let mut words = keyword.split_whitespace();
            match words
                .next()
                .map(str::to_ascii_uppercase)
                .as_deref()
                .unwrap_or("")
            {
                "PIPELINING" => ext.pipelining = true,
                "8BITMIME" => ext.eight_bit_mime = true,
                "SMTPUTF8" => ext.smtp_utf8 = true,
                "STARTTLS" => ext.starttls = true,
                "AUTH" => ext.auth = words.map(str::to_ascii_uppercase).collect(),
                _ => {}
            }
        }
        ext
    }
}

/// An open SMTP session, greeted and ready for a transaction.
pub(super) struct Session {
    io: BufReader<Conn>,
    ext: Extensions,
    /// The outgoing bytes of the current transaction, kept to reuse its allocation.
    out: Vec<u8>,
    line: Vec<u8>,
}

fn io_error(context: &str) -> impl Fn(io::Error) -> SendError + '_ {
    move |e| SendError::Transient(format!("{context}: {e}"))
}

impl Session {
    /// Connects, greets (EHLO), secures (TLS as configured) and authenticates. Returns the
    /// session and whether TCP_NODELAY took on its socket.
    ///
    /// # Errors
    /// [`SendError`] from the first step that failed: nothing was sent.
    pub(super) async fn open(s: &SmtpSettings) -> Result<(Self, bool), SendError> {
        let connecting = format!("connecting to {}:{}", s.host, s.port);
        let tcp = TcpStream::connect((s.host.as_str(), s.port))
            .await
            .map_err(io_error(&connecting))?;
        tcp.set_nodelay(true).map_err(io_error(&connecting))?;
        let nodelay = tcp.nodelay().unwrap_or(false);
        let conn = match s.security {
            Security::Implicit => Conn::Tls(Box::new(tls(s, tcp).await?)),
            _ => Conn::Plain(tcp),
        };
        let mut session = Self {
            io: BufReader::with_capacity(4096, conn),
            ext: Extensions::default(),
            out: Vec::new(),
            line: Vec::new(),
        };
        let greeting = session.reply().await?;
        if !greeting.is(2) {
            return Err(greeting.error());
        }
        session.ehlo(&s.hello).await?;
        let encrypted = matches!(s.security, Security::Implicit);
        match s.security {
            Security::StartTls if !session.ext.starttls => {
                return Err(SendError::Transient(format!(
                    "{}:{} does not offer STARTTLS, and tls=required",
                    s.host, s.port
                )));
            }
            Security::StartTls | Security::Opportunistic if session.ext.starttls && !encrypted => {
                session.starttls(s).await?;
            }
            _ => {}
        }
        if let Some((user, password)) = &s.credentials {
            session.auth(user, password.expose()).await?;
        }
        Ok((session, nodelay))
    }

    /// Whether the session runs over TLS.
    pub(super) fn is_encrypted(&self) -> bool {
        matches!(self.io.get_ref(), Conn::Tls(_))
    }

    async fn ehlo(&mut self, hello: &str) -> Result<(), SendError> {
        let reply = self.command(&format!("EHLO {hello}")).await?;
        if !reply.is(2) {
            return Err(reply.error());
        }
        self.ext = Extensions::parse(&reply.text);
        Ok(())
    }

    async fn starttls(&mut self, s: &SmtpSettings) -> Result<(), SendError> {
        let reply = self.command("STARTTLS").await?;
        if !reply.is(2) {
            return Err(reply.error());
        }
        if !self.io.buffer().is_empty() {
            return Err(SendError::Transient(format!(
                "{}:{} sent data after its STARTTLS reply, before the TLS handshake: refused",
                s.host, s.port
            )));
        }
        let Conn::Plain(tcp) = std::mem::replace(self.io.get_mut(), Conn::Closed) else {
            unreachable!("STARTTLS is only sent on a plain connection")
        };
        let secured = tls(s, tcp).await?;
        self.io = BufReader::with_capacity(4096, Conn::Tls(Box::new(secured)));
        self.ext = Extensions::default();
        self.ehlo(&s.hello).await
    }

    async fn auth(&mut self, user: &str, password: &str) -> Result<(), SendError> {
        let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
        let offers = |m: &str| self.ext.auth.iter().any(|a| a == m);
        let reply = if offers("PLAIN") {
            let token = b64(format!("\0{user}\0{password}").as_bytes());
            self.secret_command(&format!("AUTH PLAIN {token}")).await?
        } else if offers("LOGIN") {
            let first = self.command("AUTH LOGIN").await?;
            if first.code != 334 {
                return Err(first.error());
            }
            let second = self.secret_command(&b64(user.as_bytes())).await?;
            if second.code != 334 {
                return Err(second.error());
            }
            self.secret_command(&b64(password.as_bytes())).await?
        } else {
            return Err(SendError::Permanent {
                message:
                    "the server offers no authentication mechanism Herald supports (PLAIN, LOGIN)"
                        .into(),
                bounce: false,
            });
        };
        if reply.code == 235 {
            Ok(())
        } else {
            Err(reply.error())
        }
    }

    /// Sends one message in one transaction. `data_sent` is set once the server has accepted
    /// DATA: from then on the message may reach the server, so a failure without a reply is
    /// ambiguous. Returns the server's final reply.
    ///
    /// # Errors
    /// The first failing reply as a [`SendError`], or the connection's failure.
    pub(super) async fn send(
        &mut self,
        from: &str,
        to: &str,
        message: &[u8],
        data_sent: &AtomicBool,
    ) -> Result<Reply, SendError> {
        let non_ascii = !from.is_ascii() || !to.is_ascii();
        if non_ascii && !self.ext.smtp_utf8 {
            return Err(SendError::Permanent {
                message: "the address needs SMTPUTF8, which the server does not offer".into(),
                bounce: false,
            });
        }
        let mut params = String::new();
        if !message.is_ascii() && self.ext.eight_bit_mime {
            params.push_str(" BODY=8BITMIME");
        }
        if non_ascii {
            params.push_str(" SMTPUTF8");
        }
        let mail = format!("MAIL FROM:<{from}>{params}\r\n");
        let rcpt = format!("RCPT TO:<{to}>\r\n");
        let data = "DATA\r\n";
        let (mail_reply, rcpt_reply, data_reply) = if self.ext.pipelining {
            let mut out = std::mem::take(&mut self.out);
            out.clear();
            out.extend_from_slice(mail.as_bytes());
            out.extend_from_slice(rcpt.as_bytes());
            out.extend_from_slice(data.as_bytes());
            let written = self.write(&out).await;
            self.out = out;
            written?;
            (
                self.reply().await?,
                self.reply().await?,
                self.reply().await?,
            )
        } else {
            let mail_reply = self.raw_command(mail.as_bytes()).await?;
            if !mail_reply.is(2) {
                return Err(mail_reply.error());
            }
            let rcpt_reply = self.raw_command(rcpt.as_bytes()).await?;
            if !rcpt_reply.is(2) {
                return Err(rcpt_reply.error());
            }
            let data_reply = self.raw_command(data.as_bytes()).await?;
            (mail_reply, rcpt_reply, data_reply)
        };
        if !mail_reply.is(2) {
            return Err(mail_reply.error());
        }
        if !rcpt_reply.is(2) {
            // A server that accepts DATA with no valid recipient breaks RFC 2920; the
            // session is dropped by the caller, so nothing is written after it.
            return Err(rcpt_reply.error());
        }
        if data_reply.code != 354 {
            return Err(data_reply.error());
        }
        data_sent.store(true, Ordering::SeqCst);
        let written = if is_transparent(message) {
            // CRLF throughout, no line starting with a dot, ending with CRLF (as lettre
            // writes messages): the bytes go as they are, with the final dot, in one
            // vectored write and no copy.
            self.write_two(message, b".\r\n").await
        } else {
            let mut out = std::mem::take(&mut self.out);
            out.clear();
            dot_stuff(message, &mut out);
            let written = self.write(&out).await;
            self.out = out;
            written
        };
        written.map_err(|e| after_data(&e))?;
        let reply = self.reply().await.map_err(|e| after_data(&e))?;
        if reply.is(2) {
            Ok(reply)
        } else {
            Err(reply.error())
        }
    }

    /// Ends the session politely.
    pub(super) async fn quit(&mut self) -> Result<(), SendError> {
        self.command("QUIT").await.map(drop)
    }

    async fn command(&mut self, line: &str) -> Result<Reply, SendError> {
        self.raw_command(format!("{line}\r\n").as_bytes()).await
    }

    /// A command carrying a credential: the same, kept apart so that no log ever has it.
    async fn secret_command(&mut self, line: &str) -> Result<Reply, SendError> {
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        let reply = self.raw_command(&bytes).await;
        bytes.fill(0);
        reply
    }

    async fn raw_command(&mut self, bytes: &[u8]) -> Result<Reply, SendError> {
        self.write(bytes).await?;
        self.reply().await
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), SendError> {
        let conn = self.io.get_mut();
        conn.write_all(bytes)
            .await
            .map_err(io_error("writing to the SMTP server"))?;
        conn.flush()
            .await
            .map_err(io_error("writing to the SMTP server"))
    }

    /// Writes two buffers, with vectored writes where the stream takes them.
    async fn write_two(&mut self, first: &[u8], second: &[u8]) -> Result<(), SendError> {
        let conn = self.io.get_mut();
        let failed =
            |e: io::Error| SendError::Transient(format!("writing to the SMTP server: {e}"));
        let (mut a, mut b) = (first, second);
        while !a.is_empty() || !b.is_empty() {
            let bufs = [io::IoSlice::new(a), io::IoSlice::new(b)];
            let n = conn.write_vectored(&bufs).await.map_err(failed)?;
            if n == 0 {
                return Err(failed(io::ErrorKind::WriteZero.into()));
            }
            let from_a = n.min(a.len());
            a = &a[from_a..];
            b = &b[n - from_a..];
        }
        conn.flush().await.map_err(failed)
    }

    /// Reads one reply, all its lines.
    async fn reply(&mut self) -> Result<Reply, SendError> {
        let mut code = None;
        let mut text = String::new();
        for _ in 0..MAX_LINES {
            self.line.clear();
            let n = (&mut self.io)
                .take(MAX_LINE)
                .read_until(b'\n', &mut self.line)
                .await
                .map_err(io_error("reading the SMTP server's reply"))?;
            if n == 0 {
                return Err(SendError::Transient(
                    "the SMTP server closed the connection".into(),
                ));
            }
            if self.line.last() != Some(&b'\n') {
                return Err(SendError::Transient(format!(
                    "the SMTP server sent a reply line longer than {MAX_LINE} bytes"
                )));
            }
            let line = String::from_utf8_lossy(&self.line);
            let line = line.trim_end_matches(['\r', '\n']);
            let this: Option<u16> = line
                .get(..3)
                .filter(|c| c.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|c| c.parse().ok());
            let Some(this) = this.filter(|c| (200..600).contains(c)) else {
                return Err(SendError::Transient(format!(
                    "the SMTP server sent something that is not a reply: {:?}",
                    line.chars().take(80).collect::<String>()
                )));
            };
            if code.is_some_and(|c| c != this) {
                return Err(SendError::Transient(format!(
                    "the SMTP server changed its reply code within one reply: {line:?}"
                )));
            }
            code = Some(this);
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(line.get(4..).unwrap_or("").trim());
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(Reply { code: this, text });
            }
        }
        Err(SendError::Transient(format!(
            "the SMTP server sent a reply of more than {MAX_LINES} lines"
        )))
    }
}

/// A failure after DATA was accepted that carries no reply: the message may have arrived.
fn after_data(e: &SendError) -> SendError {
    match e {
        SendError::Transient(m) => SendError::Ambiguous(format!(
            "the connection failed after the message was sent ({m}): it may or may not have been accepted"
        )),
        other => other.clone(),
    }
}

async fn tls(s: &SmtpSettings, tcp: TcpStream) -> Result<TlsStream<TcpStream>, SendError> {
    let name = ServerName::try_from(s.host.clone())
        .map_err(|e| SendError::Transient(format!("TLS server name {}: {e}", s.host)))?;
    tokio_rustls::TlsConnector::from(s.rustls_config()?)
        .connect(name, tcp)
        .await
        .map_err(|e| SendError::Transient(format!("TLS handshake with {}:{}: {e}", s.host, s.port)))
}

/// Whether `message` can go as DATA unchanged: every line end CRLF, no line starting with
/// a dot, and a final CRLF.
fn is_transparent(message: &[u8]) -> bool {
    if !message.ends_with(b"\r\n") || message.first() == Some(&b'.') {
        return false;
    }
    memchr::memchr_iter(b'\n', message)
        .all(|i| i > 0 && message[i - 1] == b'\r' && message.get(i + 1) != Some(&b'.'))
        && !memchr::memchr_iter(b'\r', message).any(|i| message.get(i + 1) != Some(&b'\n'))
}

/// Appends `message` as the DATA of a transaction: every line end CRLF, a `.` doubled at
/// the start of a line (RFC 5321 4.5.2), and the final `.` line.
pub(super) fn dot_stuff(message: &[u8], out: &mut Vec<u8>) {
    out.reserve(message.len() + message.len() / 64 + 5);
    let mut rest = message;
    while !rest.is_empty() {
        let (line, next) = match memchr::memchr(b'\n', rest) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &[][..]),
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
        rest = next;
    }
    out.extend_from_slice(b".\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transparent_message_is_exactly_what_dot_stuffing_would_send() {
        let cases: [&[u8]; 8] = [
            b"Subject: a\r\n\r\nbody\r\n",
            b"Subject: a\r\n\r\n.dot\r\n",
            b"Subject: a\r\n\r\nbare\nlf\r\n",
            b"Subject: a\r\n\r\nbare\rcr\r\n",
            b"Subject: a\r\n\r\nno final line end",
            b".starts with a dot\r\n",
            b"\n",
            b"a\r\n.\r\n",
        ];
        for (i, message) in cases.iter().enumerate() {
            let mut stuffed = Vec::new();
            dot_stuff(message, &mut stuffed);
            let mut direct = message.to_vec();
            direct.extend_from_slice(b".\r\n");
            assert_eq!(is_transparent(message), i == 0, "case {i}");
            if is_transparent(message) {
                assert_eq!(stuffed, direct, "case {i}");
            }
        }
    }
}
