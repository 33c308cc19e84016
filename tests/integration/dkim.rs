//! DKIM: a signed message verifies with an independent verifier (mail-auth), and a changed
//! message does not.

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
        head.contains("DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=herald;"),
        "{head}"
    );
    let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
    assert!(unfolded.contains("c=relaxed/relaxed"), "{unfolded}");
    assert!(
        unfolded
            .contains("h=from:to:subject:date:message-id:list-unsubscribe:list-unsubscribe-post;"),
        "{unfolded}"
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

    // Change one signed header: the signature no longer verifies.
    let tampered = text.replacen("Subject: ", "Subject: Re: ", 1).into_bytes();
    let parsed = AuthenticatedMessage::parse(&tampered).unwrap();
    let results = authenticator
        .verify_dkim(Parameters::new(&parsed).with_txt_cache(&cache))
        .await;
    assert_ne!(results[0].result(), &DkimResult::Pass);
}
