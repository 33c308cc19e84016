//! `herald preview`: the next issue as files, deterministic, recording nothing.

use crate::harness::Sandbox;

#[tokio::test]
async fn preview_writes_three_files_twice_identically_and_records_nothing() {
    let s = Sandbox::new();
    s.write(
        "subscribers/list.csv",
        "email,name\nada@example.com,Ada Lovelace\n",
    );
    assert_eq!(
        s.herald(&["subscribers", "import", "subscribers/list.csv"])
            .code,
        0
    );
    let first = s.herald(&["preview", "--out", "one"]);
    assert_eq!(first.code, 0, "{first:?}");
    let second = s.herald(&["preview", "--out", "two"]);
    assert_eq!(second.code, 0, "{second:?}");
    for file in ["issue.html", "issue.txt", "issue.eml"] {
        let a = std::fs::read(s.path(&format!("one/{file}"))).unwrap();
        let b = std::fs::read(s.path(&format!("two/{file}"))).unwrap();
        assert!(!a.is_empty());
        assert_eq!(a, b, "{file} differs between two previews");
    }
    assert!(first.stdout.contains("subject:  "), "{first:?}");
    assert!(first.stdout.contains("sizes:    html "), "{first:?}");
    let text = std::fs::read_to_string(s.path("one/issue.txt")).unwrap();
    assert!(
        text.contains("Hi Ada Lovelace,"),
        "the first confirmed subscriber by default"
    );

    let db = s.db().await;
    for table in ["issues", "terms_sent", "links_sent", "deliveries"] {
        let n = db.i64(&format!("SELECT COUNT(*) FROM {table}")).await;
        assert_eq!(n, 0, "preview recorded rows in {table}");
    }
    db.close().await;
}

