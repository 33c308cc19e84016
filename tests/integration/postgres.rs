//! PostgreSQL: the whole suite again with every sandbox's store in a PostgreSQL database of
//! its own, and what only several processes on one PostgreSQL database can show.
//!
//! The server is `HERALD_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`).
//! Without a reachable server these tests are skipped with a message, unless
//! `REQUIRE_POSTGRES_TESTS=1` (set by `.ci/run`), which makes that a failure.

use std::process::Command;

use crate::harness::{
    CONFIG, Sandbox, TempPostgres, block_on_thread, on_postgres, postgres_admin_url,
};
use crate::smtp;

/// Whether the tests' PostgreSQL server answers; `false` (skip) with a visible message when
/// it does not, a failure when `REQUIRE_POSTGRES_TESTS=1`.
pub fn postgres_available(test: &str) -> bool {
    let url = postgres_admin_url();
    let reachable = {
        let url = url.clone();
        block_on_thread(async move {
            use sqlx::Connection as _;
            tokio::time::timeout(
                std::time::Duration::from_secs(5),
                sqlx::PgConnection::connect(&url),
            )
            .await
            .map_err(|_| "no answer in 5 s".to_owned())?
            .map_err(|e| e.to_string())
            .map(|_| ())
        })
    };
    match reachable {
        Ok(()) => true,
        Err(e) if std::env::var("REQUIRE_POSTGRES_TESTS").is_ok_and(|v| v == "1") => {
            panic!("REQUIRE_POSTGRES_TESTS=1 but PostgreSQL at {url} does not answer: {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED {test}: no PostgreSQL at {url} ({e}); set HERALD_TEST_POSTGRES_URL");
            false
        }
    }
}

/// Every test of the suite that touches the store, run again on PostgreSQL: one set of tests
/// for both stores. (Modules with no store in them are not run twice.)
#[test]
fn the_suite_passes_on_postgresql() {
    if on_postgres() || !postgres_available("the suite on PostgreSQL") {
        return;
    }
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.arg("--test-threads=2");
    for module in [
        "postgres::",
        "browser::",
        "dkim::",
        "glossary::",
        "imap::",
        "layers::",
        "render::",
        "smtp_client::",
        "spamassassin::",
    ] {
        cmd.args(["--skip", module]);
    }
    let out = cmd.env("HERALD_TEST_STORE", "postgres").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary = stdout
        .lines()
        .filter(|l| l.starts_with("test result:"))
        .collect::<Vec<_>>()
        .join("\n");
    eprintln!("the suite on PostgreSQL: {summary}");
    assert!(
        out.status.success(),
        "the suite failed on PostgreSQL:\n{stdout}\n{stderr}"
    );
    assert!(
        summary.contains(" passed;") && !summary.contains(" 0 passed;"),
        "{stdout}"
    );
}

const SECRET: &str = "test-signing-key-0123456789abcdef";

/// A sandbox (its own store: SQLite) with `n` subscribers and the delivery `settings`.
fn installation(n: usize, delivery: &str) -> Sandbox {
    let s = Sandbox::new();
    s.write_readers(n, "");
    s.write("herald.toml", format!("{CONFIG}\n[delivery]\n{delivery}\n"));
    s
}

