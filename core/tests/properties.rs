//! Property tests for everything that parses text from outside: whatever the input, no panic,
//! and the guarantees each parser gives hold. Bounded (256 cases each by default), so they run
//! in every `cargo test`.

use std::path::Path;

use herald_core::domain::{EmailAddress, Purpose, SigningKey};
use herald_core::glossary::parse_term;
use herald_core::news::{canonical_url, clean_text, without_tracking};
use herald_core::subscriber_file;
use proptest::prelude::*;

proptest! {
    #[test]
    fn an_accepted_address_is_normalised_once_and_lettre_accepts_it(input in ".{0,80}") {
        if let Ok(address) = EmailAddress::parse(&input) {
            // Parsing the normalised form again gives the same address.
            let again = EmailAddress::parse(address.as_str()).expect("a normalised address parses");
            prop_assert_eq!(again.as_str(), address.as_str());
            prop_assert_eq!(again.key(), address.key());
            // It has no white space, control or invisible character, and the domain is ASCII.
            prop_assert!(!address.as_str().chars().any(|c| c.is_whitespace() || c.is_control()));
            prop_assert!(address.domain().is_ascii());
            // The mail library takes it as it is.
            let parsed = address.as_str().parse::<lettre::Address>();
            prop_assert!(parsed.is_ok(), "lettre refuses {}: {:?}", address, parsed);
        }
    }

    #[test]
    fn address_like_input_never_panics(local in "[a-zA-Z0-9._%+\\-\u{80}-\u{2FFF}]{0,70}", domain in "[a-zA-Z0-9.\\-\u{80}-\u{2FFF}\\[\\]:]{0,70}") {
        let _ = EmailAddress::parse(&format!("{local}@{domain}"));
    }

    #[test]
    fn canonical_urls_are_idempotent(path in "[a-z0-9/._~%-]{0,30}", query in "([a-z_]{1,8}=[a-z0-9%]{0,6}&?){0,5}", fragment in "[a-z0-9]{0,8}") {
        let raw = format!("HTTPS://Example.COM:443/{path}?{query}#{fragment}");
        if let Ok(url) = url::Url::parse(&raw) {
            let once = canonical_url(&url);
            let twice = canonical_url(&url::Url::parse(&once).expect("a canonical URL parses"));
            prop_assert_eq!(&once, &twice);
            prop_assert!(!once.contains("utm_") && !once.contains('#'));
            let clean = without_tracking(&url);
            prop_assert_eq!(without_tracking(&clean), clean);
        }
    }

    #[test]
    fn clean_text_never_panics_and_leaves_no_tags(input in ".{0,200}") {
        let text = clean_text(&input);
        prop_assert!(!text.contains('\u{202E}'), "a bidi override survived");
        prop_assert!(!text.starts_with(' ') && !text.ends_with(' '));
    }

    #[test]
    fn any_term_file_parses_or_reports_without_panicking(front in "[a-z =\"\\[\\],\n+]{0,200}", body in ".{0,200}") {
        let text = format!("+++\n{front}\n+++\n{body}");
        let _ = parse_term(Path::new("glossary/x.md"), &text);
        let _ = parse_term(Path::new("glossary/x.md"), &front);
    }

    #[test]
    fn any_subscriber_file_parses_or_reports_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = subscriber_file::parse(&bytes);
        let mut csv = b"email,name,status\n".to_vec();
        csv.extend_from_slice(&bytes);
        if let Ok(file) = subscriber_file::parse(&csv) {
            for row in file.rows {
                prop_assert!(!row.name.as_str().contains(['\r', '\n']));
            }
        }
    }

    #[test]
    fn a_token_decodes_only_when_it_was_signed(token in "[A-Za-z0-9_\\-]{0,60}", subject in 0i64..1_000_000, issued in 0i64..4_000_000_000) {
        let key = SigningKey::new("property-test-key-0123456789abcdef");
        prop_assert!(key.verify(Purpose::Unsubscribe, &token).is_none() || token.len() == 44);
        let signed = key.sign(Purpose::Confirm, subject, issued);
        let claims = key.verify(Purpose::Confirm, &signed).expect("a signed token verifies");
        prop_assert_eq!(claims.subject, subject);
        prop_assert!(key.verify(Purpose::Unsubscribe, &signed).is_none(), "purposes do not mix");
    }
}
