//! A real SMTP server on 127.0.0.1 for the tests (mailin-embedded), with fault injection:
//! transient replies for the first messages, a 550 5.1.1 for chosen addresses, a connection
//! dropped in the middle of DATA, and a server that stalls. Optional STARTTLS, and an
//! implicit-TLS front end that terminates TLS and relays to the server.

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailin_embedded::{Handler, Response, Server, SslConfig};

/// A message as the server received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub from: String,
    pub to: Vec<String>,
    pub data: Vec<u8>,
}

/// Faults to inject; all off by default.
#[derive(Debug, Default)]
pub struct Faults {
    /// Answer 451 to the DATA command for this many messages.
    pub transient_first: AtomicUsize,
    /// Answer 421 (and close the connection) at the end of DATA for this many messages.
    pub closing_first: AtomicUsize,
    /// Answer 550 5.1.1 to RCPT for these addresses.
    pub unknown: Mutex<HashSet<String>>,
    /// Sleep this long when DATA starts (before the 354), for every message.
    pub stall: Mutex<Option<Duration>>,
    /// Keep the message, then sleep this long before the final reply: a slow relay that has
    /// accepted a message its client may already have given up on.
    pub slow_reply: Mutex<Option<Duration>>,
    /// Keep only the envelope of each message, not its bytes (tests of tens of thousands).
    pub envelopes_only: std::sync::atomic::AtomicBool,
}

#[derive(Debug, Default)]
pub struct Mailbox {
    pub received: Mutex<Vec<Received>>,
    pub faults: Faults,
    /// Connections that reached DATA, counted.
    pub data_started: AtomicUsize,
    /// When each DATA started.
    pub data_started_at: Mutex<Vec<std::time::Instant>>,
}

impl Mailbox {
    /// The messages received so far.
    pub fn messages(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// How many messages each recipient received.
    pub fn per_recipient(&self) -> std::collections::HashMap<String, usize> {
        let mut counts = std::collections::HashMap::new();
        for m in self.messages() {
            for to in m.to {
                *counts.entry(to.to_lowercase()).or_insert(0) += 1;
            }
        }
        counts
    }
}

fn take_one(counter: &AtomicUsize) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

#[derive(Clone)]
struct Session {
    mailbox: Arc<Mailbox>,
    from: String,
    to: Vec<String>,
    data: Vec<u8>,
}

impl Handler for Session {
    fn mail(&mut self, _ip: IpAddr, _domain: &str, from: &str) -> Response {
        self.from = from.to_owned();
        self.to.clear();
        self.data.clear();
        mailin_embedded::response::OK
    }

    fn rcpt(&mut self, to: &str) -> Response {
        if self
            .mailbox
            .faults
            .unknown
            .lock()
            .unwrap()
            .contains(&to.to_lowercase())
        {
            return Response::custom(
                550,
                "5.1.1 <".to_owned() + to + ">: Recipient address rejected: User unknown",
            );
        }
        self.to.push(to.to_owned());
        mailin_embedded::response::OK
    }

    fn data_start(
        &mut self,
        _domain: &str,
        _from: &str,
        _is8bit: bool,
        _to: &[String],
    ) -> Response {
        self.mailbox.data_started.fetch_add(1, Ordering::SeqCst);
        self.mailbox
            .data_started_at
            .lock()
            .unwrap()
            .push(std::time::Instant::now());
        if take_one(&self.mailbox.faults.transient_first) {
            return Response::custom(451, "4.3.0 Temporary failure, try again later".to_owned());
        }
        let stall = *self.mailbox.faults.stall.lock().unwrap();
        if let Some(d) = stall {
            std::thread::sleep(d);
        }
        mailin_embedded::response::OK
    }

    fn data(&mut self, buf: &[u8]) -> io::Result<()> {
        if self.mailbox.faults.envelopes_only.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        if take_one(&self.mailbox.faults.closing_first) {
            return Response::custom(
                421,
                "4.3.2 Service shutting down, closing connection".to_owned(),
            );
        }
        self.mailbox.received.lock().unwrap().push(Received {
            from: self.from.clone(),
            to: self.to.clone(),
            data: std::mem::take(&mut self.data),
        });
        let slow = *self.mailbox.faults.slow_reply.lock().unwrap();
        if let Some(d) = slow {
            std::thread::sleep(d);
        }
        Response::custom(250, "2.0.0 Ok: queued".to_owned())
    }
}

/// A running server.
pub struct SmtpServer {
    pub addr: SocketAddr,
    pub mailbox: Arc<Mailbox>,
}

impl SmtpServer {
    /// `smtp://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.addr.port())
    }
}

