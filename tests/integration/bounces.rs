//! What comes back after a send: a real send over SMTP with a per-delivery envelope sender
//! (VERP), then delivery status notifications, abuse reports and unsubscribe emails read by
//! `herald bounces ingest` from a file, an mbox, a Maildir and standard input.

use std::io::Write as _;

use serde_json::Value;

use crate::harness::{CONFIG, Run, Sandbox};
use crate::smtp;

pub const SECRET: &str = "test-signing-key-0123456789abcdef";
const ENV: [(&str, &str); 1] = [("HERALD_SECRET", SECRET)];

pub fn sandbox(extra: &str) -> Sandbox {
    let s = Sandbox::new();
    s.write_readers(4, "");
    s.write(
        "herald.toml",
        format!("{CONFIG}\n[bounces]\ndomain = \"bounces.example.com\"\n{extra}"),
    );
    s
}

/// Sends the next issue over SMTP; returns each recipient's envelope sender.
pub fn send(s: &Sandbox) -> std::collections::HashMap<String, String> {
    send_with_mailtos(s)
        .into_iter()
        .map(|(to, (verp, _))| (to, verp))
        .collect()
}

/// Sends the next issue over SMTP (as `HERALD_SECRET` signs); returns the messages as the
/// server received them.
pub fn send_messages(s: &Sandbox) -> Vec<smtp::Received> {
    let server = smtp::start(None);
    let run = s.herald_env(
        &["send"],
        &[
            ("HERALD_SMTP_URL", &server.url()),
            ("HERALD_SECRET", SECRET),
        ],
    );
    assert_eq!(run.code, 0, "{run:?}");
    server.mailbox.messages()
}

/// Sends the next issue over SMTP; returns each recipient's envelope sender and the address
/// of their `mailto:` unsubscribe.
pub fn send_with_mailtos(s: &Sandbox) -> std::collections::HashMap<String, (String, String)> {
    send_messages(s)
        .into_iter()
        .map(|m| {
            let parsed = mail_parser::MessageParser::default()
                .parse(&m.data)
                .unwrap();
            let header = parsed.header_raw("List-Unsubscribe").unwrap().to_owned();
            let start = header.find("mailto:").expect("a mailto unsubscribe") + "mailto:".len();
            let end = start + header[start..].find('?').unwrap();
            (
                m.to[0].clone(),
                (m.from.clone(), header[start..end].to_owned()),
            )
        })
        .collect()
}

fn ingest(s: &Sandbox, path: &str) -> Run {
    s.herald_env(&["bounces", "ingest", path, "--json"], &ENV)
}

fn counts(run: &Run) -> Value {
    assert_eq!(run.code, 0, "{run:?}");
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run:?}"))
}

