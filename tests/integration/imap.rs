//! The daemon's way in for bounces through a mailbox: a real Dovecot (Debian's
//! dovecot-imapd) on loopback, started by the test with a configuration of its own, the
//! returned messages delivered into its Maildir, then `herald bounces poll`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::harness::Sandbox;

/// A Dovecot instance serving one user's Maildir on 127.0.0.1; stopped when dropped.
pub struct Dovecot {
    child: Child,
    pub port: u16,
    pub maildir: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_dovecot() -> Option<PathBuf> {
    ["/usr/sbin/dovecot", "/usr/local/sbin/dovecot"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

impl Dovecot {
    /// Starts Dovecot with user `bounces`, password `password`; `None` (with a printed skip)
    /// where it is not installed or the tests do not run as root, unless
    /// REQUIRE_DOVECOT_TESTS=1.
    pub fn start(password: &str) -> Option<Self> {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        let Some(dovecot) = find_dovecot().filter(|_| root) else {
            assert!(
                std::env::var("REQUIRE_DOVECOT_TESTS").as_deref() != Ok("1"),
                "Dovecot is required (apt-get install dovecot-imapd; the test runs it as root)"
            );
            eprintln!("SKIPPED: IMAP bounce mailbox (needs dovecot-imapd and root)");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let path = |rel: &str| dir.path().join(rel);
        for sub in [
            "run",
            "mail/bounces/new",
            "mail/bounces/cur",
            "mail/bounces/tmp",
        ] {
            std::fs::create_dir_all(path(sub)).unwrap();
        }
        // The mail processes run as nobody: the Maildir must be theirs to change.
        chmod_all(&path("mail"));
        std::fs::write(path("users"), format!("bounces:{{PLAIN}}{password}\n")).unwrap();
        let conf = format!(
            "base_dir = {run}\nstate_dir = {run}\nlog_path = {log}\nprotocols = imap\nlisten = 127.0.0.1\n\
             ssl = no\ndisable_plaintext_auth = no\nauth_mechanisms = plain login\n\
             default_internal_user = nobody\ndefault_login_user = nobody\ndefault_internal_group = nogroup\n\
             mail_location = maildir:{mail}/%u\n\
             passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%u {users}\n}}\n\
             userdb {{\n  driver = static\n  args = uid=nobody gid=nogroup home={mail}/%u\n}}\n\
             service imap-login {{\n  chroot =\n  inet_listener imap {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n  inet_listener imaps {{\n    port = 0\n  }}\n}}\n\
             service anvil {{\n  chroot =\n}}\n",
            run = path("run").display(),
            log = path("dovecot.log").display(),
            mail = path("mail").display(),
            users = path("users").display(),
        );
        std::fs::write(path("dovecot.conf"), conf).unwrap();
        let child = Command::new(dovecot)
            .args(["-F", "-c"])
            .arg(path("dovecot.conf"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "Dovecot did not start: {}",
                std::fs::read_to_string(path("dovecot.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Self {
            child,
            port,
            maildir: path("mail/bounces"),
            _dir: dir,
        })
    }

    /// Delivers a message into the INBOX, as a local delivery agent would.
    pub fn deliver(&self, name: &str, message: &str) {
        let file = self.maildir.join("new").join(name);
        std::fs::write(&file, message).unwrap();
        chmod_all(&file);
    }

    /// The messages in a folder (`""` for the INBOX), new and seen.
    pub fn count(&self, folder: &str) -> usize {
        let dir = if folder.is_empty() {
            self.maildir.clone()
        } else {
            self.maildir.join(format!(".{folder}"))
        };
        ["new", "cur"]
            .iter()
            .map(|d| std::fs::read_dir(dir.join(d)).map_or(0, |r| r.count()))
            .sum()
    }
}

fn chmod_all(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = if path.is_dir() { 0o777 } else { 0o666 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            chmod_all(&entry.unwrap().path());
        }
    }
}

#[test]
fn the_bounce_mailbox_is_read_over_imap_and_each_message_moved_once_recorded() {
    let Some(dovecot) = Dovecot::start("mailbox-pass") else {
        return;
    };
    let s: Sandbox = crate::bounces::sandbox("");
    let sent = crate::bounces::send_with_mailtos(&s);
    let verps: std::collections::HashMap<String, String> = sent
        .iter()
        .map(|(k, (v, _))| (k.clone(), v.clone()))
        .collect();
    // The mailbox is configured for reading; its password is needed from then on.
    let config = std::fs::read_to_string(s.path("herald.toml")).unwrap();
    s.write(
        "herald.toml",
        format!(
            "{config}imap_url = \"imap://bounces@127.0.0.1:{}/INBOX\"\n",
            dovecot.port
        ),
    );
    dovecot.deliver(
        "1.M1P1.host",
        &crate::bounces::dsn(&verps["reader1@example.com"], "imap-dsn", "failed", "5.1.1"),
    );
    dovecot.deliver(
        "2.M2P1.host",
        &crate::bounces::arf(&verps["reader2@example.com"], "imap-arf"),
    );
    dovecot.deliver(
        "3.M3P1.host",
        "From: reader0@example.com\r\nTo: someone@bounces.example.com\r\nSubject: Out of office\r\n\r\nAway.\r\n",
    );
    // A reader's email to their mailto unsubscribe address.
    dovecot.deliver(
        "4.M4P1.host",
        &format!(
            "From: reader3@example.com\r\nTo: <{}>\r\nSubject: unsubscribe\r\nMessage-ID: <u-imap@example.com>\r\n\r\n",
            sent["reader3@example.com"].1
        ),
    );
    let env = [
        ("HERALD_SECRET", crate::bounces::SECRET),
        ("HERALD_IMAP_PASSWORD", "mailbox-pass"),
    ];
    let run = s.herald_env(&["bounces", "poll", "--json"], &env);
    assert_eq!(run.code, 0, "{run:?}");
    let c: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        (
            c["messages"].as_u64(),
            c["hard_bounces"].as_u64(),
            c["complaints"].as_u64(),
            c["unsubscribes"].as_u64(),
            c["ignored"].as_u64()
        ),
        (Some(4), Some(1), Some(1), Some(1), Some(1)),
        "{c}"
    );
    assert_eq!(crate::bounces::status(&s, "reader1@example.com"), "bounced");
    assert_eq!(
        crate::bounces::status(&s, "reader2@example.com"),
        "unsubscribed"
    );
    // Every message left the INBOX for the processed folder.
    assert_eq!(dovecot.count(""), 0);
    assert_eq!(dovecot.count("Processed"), 4);
    // The next poll finds nothing.
    let again = s.herald_env(&["bounces", "poll", "--json"], &env);
    let c: serde_json::Value = serde_json::from_str(&again.stdout).unwrap();
    assert_eq!(c["messages"], 0, "{again:?}");

    // A wrong password is an error that never shows the password.
    dovecot.deliver(
        "5.M5P1.host",
        &crate::bounces::dsn(
            &verps["reader0@example.com"],
            "imap-dsn-2",
            "failed",
            "5.1.1",
        ),
    );
    let refused = s.herald_env(
        &["bounces", "poll"],
        &[
            ("HERALD_SECRET", crate::bounces::SECRET),
            ("HERALD_IMAP_PASSWORD", "wrong-pass"),
        ],
    );
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(refused.stderr.contains("LOGIN"), "{refused:?}");
    assert!(!refused.stderr.contains("wrong-pass"), "{refused:?}");
    assert_eq!(dovecot.count(""), 1, "nothing is taken out of the mailbox");
    assert_eq!(
        crate::bounces::status(&s, "reader0@example.com"),
        "confirmed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_reads_the_bounce_mailbox_on_its_own() {
    let Some(dovecot) = Dovecot::start("daemon-pass") else {
        return;
    };
    let s: Sandbox = crate::bounces::sandbox("");
    let verps = crate::bounces::send(&s);
    dovecot.deliver(
        "1.M1P1.host",
        &crate::bounces::dsn(
            &verps["reader0@example.com"],
            "daemon-dsn",
            "failed",
            "5.1.1",
        ),
    );
    let extra = format!(
        "\n[bounces]\ndomain = \"bounces.example.com\"\nimap_url = \"imap://bounces@127.0.0.1:{}/INBOX\"\nimap_poll_seconds = 5\n",
        dovecot.port
    );
    let env = [
        ("HERALD_SECRET", crate::bounces::SECRET),
        ("HERALD_IMAP_PASSWORD", "daemon-pass"),
    ];
    let (_base, stop, handle) = crate::daemon::start_with(
        &s,
        &extra,
        &env,
        std::sync::Arc::new(herald::clock::SystemClock),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while dovecot.count("") > 0 {
        assert!(
            Instant::now() < deadline,
            "the daemon did not read the mailbox"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    handle.await.unwrap();
    assert_eq!(crate::bounces::status(&s, "reader0@example.com"), "bounced");
    assert_eq!(dovecot.count("Processed"), 1);
}