/// A self-signed certificate for `localhost`, written to a temporary directory.
pub struct TestCert {
    _dir: tempfile::TempDir,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn test_cert() -> TestCert {
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    TestCert {
        _dir: dir,
        cert,
        key,
    }
}

/// Starts a server on 127.0.0.1 with an ephemeral port, optionally offering STARTTLS.
pub fn start(tls: Option<&TestCert>) -> SmtpServer {
    start_on(std::net::TcpListener::bind("127.0.0.1:0").unwrap(), tls)
}

/// Starts a server on a listener the test already holds (a server that comes back on the
/// address an earlier, broken one had).
pub fn start_on(listener: std::net::TcpListener, tls: Option<&TestCert>) -> SmtpServer {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let addr = listener.local_addr().unwrap();
    let mailbox = Arc::new(Mailbox::default());
    let session = Session {
        mailbox: mailbox.clone(),
        from: String::new(),
        to: Vec::new(),
        data: Vec::new(),
    };
    let mut server = Server::new(session);
    server
        .with_name("test.smtp.local")
        .with_num_threads(32)
        .with_tcp_listener(listener);
    if let Some(cert) = tls {
        server
            .with_ssl(SslConfig::SelfSigned {
                cert_path: cert.cert.display().to_string(),
                key_path: cert.key.display().to_string(),
            })
            .unwrap();
    }
    std::thread::spawn(move || {
        let _ = server.serve();
    });
    SmtpServer { addr, mailbox }
}

/// A relay that is down in the worst way: it accepts connections and never says a word (no
/// greeting), holding them open until it is [`stop`](SilentRelay::stop)ped, which closes
/// them and gives the listener back for a real server to use.
pub struct SilentRelay {
    pub addr: SocketAddr,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<std::net::TcpListener>,
}

impl SilentRelay {
    pub fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            while !stopped.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => held.push(stream),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
            drop(held);
            listener.set_nonblocking(false).unwrap();
            listener
        });
        Self { addr, stop, thread }
    }

    /// `smtp://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.addr.port())
    }

    /// Closes the connections it holds and returns its listener.
    pub fn stop(self) -> std::net::TcpListener {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap()
    }
}

/// An implicit-TLS front end on 127.0.0.1: terminates TLS with `cert` and relays the bytes to
/// `backend`. Returns its address. Needs a Tokio runtime.
pub async fn implicit_tls_front(cert: &TestCert, backend: SocketAddr) -> SocketAddr {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};

    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert.cert)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(&cert.key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    addr
}

/// A TCP proxy in front of `backend` that, once, cuts the connection in the middle of the
/// message data of a transaction addressed to `victim` (after the DATA command and some
/// content, before the final dot): the client sees the connection drop with no reply.
pub async fn drop_mid_data_proxy(backend: SocketAddr, victim: &str) -> SocketAddr {
    use std::sync::atomic::AtomicBool;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let victim = format!("<{}>", victim.to_lowercase());
    let fired = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (victim, fired) = (victim.clone(), fired.clone());
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(backend).await else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let back = tokio::spawn(async move { tokio::io::copy(&mut sr, &mut cw).await });
                let mut seen = String::new();
                let mut buf = [0u8; 4096];
                let mut data_bytes: Option<usize> = None;
                loop {
                    let n = match cr.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let chunk = &buf[..n];
                    if let Some(count) = data_bytes.as_mut() {
                        *count += n;
                        if *count > 200 && !fired.swap(true, Ordering::SeqCst) {
                            // Forward part of the data, then cut both sides.
                            let _ = sw.write_all(&chunk[..n / 2]).await;
                            back.abort();
                            return;
                        }
                    } else {
                        let text = String::from_utf8_lossy(chunk).to_lowercase();
                        if text.contains("mail from:") {
                            seen.clear(); // a new transaction
                        }
                        seen.push_str(&text);
                        if seen.contains(&victim)
                            && seen.contains("\r\ndata\r\n")
                            && !fired.load(Ordering::SeqCst)
                        {
                            data_bytes = Some(0);
                        }
                        if seen.contains("\r\nrset\r\n") || seen.len() > 65536 {
                            seen.clear();
                        }
                    }
                    if sw.write_all(chunk).await.is_err() {
                        break;
                    }
                }
                back.abort();
            });
        }
    });
    addr
}

/// A front for `backend` that forwards the first connection only (the pre-flight probe) and
/// then stops listening: every later connection is refused, as when a relay goes down just
/// after a send starts.
pub async fn one_connection_front(backend: SocketAddr) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let Ok((client, _)) = listener.accept().await else {
            return;
        };
        drop(listener);
        let Ok(server) = tokio::net::TcpStream::connect(backend).await else {
            return;
        };
        let (mut cr, mut cw) = client.into_split();
        let (mut sr, mut sw) = server.into_split();
        let back = tokio::spawn(async move { tokio::io::copy(&mut sr, &mut cw).await });
        if tokio::io::copy(&mut cr, &mut sw).await.is_err() {
            back.abort();
        }
    });
    addr
}