pub fn status(s: &Sandbox, email: &str) -> String {
    let run = s.herald(&["subscribers", "list", "--json"]);
    let list: Value = serde_json::from_str(&run.stdout).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .find(|r| r["email"] == email)
        .unwrap_or_else(|| panic!("{email} not listed"))["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn stats(s: &Sandbox) -> Value {
    let run = s.herald_env(&["stats", "--json"], &ENV);
    assert_eq!(run.code, 0, "{run:?}");
    serde_json::from_str(&run.stdout).unwrap()
}

/// A delivery status notification as Postfix writes it (RFC 3464), sent to `to`.
pub fn dsn(to: &str, id: &str, action: &str, status: &str) -> String {
    format!(
        "Return-Path: <>\r\n\
         Delivered-To: {to}\r\n\
         From: MAILER-DAEMON@mx.example.org (Mail Delivery System)\r\n\
         To: {to}\r\n\
         Subject: Undelivered Mail Returned to Sender\r\n\
         Message-Id: <{id}@mx.example.org>\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status;\r\n\
         \tboundary=\"7A2B01E2F.1700000000/mx.example.org\"\r\n\
         \r\n\
         This is a MIME-encapsulated message.\r\n\
         \r\n\
         --7A2B01E2F.1700000000/mx.example.org\r\n\
         Content-Description: Notification\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\
         \r\n\
         I'm sorry to have to inform you that your message could not\r\n\
         be delivered to one or more recipients.\r\n\
         \r\n\
         --7A2B01E2F.1700000000/mx.example.org\r\n\
         Content-Description: Delivery report\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; mx.example.org\r\n\
         X-Postfix-Queue-ID: 7A2B01E2F\r\n\
         Arrival-Date: Mon, 23 Nov 2026 09:00:01 +0000 (UTC)\r\n\
         \r\n\
         Final-Recipient: rfc822; reader1@example.com\r\n\
         Original-Recipient: rfc822;reader1@example.com\r\n\
         Action: {action}\r\n\
         Status: {status}\r\n\
         Remote-MTA: dns; mail.example.com\r\n\
         Diagnostic-Code: smtp; {status_code} {status} <reader1@example.com>: mailbox\r\n\
         \x20   unavailable\r\n\
         \r\n\
         --7A2B01E2F.1700000000/mx.example.org\r\n\
         Content-Description: Undelivered Message Headers\r\n\
         Content-Type: text/rfc822-headers\r\n\
         \r\n\
         Return-Path: <{to}>\r\n\
         Subject: AI Glossary Weekly\r\n\
         \r\n\
         --7A2B01E2F.1700000000/mx.example.org--\r\n",
        status_code = if status.starts_with('5') { 550 } else { 452 }
    )
}

/// An abuse report in the Abuse Reporting Format (RFC 5965, its appendix B example),
/// about the message whose envelope sender was `verp`.
pub fn arf(verp: &str, id: &str) -> String {
    format!(
        "From: <abusedesk@example.org>\r\n\
         Date: Thu, 8 Mar 2026 14:00:00 EDT\r\n\
         Subject: FW: Earn money\r\n\
         To: <abuse@bounces.example.com>\r\n\
         Message-ID: <{id}@example.org>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=feedback-report;\r\n\
         \tboundary=\"part1_13d.2e68ed54_boundary\"\r\n\
         \r\n\
         --part1_13d.2e68ed54_boundary\r\n\
         Content-Type: text/plain; charset=\"US-ASCII\"\r\n\
         Content-Transfer-Encoding: 7bit\r\n\
         \r\n\
         This is an email abuse report for an email message received from IP\r\n\
         192.0.2.1 on Thu, 8 Mar 2026 14:00:00 EDT.\r\n\
         \r\n\
         --part1_13d.2e68ed54_boundary\r\n\
         Content-Type: message/feedback-report\r\n\
         \r\n\
         Feedback-Type: abuse\r\n\
         User-Agent: SomeGenerator/1.0\r\n\
         Version: 1\r\n\
         Original-Mail-From: <{verp}>\r\n\
         Original-Rcpt-To: <reader2@example.com>\r\n\
         Arrival-Date: Thu, 8 Mar 2026 14:00:00 EDT\r\n\
         Reporting-MTA: dns; mail.example.org\r\n\
         Source-IP: 192.0.2.1\r\n\
         \r\n\
         --part1_13d.2e68ed54_boundary\r\n\
         Content-Type: message/rfc822\r\n\
         Content-Disposition: inline\r\n\
         \r\n\
         From: <weekly@example.com>\r\n\
         Received: from mailserver.example.net (mailserver.example.net\r\n\
         \t[192.0.2.1]) by example.org with ESMTP id M63d4137594e46;\r\n\
         \tThu, 08 Mar 2026 14:00:00 -0400\r\n\
         To: <reader2@example.com>\r\n\
         Subject: AI Glossary Weekly\r\n\
         MIME-Version: 1.0\r\n\
         Content-type: text/plain\r\n\
         Message-ID: <issue-1.3@example.com>\r\n\
         Date: Thu, 02 Sep 2026 12:31:03 -0500\r\n\
         \r\n\
         Spam Spam Spam\r\n\
         \r\n\
         --part1_13d.2e68ed54_boundary--\r\n"
    )
}

#[test]
fn a_hard_bounce_after_the_session_suppresses_the_address_and_is_counted_once() {
    let s = sandbox("");
    let senders = send(&s);
    // Every message has an envelope sender of its own on the bounce domain, and none shows
    // the subscriber's id.
    let verp = &senders["reader1@example.com"];
    assert!(
        verp.starts_with("bounces+") && verp.ends_with("@bounces.example.com"),
        "{verp}"
    );
    let distinct: std::collections::HashSet<&String> = senders.values().collect();
    assert_eq!(distinct.len(), 4, "{senders:?}");

    s.write("dsn.eml", dsn(verp, "dsn-1", "failed", "5.1.1"));
    let c = counts(&ingest(&s, "dsn.eml"));
    assert_eq!(c["hard_bounces"], 1, "{c}");
    assert_eq!(c["suppressed"], 1, "{c}");
    assert_eq!(status(&s, "reader1@example.com"), "bounced");
    assert_eq!(status(&s, "reader0@example.com"), "confirmed");
    let issue = &stats(&s)[0];
    assert_eq!(issue["bounced_later"], 1, "{issue}");

    // Read again (a retried pipe, a mailbox read twice): counted once.
    let again = counts(&ingest(&s, "dsn.eml"));
    assert_eq!(again["duplicates"], 1, "{again}");
    assert_eq!(stats(&s)[0]["bounced_later"], 1);

    // The next issue does not go to the bounced address.
    s.write(
        "herald.toml",
        format!("{CONFIG}\n[bounces]\ndomain = \"bounces.example.com\"\n"),
    );
    let next = send(&s);
    assert_eq!(next.len(), 3, "{next:?}");
    assert!(!next.contains_key("reader1@example.com"));
}

#[test]
fn a_forged_or_foreign_bounce_changes_nothing() {
    let s = sandbox("");
    let senders = send(&s);
    let verp = &senders["reader1@example.com"];
    // The same shape with a token that was never issued, one with a changed letter, and a
    // token made with another key.
    let forged = "bounces+abcdefghijklmnopqrstuvwxyz234567@bounces.example.com".to_owned();
    let at = "bounces+".len() + 3;
    let mut tampered = verp.clone().into_bytes();
    tampered[at] = if tampered[at] == b'a' { b'b' } else { b'a' };
    let tampered = String::from_utf8(tampered).unwrap();
    let other_key = format!(
        "bounces+{}@bounces.example.com",
        herald::domain::SigningKey::new("another key")
            .sign_address(herald::domain::Purpose::Bounce, 2)
    );
    for (i, to) in [forged, tampered, other_key].iter().enumerate() {
        s.write(
            &format!("forged{i}.eml"),
            dsn(to, &format!("f{i}"), "failed", "5.1.1"),
        );
        let c = counts(&ingest(&s, &format!("forged{i}.eml")));
        assert_eq!(c["ignored"], 1, "{to}: {c}");
    }
    for i in 0..4 {
        assert_eq!(status(&s, &format!("reader{i}@example.com")), "confirmed");
    }
    assert_eq!(stats(&s)[0]["bounced_later"], 0);
}

#[test]
fn soft_bounces_suppress_only_after_the_limit_in_a_row_and_delays_do_nothing() {
    let s = sandbox("soft_bounce_limit = 2\n");
    let first = send(&s);
    // A delay warning, then the relay gives up with a 4.x.x.
    s.write(
        "mbox",
        format!(
            "From MAILER-DAEMON Mon Nov 23 10:00:00 2026\n{}\nFrom MAILER-DAEMON Mon Nov 23 11:00:00 2026\n{}",
            dsn(&first["reader3@example.com"], "delay-1", "delayed", "4.4.7"),
            dsn(&first["reader3@example.com"], "soft-1", "failed", "4.2.2"),
        ),
    );
    let c = counts(&ingest(&s, "mbox"));
    assert_eq!(
        (
            c["messages"].as_u64(),
            c["soft_bounces"].as_u64(),
            c["ignored"].as_u64()
        ),
        (Some(2), Some(1), Some(1)),
        "{c}"
    );
    assert_eq!(
        status(&s, "reader3@example.com"),
        "confirmed",
        "one soft bounce is not enough"
    );

    let second = send(&s);
    s.write(
        "soft2.eml",
        dsn(&second["reader3@example.com"], "soft-2", "failed", "4.2.2"),
    );
    let c = counts(&ingest(&s, "soft2.eml"));
    assert_eq!(c["suppressed"], 1, "{c}");
    assert_eq!(status(&s, "reader3@example.com"), "bounced");
    assert_eq!(stats(&s)[0]["soft_bounced_later"], 1);
}

#[test]
fn a_complaint_unsubscribes_and_is_counted_in_stats() {
    let s = sandbox("");
    let senders = send(&s);
    // Delivered to a Maildir, as Dovecot or Postfix's local delivery would.
    s.write("Maildir/cur/.keep", "");
    s.write("Maildir/tmp/.keep", "");
    s.write(
        "Maildir/new/1700000000.M1P1.host",
        arf(&senders["reader2@example.com"], "arf-1"),
    );
    let c = counts(&ingest(&s, "Maildir"));
    assert_eq!(c["complaints"], 1, "{c}");
    assert_eq!(status(&s, "reader2@example.com"), "unsubscribed");
    let issue = &stats(&s)[0];
    assert_eq!(issue["complaints"], 1, "{issue}");
}

#[test]
fn an_email_to_the_unsubscribe_address_unsubscribes_from_stdin_and_the_header_carries_it() {
    let s = sandbox("");
    let mailtos = send_with_mailtos(&s);
    let address = mailtos["reader0@example.com"].1.as_str();
    assert!(
        address.starts_with("unsubscribe+") && address.ends_with("@bounces.example.com"),
        "{address}"
    );

    // Postfix's pipe transport: the message on standard input, the recipient as argument.
    let mut child = s
        .command(&["bounces", "ingest", "--recipient", address, "--json"])
        .env("HERALD_SECRET", SECRET)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"From: Reader 0 <reader0@example.com>\r\nTo: weekly@example.com\r\nSubject: unsubscribe\r\nMessage-ID: <u1@example.com>\r\n\r\n")
        .unwrap();
    let out: Run = child.wait_with_output().unwrap().into();
    let c = counts(&out);
    assert_eq!(c["unsubscribes"], 1, "{c}");
    assert_eq!(status(&s, "reader0@example.com"), "unsubscribed");
    assert_eq!(status(&s, "reader1@example.com"), "confirmed");
}

