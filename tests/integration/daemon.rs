//! The daemon: subscription pages over real HTTP with a real SMTP server, the schedule with a
//! fixed clock (catch-up, one slot one issue, two daemons), SIGTERM in the middle of a send.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use herald::app::TickOutcome;
use herald::clock::Clock;
use herald::daemon::Daemon;
use tokio_util::sync::CancellationToken;

use crate::harness::{CONFIG, Sandbox};
use crate::smtp;

const SECRET: &str = "daemon-test-secret-0123456789abcdef";

/// A clock the test moves by hand.
#[derive(Debug)]
pub struct TestClock(Mutex<DateTime<Utc>>);

impl TestClock {
    fn at(t: DateTime<Utc>) -> Arc<Self> {
        Arc::new(Self(Mutex::new(t)))
    }
    fn set(&self, t: DateTime<Utc>) {
        *self.0.lock().unwrap() = t;
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

async fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn header_value(raw: &str, name: &str) -> String {
    let head = &raw[..raw.find("\r\n\r\n").unwrap_or(raw.len())];
    let mut value = String::new();
    for l in head.lines().skip_while(|l| {
        !l.to_ascii_lowercase()
            .starts_with(&format!("{}:", name.to_ascii_lowercase()))
    }) {
        if !value.is_empty() && !l.starts_with([' ', '\t']) {
            break;
        }
        value.push_str(l.trim_start());
    }
    value
}

fn decoded_text(raw: &[u8]) -> String {
    let parsed = mail_parser::MessageParser::default().parse(raw).unwrap();
    parsed.body_text(0).unwrap().into_owned()
}

pub async fn start(
    s: &Sandbox,
    env: &[(&str, &str)],
    clock: Arc<dyn Clock>,
) -> (String, CancellationToken, tokio::task::JoinHandle<()>) {
    start_with(s, "", env, clock).await
}

/// [`start`] with `extra` appended to the configuration.
pub async fn start_with(
    s: &Sandbox,
    extra: &str,
    env: &[(&str, &str)],
    clock: Arc<dyn Clock>,
) -> (String, CancellationToken, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/", listener.local_addr().unwrap());
    s.write(
        "herald.toml",
        CONFIG.replace("https://news.example.com/", &base)
            + "\n[schedule]\ncron = \"0 0 9 1 1 *\"\ntimezone = \"UTC\"\n"
            + extra,
    );
    let config = s.config_with_env(env);
    let daemon = Daemon::new(config, clock, "test-daemon@elsewhere:1:1".into())
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    let handle =
        tokio::spawn(async move {
            herald::daemon::run_with_listener(daemon, listener, async move {
                stopped.cancelled().await
            })
            .await
            .unwrap();
        });
    (base, stop, handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscribe_confirm_receive_and_leave_with_one_click() {
    let server = smtp::start(None);
    let s = Sandbox::new();
    let env = [
        ("HERALD_SMTP_URL", server.url()),
        ("HERALD_SECRET", SECRET.to_owned()),
        ("HERALD_ADMIN_TOKEN", "adm1n".to_owned()),
    ];
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (base, stop, handle) = start(&s, &env_ref, Arc::new(herald::clock::SystemClock)).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // The subscribe page, with security headers.
    let page = http.get(&base).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    assert!(
        page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    let html = page.text().await.unwrap();
    assert!(html.contains("<form method=\"post\"") && !html.contains("<script"));

    // An invalid address gets a 400 that says what is wrong.
    let bad = http
        .post(format!("{base}subscribe"))
        .form(&[("email", "not an address")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(
        bad.text()
            .await
            .unwrap()
            .contains("That email address is not valid")
    );

    // Subscribe: a confirmation email arrives; the page reveals nothing.
    let ok = http
        .post(format!("{base}subscribe"))
        .form(&[("email", "Neo@Example.com"), ("name", "Neo")])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let first_answer = ok.text().await.unwrap();
    let confirmation = wait_for("the confirmation email", || {
        server
            .mailbox
            .messages()
            .into_iter()
            .find(|m| m.to[0].eq_ignore_ascii_case("neo@example.com"))
    })
    .await;
    let confirmation_raw = String::from_utf8_lossy(&confirmation.data).into_owned();
    let id = header_value(&confirmation_raw, "Message-ID");
    assert!(
        id.trim_end().ends_with("@example.com>"),
        "the From domain on the right of the Message-ID: {id}"
    );
    let text = decoded_text(&confirmation.data);
    let start_at = text
        .find(&format!("{base}confirm/"))
        .expect("a confirmation link");
    let link: String = text[start_at..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();

    // A tampered confirmation token is a 404; the real one confirms.
    let mut tampered = link.clone();
    tampered.replace_range(tampered.len() - 3.., "AAA");
    assert_eq!(http.get(&tampered).send().await.unwrap().status(), 404);
    // A GET (or HEAD: link scanners) shows a button and confirms nothing; the POST confirms.
    let page = http.get(&link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("Confirm my subscription")
    );
    assert_eq!(http.head(&link).send().await.unwrap().status(), 200);
    let pending = s.herald(&["subscribers", "list", "--status", "confirmed", "--json"]);
    assert_eq!(
        pending.stdout.trim(),
        "[]",
        "a GET confirmed nobody: {pending:?}"
    );
    let confirmed = http.post(&link).send().await.unwrap();
    assert_eq!(confirmed.status(), 200);
    assert!(
        confirmed
            .text()
            .await
            .unwrap()
            .contains("You are subscribed")
    );
    let list = s.herald(&["subscribers", "list", "--status", "confirmed", "--json"]);
    assert!(list.stdout.contains("Neo@example.com"), "{list:?}");

    // The welcome email carries the latest term and the same unsubscribe headers as an issue.
    let welcome = wait_for("the welcome email", || {
        server
            .mailbox
            .messages()
            .into_iter()
            .find(|m| String::from_utf8_lossy(&m.data).contains("Subject: Welcome to"))
    })
    .await;
    let raw = String::from_utf8_lossy(&welcome.data).into_owned();
    assert!(
        header_value(&raw, "List-Unsubscribe").contains(&format!("<{base}u/")),
        "{raw}"
    );
    assert_eq!(
        header_value(&raw, "List-Unsubscribe-Post"),
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click"
    );
    // Before the first issue there is no issue to read on the web.
    assert!(!raw.contains("/archive/0"), "{raw}");
    assert!(
        header_value(&raw, "Message-ID")
            .trim_end()
            .ends_with("@example.com>"),
        "{raw}"
    );

    // Subscribing again answers the same and confirms nothing new.
    let again = http
        .post(format!("{base}subscribe"))
        .form(&[("email", "neo@example.com")])
        .send()
        .await
        .unwrap();
    assert_eq!(again.text().await.unwrap(), first_answer);

    // Malformed and oversized bodies are refused without a 500.
    let malformed = http
        .post(format!("{base}subscribe"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("email=%zz&&&=")
        .send()
        .await
        .unwrap();
    assert!(
        malformed.status().is_client_error(),
        "{}",
        malformed.status()
    );
    let oversized = http
        .post(format!("{base}subscribe"))
        .form(&[("email", "x".repeat(100_000))])
        .send()
        .await
        .unwrap();
    assert_eq!(oversized.status(), 413);
    let json = http
        .post(format!("{base}subscribe"))
        .json(&serde_json::json!({"email": "a@example.com"}))
        .send()
        .await
        .unwrap();
    assert!(json.status().is_client_error());

    // Health, metrics, glossary pages, and the preview behind the admin token.
    assert_eq!(
        http.get(format!("{base}healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Metrics are for the operator: behind the admin token on the public listener.
    assert_eq!(
        http.get(format!("{base}metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let metrics = http
        .get(format!("{base}metrics"))
        .bearer_auth("adm1n")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("herald_subscribers{status=\"confirmed\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("herald_deliveries{status=\"sent\"}"));
    assert!(metrics.contains("\nherald_next_issue_links "), "{metrics}");
    assert!(metrics.contains("\nherald_unsent_terms "), "{metrics}");
    assert_eq!(
        http.get(format!("{base}glossary/transformer"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.get(format!("{base}glossary/nope"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        http.get(format!("{base}preview"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let preview = http
        .get(format!("{base}preview"))
        .bearer_auth("adm1n")
        .send()
        .await
        .unwrap();
    assert_eq!(preview.status(), 200);
    assert!(preview.text().await.unwrap().contains("<h1"));
    let basic = http
        .get(format!("{base}preview"))
        .basic_auth("editor", Some("adm1n"))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 200);
    // Authentication schemes are case-insensitive.
    for scheme in ["bearer", "BEARER"] {
        let lower = http
            .get(format!("{base}preview"))
            .header("Authorization", format!("{scheme} adm1n"))
            .send()
            .await
            .unwrap();
        assert_eq!(lower.status(), 200, "{scheme}");
    }

    // Stop the daemon (it holds the sender lease) and send an issue: Neo gets it.
    stop.cancel();
    handle.await.unwrap();
    let send = s.herald_env(&["send"], &env_ref);
    assert_eq!(send.code, 0, "{send:?}");
    let issue = server
        .mailbox
        .messages()
        .into_iter()
        .find(|m| {
            m.to[0].eq_ignore_ascii_case("neo@example.com")
                && String::from_utf8_lossy(&m.data).contains("Message-ID: <issue-1.")
        })
        .expect("Neo received issue 1");
    let unsubscribe = header_value(&String::from_utf8_lossy(&issue.data), "List-Unsubscribe");
    let token: String = unsubscribe[unsubscribe.find("/u/").unwrap() + 3..]
        .chars()
        .take(44)
        .collect();

    // Back up: GET shows a button and changes nothing; POST one-click unsubscribes.
    let (base, stop, handle) = start(&s, &env_ref, Arc::new(herald::clock::SystemClock)).await;
    let get = http.get(format!("{base}u/{token}")).send().await.unwrap();
    assert_eq!(get.status(), 200);
    assert!(get.text().await.unwrap().contains("<button"));
    let still = s.herald(&["subscribers", "list", "--status", "confirmed", "--json"]);
    assert!(
        still.stdout.contains("Neo@example.com"),
        "a GET never unsubscribes"
    );
    for _ in 0..2 {
        let post = http
            .post(format!("{base}u/{token}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("List-Unsubscribe=One-Click")
            .send()
            .await
            .unwrap();
        assert_eq!(post.status(), 200, "one-click, and idempotent");
    }
    let gone = s.herald(&["subscribers", "list", "--status", "unsubscribed", "--json"]);
    assert!(gone.stdout.contains("Neo@example.com"), "{gone:?}");
    let mut forged = token.clone();
    forged.replace_range(0..4, "AAAA");
    assert_eq!(
        http.post(format!("{base}u/{forged}"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        http.get(format!("{base}u/{forged}"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    // The archive shows the issue, and its feed lists it.
    let archive = http.get(format!("{base}archive/1")).send().await.unwrap();
    assert_eq!(archive.status(), 200);
    let web = archive.text().await.unwrap();
    assert!(
        !web.contains("Neo") && !web.contains("neo@example.com"),
        "no personal data in the archive"
    );
    let feed = http
        .get(format!("{base}archive/feed.xml"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        feed.contains("<entry>") && feed.contains("archive/1"),
        "{feed}"
    );

    // Too many subscription requests from one address are slowed down.
    let mut limited = false;
    for i in 0..8 {
        let r = http
            .post(format!("{base}subscribe"))
            .form(&[("email", format!("r{i}@example.com"))])
            .send()
            .await
            .unwrap();
        limited |= r.status() == 429;
    }
    assert!(limited, "POST /subscribe is rate-limited");
    stop.cancel();
    handle.await.unwrap();
}

/// Records that a daemon first ran on the sandbox's database at `at`: the story of a daemon
/// that was running before a slot, then stopped or slow, and catches the slot up.
async fn running_since(s: &Sandbox, at: chrono::DateTime<Utc>) {
    let store = s.store().await;
    store.first_daemon_start(at).await.unwrap();
    store.close().await;
}

fn scheduled(s: &Sandbox, extra: &str) -> herald::config::Config {
    s.write(
        "herald.toml",
        format!("{CONFIG}\n[schedule]\ncron = \"0 0 9 * * Mon\"\ntimezone = \"Europe/Berlin\"\ncatch_up_hours = 24\n{extra}"),
    );
    s.config()
}

#[tokio::test]
async fn a_slot_is_sent_once_caught_up_inside_the_window_and_skipped_outside() {
    let s = Sandbox::new();
    s.write_readers(3, "");
    let config = scheduled(&s, "");
    let slot = Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, 0).unwrap(); // Monday 09:00 in Berlin
    let clock = TestClock::at(slot - chrono::Duration::hours(1));
    let daemon = Daemon::new(config, clock.clone(), "a@elsewhere:1:1".into())
        .await
        .unwrap();

    // The first start is after last week's slot: a fresh database has no missed slot, and
    // nothing is sent or recorded for it.
    assert_eq!(daemon.tick().await.unwrap(), TickOutcome::Idle);
    assert_eq!(
        daemon.tick().await.unwrap(),
        TickOutcome::Idle,
        "before the slot"
    );
    clock.set(slot + chrono::Duration::hours(5)); // down for five hours, then back
    assert_eq!(
        daemon.tick().await.unwrap(),
        TickOutcome::Delivered {
            number: 1,
            finished: true
        }
    );
    clock.set(slot + chrono::Duration::hours(6));
    assert_eq!(
        daemon.tick().await.unwrap(),
        TickOutcome::Idle,
        "one slot, one issue"
    );
    assert_eq!(std::fs::read_dir(s.path("outbox")).unwrap().count(), 3);

    let next = slot + chrono::Duration::days(7);
    clock.set(next + chrono::Duration::hours(30)); // down past the catch-up window
    assert_eq!(
        daemon.tick().await.unwrap(),
        TickOutcome::Missed {
            slot: "2026-12-07T08:00:00Z".into()
        }
    );
    assert_eq!(
        std::fs::read_dir(s.path("outbox")).unwrap().count(),
        3,
        "nothing sent days late"
    );
    let schedule = s.herald(&["schedule"]);
    assert!(schedule.stdout.contains("missed"), "{schedule:?}");
    assert!(
        schedule.stdout.contains("sent      issue #1"),
        "{schedule:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_on_one_database_send_one_issue_once_to_each_subscriber() {
    let server = smtp::start(None);
    let s = Sandbox::new();
    s.write_readers(12, "");
    s.write("herald.toml", String::new());
    let _ = scheduled(&s, "");
    let env = [
        ("HERALD_SMTP_URL", server.url()),
        ("HERALD_SECRET", SECRET.to_owned()),
    ];
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let slot = Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, 0).unwrap();
    running_since(&s, slot - chrono::Duration::hours(1)).await;
    let clock = TestClock::at(slot + chrono::Duration::minutes(1));
    let a = Daemon::new(
        s.config_with_env(&env_ref),
        clock.clone(),
        "a@elsewhere:1:1".into(),
    )
    .await
    .unwrap();
    let b = Daemon::new(
        s.config_with_env(&env_ref),
        clock.clone(),
        "b@elsewhere:2:2".into(),
    )
    .await
    .unwrap();
    let (ra, rb) = tokio::join!(a.tick(), b.tick());
    let outcomes = [ra.unwrap(), rb.unwrap()];
    assert!(
        outcomes.contains(&TickOutcome::Delivered {
            number: 1,
            finished: true
        }),
        "{outcomes:?}"
    );
    assert!(outcomes.contains(&TickOutcome::Standby), "{outcomes:?}");
    // The standby daemon takes over once the lease expires, and finds nothing left to do.
    clock.set(slot + chrono::Duration::minutes(5));
    let later = [a.tick().await.unwrap(), b.tick().await.unwrap()];
    assert!(
        later
            .iter()
            .all(|o| matches!(o, TickOutcome::Idle | TickOutcome::Standby)),
        "{later:?}"
    );
    let per = server.mailbox.per_recipient();
    assert_eq!(per.len(), 12);
    assert!(per.values().all(|&n| n == 1), "{per:?}");
    let list: serde_json::Value =
        serde_json::from_str(&s.herald(&["issues", "list", "--json"]).stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_review_window_freezes_early_notifies_editors_and_a_held_issue_waits() {
    let server = smtp::start(None);
    let s = Sandbox::new();
    s.write_readers(2, "");
    let _ = scheduled(
        &s,
        "review_hours = 24\neditors = [\"editor@example.com\"]\n",
    );
    let env = [
        ("HERALD_SMTP_URL", server.url()),
        ("HERALD_SECRET", SECRET.to_owned()),
    ];
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let slot = Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, 0).unwrap();
    // The review window opens 24 hours before the slot: the copy goes out then, so the issue
    // can go out at its slot.
    let clock = TestClock::at(slot - chrono::Duration::hours(24));
    let daemon = Daemon::new(
        s.config_with_env(&env_ref),
        clock.clone(),
        "a@elsewhere:1:1".into(),
    )
    .await
    .unwrap();
    assert_eq!(
        daemon.tick().await.unwrap(),
        TickOutcome::FrozenForReview { number: 1 }
    );
    let review = server.mailbox.messages();
    assert_eq!(review.len(), 1);
    assert_eq!(review[0].to, vec!["editor@example.com".to_owned()]);
    let note = decoded_text(&review[0].data);
    assert!(note.contains("/hold/"), "{note}");
    // Visibly a review copy in both parts: subject, and a note with the planned send time and
    // the hold link at the top of the text and of the HTML.
    let parsed = mail_parser::MessageParser::default()
        .parse(&review[0].data)
        .unwrap();
    assert!(parsed.subject().unwrap().starts_with("[Review] "));
    assert!(
        note.starts_with(
            "REVIEW COPY of issue #1: it goes out Monday 30 November 2026, 09:00 CET."
        ),
        "{note}"
    );
    let html = parsed.body_html(0).unwrap();
    let body = &html[html.find("<body").unwrap()..];
    let banner = &body[body.find('>').unwrap() + 1..];
    assert!(banner.starts_with("<div role=\"note\""), "{banner:.300}");
    let banner = &banner[..banner.find("</div>").unwrap()];
    assert!(
        banner.contains(
            "Review copy</strong> of issue #1: it goes out Monday 30 November 2026, 09:00 CET."
        ),
        "{banner}"
    );
    assert!(banner.contains("/hold/"), "{banner}");
    assert!(
        html.contains("/u/review-copy"),
        "the unsubscribe link is the review-copy page"
    );

    assert_eq!(s.herald(&["issues", "hold", "1"]).code, 0);
    clock.set(slot + chrono::Duration::minutes(1));
    assert_eq!(
        daemon.tick().await.unwrap(),
        TickOutcome::Waiting { number: 1 },
        "held at its slot"
    );
    assert_eq!(server.mailbox.messages().len(), 1);
    assert_eq!(s.herald(&["issues", "release", "1"]).code, 0);
    assert_eq!(
        daemon.tick().await.unwrap(),
        TickOutcome::Delivered {
            number: 1,
            finished: true
        }
    );
    assert_eq!(server.mailbox.per_recipient().len(), 3);
}

#[test]
fn sigterm_in_the_middle_of_a_send_then_a_restart_gives_everyone_exactly_one_copy() {
    let slow = smtp::start(None);
    *slow.mailbox.faults.stall.lock().unwrap() = Some(Duration::from_millis(150));
    let s = Sandbox::new();
    s.write_readers(16, "");
    // A daily slot two minutes ago (UTC), inside the catch-up window: due at start-up.
    let due = herald::clock::Clock::now(&herald::clock::SystemClock) - chrono::Duration::minutes(2);
    s.write(
        "herald.toml",
        format!(
            "{CONFIG}\n[schedule]\ncron = \"0 {} {} * * *\"\ntimezone = \"UTC\"\npoll_seconds = 1\n\n[delivery]\nconcurrency = 2\n\n[http]\nlisten = \"127.0.0.1:0\"\n",
            chrono::Timelike::minute(&due),
            chrono::Timelike::hour(&due)
        ),
    );
    // The daemon had been running before the slot (a fresh database catches nothing up).
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(running_since(&s, due - chrono::Duration::hours(1)));
    let spawn = |url: &str| {
        s.command(&["run"])
            .env("HERALD_SMTP_URL", url)
            .env("HERALD_SECRET", SECRET)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut first = spawn(&slow.url());
    let deadline = Instant::now() + Duration::from_secs(30);
    while slow.mailbox.messages().len() < 3 {
        assert!(
            Instant::now() < deadline,
            "the daemon never started sending"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let term = std::process::Command::new("kill")
        .args(["-TERM", &first.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = first.wait().unwrap();
    assert_eq!(status.code(), Some(0), "SIGTERM is a clean stop");
    let before = slow.mailbox.per_recipient();
    assert!(before.len() < 16, "the send was interrupted");

    let fast = smtp::start(None);
    let mut second = spawn(&fast.url());
    let deadline = Instant::now() + Duration::from_secs(30);
    while before.len() + fast.mailbox.per_recipient().len() < 16 {
        assert!(
            Instant::now() < deadline,
            "the restart did not resume the issue"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    std::process::Command::new("kill")
        .args(["-TERM", &second.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(second.wait().unwrap().code(), Some(0));
    let after = fast.mailbox.per_recipient();
    for i in 0..16 {
        let email = format!("reader{i}@example.com");
        let copies =
            before.get(&email).copied().unwrap_or(0) + after.get(&email).copied().unwrap_or(0);
        assert_eq!(copies, 1, "{email} got {copies} copies");
    }
}

#[tokio::test]
async fn rows_a_tick_could_not_send_are_retried_at_the_next_tick() {
    let server = smtp::start(None);
    server
        .mailbox
        .faults
        .transient_first
        .store(3, std::sync::atomic::Ordering::SeqCst);
    let s = Sandbox::new();
    s.write_readers(3, "");
    let _ = scheduled(
        &s,
        "\n[delivery]\nconcurrency = 1\nmax_attempts = 1\nretry_base_ms = 1\nretry_max_ms = 1\n",
    );
    let env = [
        ("HERALD_SMTP_URL", server.url()),
        ("HERALD_SECRET", SECRET.to_owned()),
    ];
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let slot = Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, 0).unwrap();
    running_since(&s, slot - chrono::Duration::hours(1)).await;
    let clock = TestClock::at(slot + chrono::Duration::minutes(1));
    let daemon = Daemon::new(
        s.config_with_env(&env_ref),
        clock.clone(),
        "a@elsewhere:1:1".into(),
    )
    .await
    .unwrap();
    assert_eq!(
        daemon.tick().await.unwrap(),
        TickOutcome::Delivered {
            number: 1,
            finished: false
        }
    );
    assert!(
        server.mailbox.messages().is_empty(),
        "the server refused every message"
    );
    clock.set(slot + chrono::Duration::minutes(2));
    assert_eq!(
        daemon.tick().await.unwrap(),
        TickOutcome::Delivered {
            number: 1,
            finished: true
        }
    );
    let per = server.mailbox.per_recipient();
    assert_eq!(per.len(), 3);
    assert!(per.values().all(|&n| n == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_form_cannot_flood_one_inbox_with_confirmations() {
    let server = smtp::start(None);
    let s = Sandbox::new();
    let env = [
        ("HERALD_SMTP_URL", server.url()),
        ("HERALD_SECRET", SECRET.to_owned()),
    ];
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (base, stop, handle) = start(&s, &env_ref, Arc::new(herald::clock::SystemClock)).await;
    let http = reqwest::Client::new();
    for _ in 0..5 {
        let r = http
            .post(format!("{base}subscribe"))
            .form(&[("email", "target@example.com")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "the page answers the same every time");
    }
    // Three were queued and sent; the queue then holds nothing more for the address.
    wait_for("three confirmations", || {
        (server.mailbox.per_recipient().get("target@example.com") == Some(&3)).then_some(())
    })
    .await;
    stop.cancel();
    handle.await.unwrap();
    assert_eq!(queue_waiting(&s.store().await).await, 0);
    assert_eq!(
        server.mailbox.per_recipient().get("target@example.com"),
        Some(&3),
        "at most three confirmations an hour"
    );
}

/// Emails waiting in the mail queue.
async fn queue_waiting(store: &herald::store::Store) -> u64 {
    let now = herald::clock::SystemClock.now();
    store.mail_queue_counts(now).await.unwrap().waiting
}

/// The form answers without waiting for the SMTP server (so its timing reveals nothing about
/// the address either), and a confirmation queued while the server is down is sent, once,
/// when it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_form_does_not_wait_for_a_dead_relay_and_the_confirmation_follows_when_it_is_back() {
    let relay = smtp::SilentRelay::start();
    let s = Sandbox::new();
    let env = [
        ("HERALD_SMTP_URL", relay.url()),
        ("HERALD_SECRET", SECRET.to_owned()),
    ];
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (base, stop, handle) = start_with(
        &s,
        "\n[delivery]\ntimeout_seconds = 30\nretry_base_ms = 100\nretry_max_ms = 400\n",
        &env_ref,
        Arc::new(herald::clock::SystemClock),
    )
    .await;
    // The relay accepts and never greets: a request that waited for it would take 30 s.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    for email in ["first@example.com", "second@example.com"] {
        let answer = http
            .post(format!("{base}subscribe"))
            .form(&[("email", email)])
            .send()
            .await
            .expect("the form answers while the relay hangs");
        assert_eq!(answer.status(), 200);
    }
    let store = s.store().await;
    assert_eq!(
        queue_waiting(&store).await,
        2,
        "both confirmations wait in the queue"
    );
    // The relay drops its connections (a failure before DATA: retried) and comes back.
    let listener = relay.stop();
    let server = smtp::start_on(listener, None);
    wait_for("both confirmations after the relay came back", || {
        (server.mailbox.per_recipient().len() == 2).then_some(())
    })
    .await;
    stop.cancel();
    handle.await.unwrap();
    let per = server.mailbox.per_recipient();
    assert_eq!(per.get("first@example.com"), Some(&1));
    assert_eq!(per.get("second@example.com"), Some(&1));
    let counts = store
        .mail_queue_counts(herald::clock::SystemClock.now())
        .await
        .unwrap();
    assert_eq!((counts.waiting, counts.failed_last_day), (0, 0));
    // The email that arrived carries a working link.
    let text = decoded_text(&server.mailbox.messages()[0].data);
    assert!(text.contains(&format!("{base}confirm/")), "{text}");
}

#[tokio::test]
async fn a_slot_that_failed_on_a_broken_template_is_retried_once_it_is_fixed() {
    let s = Sandbox::new();
    s.write_readers(2, "");
    let config = scheduled(&s, "");
    let good = std::fs::read_to_string(s.path("templates/issue.txt")).unwrap();
    s.write("templates/issue.txt", "{{ no_such_variable }}");
    let slot = Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, 0).unwrap();
    running_since(&s, slot - chrono::Duration::hours(1)).await;
    let clock = TestClock::at(slot + chrono::Duration::minutes(1));
    let daemon = Daemon::new(config, clock.clone(), "a@elsewhere:1:1".into())
        .await
        .unwrap();
    let failed = daemon.tick().await.unwrap_err();
    assert!(
        format!("{failed:#}").contains("no_such_variable"),
        "{failed:#}"
    );
    s.write("templates/issue.txt", good);
    clock.set(slot + chrono::Duration::minutes(10));
    assert_eq!(
        daemon.tick().await.unwrap(),
        TickOutcome::Delivered {
            number: 1,
            finished: true
        }
    );
}

#[tokio::test]
async fn a_fresh_database_mails_nobody_at_start_up_and_a_manual_send_serves_its_slot() {
    let s = Sandbox::new();
    s.write_readers(2, "");
    let config = scheduled(&s, "");
    let slot = Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, 0).unwrap();
    // First start two hours after this week's slot, on a fresh database.
    let clock = TestClock::at(slot + chrono::Duration::hours(2));
    let daemon = Daemon::new(config.clone(), clock.clone(), "a@elsewhere:1:1".into())
        .await
        .unwrap();
    assert_eq!(daemon.tick().await.unwrap(), TickOutcome::Idle);
    assert!(
        !s.path("outbox").exists(),
        "nobody was mailed for a slot from before the first start"
    );
    // The daemon stops (as on SIGTERM, it gives up its lease).
    daemon
        .app
        .release_sender_lease(&daemon.run_id)
        .await
        .unwrap();
    drop(daemon);

    // A daemon that ran before the next slot is down at it; an operator sends by hand after
    // the slot's time. When the daemon comes back, that slot is served: no second issue.
    let next = slot + chrono::Duration::days(7);
    let sent = s.herald(&["send"]);
    assert_eq!(sent.code, 0, "{sent:?}");
    let store = s.store().await;
    let db = s.db().await;
    db.execute(&format!(
        "UPDATE issues SET created_at = '{}' WHERE number = 1",
        (next + chrono::Duration::minutes(30)).to_rfc3339()
    ))
    .await
    .unwrap();
    db.close().await;
    store.close().await;
    clock.set(next + chrono::Duration::hours(2));
    let daemon = Daemon::new(config, clock.clone(), "a@elsewhere:1:1".into())
        .await
        .unwrap();
    assert_eq!(daemon.tick().await.unwrap(), TickOutcome::Idle);
    assert_eq!(
        std::fs::read_dir(s.path("outbox")).unwrap().count(),
        2,
        "only the manual send's two messages"
    );
}

/// The addresses the outbox has messages for, with how many each.
fn outbox_recipients(s: &Sandbox) -> std::collections::BTreeMap<String, usize> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(s.path("outbox")) else {
        return out;
    };
    for entry in dir {
        let raw = std::fs::read(entry.unwrap().path()).unwrap();
        let parsed = mail_parser::MessageParser::default().parse(&raw).unwrap();
        let to = parsed
            .to()
            .unwrap()
            .first()
            .unwrap()
            .address()
            .unwrap()
            .to_owned();
        *out.entry(to).or_default() += 1;
    }
    out
}

#[tokio::test]
async fn with_a_review_window_nothing_reaches_subscribers_before_the_editors_had_it_that_long() {
    let s = Sandbox::new();
    s.write_readers(2, "");
    let config = scheduled(
        &s,
        "review_hours = 24\neditors = [\"editor@example.com\"]\n",
    );
    let slot = Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, 0).unwrap();
    let h = chrono::Duration::hours;
    // The daemon first starts only two hours before the slot: the review copy goes out now,
    // and the issue waits its full 24 hours, not just until the slot.
    let clock = TestClock::at(slot - h(2));
    let daemon = Daemon::new(config, clock.clone(), "a@elsewhere:1:1".into())
        .await
        .unwrap();
    assert_eq!(
        daemon.tick().await.unwrap(),
        TickOutcome::FrozenForReview { number: 1 }
    );
    assert_eq!(outbox_recipients(&s).len(), 1, "only the editor");
    clock.set(slot + h(1));
    assert_eq!(
        daemon.tick().await.unwrap(),
        TickOutcome::Waiting { number: 1 }
    );
    clock.set(slot + h(22) + chrono::Duration::minutes(1));
    assert_eq!(
        daemon.tick().await.unwrap(),
        TickOutcome::Delivered {
            number: 1,
            finished: true
        }
    );
    assert_eq!(outbox_recipients(&s).len(), 3);
}

#[tokio::test]
async fn a_caught_up_slot_gets_a_fresh_review_window_or_is_skipped_when_that_is_too_late() {
    let s = Sandbox::new();
    s.write_readers(2, "");
    let config = scheduled(&s, "review_hours = 2\neditors = [\"editor@example.com\"]\n");
    let slot = Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, 0).unwrap();
    let h = chrono::Duration::hours;
    running_since(&s, slot - h(30)).await;
    // Down through the review window and the slot; back five hours late.
    let clock = TestClock::at(slot + h(5));
    let daemon = Daemon::new(config, clock.clone(), "a@elsewhere:1:1".into())
        .await
        .unwrap();
    assert_eq!(
        daemon.tick().await.unwrap(),
        TickOutcome::FrozenForReview { number: 1 }
    );
    assert_eq!(
        outbox_recipients(&s).keys().collect::<Vec<_>>(),
        ["editor@example.com"],
        "caught up, but reviewed first"
    );
    clock.set(slot + h(6));
    assert_eq!(
        daemon.tick().await.unwrap(),
        TickOutcome::Waiting { number: 1 }
    );
    clock.set(slot + h(7) + chrono::Duration::minutes(1));
    assert!(matches!(
        daemon.tick().await.unwrap(),
        TickOutcome::Delivered { number: 1, .. }
    ));
    assert_eq!(outbox_recipients(&s).len(), 3);

    // The next week's slot noticed 23 hours late: a 2-hour review would end past the 24-hour
    // catch-up window, so it is skipped, not sent unreviewed.
    let next = slot + chrono::Duration::days(7);
    clock.set(next + h(23));
    assert_eq!(
        daemon.tick().await.unwrap(),
        TickOutcome::Missed {
            slot: "2026-12-07T08:00:00Z".into()
        }
    );
    assert_eq!(outbox_recipients(&s).values().sum::<usize>(), 3);
}

#[test]
fn a_manual_send_with_a_review_window_freezes_for_review_and_an_editor_can_release_it() {
    let s = Sandbox::new();
    s.write_readers(2, "");
    let _ = scheduled(
        &s,
        "review_hours = 24\neditors = [\"editor@example.com\"]\n",
    );
    let first = s.herald(&["send"]);
    assert_eq!(first.code, 0, "{first:?}");
    assert!(
        first.stdout.contains("issue #1 is frozen for review"),
        "{first:?}"
    );
    assert_eq!(
        outbox_recipients(&s).keys().collect::<Vec<_>>(),
        ["editor@example.com"]
    );
    let waiting = s.herald(&["send"]);
    assert_eq!(waiting.code, 1, "{waiting:?}");
    assert!(waiting.stderr.contains("frozen for review"), "{waiting:?}");
    assert_eq!(outbox_recipients(&s).len(), 1, "still only the editor");
    // An editor approves it: the rest of the window is waived.
    assert_eq!(s.herald(&["issues", "release", "1"]).code, 0);
    let sent = s.herald(&["send"]);
    assert_eq!(sent.code, 0, "{sent:?}");
    assert_eq!(outbox_recipients(&s).len(), 3);
}

#[test]
fn a_held_issue_can_be_refrozen_from_fixed_content_or_replanned_or_discarded() {
    let s = Sandbox::new();
    s.write_readers(2, "");
    let _ = scheduled(
        &s,
        "review_hours = 24\neditors = [\"editor@example.com\"]\n",
    );
    assert_eq!(s.herald(&["send"]).code, 0);
    assert_eq!(s.herald(&["issues", "hold", "1"]).code, 0);
    let show = |s: &Sandbox| -> serde_json::Value {
        serde_json::from_str(&s.herald(&["issues", "show", "1", "--json"]).stdout).unwrap()
    };
    let before = show(&s);
    let term = before["term"].as_str().unwrap().to_owned();

    // An editor fixes the term's summary: refreeze renders it again, same term and links.
    let path = s.path(&format!("glossary/{term}.md"));
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text.find("summary = \"").unwrap() + "summary = \"".len();
    let end = start + text[start..].find('"').unwrap();
    let fixed = format!(
        "{}A corrected summary for the refreeze test.{}",
        &text[..start],
        &text[end..]
    );
    std::fs::write(&path, fixed).unwrap();
    let refrozen = s.herald(&["issues", "refreeze", "1"]);
    assert_eq!(refrozen.code, 0, "{refrozen:?}");
    let after = show(&s);
    assert_eq!(after["term"], before["term"]);
    assert_eq!(after["links"], before["links"]);
    assert_eq!(
        after["status"], "held",
        "still held until an editor releases it"
    );
    let store = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let db = s.db().await;
        let html = db.text("SELECT html FROM issues WHERE number = 1").await;
        db.close().await;
        html
    });
    assert!(store.contains("A corrected summary for the refreeze test."));
    assert_eq!(
        outbox_recipients(&s).get("editor@example.com"),
        Some(&2),
        "a new review copy"
    );

    // --replan picks again: a term queued now comes first.
    assert_eq!(s.herald(&["queue", "add", "dropout"]).code, 0);
    let replanned = s.herald(&["issues", "refreeze", "1", "--replan"]);
    assert_eq!(replanned.code, 0, "{replanned:?}");
    assert_eq!(show(&s)["term"], "dropout");

    // Discard: nothing of it stays; its term is back in the pool and #1 is free again.
    let discarded = s.herald(&["issues", "discard", "1"]);
    assert_eq!(discarded.code, 0, "{discarded:?}");
    assert_eq!(s.herald(&["issues", "list", "--json"]).stdout.trim(), "[]");
    let again = s.herald(&["send"]);
    assert!(
        again.stdout.contains("issue #1 is frozen for review"),
        "{again:?}"
    );
    assert_eq!(
        show(&s)["term"],
        term.as_str(),
        "the first term again, not a gap"
    );

    // An issue that went out cannot be discarded or refrozen.
    assert_eq!(s.herald(&["issues", "release", "1"]).code, 0);
    assert_eq!(s.herald(&["send"]).code, 0);
    assert_eq!(s.herald(&["issues", "discard", "1"]).code, 1);
    assert_eq!(s.herald(&["issues", "refreeze", "1"]).code, 1);
    assert_eq!(show(&s)["status"], "sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_confirmation_link_from_before_an_unsubscribe_cannot_resubscribe() {
    let server = smtp::start(None);
    let s = Sandbox::new();
    let env = [
        ("HERALD_SMTP_URL", server.url()),
        ("HERALD_SECRET", SECRET.to_owned()),
    ];
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // The daemon's clock an hour behind the command line's: the link is issued "then".
    let clock = TestClock::at(
        herald::clock::Clock::now(&herald::clock::SystemClock) - chrono::Duration::hours(1),
    );
    let (base, stop, handle) = start(&s, &env_ref, clock.clone()).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = http
        .post(format!("{base}subscribe"))
        .form(&[("email", "trinity@example.com")])
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 200);
    let confirmation = wait_for("the confirmation email", || {
        server.mailbox.messages().into_iter().next()
    })
    .await;
    let text = decoded_text(&confirmation.data);
    let at = text.find(&format!("{base}confirm/")).unwrap();
    let link: String = text[at..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    assert_eq!(http.post(&link).send().await.unwrap().status(), 200);
    // She leaves (now, an hour after the link was issued).
    let left = s.herald_env(&["subscribers", "remove", "trinity@example.com"], &env_ref);
    assert_eq!(left.code, 0, "{left:?}");
    // The old link, still inside its 7 days, cannot bring her back.
    clock.set(clock.now() + chrono::Duration::hours(2));
    assert_eq!(http.post(&link).send().await.unwrap().status(), 404);
    let list = s.herald(&["subscribers", "list", "--status", "unsubscribed", "--json"]);
    assert!(list.stdout.contains("trinity@example.com"), "{list:?}");
    // A new request is another matter: it mails a new confirmation, whose link brings her
    // back.
    let again = http
        .post(format!("{base}subscribe"))
        .form(&[("email", "trinity@example.com")])
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    let second = wait_for("a second confirmation email", || {
        server.mailbox.messages().into_iter().nth(2)
    })
    .await;
    let text = decoded_text(&second.data);
    assert!(text.contains(&format!("{base}confirm/")), "{text}");
    let at = text.find(&format!("{base}confirm/")).unwrap();
    let new_link: String = text[at..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    assert_eq!(http.post(&new_link).send().await.unwrap().status(), 200);
    let list = s.herald(&["subscribers", "list", "--status", "confirmed", "--json"]);
    assert!(list.stdout.contains("trinity@example.com"), "{list:?}");
    stop.cancel();
    handle.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_form_neither_renames_a_subscriber_nor_mails_a_bounced_address() {
    let server = smtp::start(None);
    let s = Sandbox::new();
    s.write(
        "subscribers/list.csv",
        "email,name,status\nknown@example.com,Real Name,pending\ndead@example.com,Dead,bounced\n",
    );
    assert_eq!(
        s.herald(&["subscribers", "import", "subscribers/list.csv"])
            .code,
        0
    );
    let env = [
        ("HERALD_SMTP_URL", server.url()),
        ("HERALD_SECRET", SECRET.to_owned()),
    ];
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (base, stop, handle) = start(&s, &env_ref, Arc::new(herald::clock::SystemClock)).await;
    let http = reqwest::Client::new();
    for (email, name) in [
        ("known@example.com", "Attacker's Choice"),
        ("dead@example.com", "X"),
    ] {
        let r = http
            .post(format!("{base}subscribe"))
            .form(&[("email", email), ("name", name)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    wait_for("the confirmation to the pending address", || {
        server
            .mailbox
            .per_recipient()
            .get("known@example.com")
            .copied()
    })
    .await;
    assert_eq!(server.mailbox.per_recipient().get("dead@example.com"), None);
    let list = s.herald(&["subscribers", "list", "--json"]);
    assert!(list.stdout.contains("\"Real Name\""), "{list:?}");
    assert!(!list.stdout.contains("Attacker"), "{list:?}");
    stop.cancel();
    handle.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_confirmation_limit_holds_across_restarts() {
    let server = smtp::start(None);
    let s = Sandbox::new();
    let env = [
        ("HERALD_SMTP_URL", server.url()),
        ("HERALD_SECRET", SECRET.to_owned()),
    ];
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let http = reqwest::Client::new();
    for _ in 0..2 {
        // Each daemon (a restart, or another web instance) gets two requests.
        let (base, stop, handle) = start(&s, &env_ref, Arc::new(herald::clock::SystemClock)).await;
        for _ in 0..2 {
            let r = http
                .post(format!("{base}subscribe"))
                .form(&[("email", "target@example.com")])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
        // What this daemon queued is sent before it stops (a queued email would otherwise
        // wait for the next start: it is never lost).
        let store = s.store().await;
        let mut waiting = u64::MAX;
        for _ in 0..400 {
            waiting = queue_waiting(&store).await;
            if waiting == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(waiting, 0, "the queue was not drained");
        stop.cancel();
        handle.await.unwrap();
    }
    assert_eq!(
        server.mailbox.per_recipient().get("target@example.com"),
        Some(&3),
        "at most three an hour, whatever restarts in between"
    );
}

/// Log lines written while a [`LogCapture`] is in place on this thread.
#[derive(Clone, Default)]
struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogCapture {
    /// Captures this thread's log lines at `info` and above (a current-thread runtime runs
    /// every task on it) until the guard is dropped.
    fn start() -> (Self, tracing::subscriber::DefaultGuard) {
        let capture = Self::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        (capture, tracing::subscriber::set_default(subscriber))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// The daemon's slot path follows the one send policy of `herald send`: with the relay down
/// when a slot is due, no issue is frozen for an audience nobody can reach, the operator is
/// told once (not at every wake-up), and the slot goes out once the relay answers.
#[tokio::test]
async fn with_the_relay_down_at_slot_time_the_daemon_freezes_nothing_and_says_so_once() {
    let s = Sandbox::new();
    s.write_readers(2, "");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let relay = closed.local_addr().unwrap();
    drop(closed);
    s.write(
        "herald.toml",
        format!("{CONFIG}\n[schedule]\ncron = \"0 0 9 * * Mon\"\ntimezone = \"Europe/Berlin\"\ncatch_up_hours = 24\n"),
    );
    let url = format!("smtp://{relay}");
    let config = s.config_with_env(&[("HERALD_SMTP_URL", &url), ("HERALD_SECRET", SECRET)]);
    let slot = Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, 0).unwrap();
    running_since(&s, slot - chrono::Duration::hours(1)).await;
    let clock = TestClock::at(slot + chrono::Duration::minutes(1));
    let (logs, _guard) = LogCapture::start();
    let daemon = Daemon::new(config, clock.clone(), "a@elsewhere:1:1".into())
        .await
        .unwrap();
    for minute in 1..=3 {
        clock.set(slot + chrono::Duration::minutes(minute));
        let outcome = daemon.tick().await.unwrap();
        assert!(
            matches!(outcome, TickOutcome::SmtpUnreachable { .. }),
            "wake-up {minute}: {outcome:?}"
        );
    }
    let list = s.herald(&["issues", "list", "--json"]);
    assert_eq!(list.stdout.trim(), "[]", "nothing frozen: {list:?}");
    let said = logs.text();
    assert_eq!(
        said.matches("SMTP server unreachable at a scheduled send")
            .count(),
        1,
        "said once in three wake-ups: {said}"
    );

    // The relay answers again: the slot goes out at the next wake-up.
    let server = smtp::start_on(std::net::TcpListener::bind(relay).unwrap(), None);
    clock.set(slot + chrono::Duration::minutes(4));
    assert_eq!(
        daemon.tick().await.unwrap(),
        TickOutcome::Delivered {
            number: 1,
            finished: true
        }
    );
    assert_eq!(server.mailbox.messages().len(), 2);
}

/// `[schedule] poll_seconds` is kept as written, even when it does not divide a minute: a
/// daemon with 7 wakes every 7 s (it used to wake once a minute). Each wake-up is seen in
/// `/healthz`: with the clock moved far past the last tick it answers 503 ("scheduler
/// stalled"), and 200 again as soon as the next wake-up's tick has run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_wakes_every_poll_seconds_even_when_they_do_not_divide_a_minute() {
    let s = Sandbox::new();
    let t0 = Utc.with_ymd_and_hms(2026, 3, 2, 12, 0, 0).unwrap();
    let clock = TestClock::at(t0);
    let (base, stop, handle) = start_with(&s, "poll_seconds = 7\n", &[], clock.clone()).await;
    let http = reqwest::Client::new();
    let healthz = format!("{base}healthz");
    let mut woke = Vec::new();
    // The first tick seen may be the one at start; the next two are wake-ups 7 s apart.
    for i in 1..=3 {
        clock.set(t0 + chrono::Duration::seconds(1000 * i));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let status = http.get(&healthz).send().await.map(|r| r.status());
            if status.is_ok_and(|s| s == 200) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no wake-up within 20 s with poll_seconds = 7 (wake-ups so far: {})",
                woke.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        woke.push(Instant::now());
    }
    let gap = woke[2] - woke[1];
    assert!(
        gap >= Duration::from_millis(6000) && gap <= Duration::from_millis(8500),
        "two wake-ups {gap:?} apart with poll_seconds = 7"
    );
    stop.cancel();
    handle.await.unwrap();
}