/// An SQLite installation with a finished issue and a half-sent one moves to PostgreSQL with
/// `herald store copy`; a send there finishes the half-sent issue, and nobody gets a second
/// copy. A second copy into the same database is refused.
#[test]
fn store_copy_moves_an_installation_and_postgresql_finishes_its_half_sent_issue_once() {
    if on_postgres() || !postgres_available("store copy") {
        return;
    }
    let server = smtp::start(None);
    let s = installation(20, "concurrency = 2\nmax_attempts = 1\ntimeout_seconds = 5");
    let smtp_env = [
        ("HERALD_SMTP_URL", server.url()),
        ("HERALD_SECRET", SECRET.to_owned()),
    ];
    let env: Vec<(&str, &str)> = smtp_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let first = s.herald_env(&["send"], &env);
    assert_eq!(first.code, 0, "{first:?}");
    // Issue 2: five messages meet a 451 and, with one attempt per run, stay pending.
    server
        .mailbox
        .faults
        .transient_first
        .store(5, std::sync::atomic::Ordering::SeqCst);
    let second = s.herald_env(&["send"], &env);
    assert_eq!(second.code, 3, "half sent: {second:?}");
    assert_eq!(server.mailbox.messages().len(), 20 + 15);

    let target = TempPostgres::new();
    let copy = s.herald(&["store", "copy", "--to", &target.url, "--json"]);
    assert_eq!(copy.code, 0, "{copy:?}");
    let report: serde_json::Value = serde_json::from_str(&copy.stdout).unwrap();
    assert_eq!(report["tables"]["subscribers"], 20);
    assert_eq!(report["tables"]["issues"], 2);
    assert_eq!(report["tables"]["deliveries"], 40);
    assert_eq!(report["tables"]["terms_sent"], 2);
    assert!(report["tables"]["links_sent"].is_number());
    let again = s.herald(&["store", "copy", "--to", &target.url]);
    assert_ne!(again.code, 0, "{again:?}");
    assert!(again.stderr.contains("not empty"), "{again:?}");

    let mut pg_env = env.clone();
    pg_env.push(("HERALD_DATABASE_URL", &target.url));
    let resumed = s.herald_env(&["send"], &pg_env);
    assert_eq!(resumed.code, 0, "{resumed:?}");
    assert!(resumed.stdout.contains("resuming issue #2"), "{resumed:?}");
    let per = server.mailbox.per_recipient();
    assert_eq!(per.len(), 20);
    assert!(
        per.values().all(|&n| n == 2),
        "one copy of each issue: {per:?}"
    );
    // On PostgreSQL both issues are now finished.
    let list = s.herald_env(&["issues", "list", "--json"], &pg_env);
    let issues: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(issues.as_array().unwrap().len(), 2, "{list:?}");
    assert!(
        issues
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["status"] == "sent"),
        "{list:?}"
    );
}

/// A `herald` process of a multi-host test, its output in a log file of its own.
struct Proc {
    name: String,
    child: std::process::Child,
    log: std::path::PathBuf,
}

