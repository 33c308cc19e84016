//! PostgreSQL: the whole suite again with every sandbox's store in a PostgreSQL database of
//! its own, and what only several processes on one PostgreSQL database can show.
//!
//! The server is `HERALD_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`).
//! Without a reachable server these tests are skipped with a message, unless
//! `REQUIRE_POSTGRES_TESTS=1` (set by `.ci/run`), which makes that a failure.

use std::process::Command;

use crate::harness::{CONFIG, Sandbox, TempPostgres, on_postgres, postgres_admin_url};
use crate::smtp;

/// Whether the tests' PostgreSQL server answers; `false` (skip) with a visible message when
/// it does not, a failure when `REQUIRE_POSTGRES_TESTS=1`.
pub fn postgres_available(test: &str) -> bool {
    let url = postgres_admin_url();
    let reachable = {
        let url = url.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                use sqlx::Connection as _;
                tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    sqlx::PgConnection::connect(&url),
                )
                .await
                .map_err(|_| "no answer in 5 s".to_owned())?
                .map_err(|e| e.to_string())
            })
            .map(|_| ())
        })
        .join()
        .unwrap()
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
    let mut csv = String::from("email,name\n");
    for i in 0..n {
        csv.push_str(&format!("reader{i}@example.com,Reader {i}\n"));
    }
    s.write("subscribers/list.csv", csv);
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