#[test]
fn preview_takes_a_term_and_a_subscriber() {
    let s = Sandbox::new();
    let run = s.herald(&[
        "preview",
        "--term",
        "RAG",
        "--subscriber",
        "zoe@example.com",
        "--out",
        "p",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .contains("term:     Retrieval-augmented generation (retrieval-augmented-generation"),
        "{run:?}"
    );
    let eml = std::fs::read_to_string(s.path("p/issue.eml")).unwrap();
    assert!(eml.contains("To: zoe@example.com"), "{eml}");
    let unknown = s.herald(&["preview", "--term", "no-such-term"]);
    assert_eq!(unknown.code, 1, "{unknown:?}");
    assert!(
        unknown.stderr.contains("no term `no-such-term`"),
        "{unknown:?}"
    );
}

#[test]
fn queue_add_list_remove_and_the_preview_honours_it() {
    let s = Sandbox::new();
    assert_eq!(s.herald(&["queue", "add", "LoRA"]).code, 0);
    let list = s.herald(&["queue", "list", "--json"]);
    let items: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(items[0]["slug"], "lora");
    let preview = s.herald(&["preview", "--out", "p"]);
    assert!(
        preview.stdout.contains("term:     LoRA (lora"),
        "{preview:?}"
    );
    let bad = s.herald(&["queue", "add", "nothing-like-it"]);
    assert_eq!(bad.code, 1);
    assert_eq!(s.herald(&["queue", "remove", "lora"]).code, 0);
    assert_eq!(s.herald(&["queue", "remove", "lora"]).code, 1);

    s.write(
        "herald.toml",
        format!(
            "{}\n[schedule]\nqueue = [\"no-such-slug\"]\n",
            crate::harness::CONFIG
        ),
    );
    let check = s.herald(&["check"]);
    assert_eq!(check.code, 1, "{check:?}");
    assert!(
        check
            .stdout
            .contains("`schedule.queue[0]`: unknown term `no-such-slug`"),
        "{check:?}"
    );
}

#[test]
fn a_term_sent_in_this_cycle_is_not_queued_again_unless_for_the_next_cycle() {
    let s = Sandbox::new();
    s.write(
        "subscribers/list.csv",
        "email,name\nreader@example.com,Reader\n",
    );
    assert_eq!(s.herald(&["queue", "add", "LoRA"]).code, 0);
    let sent = s.herald(&["send"]);
    assert_eq!(sent.code, 0, "{sent:?}");
    assert!(sent.stdout.contains("issue #1: LoRA"), "{sent:?}");

    let again = s.herald(&["queue", "add", "lora"]);
    assert_eq!(again.code, 1, "{again:?}");
    assert!(
        again.stderr.contains("`lora` was already sent in cycle 1")
            && again.stderr.contains("--next-cycle"),
        "{again:?}"
    );
    let list = s.herald(&["queue", "list", "--json"]);
    assert_eq!(list.stdout.trim(), "[]", "nothing was queued: {list:?}");

    // Asked for the next cycle, it is queued first, and the preview says why it waits.
    assert_eq!(s.herald(&["queue", "add", "dropout"]).code, 0);
    let next = s.herald(&["queue", "add", "lora", "--next-cycle"]);
    assert_eq!(next.code, 0, "{next:?}");
    assert!(next.stdout.contains("first for the next cycle"), "{next:?}");
    let items: serde_json::Value =
        serde_json::from_str(&s.herald(&["queue", "list", "--json"]).stdout).unwrap();
    assert_eq!(items[0]["slug"], "lora");
    assert_eq!(items[1]["slug"], "dropout");
    let preview = s.herald(&["preview", "--out", "p"]);
    assert!(
        preview.stdout.contains("term:     Dropout (dropout"),
        "{preview:?}"
    );
    assert!(
        preview.stdout.contains(
            "note:     queued term `lora` was skipped: it was already sent in cycle 1; it comes first in the next cycle"
        ),
        "{preview:?}"
    );
}

/// A glossary of three terms that relate to each other.
fn tiny_glossary(s: &Sandbox) {
    std::fs::remove_dir_all(s.path("glossary")).unwrap();
    for (slug, name, others) in [
        ("alpha", "Alpha", "\"beta\", \"gamma\""),
        ("beta", "Beta", "\"alpha\", \"gamma\""),
        ("gamma", "Gamma", "\"alpha\", \"beta\""),
    ] {
        s.write(
            &format!("glossary/{slug}.md"),
            format!(
                "+++\nterm = \"{name}\"\ncategory = \"Fundamentals\"\nrelated = [{others}]\nexample = \"We used {name} today.\"\nsummary = \"What {name} means, in one sentence for the test.\"\n+++\n\n{}\n",
                "Words about the term. ".repeat(40)
            ),
        );
    }
}

#[test]
fn check_preview_and_metrics_say_when_terms_or_links_run_short() {
    let s = Sandbox::new();
    tiny_glossary(&s);
    s.write(
        "news/curated.toml",
        "[[link]]\ntitle = \"The one curated story\"\nurl = \"https://news.example/one\"\n",
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    s.write(
        "herald.toml",
        format!(
            "{}\n[news]\ncurated = \"news/curated.toml\"\nmin_links = 3\n\n[[news.feeds]]\nname = \"Down\"\nurl = \"http://127.0.0.1:{}/feed\"\n",
            crate::harness::CONFIG,
            closed.port()
        ),
    );
    // The feed fails once, as a real fetch would record it.
    assert_eq!(s.herald(&["feeds", "--fetch"]).code, 0);

    let check = s.herald(&["check", "--offline"]);
    assert_eq!(check.code, 0, "warnings do not fail the check: {check:?}");
    for warning in [
        "warning: only 3 terms remain unsent in cycle 1: add terms to the glossary",
        "warning: the next issue would carry 1 links, fewer than [news] min_links = 3",
        "warning: only 1 curated links remain unsent and 1 feeds are failing",
    ] {
        assert!(check.stdout.contains(warning), "{warning}\n{check:?}");
    }
    let preview = s.herald(&["preview", "--out", "p"]);
    assert!(
        preview
            .stdout
            .contains("warning:  the issue carries 1 links, fewer than [news] min_links = 3"),
        "{preview:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_preview_shows_the_issue_reloads_on_edits_and_survives_broken_files() {
    use std::io::BufRead as _;

    let s = Sandbox::new();
    s.write(
        "subscribers/list.csv",
        "email,name\nreader@example.com,Reader\n",
    );
    assert_eq!(
        s.herald(&["subscribers", "import", "subscribers/list.csv"])
            .code,
        0
    );
    let mut child = s
        .command(&["preview", "--serve", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let base = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .to_owned();
    let http = crate::harness::http_client();
    let get = |path: &str| {
        let http = http.clone();
        let url = format!("{base}{}", path.trim_start_matches('/'));
        async move { http.get(url).send().await.unwrap().text().await.unwrap() }
    };

    let page = get("/").await;
    for part in [
        "Desktop (800 px)",
        "Phone (375 px)",
        "Text part",
        "Subject:",
        "reader@example.com",
        "EventSource('/events')",
    ] {
        assert!(page.contains(part), "{part}: {page:.500}");
    }
    let term = page[page.find("term: ").unwrap() + 6..]
        .split(" &middot;")
        .next()
        .unwrap()
        .to_owned();
    let (glossary, _) = herald::files::load_glossary(&s.path("glossary"));
    let featured = glossary
        .find(&term)
        .expect("the page names a glossary term")
        .clone();

    // Edit the featured term: the page's event stream says reload, and the issue has the edit.
    let mut events = http.get(format!("{base}events")).send().await.unwrap();
    let text = std::fs::read_to_string(&featured.path).unwrap();
    std::fs::write(
        &featured.path,
        text.replacen(
            &featured.summary,
            "An edited summary the live preview must show.",
            1,
        ),
    )
    .unwrap();
    let reload = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            let chunk = events
                .chunk()
                .await
                .unwrap()
                .expect("the stream stays open");
            if String::from_utf8_lossy(&chunk).contains("data: reload") {
                break;
            }
        }
    })
    .await;
    assert!(reload.is_ok(), "no reload event after the edit");
    assert!(
        get("/issue.html")
            .await
            .contains("An edited summary the live preview must show.")
    );

    // A broken template shows on the page with its name; the server keeps serving.
    let good = std::fs::read_to_string(s.path("templates/issue.txt")).unwrap();
    s.write("templates/issue.txt", "{{ no_such_variable }}");
    let broken = get("/").await;
    assert!(
        broken.contains("The next issue cannot be made"),
        "{broken:.600}"
    );
    assert!(broken.contains("issue.txt"), "{broken:.600}");
    s.write("templates/issue.txt", good);
    assert!(get("/").await.contains("Desktop (800 px)"));

    child.kill().unwrap();
    child.wait().unwrap();
}