impl Proc {
    fn spawn(s: &Sandbox, name: &str, args: &[&str], env: &[(&str, String)]) -> Self {
        let log = s.path(&format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = s
            .command(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("RUST_LOG", "info")
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        Self {
            name: name.to_owned(),
            child,
            log,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9`.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits (up to `secs`) for the process to exit; fails with its log and `others'` logs.
    fn wait_exit(&mut self, secs: u64, others: &[&Proc]) -> std::process::ExitStatus {
        let give_up = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < give_up,
                "{} did not finish\n{}\n{}",
                self.name,
                self.log(),
                logs(others)
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        format!(
            "--- {}\n{}",
            self.name,
            std::fs::read_to_string(&self.log).unwrap_or_default()
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn logs(procs: &[&Proc]) -> String {
    procs.iter().map(|p| p.log()).collect::<Vec<_>>().join("\n")
}

/// Waits (up to `secs`) until `done` holds, polling.
fn wait_until(secs: u64, what: &str, mut done: impl FnMut() -> bool, logs: impl Fn() -> String) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            logs()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The subscribers file and configuration of a multi-host installation on `db`.
fn multihost(db: &TempPostgres, n: usize, extra: &str) -> Sandbox {
    let s = Sandbox::new();
    s.write_readers(n, "");
    s.write(
        "herald.toml",
        format!(
            "{}\n[schedule]\ncron = \"0 0 9 1 1 *\"\ntimezone = \"UTC\"\npoll_seconds = 1\n{extra}",
            CONFIG.replace(
                "url = \"sqlite://herald.db\"",
                &format!("url = \"{}\"", db.url)
            )
        ),
    );
    s
}

/// A free port on loopback (bound and released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn pg_scalar(db: &TempPostgres, sql: &str) -> String {
    let (url, sql) = (db.url.clone(), sql.to_owned());
    block_on_thread(async move {
        use sqlx::Connection as _;
        let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
        let v: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_optional(&mut c)
            .await
            .unwrap();
        v.unwrap_or_default()
    })
}

/// Two `herald run` processes (a sender and a standby) and three `herald worker`s on one
/// PostgreSQL database deliver one issue to 50,000 subscribers, each worker through a relay of
/// its own; the sender and one worker are killed with SIGKILL in the middle. Every subscriber
/// gets exactly one copy, except the killed worker's ambiguous rows (at most its concurrency),
/// which `herald issues show` reports.
#[test]
fn two_senders_and_three_workers_deliver_to_50000_once_through_kill_9() {
    if on_postgres() || !postgres_available("the multi-host delivery") {
        return;
    }
    const N: usize = 50_000;
    const CONCURRENCY: usize = 4;
    let db = TempPostgres::new();
    let s = multihost(
        &db,
        N,
        &format!(
            "review_hours = 1\neditors = [\"editor@example.com\"]\n\n[delivery]\nconcurrency = {CONCURRENCY}\n\
             lease_seconds = 4\nsender_delivers = false\ntimeout_seconds = 10\n"
        ),
    );
    let editors = smtp::start(None);
    let relays: Vec<smtp::SmtpServer> = (0..3).map(|_| smtp::start(None)).collect();
    for r in &relays {
        r.mailbox
            .faults
            .envelopes_only
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
    let base = [("HERALD_SECRET", SECRET.to_owned())];
    let with = |extra: &[(&'static str, String)]| -> Vec<(&'static str, String)> {
        base.iter().cloned().chain(extra.iter().cloned()).collect()
    };
    let import = s.herald(&["subscribers", "import", "subscribers/list.csv"]);
    assert_eq!(import.code, 0, "{import:?}");
    // Frozen for review (the editors get their copy), then released: then it goes out.
    let env = with(&[("HERALD_SMTP_URL", editors.url())]);
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let frozen = s.herald_env(&["send"], &env_ref);
    assert_eq!(frozen.code, 0, "{frozen:?}");

    let runs: Vec<Proc> = (0..2)
        .map(|i| {
            Proc::spawn(
                &s,
                &format!("run{i}"),
                &["run"],
                &with(&[
                    ("HERALD_SMTP_URL", editors.url()),
                    ("HERALD_HTTP__LISTEN", format!("127.0.0.1:{}", free_port())),
                ]),
            )
        })
        .collect();
    let mut workers: Vec<Proc> = relays
        .iter()
        .enumerate()
        .map(|(i, relay)| {
            Proc::spawn(
                &s,
                &format!("worker{i}"),
                &["worker"],
                &with(&[("HERALD_SMTP_URL", relay.url())]),
            )
        })
        .collect();
    let mut runs = runs;
    let all_logs = |runs: &[Proc], workers: &[Proc]| {
        logs(&runs.iter().chain(workers.iter()).collect::<Vec<_>>())
    };
    let released = s.herald(&["issues", "release", "1"]);
    assert_eq!(released.code, 0, "{released:?}");
    let delivered = || {
        relays
            .iter()
            .map(|r| r.mailbox.messages().len())
            .sum::<usize>()
    };
    wait_until(
        240,
        "a third of the messages",
        || delivered() >= N / 3,
        || all_logs(&runs, &workers),
    );
    // Kill the sender (the run holding the lease) and one worker.
    let holder = pg_scalar(&db, "SELECT holder FROM leases WHERE name = 'sender'");
    let sender_pid: u32 = holder
        .rsplit(':')
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("a sender lease: {holder:?}"));
    let sender = runs
        .iter_mut()
        .find(|r| r.pid() == sender_pid)
        .expect("the sender is one of the runs");
    sender.kill();
    workers[0].kill();
    let killed_at = delivered();
    assert!(killed_at < N, "killed before the end");

    wait_until(
        300,
        "the issue to be finished",
        || pg_scalar(&db, "SELECT status FROM issues WHERE number = 1") == "sent",
        || all_logs(&runs, &workers),
    );
    let mut per: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for r in &relays {
        for (to, n) in r.mailbox.per_recipient() {
            *per.entry(to).or_default() += n;
        }
    }
    let twice: Vec<_> = per.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sent twice: {twice:?}");
    let show = s.herald(&["issues", "show", "1", "--json"]);
    let detail: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    let ambiguous = detail["ambiguous"].as_array().unwrap().len();
    assert!(
        ambiguous <= CONCURRENCY,
        "at most the killed worker's concurrency: {ambiguous}"
    );
    assert_eq!(detail["sending"].as_u64().unwrap() as usize, ambiguous);
    assert_eq!(
        detail["sent"].as_u64().unwrap() as usize + ambiguous,
        N,
        "{detail}"
    );
    eprintln!(
        "killed the sender and a worker after {killed_at} of {N} messages; {} recipients got \
         their copy, {ambiguous} rows ambiguous; per worker: {:?}",
        per.len(),
        relays
            .iter()
            .map(|r| r.mailbox.messages().len())
            .collect::<Vec<_>>()
    );
    // The standby took the sender lease over and followed the workers to the end.
    let standby = runs.iter().find(|r| r.pid() != sender_pid).unwrap();
    assert!(
        standby
            .log()
            .contains("the delivery workers deliver this issue"),
        "{}",
        standby.log()
    );
    // Everyone else has their one copy; an ambiguous row may or may not have reached its
    // relay.
    assert!(
        per.len() >= N - ambiguous && per.len() <= N,
        "{}",
        per.len()
    );
    // Both live workers delivered after the kill.
    for (i, r) in relays.iter().enumerate().skip(1) {
        assert!(
            !r.mailbox.messages().is_empty(),
            "worker {i} delivered\n{}",
            all_logs(&runs, &workers)
        );
    }
}

/// A TCP proxy on loopback to `target` that can stop forwarding (`cut`): the connections stay
/// open and nothing more goes through them, as when a network path fails without a reset.
struct Proxy {
    port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Proxy {
    fn to(target: std::net::SocketAddr) -> Self {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let pump = |mut from: std::net::TcpStream,
                    mut to: std::net::TcpStream,
                    cut: std::sync::Arc<std::sync::atomic::AtomicBool>| {
            std::thread::spawn(move || {
                use std::io::{Read as _, Write as _};
                let mut buf = [0u8; 16 * 1024];
                loop {
                    let n = match from.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    while cut.load(Ordering::SeqCst) {
                        std::thread::sleep(std::time::Duration::from_millis(50));
                    }
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        };
        let c = cut.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                let Ok(server) = std::net::TcpStream::connect(target) else {
                    continue;
                };
                pump(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    c.clone(),
                );
                pump(server, client, c.clone());
            }
        });
        Self { port, cut }
    }

    fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A worker cut off from the database in the middle of its work (its connections through a
/// proxy that stops forwarding) starts no message after its lease deadline, while the other
/// worker finishes the issue: no duplicate, and the cut-off worker's in-flight rows are
/// reported as ambiguous.
#[test]
fn a_worker_cut_off_from_the_database_sends_nothing_after_its_lease_deadline() {
    use std::sync::atomic::Ordering;
    if on_postgres() || !postgres_available("the worker cut off from the database") {
        return;
    }
    const N: usize = 1500;
    const CONCURRENCY: usize = 2;
    const LEASE: u64 = 4;
    let db = TempPostgres::new();
    let s = multihost(
        &db,
        N,
        &format!(
            "\n[delivery]\nconcurrency = {CONCURRENCY}\nlease_seconds = {LEASE}\n\
             sender_delivers = false\ntimeout_seconds = 30\n"
        ),
    );
    let import = s.herald(&["subscribers", "import", "subscribers/list.csv"]);
    assert_eq!(import.code, 0, "{import:?}");
    let (cut_off_relay, other_relay) = (smtp::start(None), smtp::start(None));
    for r in [&cut_off_relay, &other_relay] {
        *r.mailbox.faults.slow_reply.lock().unwrap() = Some(std::time::Duration::from_millis(20));
    }
    // The cut-off worker's messages take a second each, and it may start one every five
    // seconds (its relay's rate): when it is cut off it has a message in flight and another
    // claimed, waiting for its turn, which would come after its lease deadline.
    *cut_off_relay.mailbox.faults.stall.lock().unwrap() = Some(std::time::Duration::from_secs(1));
    let server: std::net::SocketAddr = {
        let url = postgres_admin_url();
        let host = url.split('@').nth(1).unwrap_or("127.0.0.1:5432");
        let host = host.split('/').next().unwrap();
        std::net::ToSocketAddrs::to_socket_addrs(host)
            .unwrap()
            .next()
            .unwrap()
    };
    let proxy = Proxy::to(server);
    let via_proxy = db.url.replacen(
        &format!("{}:{}", server.ip(), server.port()),
        &format!("127.0.0.1:{}", proxy.port),
        1,
    );
    assert_ne!(via_proxy, db.url, "the worker's URL goes through the proxy");
    let secret = ("HERALD_SECRET", SECRET.to_owned());
    let mut cut_off = Proc::spawn(
        &s,
        "cut-off-worker",
        &["worker"],
        &[
            secret.clone(),
            ("HERALD_SMTP_URL", cut_off_relay.url()),
            ("HERALD_DATABASE_URL", via_proxy),
            ("HERALD_DELIVERY__RATE_PER_SECOND", "0.2".to_owned()),
        ],
    );
    let other = Proc::spawn(
        &s,
        "other-worker",
        &["worker"],
        &[secret.clone(), ("HERALD_SMTP_URL", other_relay.url())],
    );
    let sender = Proc::spawn(
        &s,
        "send",
        &["send"],
        &[secret.clone(), ("HERALD_SMTP_URL", other_relay.url())],
    );
    let all = || logs(&[&cut_off, &other, &sender]);
    wait_until(
        120,
        "the cut-off worker to be sending",
        || cut_off_relay.mailbox.data_started.load(Ordering::SeqCst) >= 2,
        all,
    );
    proxy.cut();
    let cut_at = std::time::Instant::now();
    let at_cut = cut_off_relay.mailbox.data_started.load(Ordering::SeqCst);
    // Past its deadline (at most the lease time after its last renewal, which came before
    // the cut), it starts nothing more.
    std::thread::sleep(std::time::Duration::from_secs(LEASE + 1));
    let at_deadline = cut_off_relay.mailbox.data_started.load(Ordering::SeqCst);
    let mut sender = sender;
    let status = sender.wait_exit(180, &[&cut_off, &other]);
    let after = cut_off_relay.mailbox.data_started.load(Ordering::SeqCst);
    let late: Vec<_> = cut_off_relay
        .mailbox
        .data_started_at
        .lock()
        .unwrap()
        .iter()
        .filter(|t| **t > cut_at + std::time::Duration::from_secs(LEASE))
        .map(|t| t.duration_since(cut_at))
        .collect();
    assert!(
        late.is_empty(),
        "messages started after the lease deadline (s after the cut): {late:?}\n{}",
        logs(&[&cut_off, &other, &sender])
    );
    assert_eq!(after, at_deadline);
    assert!(
        at_deadline - at_cut <= CONCURRENCY,
        "after the cut, only what was already handed out: {at_cut} -> {at_deadline}"
    );
    cut_off.kill();
    let mut per: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for r in [&cut_off_relay, &other_relay] {
        for (to, n) in r.mailbox.per_recipient() {
            *per.entry(to).or_default() += n;
        }
    }
    assert!(per.values().all(|&n| n == 1), "no duplicate");
    let show = s.herald(&["issues", "show", "1", "--json"]);
    let detail: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    let ambiguous = detail["ambiguous"].as_array().unwrap().len();
    assert!(ambiguous <= CONCURRENCY, "{detail}");
    assert_eq!(detail["status"], "sent", "{detail}");
    assert_eq!(
        detail["sent"].as_u64().unwrap() as usize + ambiguous,
        N,
        "{detail}"
    );
    // `herald send` says so: ambiguous rows make it exit 3 (pending) with the count.
    assert!(
        status.code() == Some(0) || status.code() == Some(3),
        "{}",
        sender.log()
    );
    eprintln!(
        "cut off after {at_cut} messages started, {at_deadline} by the deadline; the other \
         worker sent {}, {ambiguous} ambiguous",
        other_relay.mailbox.messages().len()
    );
}

/// The link in `text` that starts `https://news.example.com/PATH`, moved to `base`.
fn link_to(text: &str, path: &str, base: &str) -> String {
    let prefix = format!("https://news.example.com/{path}");
    let at = text
        .find(&prefix)
        .unwrap_or_else(|| panic!("a {path} link in {text}"));
    let link: String = text[at..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '>' && *c != '"')
        .collect();
    link.replacen("https://news.example.com/", base, 1)
}

/// Two `herald run` web instances on one database, as behind a load balancer: a reader
/// subscribes on A, confirms on B and unsubscribes on A, and is one subscriber in the right
/// state; the per-address limit on confirmation emails holds across the two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_on_one_instance_confirm_on_another_and_leave_on_the_first() {
    if on_postgres() || !postgres_available("the web instances") {
        return;
    }
    let db = TempPostgres::new();
    let s = multihost(&db, 0, "");
    let mail = smtp::start(None);
    let ports = [free_port(), free_port()];
    let instances: Vec<Proc> = ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            Proc::spawn(
                &s,
                &format!("web{i}"),
                &["run"],
                &[
                    ("HERALD_SECRET", SECRET.to_owned()),
                    ("HERALD_SMTP_URL", mail.url()),
                    ("HERALD_HTTP__LISTEN", format!("127.0.0.1:{port}")),
                ],
            )
        })
        .collect();
    let (a, b) = (
        format!("http://127.0.0.1:{}/", ports[0]),
        format!("http://127.0.0.1:{}/", ports[1]),
    );
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let all = || logs(&instances.iter().collect::<Vec<_>>());
    for base in [&a, &b] {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(format!("{base}healthz")).send().await
                && r.status() == 200
            {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{base} answers\n{}",
                all()
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    let mails_to = |subject: &str| {
        mail.mailbox
            .messages()
            .into_iter()
            .filter(|m| String::from_utf8_lossy(&m.data).contains(subject))
            .count()
    };
    let wait_mail = |subject: &'static str, n: usize| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let (mail, all) = (&mail, &all);
        async move {
            loop {
                let found: Vec<_> = mail
                    .mailbox
                    .messages()
                    .into_iter()
                    .filter(|m| String::from_utf8_lossy(&m.data).contains(subject))
                    .collect();
                if found.len() >= n {
                    return found[n - 1].clone();
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "waiting for {subject}\n{}",
                    all()
                );
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    };

    let subscribed = http
        .post(format!("{a}subscribe"))
        .form(&[("email", "neo@example.com"), ("name", "Neo")])
        .send()
        .await
        .unwrap();
    assert_eq!(subscribed.status(), 200);
    let confirmation = wait_mail("Subject: Confirm", 1).await;
    let text = String::from_utf8_lossy(&confirmation.data).replace("=\r\n", "");
    let confirm = link_to(&text, "confirm/", &b);
    let confirmed = http.post(&confirm).send().await.unwrap();
    assert_eq!(confirmed.status(), 200, "{}", all());
    assert!(
        confirmed
            .text()
            .await
            .unwrap()
            .contains("You are subscribed")
    );
    let welcome = wait_mail("Subject: Welcome to", 1).await;
    let raw = String::from_utf8_lossy(&welcome.data).replace("=\r\n", "");
    let leave = link_to(&raw, "u/", &a);
    let left = http
        .post(&leave)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(left.status(), 200, "{}", all());
    let count = pg_scalar(&db, "SELECT COUNT(*)::text FROM subscribers");
    let status = pg_scalar(&db, "SELECT status FROM subscribers");
    assert_eq!((count.as_str(), status.as_str()), ("1", "unsubscribed"));

    // Asking again, alternately on each instance: at most three confirmations an hour for
    // one address, counted across the instances.
    for base in [&b, &a, &b, &a] {
        let again = http
            .post(format!("{base}subscribe"))
            .form(&[("email", "neo@example.com")])
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 200);
    }
    wait_mail("Subject: Confirm", 3).await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(mails_to("Subject: Confirm"), 3, "{}", all());
    assert_eq!(
        pg_scalar(&db, "SELECT COUNT(*)::text FROM subscribers"),
        "1"
    );
}

/// Two workers sending through one relay share its `rate_per_second` (kept in the database):
/// together they send no faster than one would.
#[test]
fn workers_on_one_relay_share_its_rate_limit() {
    if on_postgres() || !postgres_available("the shared rate limit") {
        return;
    }
    const N: usize = 80;
    const RATE: usize = 10;
    let db = TempPostgres::new();
    let s = multihost(
        &db,
        N,
        &format!(
            "\n[delivery]\nconcurrency = 4\nrate_per_second = {RATE}\nsender_delivers = false\n"
        ),
    );
    assert_eq!(
        s.herald(&["subscribers", "import", "subscribers/list.csv"])
            .code,
        0
    );
    let relay = smtp::start(None);
    let env = [
        ("HERALD_SECRET", SECRET.to_owned()),
        ("HERALD_SMTP_URL", relay.url()),
    ];
    let workers: Vec<Proc> = (0..2)
        .map(|i| Proc::spawn(&s, &format!("worker{i}"), &["worker"], &env))
        .collect();
    let mut sender = Proc::spawn(&s, "send", &["send"], &env);
    let status = sender.wait_exit(120, &[&workers[0], &workers[1]]);
    assert_eq!(status.code(), Some(0), "{}", sender.log());
    let mut starts = relay.mailbox.data_started_at.lock().unwrap().clone();
    starts.sort();
    assert_eq!(starts.len(), N);
    // A bucket of one second's worth: at most RATE at once, then RATE a second, whichever
    // worker sends; so at most 4 * RATE in any 3 seconds (and a message or two of jitter
    // between taking a token and the relay seeing DATA).
    let busiest = starts
        .iter()
        .map(|t| {
            starts
                .iter()
                .filter(|u| **u >= *t && **u < *t + std::time::Duration::from_secs(3))
                .count()
        })
        .max()
        .unwrap();
    let took = starts[N - 1] - starts[0];
    assert!(busiest <= 4 * RATE + 2, "{busiest} in three seconds");
    let least = std::time::Duration::from_secs_f64((N - RATE) as f64 / RATE as f64 * 0.9);
    assert!(took >= least, "{N} messages in {took:?}");
    let senders = pg_scalar(
        &db,
        "SELECT COUNT(DISTINCT split_part(claimed_by, '/', 1))::text FROM deliveries",
    );
    assert_eq!(
        senders,
        "2",
        "both workers took part\n{}",
        logs(&[&workers[0], &workers[1]])
    );
    eprintln!("{N} messages at {RATE}/s shared by two workers: {took:?}, at most {busiest} in 3 s");
}
