//! Herald's SMTP client against scripted servers on loopback: the protocol details the
//! in-process test server (mailin) does not exercise. Each server here is a real TCP peer
//! that plays one conversation line by line and checks what the client wrote.

use std::time::Duration;

use herald::config::SmtpSettings;
use herald::domain::{EmailAddress, Secret};
use herald::mailer::{Mailer, SendError, Transport};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

type Conn = BufReader<TcpStream>;

async fn line(c: &mut Conn) -> String {
    let mut l = String::new();
    c.read_line(&mut l).await.unwrap();
    l
}

async fn say(c: &mut Conn, text: &str) {
    c.get_mut().write_all(text.as_bytes()).await.unwrap();
}

/// Reads a message's data up to and including the final `.` line.
async fn data(c: &mut Conn) -> Vec<u8> {
    let mut data = Vec::new();
    loop {
        let mut l = Vec::new();
        c.read_until(b'\n', &mut l).await.unwrap();
        assert!(!l.is_empty(), "the client closed the connection in DATA");
        if l == b".\r\n" {
            return data;
        }
        data.extend_from_slice(&l);
    }
}

async fn mailer_for(url: &str) -> Mailer {
    let settings = SmtpSettings::from_url(
        &Secret::new(url.to_owned()),
        "example.com",
        Duration::from_secs(5),
    )
    .unwrap();
    Mailer::new(Transport::Smtp(settings)).unwrap()
}

fn addr(a: &str) -> EmailAddress {
    EmailAddress::parse(a).unwrap()
}

/// A server that offers PIPELINING and answers nothing until MAIL, RCPT and DATA have all
/// arrived: a client that waits for each reply before its next command never gets one.
#[tokio::test]
async fn with_pipelining_mail_rcpt_and_data_go_in_one_round_trip_and_the_body_is_dot_stuffed() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut c = BufReader::new(tcp);
        say(&mut c, "220 sink ESMTP\r\n").await;
        assert!(line(&mut c).await.starts_with("EHLO "));
        say(
            &mut c,
            "250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 10240000\r\n",
        )
        .await;
        let mut bodies = Vec::new();
        for _ in 0..2 {
            let mail = line(&mut c).await;
            let rcpt = line(&mut c).await;
            let data_cmd = line(&mut c).await;
            assert_eq!(mail, "MAIL FROM:<weekly@example.com> BODY=8BITMIME\r\n");
            assert_eq!(rcpt, "RCPT TO:<reader@xn--mnchen-3ya.de>\r\n");
            assert_eq!(data_cmd, "DATA\r\n");
            say(&mut c, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go ahead\r\n").await;
            bodies.push(data(&mut c).await);
            say(&mut c, "250 2.0.0 Ok: queued as ABC\r\n").await;
        }
        assert_eq!(line(&mut c).await, "QUIT\r\n");
        say(&mut c, "221 bye\r\n").await;
        bodies
    });
    let mut mailer = mailer_for(&format!("smtp://127.0.0.1:{port}")).await;
    // Bare LF line ends, lines that start with a dot, a lone dot line, non-ASCII text.
    let message =
        "Subject: dots\nFrom: weekly@example.com\n\n.starts with a dot\r\n.\n..two\nGrüße\nend";
    for _ in 0..2 {
        let reply = tokio::time::timeout(
            Duration::from_secs(5),
            mailer.send(
                &addr("weekly@example.com"),
                &addr("reader@münchen.de"),
                message.as_bytes(),
            ),
        )
        .await
        .expect("the client waited for a reply the server withholds until DATA: no pipelining")
        .unwrap();
        assert_eq!(reply, "250 2.0.0 Ok: queued as ABC");
    }
    mailer.close().await;
    let bodies = server.await.unwrap();
    let expected = "Subject: dots\r\nFrom: weekly@example.com\r\n\r\n..starts with a dot\r\n..\r\n...two\r\nGrüße\r\nend\r\n";
    for body in bodies {
        assert_eq!(String::from_utf8(body).unwrap(), expected);
    }
}

#[tokio::test]
async fn a_pipelined_recipient_refusal_is_a_bounce_and_the_session_is_not_reused() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let mut sessions = 0;
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            sessions += 1;
            let mut c = BufReader::new(tcp);
            say(&mut c, "220 sink ESMTP\r\n").await;
            line(&mut c).await;
            say(&mut c, "250-sink\r\n250 PIPELINING\r\n").await;
            let rcpt = {
                line(&mut c).await;
                line(&mut c).await
            };
            assert_eq!(line(&mut c).await, "DATA\r\n");
            if rcpt.contains("gone@") {
                say(
                    &mut c,
                    "250 Ok\r\n550 5.1.1 <gone@example.org>: user unknown\r\n554 5.5.1 no valid recipients\r\n",
                )
                .await;
                // The client drops this session: the next message comes on a new one.
                let mut rest = Vec::new();
                c.read_to_end(&mut rest).await.unwrap();
                assert!(
                    rest.is_empty(),
                    "the client wrote after a refusal: {rest:?}"
                );
                continue;
            }
            say(&mut c, "250 Ok\r\n250 Ok\r\n354 go\r\n").await;
            data(&mut c).await;
            say(&mut c, "250 Ok\r\n").await;
            return sessions;
        }
    });
    let mut mailer = mailer_for(&format!("smtp://127.0.0.1:{port}")).await;
    let from = addr("weekly@example.com");
    match mailer
        .send(&from, &addr("gone@example.org"), b"Subject: x\r\n\r\nx\r\n")
        .await
    {
        Err(SendError::Permanent { message, bounce }) => {
            assert!(bounce, "{message}");
            assert!(
                message.contains("550") && message.contains("user unknown"),
                "{message}"
            );
        }
        other => panic!("expected a bounce, got {other:?}"),
    }
    let reply = mailer
        .send(&from, &addr("here@example.org"), b"Subject: x\r\n\r\nx\r\n")
        .await
        .unwrap();
    assert_eq!(reply, "250 Ok");
    assert_eq!(server.await.unwrap(), 2, "a new session after the refusal");
}

