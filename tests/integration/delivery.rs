//! `herald send` against a real SMTP server on 127.0.0.1: exactly one copy each, retries,
//! bounces, a server that is down or stalls, a killed send, TLS, and every header.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use herald::domain::{Purpose, SigningKey};
use mail_parser::MessageParser;

use crate::harness::{CONFIG, Run, Sandbox};
use crate::smtp;

const SECRET: &str = "test-signing-key-0123456789abcdef";

/// A sandbox with `n` subscribers in `subscribers/list.csv` (plus extra rows) and fast retries.
fn sandbox(n: usize, extra_rows: &str) -> Sandbox {
    let s = Sandbox::new();
    s.write_readers(n, extra_rows);
    s.write(
        "herald.toml",
        format!("{CONFIG}\n[delivery]\nconcurrency = 4\nmax_attempts = 4\nretry_base_ms = 20\nretry_max_ms = 200\ntimeout_seconds = 5\n"),
    );
    s
}

fn send(s: &Sandbox, url: &str, args: &[&str]) -> Run {
    let mut all = vec!["send"];
    all.extend_from_slice(args);
    s.herald_env(&all, &[("HERALD_SMTP_URL", url), ("HERALD_SECRET", SECRET)])
}

async fn ledger(s: &Sandbox, status: &str) -> i64 {
    let db = s.db().await;
    let n = db
        .i64(&format!(
            "SELECT COUNT(*) FROM deliveries WHERE status = '{status}'"
        ))
        .await;
    db.close().await;
    n
}