#[test]
fn over_smtp_check_refuses_a_base_url_where_unsubscribing_cannot_work_and_send_warns_once() {
    let s = sandbox("");
    let smtp_env = |base: &'static str| {
        [
            ("HERALD_SMTP_URL", "smtp://127.0.0.1:9"),
            ("HERALD_SECRET", SECRET),
            ("HERALD_NEWSLETTER__BASE_URL", base),
        ]
    };
    for base in [
        "http://news.example.com/",
        "https://127.0.0.1:8080/",
        "https://192.168.1.20/",
        "https://localhost/",
        "https://[::1]/",
    ] {
        let run = s.herald_env(&["check", "--offline"], &smtp_env(base));
        assert_eq!(run.code, 1, "{base}: {run:?}");
        assert!(
            run.stdout.contains("error: newsletter.base_url"),
            "{base}: {run:?}"
        );
    }
    let good = s.herald_env(
        &["check", "--offline"],
        &smtp_env("https://news.example.com/"),
    );
    assert_eq!(good.code, 0, "{good:?}");
    assert!(!good.stdout.contains("newsletter.base_url"), "{good:?}");
    // Without SMTP (the outbox), a local base_url is what a trial run uses: no error.
    let local = s.herald_env(
        &["check", "--offline"],
        &[("HERALD_NEWSLETTER__BASE_URL", "http://127.0.0.1:8080/")],
    );
    assert_eq!(local.code, 0, "{local:?}");

    // `send` goes ahead (tests and trials on loopback), with one warning at start.
    let server = smtp::start(None);
    let run = s.herald_env(
        &["send"],
        &[
            ("HERALD_SMTP_URL", &server.url()),
            ("HERALD_SECRET", SECRET),
            ("HERALD_NEWSLETTER__BASE_URL", "http://127.0.0.1:8080/"),
        ],
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stderr.matches("is not https").count(), 1, "{run:?}");
}