/// Bytes that follow the STARTTLS reply in the same packet were sent in the clear; a client
/// that kept them would read them as the first replies of the TLS session (CVE-2011-0411).
#[tokio::test]
async fn data_injected_after_the_starttls_reply_is_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut c = BufReader::new(tcp);
        say(&mut c, "220 relay ESMTP\r\n").await;
        line(&mut c).await;
        say(&mut c, "250-relay\r\n250 STARTTLS\r\n").await;
        assert_eq!(line(&mut c).await, "STARTTLS\r\n");
        say(&mut c, "220 go ahead\r\n250-injected\r\n250 AUTH PLAIN\r\n").await;
        let mut rest = Vec::new();
        let _ = c.read_to_end(&mut rest).await;
        rest
    });
    let settings = SmtpSettings::from_url(
        &Secret::new(format!("smtp://localhost:{port}?tls=required")),
        "example.com",
        Duration::from_secs(5),
    )
    .unwrap();
    let err = Mailer::probe(&settings).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("sent data after its STARTTLS reply"),
        "{err}"
    );
    assert!(
        server.await.unwrap().is_empty(),
        "no TLS handshake and no command after the injection"
    );
}

/// AUTH PLAIN when offered, AUTH LOGIN when only it is; a refused password is an error that
/// never shows the password.
#[tokio::test]
async fn auth_plain_and_login_carry_the_credentials_and_a_refusal_hides_the_password() {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    for (offer, accept) in [("PLAIN LOGIN", true), ("LOGIN", true), ("PLAIN", false)] {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (user, password) = ("mailer", "s3cret pass");
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut c = BufReader::new(tcp);
            say(&mut c, "220 relay ESMTP\r\n").await;
            line(&mut c).await;
            say(&mut c, &format!("250-relay\r\n250 AUTH {offer}\r\n")).await;
            let first = line(&mut c).await;
            if offer.starts_with("PLAIN") {
                assert_eq!(
                    first,
                    format!("AUTH PLAIN {}\r\n", b64(&format!("\0{user}\0{password}")))
                );
            } else {
                assert_eq!(first, "AUTH LOGIN\r\n");
                say(&mut c, "334 VXNlcm5hbWU6\r\n").await;
                assert_eq!(line(&mut c).await, format!("{}\r\n", b64(user)));
                say(&mut c, "334 UGFzc3dvcmQ6\r\n").await;
                assert_eq!(line(&mut c).await, format!("{}\r\n", b64(password)));
            }
            if accept {
                say(&mut c, "235 2.7.0 Authentication successful\r\n").await;
                assert_eq!(line(&mut c).await, "QUIT\r\n");
                say(&mut c, "221 bye\r\n").await;
            } else {
                say(&mut c, "535 5.7.8 Authentication credentials invalid\r\n").await;
            }
        });
        let settings = SmtpSettings::from_url(
            &Secret::new(format!("smtp://mailer:s3cret%20pass@127.0.0.1:{port}")),
            "example.com",
            Duration::from_secs(5),
        )
        .unwrap();
        let probed = Mailer::probe(&settings).await;
        server.await.unwrap();
        match (accept, probed) {
            (true, Ok(found)) => assert!(found.contains("authenticated"), "{found}"),
            (false, Err(e)) => {
                let text = e.to_string();
                assert!(text.contains("535"), "{text}");
                assert!(
                    !text.contains("s3cret") && !text.contains(&b64(password)),
                    "{text}"
                );
            }
            (_, other) => panic!("{offer}: {other:?}"),
        }
    }
}

/// A server that sends an endless reply line is cut off, not buffered without bound.
#[tokio::test]
async fn an_endless_reply_line_is_an_error_not_unbounded_memory() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let chunk = vec![b'2'; 64 * 1024];
        // 64 MB without a line end, unless the client hangs up first.
        for _ in 0..1024 {
            if tcp.write_all(&chunk).await.is_err() {
                return;
            }
        }
    });
    let settings = SmtpSettings::from_url(
        &Secret::new(format!("smtp://127.0.0.1:{port}")),
        "example.com",
        Duration::from_secs(5),
    )
    .unwrap();
    let err = Mailer::probe(&settings).await.unwrap_err();
    assert!(err.to_string().contains("longer than"), "{err}");
}