#[test]
fn every_subscriber_gets_exactly_one_well_formed_copy() {
    let server = smtp::start(None);
    let s = sandbox(12, "\"eve@example.com\",\"Eve\r\nBcc: x@evil.test\"\n");
    let run = send(&s, &server.url(), &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .contains("sent 13, failed permanently 0, bounced 0, pending 0, ambiguous 0"),
        "{run:?}"
    );
    let per = server.mailbox.per_recipient();
    assert_eq!(per.len(), 13);
    assert!(per.values().all(|&n| n == 1), "{per:?}");

    let key = SigningKey::new(SECRET);
    for m in server.mailbox.messages() {
        assert_eq!(m.to.len(), 1, "one recipient per message");
        assert_eq!(m.from, "weekly@example.com");
        let parsed = MessageParser::default().parse(&m.data).expect("parses");
        assert_eq!(parsed.text_body_count(), 1);
        assert_eq!(parsed.html_body_count(), 1);
        assert!(parsed.subject().unwrap().ends_with("Test Weekly #1"));
        assert!(parsed.date().is_some());
        let id = parsed.message_id().unwrap();
        assert!(
            id.starts_with("issue-1.") && id.ends_with("@example.com"),
            "{id}"
        );
        assert!(parsed.bcc().is_none(), "no header smuggled in");
        let raw = String::from_utf8_lossy(&m.data);
        let head = &raw[..raw.find("\r\n\r\n").unwrap()];
        assert!(
            !head
                .lines()
                .any(|l| l.to_ascii_lowercase().starts_with("bcc:")),
            "{head}"
        );
        for header in [
            "List-Id:",
            "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
            "Precedence: bulk",
            "MIME-Version: 1.0",
        ] {
            assert!(head.contains(header), "{header} missing in\n{head}");
        }
        // The header, unfolded.
        let mut unsubscribe = String::new();
        for l in head
            .lines()
            .skip_while(|l| !l.starts_with("List-Unsubscribe:"))
        {
            if !unsubscribe.is_empty() && !l.starts_with([' ', '\t']) {
                break;
            }
            unsubscribe.push_str(l.trim_start());
        }
        let start = unsubscribe
            .find("https://news.example.com/u/")
            .expect("https link")
            + "https://news.example.com/u/".len();
        let token = &unsubscribe[start..start + 44];
        let claims = key
            .verify(Purpose::Unsubscribe, token)
            .expect("the token verifies");
        assert!(claims.subject > 0);
        let mut tampered: Vec<char> = token.chars().collect();
        tampered[10] = if tampered[10] == 'x' { 'y' } else { 'x' };
        assert!(
            key.verify(
                Purpose::Unsubscribe,
                &tampered.into_iter().collect::<String>()
            )
            .is_none()
        );
        assert!(unsubscribe.contains("mailto:"), "{unsubscribe}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_and_a_bounced_address_is_suppressed_next_time() {
    let server = smtp::start(None);
    server
        .mailbox
        .faults
        .transient_first
        .store(3, std::sync::atomic::Ordering::SeqCst);
    server
        .mailbox
        .faults
        .closing_first
        .store(2, std::sync::atomic::Ordering::SeqCst);
    server
        .mailbox
        .faults
        .unknown
        .lock()
        .unwrap()
        .insert("reader3@example.com".into());
    let proxy = smtp::drop_mid_data_proxy(server.addr, "reader5@example.com").await;
    let s = sandbox(8, "");
    let run = send(&s, &format!("smtp://127.0.0.1:{}", proxy.port()), &[]);
    // reader5's connection was cut after the whole message was written and before a reply:
    // the relay may have accepted it, so it is ambiguous (not retried), and the send says so.
    assert_eq!(run.code, 3, "{run:?}");
    assert!(
        run.stdout
            .contains("sent 6, failed permanently 0, bounced 1, pending 0, ambiguous 1"),
        "{run:?}"
    );
    assert!(run.stdout.contains("herald issues resolve 1"), "{run:?}");
    let per = server.mailbox.per_recipient();
    assert_eq!(per.len(), 6);
    assert!(!per.contains_key("reader5@example.com"));
    // The operator checked the relay: not delivered. The next send sends it, once.
    let resolved = s.herald(&["issues", "resolve", "1", "--unsent"]);
    assert_eq!(resolved.code, 0, "{resolved:?}");
    let resumed = send(&s, &server.url(), &[]);
    assert_eq!(resumed.code, 0, "{resumed:?}");
    let per = server.mailbox.per_recipient();
    assert_eq!(per.len(), 7);
    assert!(
        per.values().all(|&n| n == 1),
        "exactly one copy each: {per:?}"
    );
    assert!(!per.contains_key("reader3@example.com"));

    let list = s.herald(&["subscribers", "list", "--status", "bounced", "--json"]);
    let bounced: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(bounced[0]["email"], "reader3@example.com");
    let show = s.herald(&["issues", "show", "1", "--json"]);
    let detail: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    assert_eq!(detail["failures"][0]["status"], "bounced");
    assert!(
        detail["failures"][0]["last_error"]
            .as_str()
            .unwrap()
            .contains("5.1.1")
    );

    // A re-import does not bring the bounced address back, and issue 2 skips it.
    let second = send(&s, &server.url(), &[]);
    assert_eq!(second.code, 0, "{second:?}");
    assert!(second.stdout.contains("issue #2"), "{second:?}");
    assert!(second.stdout.contains("sent 7,"), "{second:?}");
    assert_eq!(
        server.mailbox.per_recipient().get("reader3@example.com"),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_down_freezes_nothing_and_one_that_goes_down_leaves_rows_pending() {
    let s = sandbox(6, "");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    // Down before the send: the pre-flight check stops it before an audience is frozen.
    let run = send(&s, &format!("smtp://127.0.0.1:{}", closed.port()), &[]);
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stdout.contains("SMTP server unreachable"), "{run:?}");
    assert!(run.stdout.contains("no issue was frozen"), "{run:?}");
    let list = s.herald(&["issues", "list", "--json"]);
    assert_eq!(list.stdout.trim(), "[]", "{list:?}");

    // Up for the pre-flight check, down for the messages: every row stays pending, no
    // attempt is counted, and the operator is told once.
    let server = smtp::start(None);
    let front = smtp::one_connection_front(server.addr).await;
    let run = send(&s, &format!("smtp://{front}"), &[]);
    assert_eq!(run.code, 3, "{run:?}");
    assert!(
        run.stdout
            .contains("sent 0, failed permanently 0, bounced 0, pending 6"),
        "{run:?}"
    );
    assert_eq!(
        run.all().matches("SMTP server unreachable").count(),
        2,
        "one log line and one summary: {run:?}"
    );
    assert!(!run.stderr.contains("transient failure"), "{run:?}");
    assert_eq!(ledger(&s, "pending").await, 6);
    let db = s.db().await;
    let attempts = db
        .i64("SELECT CAST(COALESCE(SUM(attempts), 0) AS BIGINT) FROM deliveries")
        .await;
    db.close().await;
    assert_eq!(attempts, 0, "an unreachable server costs no attempt");

    let resumed = send(&s, &server.url(), &[]);
    assert_eq!(resumed.code, 0, "{resumed:?}");
    assert!(resumed.stdout.contains("resuming issue #1"), "{resumed:?}");
    assert!(resumed.stdout.contains("sent 6,"), "{resumed:?}");
    assert!(server.mailbox.per_recipient().values().all(|&n| n == 1));
    let list = s.herald(&["issues", "list", "--json"]);
    let issues: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(
        issues.as_array().unwrap().len(),
        1,
        "nothing new was composed while resuming"
    );
    for field in ["number", "term", "status", "sent", "failed", "pending"] {
        assert!(issues[0].get(field).is_some(), "{field}");
    }
}

#[tokio::test]
async fn a_stalling_server_times_out_and_leaves_rows_pending() {
    let server = smtp::start(None);
    *server.mailbox.faults.stall.lock().unwrap() = Some(Duration::from_secs(3));
    let s = sandbox(2, "");
    s.write(
        "herald.toml",
        format!("{CONFIG}\n[delivery]\nconcurrency = 2\nmax_attempts = 1\ntimeout_seconds = 1\n"),
    );
    let started = Instant::now();
    let run = send(&s, &server.url(), &[]);
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stdout.contains("pending 2"), "{run:?}");
    assert!(started.elapsed() < Duration::from_secs(30));
    let show = s.herald(&["issues", "show", "1"]);
    assert!(show.stdout.contains("longer than 1 s"), "{show:?}");
}

#[tokio::test]
async fn a_killed_send_resumes_without_sending_anyone_twice() {
    let stalled = smtp::start(None);
    *stalled.mailbox.faults.stall.lock().unwrap() = Some(Duration::from_secs(60));
    let s = sandbox(10, "");
    s.write(
        "herald.toml",
        format!("{CONFIG}\n[delivery]\nconcurrency = 3\n"),
    );
    let mut child = s
        .command(&["send"])
        .env("HERALD_SMTP_URL", stalled.url())
        .env("HERALD_SECRET", SECRET)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the sender is in the middle of its SMTP transactions, then kill -9 it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while stalled
        .mailbox
        .data_started
        .load(std::sync::atomic::Ordering::SeqCst)
        < 3
    {
        assert!(Instant::now() < deadline, "the send never reached DATA");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let ambiguous = ledger(&s, "sending").await;
    assert!(
        (1..=3).contains(&ambiguous),
        "at most `concurrency` rows are ambiguous, got {ambiguous}"
    );

    let server = smtp::start(None);
    let resumed = send(&s, &server.url(), &[]);
    // Ambiguous rows remain unresolved: the send says so in its exit code.
    assert_eq!(resumed.code, 3, "{resumed:?}");
    assert!(
        resumed.stdout.contains(&format!("ambiguous {ambiguous}")),
        "{resumed:?}"
    );
    let per = server.mailbox.per_recipient();
    assert_eq!(
        per.len() as i64,
        10 - ambiguous,
        "ambiguous rows are not resent by default"
    );
    assert!(per.values().all(|&n| n == 1));
    let show = s.herald(&["issues", "show", "1"]);
    assert_eq!(
        show.stdout.matches("ambiguous: ").count() as i64,
        ambiguous,
        "{show:?}"
    );

    let retried = send(&s, &server.url(), &["--retry-ambiguous"]);
    assert_eq!(retried.code, 0, "{retried:?}");
    let per = server.mailbox.per_recipient();
    assert_eq!(per.len(), 10, "everyone has the issue now");
    assert!(per.values().all(|&n| n == 1), "and nobody twice: {per:?}");
    assert_eq!(
        stalled.mailbox.messages().len(),
        0,
        "the killed transactions never completed"
    );
}

#[test]
fn smtp_needs_a_signing_key_and_a_well_formed_url() {
    let s = sandbox(1, "");
    let run = s.herald_env(&["send"], &[("HERALD_SMTP_URL", "smtp://127.0.0.1:2525")]);
    // A missing key is a configuration error: exit 2, before anything is opened or sent.
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("HERALD_SECRET is not set"), "{run:?}");
    let run = s.herald_env(
        &["send"],
        &[
            (
                "HERALD_SMTP_URL",
                "smtp://u:pw-hunter2@127.0.0.1:2525?tls=sometimes",
            ),
            ("HERALD_SECRET", SECRET),
        ],
    );
    assert_ne!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.contains("HERALD_SMTP_URL: tls=sometimes"),
        "{run:?}"
    );
    assert!(!run.all().contains("hunter2"), "{run:?}");
}

#[test]
fn dry_run_and_a_test_copy_record_nothing() {
    let server = smtp::start(None);
    let s = sandbox(3, "");
    assert_eq!(
        s.herald(&["subscribers", "import", "subscribers/list.csv"])
            .code,
        0
    );
    let dry = send(&s, &server.url(), &["--dry-run"]);
    assert_eq!(dry.code, 0, "{dry:?}");
    assert!(dry.stdout.contains("would send 3 messages"), "{dry:?}");
    let copy = send(&s, &server.url(), &["--to", "editor@example.com"]);
    assert_eq!(copy.code, 0, "{copy:?}");
    assert_eq!(
        server.mailbox.per_recipient().get("editor@example.com"),
        Some(&1)
    );
    assert_eq!(server.mailbox.messages().len(), 1);
    let list = s.herald(&["issues", "list", "--json"]);
    assert_eq!(list.stdout.trim(), "[]", "{list:?}");

    // A test copy says so, and a second one is a new message, not a duplicate to drop.
    let again = send(&s, &server.url(), &["--to", "editor@example.com"]);
    assert_eq!(again.code, 0, "{again:?}");
    let copies = server.mailbox.messages();
    let parsed: Vec<_> = copies
        .iter()
        .map(|m| {
            mail_parser::MessageParser::default()
                .parse(&m.data)
                .unwrap()
        })
        .collect();
    assert_ne!(parsed[0].message_id(), parsed[1].message_id());
    for p in &parsed {
        assert!(
            p.subject().unwrap().starts_with("[Test] "),
            "{:?}",
            p.subject()
        );
        let text = p.body_text(0).unwrap();
        assert!(text.starts_with("TEST COPY of issue #1"), "{text}");
        assert!(
            text.trim_end()
                .ends_with("its unsubscribe link does nothing."),
            "{text}"
        );
        let html = p.body_html(0).unwrap();
        assert_eq!(
            html.matches("<strong>Test copy</strong>").count(),
            2,
            "top and footer"
        );
        assert!(html.contains("https://news.example.com/u/test-copy"));
    }
}

#[test]
fn the_default_transport_writes_eml_files_and_a_second_send_makes_issue_2() {
    let s = sandbox(5, "");
    let first = s.herald(&["send"]);
    assert_eq!(first.code, 0, "{first:?}");
    let files: Vec<_> = std::fs::read_dir(s.path("outbox")).unwrap().collect();
    assert_eq!(files.len(), 5);
    let second = s.herald(&["send"]);
    assert_eq!(second.code, 0, "{second:?}");
    assert_eq!(std::fs::read_dir(s.path("outbox")).unwrap().count(), 10);
    let list: serde_json::Value =
        serde_json::from_str(&s.herald(&["issues", "list", "--json"]).stdout).unwrap();
    let terms: HashSet<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["term"].as_str().unwrap())
        .collect();
    assert_eq!(terms.len(), 2, "two issues, two different terms");
}