#[test]
fn check_warns_when_the_dkim_or_bounce_domain_does_not_align_with_from() {
    let s = Sandbox::new();
    s.write("subscribers/list.csv", "email,name\nreader@example.com,R\n");
    std::fs::copy(
        crate::harness::repo().join("tests/fixtures/dkim/test-only-rsa.pem"),
        s.path("dkim.pem"),
    )
    .unwrap();
    s.write(
        "herald.toml",
        format!(
            "{CONFIG}\n[bounces]\ndomain = \"bounces.other.org\"\n\n[delivery.dkim]\ndomain = \"mailer.example.net\"\nselector = \"s1\"\nprivate_key_path = \"dkim.pem\"\n"
        ),
    );
    let run = s.herald_env(&["check", "--offline"], &ENV);
    assert_eq!(run.code, 0, "warnings do not fail the check: {run:?}");
    assert!(
        run.stdout
            .contains("warning: delivery.dkim.domain `mailer.example.net` does not align"),
        "{run:?}"
    );
    assert!(
        run.stdout
            .contains("warning: bounces.domain `bounces.other.org` does not align"),
        "{run:?}"
    );
    s.write(
        "herald.toml",
        format!(
            "{CONFIG}\n[bounces]\ndomain = \"bounces.example.com\"\n\n[delivery.dkim]\ndomain = \"example.com\"\nselector = \"s1\"\nprivate_key_path = \"dkim.pem\"\n"
        ),
    );
    let aligned = s.herald_env(&["check", "--offline"], &ENV);
    assert!(!aligned.stdout.contains("does not align"), "{aligned:?}");
}

