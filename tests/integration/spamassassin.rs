//! A real issue, as it went out over SMTP (DKIM-signed, with its List-Unsubscribe, postal
//! address and preheader), scored by SpamAssassin offline (`spamassassin -L -t`, Debian's
//! package): below 1.0, as a deliverability reviewer would want.

use crate::harness::{CONFIG, Sandbox, repo};

#[test]
fn a_sent_issue_scores_below_one_in_spamassassin() {
    let available = std::process::Command::new("spamassassin")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !available {
        assert!(
            std::env::var("REQUIRE_SPAMASSASSIN_TESTS").as_deref() != Ok("1"),
            "SpamAssassin is required (apt-get install spamassassin)"
        );
        eprintln!("SKIPPED: SpamAssassin score (apt-get install spamassassin to run it)");
        return;
    }
    let s = Sandbox::new();
    s.copy_dir(&repo().join("glossary"), "glossary");
    s.copy_dir(&repo().join("templates"), "templates");
    s.write(
        "subscribers/list.csv",
        "email,name,first_name\nreader@example.org,Ada Reader,Ada\n",
    );
    std::fs::copy(
        repo().join("tests/fixtures/dkim/test-only-rsa.pem"),
        s.path("dkim.pem"),
    )
    .unwrap();
    s.write(
        "herald.toml",
        CONFIG.replace("Test Weekly", "AI Glossary Weekly")
            + "\n[bounces]\ndomain = \"bounces.example.com\"\n\n[delivery.dkim]\ndomain = \"example.com\"\nselector = \"herald\"\nprivate_key_path = \"dkim.pem\"\n",
    );
    let message = crate::bounces::send_messages(&s).remove(0).data;

    let home = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new("spamassassin")
        .args(["-L", "-t"])
        .env("HOME", home.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &message).unwrap();
    let out = child.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    let status = report
        .lines()
        .find(|l| l.starts_with("X-Spam-Status:"))
        .unwrap_or_else(|| panic!("no X-Spam-Status: {report}"));
    let score: f64 = status
        .split("score=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no score in {status}"));
    let details = report
        .split("Content analysis details")
        .nth(1)
        .unwrap_or("");
    assert!(score < 1.0, "SpamAssassin scored {score}:{details}");
}
