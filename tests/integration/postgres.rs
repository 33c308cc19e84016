//! PostgreSQL: the whole suite again with every sandbox's store in a PostgreSQL database of
//! its own, and what only several processes on one PostgreSQL database can show.
//!
//! The server is `HERALD_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`).
//! Without a reachable server these tests are skipped with a message, unless
//! `REQUIRE_POSTGRES_TESTS=1` (set by `.ci/run`), which makes that a failure.

use std::process::Command;

use crate::harness::{on_postgres, postgres_admin_url};

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