#[test]
fn a_complaint_rate_over_the_threshold_is_an_alert_in_check_and_the_log() {
    let s = sandbox("");
    let senders = send(&s);
    let quiet = s.herald_env(&["check", "--offline"], &ENV);
    assert!(!quiet.stdout.contains("alert:"), "{quiet:?}");
    s.write("arf.eml", arf(&senders["reader2@example.com"], "arf-alert"));
    let run = ingest(&s, "arf.eml");
    assert_eq!(counts(&run)["complaints"], 1);
    assert!(
        run.stderr.contains("ERROR") && run.stderr.contains("complaint rate 25.00%"),
        "{run:?}"
    );
    let check = s.herald_env(&["check", "--offline"], &ENV);
    assert!(
        check
            .stdout
            .contains("alert: issue #1: complaint rate 25.00% (1 of 4 delivered)"),
        "{check:?}"
    );
}

/// A Mailgun webhook call for the message whose envelope sender was `verp`, signed with
/// `key` at `timestamp`.
fn mailgun_call(
    key: &str,
    timestamp: i64,
    id: &str,
    event: &str,
    severity: &str,
    verp: &str,
) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let token = format!("token-{id}");
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(timestamp.to_string().as_bytes());
    mac.update(token.as_bytes());
    let signature: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    serde_json::json!({
        "signature": {"timestamp": timestamp.to_string(), "token": token, "signature": signature},
        "event-data": {
            "id": id,
            "event": event,
            "severity": severity,
            "recipient": "reader1@example.com",
            "envelope": {"sender": verp, "targets": "reader1@example.com"},
            "delivery-status": {"code": 550, "enhanced-code": "5.1.1", "message": "No such user", "description": ""},
            "message": {"headers": {"message-id": "issue-1.2@example.com"}}
        }
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_mailgun_webhook_records_a_bounce_and_a_forged_or_stale_one_is_refused() {
    let s = sandbox("");
    let verps = send(&s);
    let key = "mailgun-webhook-signing-key";
    let env = [
        ("HERALD_SECRET", SECRET),
        ("HERALD_MAILGUN_WEBHOOK_KEY", key),
    ];
    let (base, stop, handle) = crate::daemon::start_with(
        &s,
        "\n[bounces]\ndomain = \"bounces.example.com\"\n",
        &env,
        std::sync::Arc::new(herald::clock::SystemClock),
    )
    .await;
    let now = herald::clock::Clock::now(&herald::clock::SystemClock).timestamp();
    let client = reqwest::Client::new();
    let post = |body: String| {
        let client = client.clone();
        let url = format!("{base}webhooks/mailgun");
        async move {
            client
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let verp = verps["reader1@example.com"].clone();
    // Forged (another key), stale (an hour old), malformed: refused, nothing changes.
    assert_eq!(
        post(mailgun_call(
            "not-the-key",
            now,
            "e0",
            "failed",
            "permanent",
            &verp
        ))
        .await,
        401
    );
    assert_eq!(
        post(mailgun_call(
            key,
            now - 3600,
            "e1",
            "failed",
            "permanent",
            &verp
        ))
        .await,
        401
    );
    assert_eq!(post("{\"not\": \"an event\"}".into()).await, 400);
    assert_eq!(status(&s, "reader1@example.com"), "confirmed");
    // A temporary failure: Mailgun still tries.
    assert_eq!(
        post(mailgun_call(key, now, "e2", "failed", "temporary", &verp)).await,
        200
    );
    assert_eq!(status(&s, "reader1@example.com"), "confirmed");
    // The permanent failure, signed: the address is suppressed; sent again, nothing changes.
    let call = mailgun_call(key, now, "e3", "failed", "permanent", &verp);
    assert_eq!(post(call.clone()).await, 200);
    assert_eq!(status(&s, "reader1@example.com"), "bounced");
    assert_eq!(post(call).await, 200);
    assert_eq!(stats(&s)[0]["bounced_later"], 1);
    // A complaint and an unsubscribe through the webhook.
    let verp2 = verps["reader2@example.com"].clone();
    assert_eq!(
        post(mailgun_call(key, now, "e4", "complained", "", &verp2)).await,
        200
    );
    assert_eq!(status(&s, "reader2@example.com"), "unsubscribed");
    let verp3 = verps["reader3@example.com"].clone();
    assert_eq!(
        post(mailgun_call(key, now, "e5", "unsubscribed", "", &verp3)).await,
        200
    );
    assert_eq!(status(&s, "reader3@example.com"), "unsubscribed");
    assert_eq!(stats(&s)[0]["complaints"], 1);
    // Another provider's path is not served.
    let other = client
        .post(format!("{base}webhooks/postmark"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status().as_u16(), 404);
    stop.cancel();
    handle.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_click_tracking_links_go_through_a_counted_redirect_and_editors_see_the_counts() {
    let tracking = "\n[news]\ncurated = \"curated.toml\"\n\n[tracking]\nclicks = true\n";
    let s = sandbox(tracking);
    s.write(
        "curated.toml",
        "[[link]]\ntitle = \"First\"\nurl = \"https://research.example.org/paper?id=1&v=2\"\n\n[[link]]\ntitle = \"Second\"\nurl = \"https://blog.example.net/post\"\n",
    );
    let messages = send_messages(&s);
    let first = mail_parser::MessageParser::default()
        .parse(&messages[0].data)
        .unwrap();
    let html = first.body_html(0).unwrap().into_owned();
    let text = first.body_text(0).unwrap().into_owned();
    assert!(html.contains("https://news.example.com/l/1/0"), "{html}");
    assert!(html.contains("https://news.example.com/l/1/1"), "{html}");
    assert!(
        !html.contains("research.example.org/paper"),
        "the real link is not in the message"
    );
    assert!(text.contains("https://news.example.com/l/1/0"), "{text}");
    // Every reader gets the same links: nothing in them says who clicked.
    for m in &messages {
        let parsed = mail_parser::MessageParser::default()
            .parse(&m.data)
            .unwrap();
        assert!(parsed.body_html(0).unwrap().contains("/l/1/0\""));
    }

    let (base, stop, handle) = crate::daemon::start_with(
        &s,
        tracking,
        &[
            ("HERALD_SECRET", SECRET),
            ("HERALD_ADMIN_TOKEN", "editor-token"),
        ],
        std::sync::Arc::new(herald::clock::SystemClock),
    )
    .await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for _ in 0..3 {
        let r = client.get(format!("{base}l/1/0")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 302);
        assert_eq!(
            r.headers()["location"],
            "https://research.example.org/paper?id=1&v=2"
        );
        assert!(r.headers().get("set-cookie").is_none());
    }
    let r = client.get(format!("{base}l/1/1")).send().await.unwrap();
    assert_eq!(r.headers()["location"], "https://blog.example.net/post");
    for bad in ["l/1/7", "l/9/0", "l/x/0", "l/1/-1"] {
        let r = client.get(format!("{base}{bad}")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 404, "{bad}");
    }
    // The editors' view of the archive shows the same figures, behind the admin token.
    let anonymous = client
        .get(format!("{base}archive/stats"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    let page = client
        .get(format!("{base}archive/stats"))
        .bearer_auth("editor-token")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let page = page.text().await.unwrap();
    assert!(
        page.contains("<li>3 clicks: https://research.example.org/paper?id=1&amp;v=2</li>"),
        "{page}"
    );
    assert!(page.contains("<th>Complaints</th>"), "{page}");
    stop.cancel();
    handle.await.unwrap();
    let clicks = &stats(&s)[0]["clicks"];
    assert_eq!(clicks[0]["clicks"], 3, "{clicks}");
    assert_eq!(clicks[1]["clicks"], 1, "{clicks}");
    assert_eq!(
        clicks[0]["url"],
        "https://research.example.org/paper?id=1&v=2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_confirmation_goes_to_an_address_that_complained_or_bounced() {
    let s = sandbox("");
    let senders = send(&s);
    s.write(
        "arf.eml",
        arf(&senders["reader2@example.com"], "arf-suppress"),
    );
    s.write(
        "dsn.eml",
        dsn(
            &senders["reader1@example.com"],
            "dsn-suppress",
            "failed",
            "5.1.1",
        ),
    );
    counts(&ingest(&s, "arf.eml"));
    counts(&ingest(&s, "dsn.eml"));
    let store = s.store().await;
    let now = herald::clock::Clock::now(&herald::clock::SystemClock);
    let name = herald::domain::SubscriberName::clean("");
    for (address, suppressed) in [
        ("reader2@example.com", true),
        ("reader1@example.com", true),
        ("newcomer@example.com", false),
    ] {
        let outcome = store
            .request_subscription(
                &herald::domain::EmailAddress::parse(address).unwrap(),
                &name,
                &name,
                now,
            )
            .await
            .unwrap();
        assert_eq!(
            outcome == herald::store::SubscribeOutcome::Bounced,
            suppressed,
            "{address}: {outcome:?}"
        );
    }
}
