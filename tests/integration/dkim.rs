//! DKIM: a signed message verifies with two independent verifiers (mail-auth, and Debian's
//! dkimpy), and a changed message does not: a changed Subject, a second Subject, an added
//! Reply-To.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{TimeZone, Utc};
use herald::compose::{Addressee, Sender, dkim_signer, personal_message};
use herald::domain::{EmailAddress, Mailbox, SigningKey};
use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::verify::DomainKey;
use mail_auth::{
    AuthenticatedMessage, DkimResult, MessageAuthenticator, Parameters, ResolverCache, Txt,
};

use crate::harness::repo;

/// A DNS TXT cache filled by the test: the verifier never touches the network.
struct MapCache(Mutex<HashMap<Box<str>, Txt>>);

impl ResolverCache<Box<str>, Txt> for MapCache {
    fn get<Q>(&self, key: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.lock().unwrap().get(key).cloned()
    }
    fn remove<Q>(&self, key: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.lock().unwrap().remove(key)
    }
    fn insert(&self, key: Box<str>, value: Txt, _: Instant) {
        self.0.lock().unwrap().insert(key, value);
    }
}

#[tokio::test]
async fn a_signed_issue_verifies_with_an_independent_verifier() {
    let fixtures = repo().join("tests/fixtures/dkim");
    let pem = std::fs::read_to_string(fixtures.join("test-only-rsa.pem")).unwrap();
    let public = std::fs::read_to_string(fixtures.join("test-only-rsa.pub.b64")).unwrap();

    let renderer = herald::files::load_templates(&repo().join("templates")).unwrap();
    let (glossary, _) = herald::files::load_glossary(&repo().join("glossary"));
    let term = glossary.find("agi").unwrap().clone();
    let plan = herald::render::IssuePlan {
        number: 3,
        date: Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, 0).unwrap(),
        related: glossary.related_names(&term),
        term,
        links: Vec::new(),
    };
    let info = herald::render::NewsletterInfo {
        name: "AI Glossary Weekly".into(),
        base_url: "https://news.example.com/".into(),
        timezone: "UTC".parse().unwrap(),
        postal_address: None,
    };
    let rendered = renderer.render_issue(&plan, &info).unwrap();
    let sender = Sender {
        from: Mailbox::parse("AI Glossary Weekly <weekly@example.com>").unwrap(),
        reply_to: None,
        list_name: "AI Glossary Weekly".into(),
        base_url: "https://news.example.com/".into(),
        dkim: Some(Arc::new(
            dkim_signer("example.com", "herald", &pem).unwrap(),
        )),
        bounce_domain: None,
    };
    let to = EmailAddress::parse("reader@example.org").unwrap();
    let message = personal_message(
        "issue",
        &rendered,
        &sender,
        Addressee {
            id: 9,
            email: &to,
            name: "Zoë Reader",
            first_name: "",
        },
        &SigningKey::new("k"),
        plan.date,
    )
    .unwrap();
    let bytes = message.formatted();
    let text = String::from_utf8_lossy(&bytes);
    let head = &text[..text.find("\r\n\r\n").unwrap()];
    assert!(
        head.starts_with(
            "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com; s=herald;"
        ),
        "{head}"
    );
    let unfolded = head
        .replace("\r\n ", " ")
        .replace(":\r\n\t", ":")
        .replace("\r\n\t", " ");
    // Everything that shapes how the message is read is signed (Content-Type too), and From,
    // To, Subject and Reply-To once more than present (Reply-To is absent here).
    assert!(
        unfolded.contains(
            "h=from:from:to:to:subject:subject:date:message-id:reply-to:list-id:list-unsubscribe:\
             list-unsubscribe-post:list-archive:feedback-id:mime-version:content-type;"
        ),
        "{unfolded}"
    );
    // The signature is folded: no header line of it longer than 78 characters.
    assert!(
        head.split("\r\n")
            .enumerate()
            .take_while(|(i, l)| *i == 0 || l.starts_with('\t'))
            .all(|(_, l)| l.len() <= 78),
        "{head}"
    );

    let cache = MapCache(Mutex::new(HashMap::new()));
    let record = format!("v=DKIM1; k=rsa; p={}", public.trim());
    for name in [
        "herald._domainkey.example.com.",
        "herald._domainkey.example.com",
    ] {
        let key = DomainKey::parse(record.as_bytes()).unwrap();
        cache.insert(
            name.into(),
            Txt::from(key),
            Instant::now() + std::time::Duration::from_secs(3600),
        );
    }
    let authenticator = MessageAuthenticator::new_cloudflare().unwrap();

    let parsed = AuthenticatedMessage::parse(&bytes).unwrap();
    let results = authenticator
        .verify_dkim(Parameters::new(&parsed).with_txt_cache(&cache))
        .await;
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].result(), &DkimResult::Pass, "{:?}", results[0]);

    // Verified by a second, independent implementation: Debian's dkimpy.
    dkimpy_verifies(&bytes, &record, true);

    // Tampering: a changed Subject, a second Subject, an added Reply-To. None verifies.
    let cases = [
        (
            "a changed Subject",
            text.replacen("Subject: ", "Subject: Re: ", 1),
        ),
        (
            "a second Subject",
            text.replacen("\r\n\r\n", "\r\nSubject: You won a prize\r\n\r\n", 1),
        ),
        (
            "an added Reply-To",
            text.replacen("\r\n\r\n", "\r\nReply-To: attacker@evil.test\r\n\r\n", 1),
        ),
    ];
    for (what, tampered) in cases {
        let parsed = AuthenticatedMessage::parse(tampered.as_bytes()).unwrap();
        let results = authenticator
            .verify_dkim(Parameters::new(&parsed).with_txt_cache(&cache))
            .await;
        assert_ne!(results[0].result(), &DkimResult::Pass, "{what}");
        dkimpy_verifies(tampered.as_bytes(), &record, false);
    }
}

/// Runs dkimpy (Debian's python3-dkim, under Debian's /usr/bin/python3) on `message`, with
/// `record` as the selector's TXT record (no DNS), and checks its verdict. Skipped with a
/// message where it is missing, unless REQUIRE_DKIMPY_TESTS=1 (as CI sets).
fn dkimpy_verifies(message: &[u8], record: &str, expected: bool) {
    let python = "/usr/bin/python3";
    let available = std::process::Command::new(python)
        .args(["-c", "import dkim"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !available {
        assert!(
            std::env::var("REQUIRE_DKIMPY_TESTS").as_deref() != Ok("1"),
            "dkimpy is required (apt-get install python3-dkim)"
        );
        eprintln!("SKIPPED: dkimpy verification (apt-get install python3-dkim to run it)");
        return;
    }
    let script = r#"
import sys, dkim
record = sys.argv[1].encode()
def dns(name, timeout=5):
    return record if name == b"herald._domainkey.example.com." else None
sys.exit(0 if dkim.verify(sys.stdin.buffer.read(), dnsfunc=dns) else 1)
"#;
    let mut child = std::process::Command::new(python)
        .args(["-c", script, record])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), message).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.success(),
        expected,
        "dkimpy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
