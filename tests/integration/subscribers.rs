//! Subscriber files and commands: CSV edge cases, suppression, header injection.

use serde_json::Value;

use crate::harness::Sandbox;

fn list(s: &Sandbox) -> Vec<Value> {
    let run = s.herald(&["subscribers", "list", "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    serde_json::from_str::<Value>(&run.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn find<'a>(list: &'a [Value], email: &str) -> &'a Value {
    list.iter()
        .find(|v| v["email"].as_str().unwrap().eq_ignore_ascii_case(email))
        .unwrap_or_else(|| panic!("{email} not in {list:?}"))
}

#[test]
fn import_handles_bom_crlf_quotes_case_duplicates_and_bad_rows() {
    let s = Sandbox::new();
    let csv = "\u{feff}email,name,status\r\n\
               ada@example.com,\"Lovelace, Ada\",\r\n\
               not-an-address,Nobody,\r\n\
               ADA@Example.com,Ada Again,\r\n\
               grace@example.com,Grace,pending\r\n\
               bob@example.com,Bob,sleeping\r\n\
               \"eve@example.com\",\"Eve\r\nBcc: x@evil.test\",\r\n";
    s.write("list.csv", csv);
    let run = s.herald(&["subscribers", "import", "list.csv"]);
    assert_eq!(run.code, 1, "rejected rows make the import exit 1: {run:?}");
    assert!(
        run.stdout
            .contains("list.csv:3: rejected: `not-an-address`"),
        "{run:?}"
    );
    assert!(
        run.stdout
            .contains("list.csv:4: rejected: `ADA@example.com` duplicates line 2"),
        "{run:?}"
    );
    assert!(
        run.stdout
            .contains("list.csv:6: rejected: unknown status `sleeping`"),
        "{run:?}"
    );
    assert!(
        run.stdout
            .contains("added 3, updated 0, unchanged 0, suppressed 0, rejected 3"),
        "{run:?}"
    );

    let subscribers = list(&s);
    assert_eq!(subscribers.len(), 3);
    assert_eq!(
        find(&subscribers, "ada@example.com")["name"],
        "Lovelace, Ada"
    );
    assert_eq!(find(&subscribers, "ada@example.com")["status"], "confirmed");
    assert_eq!(find(&subscribers, "grace@example.com")["status"], "pending");
    let eve = find(&subscribers, "eve@example.com");
    assert_eq!(
        eve["name"], "Eve Bcc: x@evil.test",
        "CR/LF is gone from the name"
    );
    assert!(!eve["name"].as_str().unwrap().contains(['\r', '\n']));
}

#[test]
fn import_is_idempotent_and_reports_updates() {
    let s = Sandbox::new();
    s.write(
        "a.csv",
        "email,name\na@example.com,Ann\nb@example.com,Ben\n",
    );
    assert_eq!(s.herald(&["subscribers", "import", "a.csv"]).code, 0);
    let again = s.herald(&["subscribers", "import", "a.csv"]);
    assert!(
        again
            .stdout
            .contains("added 0, updated 0, unchanged 2, suppressed 0, rejected 0"),
        "{again:?}"
    );
    s.write("a.csv", "email,name\nA@EXAMPLE.COM,Anne\nb@example.com,\n");
    let renamed = s.herald(&["subscribers", "import", "a.csv"]);
    assert!(
        renamed.stdout.contains("added 0, updated 1, unchanged 1"),
        "{renamed:?}"
    );
    let subscribers = list(&s);
    assert_eq!(subscribers.len(), 2);
    assert_eq!(find(&subscribers, "a@example.com")["name"], "Anne");
    assert_eq!(
        find(&subscribers, "b@example.com")["name"],
        "Ben",
        "an empty name keeps the stored one"
    );
}

#[test]
fn reimport_never_reactivates_an_unsubscribed_or_bounced_address() {
    let s = Sandbox::new();
    s.write(
        "a.csv",
        "email,name\na@example.com,Ann\nb@example.com,Ben\n",
    );
    assert_eq!(s.herald(&["subscribers", "import", "a.csv"]).code, 0);
    assert_eq!(
        s.herald(&["subscribers", "remove", "a@example.com"]).code,
        0
    );
    s.write(
        "bounce.csv",
        "email,name,status\nb@example.com,Ben,bounced\n",
    );
    assert_eq!(s.herald(&["subscribers", "import", "bounce.csv"]).code, 0);

    s.write(
        "a.csv",
        "email,name,status\na@example.com,Ann,confirmed\nb@example.com,Ben,\n",
    );
    let run = s.herald(&["subscribers", "import", "a.csv"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .contains("added 0, updated 0, unchanged 0, suppressed 2"),
        "{run:?}"
    );
    let subscribers = list(&s);
    assert_eq!(
        find(&subscribers, "a@example.com")["status"],
        "unsubscribed"
    );
    assert_eq!(find(&subscribers, "b@example.com")["status"], "bounced");

    // `add` respects suppression too, unless the operator says the person asked to return.
    let add = s.herald(&["subscribers", "add", "a@example.com"]);
    assert_eq!(add.code, 1, "{add:?}");
    assert!(
        add.stderr.contains("a@example.com is unsubscribed"),
        "{add:?}"
    );
    let add = s.herald(&["subscribers", "add", "a@example.com", "--resubscribe"]);
    assert_eq!(add.code, 0, "{add:?}");
    assert_eq!(find(&list(&s), "a@example.com")["status"], "confirmed");
}

#[test]
fn add_remove_list_and_export_work_together() {
    let s = Sandbox::new();
    let add = s.herald(&[
        "subscribers",
        "add",
        "Zoe@Example.com",
        "--name",
        "Zoë \u{7}Quinn",
    ]);
    assert_eq!(add.code, 0, "{add:?}");
    assert_eq!(
        s.herald(&["subscribers", "add", "x@bücher.example"]).code,
        0
    );
    let bad = s.herald(&["subscribers", "add", "x@y@"]);
    assert_eq!(bad.code, 1, "{bad:?}");
    assert!(bad.stderr.contains("is not a valid address"), "{bad:?}");

    assert_eq!(
        s.herald(&["subscribers", "remove", "zoe@example.com"]).code,
        0
    );
    assert_eq!(
        s.herald(&["subscribers", "remove", "nobody@example.com"])
            .code,
        1
    );

    let confirmed = s.herald(&["subscribers", "list", "--status", "confirmed", "--json"]);
    let confirmed: Vec<Value> = serde_json::from_str(&confirmed.stdout).unwrap();
    assert_eq!(confirmed.len(), 1);
    // Stored in its IDNA form, so that both spellings are one subscriber.
    assert_eq!(confirmed[0]["email"], "x@xn--bcher-kva.example");
    assert_eq!(
        s.herald(&["subscribers", "list", "--status", "active"])
            .code,
        1
    );

    let export = s.herald(&["subscribers", "export"]);
    assert_eq!(export.code, 0, "{export:?}");
    let mut reader = csv::Reader::from_reader(export.stdout.as_bytes());
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(reader.headers().unwrap(), vec!["email", "name", "status"]);
    assert_eq!(rows.len(), 2);
    assert_eq!(&rows[0][0], "Zoe@example.com");
    assert_eq!(&rows[0][1], "Zoë Quinn");
    assert_eq!(&rows[0][2], "unsubscribed");
}

#[test]
fn check_reports_bad_subscriber_rows_and_counts_by_status() {
    let s = Sandbox::new();
    s.write(
        "subscribers/list.csv",
        "email,name\nok@example.com,Ok\nbroken,Bad\n",
    );
    let run = s.herald(&["check"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout
            .contains("subscribers/list.csv:3: rejected: `broken`"),
        "{run:?}"
    );

    s.write("subscribers/list.csv", "email,name\nok@example.com,Ok\n");
    assert_eq!(
        s.herald(&["subscribers", "import", "subscribers/list.csv"])
            .code,
        0
    );
    let run = s.herald(&["check"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .contains("subscribers: 0 pending, 1 confirmed, 0 unsubscribed, 0 bounced"),
        "{run:?}"
    );
}

/// The first line of the plain-text part of each message in the outbox, by recipient.
fn greetings(s: &Sandbox) -> std::collections::BTreeMap<String, String> {
    std::fs::read_dir(s.path("outbox"))
        .unwrap()
        .map(|e| {
            let raw = std::fs::read(e.unwrap().path()).unwrap();
            let parsed = mail_parser::MessageParser::default().parse(&raw).unwrap();
            let to = parsed
                .to()
                .unwrap()
                .first()
                .unwrap()
                .address()
                .unwrap()
                .to_owned();
            let text = parsed.body_text(0).unwrap().into_owned();
            let line = text
                .lines()
                .find(|l| l.starts_with("Hi") || l.starts_with("Hello"))
                .unwrap_or_default()
                .to_owned();
            (to, line)
        })
        .collect()
}

#[test]
fn subscribers_are_greeted_by_first_name_and_never_by_a_name_with_a_comma() {
    let s = Sandbox::new();
    s.write(
        "subscribers/list.csv",
        "email,name,first_name\ngrace@example.com,\"Hopper, Grace\",Grace\nada@example.com,Ada Lovelace,\nalan@example.com,\"Turing, Alan\",\nanon@example.com,,\n",
    );
    let run = s.herald(&["send"]);
    assert_eq!(run.code, 0, "{run:?}");
    let got = greetings(&s);
    assert_eq!(got["grace@example.com"], "Hi Grace,");
    assert_eq!(got["ada@example.com"], "Hi Ada Lovelace,");
    assert_eq!(got["alan@example.com"], "Hi,", "never \"Hi Turing, Alan,\"");
    assert_eq!(got["anon@example.com"], "Hello,");
    let grace = find(&list(&s), "grace@example.com").clone();
    assert_eq!(grace["first_name"], "Grace");
}

#[test]
fn mailchimp_substack_and_buttondown_exports_import_as_they_are() {
    let s = Sandbox::new();
    // Mailchimp: one file per audience status, many columns of its own.
    s.write(
        "mailchimp-subscribed.csv",
        "Email Address,First Name,Last Name,MEMBER_RATING,OPTIN_TIME,OPTIN_IP,CONFIRM_TIME,CONFIRM_IP,LATITUDE,LONGITUDE,GMTOFF,DSTOFF,TIMEZONE,CC,REGION,LAST_CHANGED,LEID,EUID,NOTES,TAGS\n\
         grace@example.com,Grace,Hopper,2,2026-01-02 10:00:00,,2026-01-02 10:01:00,,,,,,,US,,2026-01-02 10:01:00,1,abc,,\"\"\n",
    );
    s.write(
        "mailchimp-unsubscribed.csv",
        "Email Address,First Name,Last Name,MEMBER_RATING,OPTIN_TIME,UNSUB_TIME,UNSUB_CAMPAIGN_TITLE,UNSUB_REASON\n\
         left@example.com,Lef,Tover,1,2026-01-02 10:00:00,2026-03-01 09:00:00,Weekly,No longer interested\n",
    );
    s.write(
        "mailchimp-cleaned.csv",
        "Email Address,First Name,Last Name,MEMBER_RATING,OPTIN_TIME,CLEAN_TIME,CLEAN_CAMPAIGN_TITLE\n\
         gone@example.com,,,1,2026-01-02 10:00:00,2026-03-01 09:00:00,Weekly\n",
    );
    // Substack.
    s.write(
        "substack.csv",
        "email,active_subscription,expiry,plan,email_disabled,created_at,first_payment_at\n\
         reader@example.com,false,,free,false,2026-02-01T00:00:00.000Z,\n\
         muted@example.com,false,,free,true,2026-02-01T00:00:00.000Z,\n",
    );
    // Buttondown.
    s.write(
        "buttondown.csv",
        "email,notes,metadata,tags,subscriber_type,creation_date,referrer_url,source\n\
         fan@example.com,,{},[],regular,2026-01-05 12:00:00,,api\n\
         new@example.com,,{},[],unactivated,2026-01-05 12:00:00,,form\n\
         bye@example.com,,{},[],unsubscribed,2026-01-05 12:00:00,,form\n",
    );
    for file in [
        "mailchimp-subscribed.csv",
        "mailchimp-unsubscribed.csv",
        "mailchimp-cleaned.csv",
        "substack.csv",
        "buttondown.csv",
    ] {
        let run = s.herald(&["subscribers", "import", file]);
        assert_eq!(run.code, 0, "{file}: {run:?}");
    }
    let all = list(&s);
    let status = |email: &str| find(&all, email)["status"].as_str().unwrap().to_owned();
    assert_eq!(status("grace@example.com"), "confirmed");
    assert_eq!(find(&all, "grace@example.com")["name"], "Grace Hopper");
    assert_eq!(find(&all, "grace@example.com")["first_name"], "Grace");
    assert_eq!(status("left@example.com"), "unsubscribed");
    assert_eq!(status("gone@example.com"), "bounced");
    assert_eq!(status("reader@example.com"), "confirmed");
    assert_eq!(status("muted@example.com"), "unsubscribed");
    assert_eq!(status("fan@example.com"), "confirmed");
    assert_eq!(status("new@example.com"), "pending");
    assert_eq!(status("bye@example.com"), "unsubscribed");

    // A Herald file with a column nobody knows is still refused: probably a typo.
    s.write("typo.csv", "email,nmae\nx@example.com,X\n");
    let typo = s.herald(&["subscribers", "import", "typo.csv"]);
    assert_ne!(typo.code, 0, "{typo:?}");
    assert!(typo.all().contains("unknown column `nmae`"), "{typo:?}");
}

#[test]
fn an_export_never_hands_a_spreadsheet_a_formula() {
    let s = Sandbox::new();
    for (email, name) in [
        (
            "a@example.com",
            "=HYPERLINK(\"https://evil.example\",\"x\")",
        ),
        ("b@example.com", "+1 (555) 123"),
        ("c@example.com", "@SUM(A1)"),
        ("d@example.com", "-2+3"),
        ("e@example.com", "Plain Name"),
    ] {
        let run = s.herald(&["subscribers", "add", email, &format!("--name={name}")]);
        assert_eq!(run.code, 0, "{run:?}");
    }
    let export = s.herald(&["subscribers", "export"]);
    assert_eq!(export.code, 0, "{export:?}");
    let mut reader = csv::Reader::from_reader(export.stdout.as_bytes());
    let names: Vec<String> = reader.records().map(|r| r.unwrap()[1].to_owned()).collect();
    for name in &names {
        assert!(
            !name.starts_with(['=', '+', '-', '@']),
            "a formula cell: {name}"
        );
    }
    assert!(names.contains(&"'=HYPERLINK(\"https://evil.example\",\"x\")".to_owned()));
    assert!(names.contains(&"Plain Name".to_owned()));
}

#[test]
fn one_mailbox_is_one_subscriber_whatever_its_domain_spelling_or_invisible_characters() {
    let s = Sandbox::new();
    s.write(
        "list.csv",
        "email,name\nuser@m\u{fc}nchen.de,Unicode\nuser@xn--mnchen-3ya.de,Punycode\nus\u{200B}er@example.com,Invisible\nadmin@10.0.0.1,IP\n",
    );
    let run = s.herald(&["subscribers", "import", "list.csv"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout
            .contains("list.csv:3: rejected: `user@xn--mnchen-3ya.de` duplicates line 2"),
        "{run:?}"
    );
    assert!(run.stdout.contains("list.csv:4: rejected:"), "{run:?}");
    assert!(run.stdout.contains("invisible character U+200B"), "{run:?}");
    assert!(run.stdout.contains("list.csv:5: rejected:"), "{run:?}");
    assert!(run.stdout.contains("is an IP address"), "{run:?}");
    assert_eq!(list(&s).len(), 1);
}

/// `herald send` imports a subscriber file only when its content changed since the last
/// import; a large file is imported in batches with the same outcome as row by row.
#[test]
fn an_unchanged_subscriber_file_is_not_imported_again_and_a_changed_one_is() {
    let s = Sandbox::new();
    let mut csv = String::from("email,name,first_name\n");
    for i in 0..1_203 {
        csv.push_str(&format!("reader{i}@example.com,Reader {i},R{i}\n"));
    }
    // A duplicate in a later batch is reported, not imported over the first.
    csv.push_str("READER7@example.com,Seven,\n");
    s.write("subscribers/list.csv", &csv);

    let first = s.herald(&["send"]);
    assert_eq!(first.code, 0, "{first:?}");
    assert!(
        first.stderr.contains("imported a subscriber file"),
        "{first:?}"
    );
    let all = list(&s);
    assert_eq!(all.len(), 1_203);
    assert!(first.stderr.contains("rejected=1"), "{first:?}");
    assert_eq!(find(&all, "reader7@example.com")["name"], "Reader 7");
    assert_eq!(find(&all, "reader1202@example.com")["first_name"], "R1202");

    // Unchanged: skipped, and an address the operator unsubscribed stays so.
    let unsub = s.herald(&["subscribers", "remove", "reader3@example.com"]);
    assert_eq!(unsub.code, 0, "{unsub:?}");
    let second = s.herald(&["send"]);
    assert_eq!(second.code, 0, "{second:?}");
    assert!(
        second.stderr.contains("unchanged since its last import"),
        "{second:?}"
    );
    assert!(
        !second.stderr.contains("imported a subscriber file"),
        "{second:?}"
    );

    // Changed: imported (one row added), with the suppression rule still applied.
    csv.push_str("newcomer@example.com,New,\n");
    s.write("subscribers/list.csv", &csv);
    let third = s.herald(&["send"]);
    assert_eq!(third.code, 0, "{third:?}");
    assert!(third.stderr.contains("added=1"), "{third:?}");
    let all = list(&s);
    assert_eq!(all.len(), 1_204);
    assert_eq!(find(&all, "reader3@example.com")["status"], "unsubscribed");
}

/// `herald subscribers import` of a file in `subscribers/` records it as imported: the next
/// send does not read it again. A file elsewhere is imported and not recorded.
#[test]
fn a_file_imported_by_hand_from_the_subscribers_directory_is_not_imported_again_by_the_send() {
    let s = Sandbox::new();
    s.write(
        "subscribers/list.csv",
        "email,name\nann@example.com,Ann\nbob@example.com,Bob\n",
    );
    let imported = s.herald(&["subscribers", "import", "subscribers/list.csv"]);
    assert_eq!(imported.code, 0, "{imported:?}");
    assert!(imported.stdout.contains("added 2"), "{imported:?}");
    let send = s.herald(&["send"]);
    assert_eq!(send.code, 0, "{send:?}");
    assert!(
        send.stderr.contains("unchanged since its last import"),
        "{send:?}"
    );
    assert!(
        !send.stderr.contains("imported a subscriber file"),
        "{send:?}"
    );

    // A file outside the directory is not one the send reads: nothing is recorded for it,
    // and a changed file in the directory is imported again.
    s.write("elsewhere.csv", "email,name\ncy@example.com,Cy\n");
    let other = s.herald(&["subscribers", "import", "elsewhere.csv"]);
    assert_eq!(other.code, 0, "{other:?}");
    s.write(
        "subscribers/list.csv",
        "email,name\nann@example.com,Ann\nbob@example.com,Bob\ndee@example.com,Dee\n",
    );
    let second = s.herald(&["send"]);
    assert!(second.stderr.contains("added=1"), "{second:?}");
}

/// A large import before a send never lets the sender lease lapse: the import goes in short
/// transactions and this process's writers take turns, so the heartbeat (every quarter of a
/// 2-second lease here) renews it between two batches.
#[test]
fn the_sender_lease_is_held_throughout_a_large_import() {
    let s = Sandbox::new();
    let mut csv = String::from("email,name,status\n");
    for i in 0..100_000 {
        // Mostly former subscribers: the import does all the work, the send little.
        let status = if i % 10_000 == 0 {
            "confirmed"
        } else {
            "unsubscribed"
        };
        csv.push_str(&format!("reader{i}@example.com,Reader {i},{status}\n"));
    }
    s.write("subscribers/big.csv", &csv);
    s.write(
        "herald.toml",
        format!(
            "{}\n[delivery]\nlease_seconds = 2\n",
            crate::harness::CONFIG
        ),
    );
    // The database exists before the send starts, so the lease can be watched from the start.
    assert_eq!(s.herald(&["subscribers", "list", "--json"]).code, 0);
    let mut send = s
        .command(&["send"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = send.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut text).unwrap();
        text
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(s.db());
    let mut renewals = std::collections::BTreeSet::new();
    let mut holder_seen = None::<String>;
    while send.try_wait().unwrap().is_none() {
        let lease = rt.block_on(db.lease("sender"));
        let now = herald::clock::Clock::now(&herald::clock::SystemClock);
        // Checked only while the send still runs (it releases the lease as it ends).
        if let Some((holder, expires)) = lease
            && send.try_wait().unwrap().is_none()
        {
            assert_eq!(
                holder_seen.get_or_insert_with(|| holder.clone()),
                &holder,
                "the lease changed hands"
            );
            assert!(
                expires > now,
                "the lease lapsed while the send ran (expired {expires}, now {now})"
            );
            renewals.insert(expires);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let status = send.wait().unwrap();
    let log = log.join().unwrap();
    assert!(status.success(), "{log}");
    // The heartbeat renewed the lease (every half second) several times while the import
    // ran: each renewal is a new expiry time, and none of them had passed when it was seen.
    assert!(
        renewals.len() >= 3,
        "the send was too quick to tell: {} expiry times seen",
        renewals.len()
    );
    assert!(log.contains("added=100000"), "{log}");
}