#[tokio::test]
async fn starttls_and_implicit_tls_work_and_every_mode_sets_tcp_nodelay() {
    use herald::config::SmtpSettings;
    use herald::domain::EmailAddress;
    use herald::domain::Secret;
    use herald::mailer::{Mailer, Transport};

    let cert = smtp::test_cert();
    let plain = smtp::start(None);
    let starttls = smtp::start(Some(&cert));
    let front = smtp::implicit_tls_front(&cert, plain.addr).await;
    let ca = cert.cert.display().to_string();
    let urls = [
        (format!("smtp://127.0.0.1:{}", plain.addr.port()), &plain),
        (
            format!(
                "smtp://localhost:{}?tls=required&tls_ca={ca}",
                starttls.addr.port()
            ),
            &starttls,
        ),
        (
            format!("smtps://localhost:{}?tls_ca={ca}", front.port()),
            &plain,
        ),
    ];
    let from = EmailAddress::parse("weekly@example.com").unwrap();
    for (i, (url, server)) in urls.iter().enumerate() {
        let settings = SmtpSettings::from_url(
            &Secret::new(url.clone()),
            "example.com",
            Duration::from_secs(10),
        )
        .unwrap();
        let mut mailer = Mailer::new(Transport::Smtp(settings)).unwrap();
        let to = EmailAddress::parse(&format!("tls{i}@example.com")).unwrap();
        for _ in 0..3 {
            let reply = mailer
                .send(
                    &from,
                    &to,
                    b"Subject: hi\r\nFrom: weekly@example.com\r\n\r\nhello\r\n",
                )
                .await
                .unwrap_or_else(|e| panic!("{url}: {e}"));
            assert!(reply.starts_with("250"), "{reply}");
        }
        assert_eq!(mailer.connection_nodelay(), Some(true), "{url}");
        mailer.close().await;
        assert_eq!(
            server
                .mailbox
                .per_recipient()
                .get(&format!("tls{i}@example.com")),
            Some(&3),
            "{url}"
        );
    }
    // Without the private CA, certificate verification fails: no silent downgrade.
    let settings = SmtpSettings::from_url(
        &Secret::new(format!(
            "smtp://localhost:{}?tls=required",
            starttls.addr.port()
        )),
        "example.com",
        Duration::from_secs(10),
    )
    .unwrap();
    let mut mailer = Mailer::new(Transport::Smtp(settings)).unwrap();
    let to = EmailAddress::parse("nobody@example.com").unwrap();
    assert!(
        mailer
            .send(&from, &to, b"Subject: x\r\n\r\nx\r\n")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn an_address_that_unsubscribes_during_a_send_gets_nothing_more() {
    use herald::app::delivery::{DeliveryRequest, DeliverySettings, Silent, deliver};
    use herald::clock::SystemClock;
    use herald::domain::EmailAddress;
    use herald::mailer::Transport;

    let s = sandbox(4, "");
    let config = s.config();
    let store = s.store().await;
    let (glossary, _) = herald::files::load_glossary(&config.glossary_dir);
    let renderer = herald::files::load_templates(&config.templates_dir).unwrap();
    let now = herald::clock::Clock::now(&SystemClock);
    let app = herald::app::App::with_store(config, store.clone(), std::sync::Arc::new(SystemClock))
        .unwrap();
    let prepared = app
        .prepare(&glossary, &renderer, now, now, None, None)
        .await
        .unwrap();
    let herald::app::Prepared::Ready {
        issue, rendered, ..
    } = prepared
    else {
        panic!()
    };
    // After the freeze, before delivery: one reader leaves.
    store
        .unsubscribe(&EmailAddress::parse("reader2@example.com").unwrap(), now)
        .await
        .unwrap();
    let settings = DeliverySettings {
        concurrency: 2,
        rate_per_second: None,
        max_per_hour: None,
        max_attempts: 2,
        retry_base: Duration::from_millis(10),
        retry_max: Duration::from_millis(50),
        run_id: "test-run".into(),
        lease: None,
        wake_workers: false,
    };
    let request = DeliveryRequest {
        store: &store,
        clock: &SystemClock,
        issue: &issue,
        rendered,
        sender: app.sender().clone(),
        key: SigningKey::new(SECRET),
        transport: Transport::Outbox(s.path("outbox")),
        settings: &settings,
        progress: &Silent,
    };
    let summary = deliver(request, std::future::pending()).await.unwrap();
    assert_eq!(summary.counts.sent, 3);
    assert_eq!(summary.counts.skipped, 1);
    assert!(summary.finished);
    assert_eq!(std::fs::read_dir(s.path("outbox")).unwrap().count(), 3);
}

#[tokio::test]
async fn a_delivery_asked_to_stop_before_it_starts_claims_no_row() {
    use herald::app::{App, Prepared, Silent};
    use herald::clock::SystemClock;

    let s = sandbox(4, "");
    let config = s.config();
    let store = s.store().await;
    let (glossary, _) = herald::files::load_glossary(&config.glossary_dir);
    let renderer = herald::files::load_templates(&config.templates_dir).unwrap();
    let now = herald::clock::Clock::now(&SystemClock);
    let app = App::with_store(config, store, std::sync::Arc::new(SystemClock)).unwrap();
    let Prepared::Ready {
        issue, rendered, ..
    } = app
        .prepare(&glossary, &renderer, now, now, None, None)
        .await
        .unwrap()
    else {
        panic!("an issue is frozen")
    };
    // SIGTERM arrived before the run began: nothing may be claimed.
    let summary = app
        .deliver(
            &issue,
            rendered,
            "stopping-run".into(),
            &Silent,
            std::future::ready(()),
        )
        .await
        .unwrap();
    assert_eq!(summary.counts.pending, 4, "{summary:?}");
    assert_eq!(
        summary.counts.sending + summary.counts.sent,
        0,
        "{summary:?}"
    );
    let db = s.db().await;
    let attempts = db
        .i64("SELECT CAST(COALESCE(SUM(attempts), 0) AS BIGINT) FROM deliveries")
        .await;
    db.close().await;
    assert_eq!(attempts, 0, "no attempt was counted");
    assert!(
        !s.path("outbox").exists() || std::fs::read_dir(s.path("outbox")).unwrap().count() == 0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_connects_to_the_smtp_server_and_signs_a_dkim_sample_unless_offline() {
    let server = smtp::start(None);
    let s = sandbox(1, "");
    s.write(
        "dkim.pem",
        std::fs::read(crate::harness::repo().join("tests/fixtures/dkim/test-only-rsa.pem"))
            .unwrap(),
    );
    s.write(
        "herald.toml",
        format!("{CONFIG}\n[delivery.dkim]\ndomain = \"example.com\"\nselector = \"herald\"\nprivate_key_path = \"dkim.pem\"\n"),
    );
    let env = |url: &str| {
        [
            ("HERALD_SMTP_URL", url.to_owned()),
            ("HERALD_SECRET", SECRET.to_owned()),
        ]
    };
    let run_env = |args: &[&str], url: &str| {
        let e = env(url);
        let refs: Vec<(&str, &str)> = e.iter().map(|(k, v)| (*k, v.as_str())).collect();
        s.herald_env(args, &refs)
    };
    let ok = run_env(&["check"], &server.url());
    assert_eq!(ok.code, 0, "{ok:?}");
    assert!(
        ok.stdout.contains(&format!(
            "smtp: 127.0.0.1:{} answered (EHLO example.com, no TLS)",
            server.addr.port()
        )),
        "{ok:?}"
    );
    assert!(
        ok.stdout
            .contains("dkim: signed a sample as herald._domainkey.example.com"),
        "{ok:?}"
    );

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let down = run_env(&["check"], &format!("smtp://127.0.0.1:{}", closed.port()));
    assert_eq!(down.code, 1, "{down:?}");
    assert!(
        down.stdout
            .contains("smtp: unreachable: connecting to 127.0.0.1"),
        "{down:?}"
    );
    let offline = run_env(
        &["check", "--offline"],
        &format!("smtp://127.0.0.1:{}", closed.port()),
    );
    assert_eq!(offline.code, 0, "{offline:?}");
    assert!(
        offline.stdout.contains("smtp: not checked (--offline)"),
        "{offline:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_counts_messages_delivered_not_rows_attempted() {
    use herald::app::{App, Prepared, Progress};
    use herald::clock::SystemClock;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[derive(Default)]
    struct Recorded(AtomicU64);
    impl Progress for Recorded {
        fn update(&self, done: u64, _total: u64) {
            self.0.fetch_max(done, Ordering::SeqCst);
        }
        fn finish(&self) {}
    }

    let server = smtp::start(None);
    // The first three attempts get a 451: retried, so attempts outnumber messages.
    server
        .mailbox
        .faults
        .transient_first
        .store(3, Ordering::SeqCst);
    let s = sandbox(4, "");
    let config = s.config_with_env(&[
        ("HERALD_SMTP_URL", &server.url()),
        ("HERALD_SECRET", SECRET),
    ]);
    let store = s.store().await;
    let (glossary, _) = herald::files::load_glossary(&config.glossary_dir);
    let renderer = herald::files::load_templates(&config.templates_dir).unwrap();
    let now = herald::clock::Clock::now(&SystemClock);
    let app = App::with_store(config, store, std::sync::Arc::new(SystemClock)).unwrap();
    let Prepared::Ready {
        issue, rendered, ..
    } = app
        .prepare(&glossary, &renderer, now, now, None, None)
        .await
        .unwrap()
    else {
        panic!("an issue is frozen")
    };
    let progress = Recorded::default();
    // A delivery goes out under the sender lease (its claims are fenced by it).
    assert!(app.take_sender_lease("progress-run").await.unwrap());
    let summary = app
        .deliver(
            &issue,
            rendered,
            "progress-run".into(),
            &progress,
            std::future::pending(),
        )
        .await
        .unwrap();
    assert_eq!(summary.counts.sent, 4);
    let db = s.db().await;
    let attempts = db
        .i64("SELECT CAST(SUM(attempts) AS BIGINT) FROM deliveries")
        .await;
    db.close().await;
    assert!(attempts > 4, "retries happened: {attempts}");
    assert_eq!(
        progress.0.load(Ordering::SeqCst),
        4,
        "delivered, not attempted"
    );
}

#[test]
fn a_relay_slower_than_the_timeout_gets_one_copy_and_the_rows_are_reported_ambiguous() {
    let server = smtp::start(None);
    *server.mailbox.faults.slow_reply.lock().unwrap() = Some(Duration::from_millis(2500));
    let s = sandbox(2, "");
    s.write(
        "herald.toml",
        format!("{CONFIG}\n[delivery]\nconcurrency = 2\nmax_attempts = 5\nretry_base_ms = 10\nretry_max_ms = 20\ntimeout_seconds = 1\n"),
    );
    let run = send(&s, &server.url(), &[]);
    assert_eq!(
        run.code, 3,
        "ambiguous rows are not a clean success: {run:?}"
    );
    assert!(run.stdout.contains("ambiguous 2"), "{run:?}");
    // (The relay records a message before its slow reply, so every copy is counted already.)
    let per = server.mailbox.per_recipient();
    assert_eq!(per.len(), 2);
    assert!(
        per.values().all(|&n| n == 1),
        "one copy each, not one per attempt: {per:?}"
    );
    // The operator checks the relay's log and settles them: delivered.
    let resolved = s.herald(&["issues", "resolve", "1", "--sent"]);
    assert_eq!(resolved.code, 0, "{resolved:?}");
    let show: serde_json::Value =
        serde_json::from_str(&s.herald(&["issues", "show", "1", "--json"]).stdout).unwrap();
    assert_eq!(show["sent"], 2, "{show}");
    assert_eq!(show["status"], "sent", "{show}");
}

#[test]
fn a_damaged_database_stops_the_send_before_anyone_is_mailed() {
    if crate::harness::sqlite_only("a damaged database file") {
        return;
    }
    let s = sandbox(40, "");
    assert_eq!(
        s.herald(&["subscribers", "import", "subscribers/list.csv"])
            .code,
        0
    );
    // Corrupt the middle of the database file (the subscribers' pages), as a failing disk
    // would; the header stays intact so the file still opens.
    let path = s.path("herald.db");
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 3 * 4096, "a database of several pages");
    for b in &mut bytes[4096 + 100..3 * 4096] {
        *b = 0x5A;
    }
    std::fs::write(&path, bytes).unwrap();
    let run = s.herald(&["send"]);
    assert_ne!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.contains("damaged") || run.stderr.contains("malformed"),
        "{run:?}"
    );
    assert!(!s.path("outbox").exists(), "nobody was mailed: {run:?}");
}

/// `herald stats` says what happened after an issue went out: delivered, bounced during the
/// send, and the readers who left within 7 days of their copy.
#[test]
fn stats_count_deliveries_bounces_and_unsubscribes_after_an_issue() {
    let server = smtp::start(None);
    server
        .mailbox
        .faults
        .unknown
        .lock()
        .unwrap()
        .insert("reader1@example.com".into());
    let s = sandbox(4, "");
    let before = s.herald(&["stats", "--json"]);
    assert_eq!(before.code, 0, "{before:?}");
    assert_eq!(before.stdout.trim(), "[]");
    let run = send(&s, &server.url(), &[]);
    assert_eq!(run.code, 0, "{run:?}");
    let left = s.herald(&["subscribers", "remove", "reader2@example.com"]);
    assert_eq!(left.code, 0, "{left:?}");

    let stats = s.herald(&["stats", "1", "--json"]);
    assert_eq!(stats.code, 0, "{stats:?}");
    let json: serde_json::Value = serde_json::from_str(&stats.stdout).unwrap();
    let issue = &json[0];
    assert_eq!(issue["number"], 1);
    assert_eq!(issue["recipients"], 4);
    assert_eq!(issue["delivered"], 3);
    assert_eq!(issue["bounced"], 1);
    assert_eq!(issue["failed"], 0);
    assert_eq!(issue["unfinished"], 0);
    assert_eq!(issue["unsubscribed_within_7_days"], 1, "{json}");

    let table = s.herald(&["stats"]);
    assert_eq!(table.code, 0, "{table:?}");
    assert!(
        table.stdout.contains("1 (25.0%)"),
        "the bounce rate: {table:?}"
    );
    assert!(
        table.stdout.contains("1 (33.3%)"),
        "the unsubscribe rate: {table:?}"
    );
    let missing = s.herald(&["stats", "9"]);
    assert_eq!(missing.code, 1, "{missing:?}");
    assert!(missing.stderr.contains("no issue #9"), "{missing:?}");
}

/// `herald send 2>&1 | head -2`: the reader goes away after two lines. The send must neither
/// panic on its next log line nor stop: it freezes, delivers to everyone and exits normally.
#[test]
fn a_send_whose_reader_closed_the_pipe_still_delivers_to_everyone_and_exits_normally() {
    let s = sandbox(4, "");
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader); // `head` is gone before the first line
    let status = s
        .command(&["send"])
        .env("HERALD_SECRET", SECRET)
        .stdout(writer.try_clone().unwrap())
        .stderr(writer)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert_eq!(std::fs::read_dir(s.path("outbox")).unwrap().count(), 4);
    let list = s.herald(&["issues", "list", "--json"]);
    let issues: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(issues[0]["status"], "sent", "{list:?}");
}
