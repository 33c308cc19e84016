//! The glossary as a website, over real HTTP: the index with search and A-Z, a page per term
//! with everything a reader and a search engine need, redirects to the canonical address,
//! the sitemap and robots.txt.

use std::sync::Arc;

use crate::daemon::start;
use crate::harness::Sandbox;

const SECRET: &str = "site-test-secret-0123456789abcdef";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn get(http: &reqwest::Client, url: &str) -> (u16, String, Option<String>) {
    let response = http.get(url).send().await.unwrap();
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, response.text().await.unwrap(), location)
}

/// The `content` of `<meta name|property="key" content="...">`.
fn meta<'a>(html: &'a str, key: &str) -> Option<&'a str> {
    let at = html
        .find(&format!("name=\"{key}\""))
        .or_else(|| html.find(&format!("property=\"{key}\"")))?;
    let rest = &html[at..];
    let start = rest.find("content=\"")? + "content=\"".len();
    Some(&rest[start..start + rest[start..].find('"')?])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_glossary_works_as_a_website_for_readers_and_search_engines() {
    let s = Sandbox::new();
    s.write(
        "subscribers/list.csv",
        "email,name\nreader@example.com,Reader\n",
    );
    // One issue goes out first, so a term page can say where it was featured.
    let sent = s.herald(&["send"]);
    assert_eq!(sent.code, 0, "{sent:?}");
    let env = [("HERALD_SECRET", SECRET)];
    let (base, stop, handle) = start(&s, &env, Arc::new(herald::clock::SystemClock)).await;
    let http = client();
    let (glossary, _) = herald::files::load_glossary(&s.path("glossary"));

    // The index: every term, grouped A-Z and by category, with a search form.
    let (status, index, _) = get(&http, &format!("{base}glossary")).await;
    assert_eq!(status, 200);
    for t in glossary.terms() {
        let link = format!("href=\"{base}glossary/{}\"", t.slug);
        assert!(
            index.matches(&link).count() >= 2,
            "{} is listed A-Z and by category",
            t.slug
        );
    }
    for heading in [
        "id=\"letter-A\"",
        "id=\"letter-T\"",
        "<h3>Fundamentals</h3>",
    ] {
        assert!(index.contains(heading), "{heading}");
    }
    assert!(index.contains("role=\"search\"") && index.contains("name=\"q\""));
    let set: serde_json::Value = serde_json::from_str(json_ld(&index)).unwrap();
    assert_eq!(set["@type"], "DefinedTermSet");
    assert_eq!(
        set["hasDefinedTerm"].as_array().unwrap().len(),
        glossary.len()
    );

    // Search without JavaScript: names and aliases first; no match shows the closest terms.
    let (_, results, _) = get(&http, &format!("{base}glossary?q=LLM")).await;
    let results = &results[results.find("Results for").unwrap()..];
    let first = &results[results.find("<li>").unwrap()..];
    assert!(
        first.starts_with(&format!(
            "<li><a href=\"{base}glossary/large-language-model\""
        )),
        "{first:.200}"
    );
    let (_, nothing, _) = get(&http, &format!("{base}glossary?q=atension")).await;
    assert!(nothing.contains("No term matches"));
    assert!(nothing.contains(&format!("href=\"{base}glossary/attention\"")));

    // Names, aliases and a trailing slash lead to the one canonical address.
    for path in ["glossary/LLM", "glossary/Large%20language%20model"] {
        let (status, _, location) = get(&http, &format!("{base}{path}")).await;
        assert_eq!(status, 301, "{path}");
        assert_eq!(
            location.as_deref(),
            Some(format!("{base}glossary/large-language-model").as_str())
        );
    }
    let (status, _, location) = get(&http, &format!("{base}glossary/attention/")).await;
    assert_eq!(
        (status, location),
        (301, Some(format!("{base}glossary/attention")))
    );
    let (status, missing, _) = get(&http, &format!("{base}glossary/atention")).await;
    assert_eq!(status, 404);
    assert!(missing.contains(&format!("href=\"{base}glossary/attention\"")));

    // A term's page: everything about it, where it was featured, its neighbours, a way to
    // subscribe, and the metadata search engines and link previews read.
    let featured = &sent.stdout[sent.stdout.find("issue #1: ").unwrap()..];
    let featured_slug = glossary
        .terms()
        .iter()
        .find(|t| featured.starts_with(&format!("issue #1: {} — ", t.term)))
        .expect("the first issue names its term")
        .slug
        .clone();
    let (status, page, _) = get(&http, &format!("{base}glossary/{featured_slug}")).await;
    assert_eq!(status, 200);
    let term = glossary.get(&featured_slug).unwrap();
    assert!(page.contains(&format!("<title>{}</title>", term.term)));
    assert!(page.contains(&format!("href=\"{base}archive/1\">issue #1</a>")));
    assert!(page.contains("rel=\"next\"") || page.contains("rel=\"prev\""));
    assert!(page.contains(&format!("action=\"{base}subscribe\"")));
    for r in &term.related {
        assert!(
            page.contains(&format!("href=\"{base}glossary/{r}\"")),
            "{r}"
        );
    }
    let canonical = format!("{base}glossary/{featured_slug}");
    assert!(page.contains(&format!("<link rel=\"canonical\" href=\"{canonical}\">")));
    assert_eq!(meta(&page, "og:url"), Some(canonical.as_str()));
    assert_eq!(meta(&page, "og:title"), Some(term.term.as_str()));
    assert_eq!(meta(&page, "twitter:card"), Some("summary"));
    assert!(meta(&page, "description").is_some_and(|d| !d.is_empty()));
    let defined: serde_json::Value = serde_json::from_str(json_ld(&page)).unwrap();
    assert_eq!(defined["@type"], "DefinedTerm");
    assert_eq!(defined["name"], term.term.as_str());
    assert_eq!(defined["url"], canonical.as_str());
    assert_eq!(defined["inDefinedTermSet"]["@type"], "DefinedTermSet");
    for landmark in [
        "<header>",
        "<nav aria-label=\"Site\">",
        "<main id=\"content\">",
        "<footer>",
    ] {
        assert!(page.contains(landmark), "{landmark}");
    }

    // The sitemap lists every term page and the sent issue, with dates; robots.txt points
    // at it and keeps crawlers out of personal links.
    let (status, sitemap, _) = get(&http, &format!("{base}sitemap.xml")).await;
    assert_eq!(status, 200);
    for t in glossary.terms() {
        let entry = format!("<loc>{base}glossary/{}</loc><lastmod>", t.slug);
        assert!(sitemap.contains(&entry), "{}", t.slug);
    }
    assert!(sitemap.contains(&format!("<loc>{base}archive/1</loc><lastmod>")));
    // The unsubscribe links of review, test and preview copies explain themselves.
    for copy in ["review-copy", "test-copy", "preview"] {
        let (status, page, _) = get(&http, &format!("{base}u/{copy}")).await;
        assert_eq!(status, 200, "{copy}");
        assert!(page.contains("belongs to a subscriber"), "{copy}");
    }
    let (_, robots, _) = get(&http, &format!("{base}robots.txt")).await;
    assert!(robots.contains(&format!("Sitemap: {base}sitemap.xml")));
    assert!(robots.contains("Disallow: /u/"));

    stop.cancel();
    handle.await.unwrap();
}

/// The text of the page's JSON-LD block.
fn json_ld(html: &str) -> &str {
    let open = "<script type=\"application/ld+json\">";
    let start = html.find(open).expect("a JSON-LD block") + open.len();
    &html[start..start + html[start..].find("</script>").unwrap()]
}

#[test]
fn json_ld_cannot_close_its_script_element() {
    // A summary with `</script>` in it must stay inside the JSON-LD block.
    let s = Sandbox::new();
    let path = s.path("glossary/attention.md");
    let text = std::fs::read_to_string(&path).unwrap().replacen(
        "summary = \"",
        "summary = \"</script><script>alert(1)</script> ",
        1,
    );
    std::fs::write(&path, text).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let env = [("HERALD_SECRET", SECRET)];
        let (base, stop, handle) = start(&s, &env, Arc::new(herald::clock::SystemClock)).await;
        let (status, page, _) = get(&client(), &format!("{base}glossary/attention")).await;
        assert_eq!(status, 200);
        assert!(!page.contains("<script>alert(1)"), "{page}");
        let defined: serde_json::Value = serde_json::from_str(json_ld(&page)).unwrap();
        assert!(
            defined["description"]
                .as_str()
                .unwrap()
                .starts_with("</script>")
        );
        stop.cancel();
        handle.await.unwrap();
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glossary_markdown_cannot_bring_scripts_into_pages_or_emails() {
    let s = Sandbox::new();
    let path = s.path("glossary/attention.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let hostile = "\n\n<script>alert(1)</script> <iframe src=\"https://evil.example\"></iframe> <style>body{display:none}</style> <img src=x onerror=\"alert(2)\"> [click](javascript:alert(3)) <a href=\"https://ok.example\" onclick=\"alert(4)\">ok</a>\n\nA Markdown [link](javascript:alert(5)) too.\n";
    std::fs::write(&path, format!("{}{hostile}", text.trim_end())).unwrap();
    let preview = s.herald(&["preview", "--term", "attention", "--out", "p"]);
    assert_eq!(preview.code, 0, "{preview:?}");
    let email = std::fs::read_to_string(s.path("p/issue.html")).unwrap();
    let env = [("HERALD_SECRET", SECRET)];
    let (base, stop, handle) = start(&s, &env, Arc::new(herald::clock::SystemClock)).await;
    let (_, page, _) = get(&client(), &format!("{base}glossary/attention")).await;
    for (what, html) in [("email", &email), ("page", &page)] {
        let body = &html[html.find("<body").unwrap()..];
        for bad in [
            "<script>alert",
            "<iframe",
            "display:none}",
            "onerror",
            "href=\"javascript:",
            "onclick",
        ] {
            assert!(
                !body.contains(bad),
                "{what} has {bad}: {}",
                &body[body.find(bad).unwrap().saturating_sub(200)..]
            );
        }
        assert!(
            body.contains("https://ok.example"),
            "{what} keeps the plain link"
        );
    }
    stop.cancel();
    handle.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_posted_from_another_site_are_refused() {
    let s = Sandbox::new();
    let env = [("HERALD_SECRET", SECRET)];
    let (base, stop, handle) = start(&s, &env, Arc::new(herald::clock::SystemClock)).await;
    let http = client();
    let post = |origin: Option<&str>, site: Option<&str>| {
        let mut request = http
            .post(format!("{base}subscribe"))
            .form(&[("email", "victim@example.com")]);
        if let Some(o) = origin {
            request = request.header("Origin", o);
        }
        if let Some(site) = site {
            request = request.header("Sec-Fetch-Site", site);
        }
        request.send()
    };
    let ours = base.trim_end_matches('/').to_owned();
    assert_eq!(
        post(Some("https://evil.example"), None)
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(post(None, Some("cross-site")).await.unwrap().status(), 403);
    assert_eq!(
        post(Some(&ours), Some("same-origin"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        post(None, None).await.unwrap().status(),
        200,
        "no browser headers: a script"
    );
    stop.cancel();
    handle.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_private_without_a_token_and_open_on_their_own_address() {
    let s = Sandbox::new();
    // One issue went out (file transport) before the daemon started.
    s.write(
        "subscribers/list.csv",
        "email,name\nada@example.com,Ada\nbob@example.com,Bob\n",
    );
    let sent = s.herald(&["send"]);
    assert_eq!(sent.code, 0, "{sent:?}");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env = [
        ("HERALD_SECRET", SECRET),
        (
            "HERALD_HTTP__METRICS_LISTEN",
            &format!("\"127.0.0.1:{port}\""),
        ),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, *v)).collect();
    let (base, stop, handle) = start(&s, &env, Arc::new(herald::clock::SystemClock)).await;
    // No admin token: the public listener has no /metrics at all.
    let (status, _, _) = get(&client(), &format!("{base}metrics")).await;
    assert_eq!(status, 404);
    let (status, text, _) = get(&client(), &format!("http://127.0.0.1:{port}/metrics")).await;
    assert_eq!(status, 200);
    assert!(
        text.contains("herald_subscribers{status=\"confirmed\"}"),
        "{text}"
    );
    let gauge = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .parse()
            .unwrap()
    };
    let now = herald::clock::Clock::now(&herald::clock::SystemClock).timestamp() as f64;
    let sent_at = gauge("herald_last_issue_sent_timestamp_seconds");
    assert!(
        sent_at <= now && sent_at > now - 300.0,
        "{sent_at} vs {now}"
    );
    assert_eq!(gauge("herald_last_issue_bounce_ratio"), 0.0);
    assert!(gauge("herald_next_slot_timestamp_seconds") > now);
    stop.cancel();
    handle.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_limits_apply_per_client_and_say_when_to_retry() {
    let s = Sandbox::new();
    let env = [
        ("HERALD_SECRET", SECRET),
        ("HERALD_ADMIN_TOKEN", "the-admin-token"),
        ("HERALD_HTTP__TRUSTED_PROXIES", "[\"127.0.0.1/32\"]"),
    ];
    let (base, stop, handle) = start(&s, &env, Arc::new(herald::clock::SystemClock)).await;
    let http = client();
    let post = |client: &'static str, n: usize| {
        http.post(format!("{base}subscribe"))
            .header("X-Forwarded-For", format!("198.51.100.9, {client}"))
            .form(&[("email", format!("reader{n}@example.com"))])
            .send()
    };
    for n in 0..5 {
        assert_eq!(post("203.0.113.1", n).await.unwrap().status(), 200);
    }
    let limited = post("203.0.113.1", 5).await.unwrap();
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "60");
    // Another client behind the same proxy is not held back.
    assert_eq!(post("203.0.113.2", 6).await.unwrap().status(), 200);

    // Guessing the admin token is slow: after five wrong tries, 429.
    for _ in 0..5 {
        let r = http
            .get(format!("{base}preview"))
            .header("Authorization", "Bearer wrong")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let r = http
        .get(format!("{base}preview"))
        .header("Authorization", "Bearer wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    stop.cancel();
    handle.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_from_an_untrusted_peer_are_ignored() {
    let s = Sandbox::new();
    let env = [("HERALD_SECRET", SECRET)];
    let (base, stop, handle) = start(&s, &env, Arc::new(herald::clock::SystemClock)).await;
    let http = client();
    // A client that changes its X-Forwarded-For each time is still one client.
    let mut last = 0;
    for n in 0..6 {
        last = http
            .post(format!("{base}subscribe"))
            .header("X-Forwarded-For", format!("203.0.113.{n}"))
            .form(&[("email", format!("reader{n}@example.com"))])
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
    }
    assert_eq!(last, 429);
    stop.cancel();
    handle.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_fails_when_the_store_cannot_take_a_write() {
    if crate::harness::sqlite_only("a read-only database file") {
        return;
    }
    let s = Sandbox::new();
    // The database exists and is migrated; then the daemon gets it read-only (a full disk or
    // a read-only mount refuses writes the same way).
    assert_eq!(s.herald(&["check", "--offline"]).code, 0);
    let read_only = format!("sqlite://{}?mode=ro", s.path("herald.db").display());
    let env = [
        ("HERALD_SECRET", SECRET),
        ("HERALD_DATABASE_URL", read_only.as_str()),
    ];
    let (base, stop, handle) = start(&s, &env, Arc::new(herald::clock::SystemClock)).await;
    let (status, body, _) = get(&client(), &format!("{base}healthz")).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("store cannot take a write"), "{body}");
    stop.cancel();
    // Stopping gives up the sender lease, which a read-only store refuses too: the daemon
    // task ends with that error, which is what this test is about.
    assert!(
        handle.await.is_err(),
        "releasing the lease on a read-only store fails"
    );
}

/// The daemon serves the glossary from memory: an edit is served without a restart, a
/// broken edit keeps the last good version and shows (with its file) in `/healthz`, and the
/// fix clears it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_glossary_edit_is_served_without_a_restart_and_a_broken_one_keeps_the_last_good_version()
{
    let s = Sandbox::new();
    let env = [("HERALD_SECRET", SECRET)];
    let (base, stop, handle) = start(&s, &env, Arc::new(herald::clock::SystemClock)).await;
    let http = client();
    let page = |http: &reqwest::Client| {
        let url = format!("{base}glossary/adam-optimizer");
        let http = http.clone();
        async move { http.get(url).send().await.unwrap().text().await.unwrap() }
    };
    let health = |http: &reqwest::Client| {
        let url = format!("{base}healthz");
        let http = http.clone();
        async move {
            let r = http.get(url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    assert!(page(&http).await.contains("Kingma and Ba, 2014"));
    let (status, body) = health(&http).await;
    assert_eq!(status, 200);
    assert!(body.contains("content: version 1"), "{body}");

    let original = std::fs::read_to_string(s.path("glossary/adam-optimizer.md")).unwrap();
    let edited = original.replace("Kingma and Ba, 2014", "Kingma and Ba, ICLR 2015");
    s.write("glossary/adam-optimizer.md", &edited);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !page(&http).await.contains("Kingma and Ba, ICLR 2015") {
        assert!(
            std::time::Instant::now() < deadline,
            "the edit was not served"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // A broken edit (the front matter loses its closing line): the last good version stays.
    s.write(
        "glossary/adam-optimizer.md",
        edited.replacen("+++\n\nAdam", "\nAdam", 1),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let body = loop {
        let (status, body) = health(&http).await;
        if body.contains("reload failed") {
            assert_eq!(status, 200, "the previous version is still served: {body}");
            break body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the broken edit never showed: {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(body.contains("adam-optimizer.md"), "{body}");
    let served = page(&http).await;
    assert!(served.contains("Kingma and Ba, ICLR 2015"), "{served}");
    let index = http
        .get(format!("{base}glossary"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        index.contains("Adam optimizer"),
        "the term did not vanish from the index"
    );

    // The fix is served and clears the error.
    s.write("glossary/adam-optimizer.md", &original);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, body) = health(&http).await;
        if !body.contains("reload failed") && page(&http).await.contains("Kingma and Ba, 2014") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the fix was not picked up: {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    stop.cancel();
    handle.await.unwrap();
}

/// SIGHUP reloads the content (for `systemctl reload`), with no file changed: `herald run`
/// as a process, as systemd runs it.
#[test]
fn sighup_reloads_the_content() {
    let s = Sandbox::new();
    s.write(
        "herald.toml",
        format!(
            "{}\n[schedule]\ncron = \"0 0 9 1 1 *\"\ntimezone = \"UTC\"\n\n[http]\nlisten = \"127.0.0.1:0\"\n",
            crate::harness::CONFIG
        ),
    );
    let (mut child, addr) = crate::web_limits::spawn_daemon(&s, "");
    let version = || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        std::io::Write::write_all(
            &mut stream,
            b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
        let mut body = String::new();
        std::io::Read::read_to_string(&mut stream, &mut body).unwrap();
        body.lines()
            .find_map(|l| l.strip_prefix("content: version "))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no content version in /healthz: {body}"))
    };
    let before = version();
    let signal = |name: &str| {
        let sent = std::process::Command::new("kill")
            .args([name, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    };
    signal("-HUP");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while version() <= before {
        assert!(
            std::time::Instant::now() < deadline,
            "SIGHUP did not reload"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    signal("-TERM");
    assert_eq!(
        child.wait().unwrap().code(),
        Some(0),
        "still running after SIGHUP"
    );
}

/// The `x-request-id` of a response.
fn request_id(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("x-request-id")
        .unwrap_or_else(|| panic!("no x-request-id on {}", response.url()))
        .to_str()
        .unwrap()
        .to_owned()
}

/// Whether `id` looks like the UUIDs Herald makes (8-4-4-4-12 hex digits).
fn is_uuid(id: &str) -> bool {
    let groups: Vec<&str> = id.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|g| g.chars().all(|c| c.is_ascii_hexdigit()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_a_request_id_and_only_a_trusted_proxy_chooses_it() {
    let s = Sandbox::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let metrics_listen = format!("\"127.0.0.1:{port}\"");
    let env = [
        ("HERALD_SECRET", SECRET),
        ("HERALD_HTTP__METRICS_LISTEN", metrics_listen.as_str()),
    ];
    let (base, stop, handle) = start(&s, &env, Arc::new(herald::clock::SystemClock)).await;
    let http = client();
    let mut seen = std::collections::BTreeSet::new();
    // Pages, a redirect, a 404, a refused form, the feed, the metrics listener.
    let requests = [
        http.get(&base),
        http.get(format!("{base}glossary/llm")),
        http.get(format!("{base}no-such-page")),
        http.get(format!("{base}archive/feed.xml")),
        http.post(format!("{base}subscribe"))
            .header("Sec-Fetch-Site", "cross-site")
            .form(&[("email", "a@example.com")]),
        http.get(format!("http://127.0.0.1:{port}/metrics")),
        http.get(format!("http://127.0.0.1:{port}/elsewhere")),
    ];
    for request in requests {
        let response = request.send().await.unwrap();
        let id = request_id(&response);
        assert!(is_uuid(&id), "{id} on {}", response.url());
        assert!(seen.insert(id), "a new id per request");
    }
    // A client that is no trusted proxy cannot choose the id.
    let response = http
        .get(&base)
        .header("x-request-id", "chosen-by-the-client")
        .send()
        .await
        .unwrap();
    assert!(is_uuid(&request_id(&response)));
    stop.cancel();
    handle.await.unwrap();

    // Behind a trusted proxy, the proxy's id is kept (and a malformed one replaced).
    let env = [
        ("HERALD_SECRET", SECRET),
        ("HERALD_HTTP__TRUSTED_PROXIES", "[\"127.0.0.1/32\"]"),
    ];
    let (base, stop, handle) = start(&s, &env, Arc::new(herald::clock::SystemClock)).await;
    for (sent, kept) in [
        ("proxy-7f3a.42", true),
        ("two words", false),
        (&"x".repeat(200) as &str, false),
    ] {
        let response = http
            .get(format!("{base}glossary"))
            .header("x-request-id", sent)
            .send()
            .await
            .unwrap();
        let id = request_id(&response);
        if kept {
            assert_eq!(id, sent);
        } else {
            assert!(is_uuid(&id), "{sent:?} became {id}");
        }
    }
    stop.cancel();
    handle.await.unwrap();
}

/// The log of one request carries its id, method and route (the pattern: never the path,
/// whose tokens would land in the log), and not the client's address.
#[test]
fn a_request_s_log_lines_carry_its_id_method_and_route() {
    let s = Sandbox::new();
    s.write(
        "herald.toml",
        format!(
            "{}\n[schedule]\ncron = \"0 0 9 1 1 *\"\ntimezone = \"UTC\"\n\n[http]\nlisten = \"127.0.0.1:0\"\n",
            crate::harness::CONFIG
        ),
    );
    let log_path = s.path("herald.log");
    let mut child = s
        .command(&["--log-format", "json", "run"])
        .env("HERALD_SECRET", SECRET)
        .env("HERALD_MAILGUN_WEBHOOK_KEY", "webhook-signing-key")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let entries = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&log_path)
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let addr: std::net::SocketAddr = loop {
        if let Some(e) = entries()
            .into_iter()
            .find(|e| e["fields"]["message"] == "serving HTTP")
        {
            break e["fields"]["addr"].as_str().unwrap().parse().unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "herald run did not serve"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    // A webhook call that is not an event: the app logs a warning inside the request.
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    std::io::Write::write_all(
        &mut stream,
        b"POST /webhooks/mailgun?token=secret-in-query HTTP/1.1\r\nHost: localhost\r\nContent-Length: 7\r\nConnection: close\r\n\r\nnothing",
    )
    .unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut stream, &mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let id = answer
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .unwrap_or_else(|| panic!("no x-request-id in {answer}"))
        .trim()
        .to_owned();
    let warning = loop {
        if let Some(e) = entries().into_iter().find(|e| {
            e["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("webhook call refused"))
        }) {
            break e;
        }
        assert!(std::time::Instant::now() < deadline, "no webhook warning");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let span = warning["spans"]
        .as_array()
        .and_then(|spans| spans.iter().find(|s| s["name"] == "request"))
        .unwrap_or_else(|| panic!("no request span in {warning}"));
    assert_eq!(span["id"], id.as_str(), "{warning}");
    assert_eq!(span["method"], "POST", "{warning}");
    assert_eq!(span["route"], "/webhooks/{provider}", "{warning}");
    let line = warning.to_string();
    assert!(
        !line.contains("127.0.0.1") && !line.contains("secret-in-query"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_in_an_issue_never_break_the_atom_feed() {
    let s = Sandbox::new();
    let env = [("HERALD_SECRET", SECRET)];
    let (base, stop, handle) = start(&s, &env, Arc::new(herald::clock::SystemClock)).await;
    // An issue whose subject and preheader carry control characters (the issue is written
    // straight into the store: its content is frozen once made).
    let db = s.db().await;
    db.execute(
        "INSERT INTO issues (number, cycle, term_slug, subject, preheader, html, text, web_html, status, created_at) \
         VALUES (1, 1, 'attention', 'Attention\u{1b}[31m \u{8}explained #1', 'Bell\u{7} and\tfeed\u{c}', \
         '<p>x</p>', 'x', '<p>x</p>', 'sent', '2026-01-05T09:00:00+00:00')",
    )
    .await
    .unwrap();
    db.close().await;
    let response = client()
        .get(format!("{base}archive/feed.xml"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/atom+xml; charset=utf-8"
    );
    let feed = response.text().await.unwrap();
    stop.cancel();
    handle.await.unwrap();
    let doc = roxmltree::Document::parse(&feed)
        .unwrap_or_else(|e| panic!("the feed is not XML ({e}): {feed:?}"));
    for c in ['\u{1b}', '\u{8}', '\u{7}', '\u{c}'] {
        assert!(!feed.contains(c), "{c:?} in {feed:?}");
    }
    let entry = doc
        .descendants()
        .find(|n| n.has_tag_name("entry"))
        .expect("an entry");
    let text = |name: &str| {
        entry
            .children()
            .find(|n| n.has_tag_name(name))
            .and_then(|n| n.text())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(text("title"), "Attention[31m explained #1");
    assert_eq!(text("summary"), "Bell and\tfeed");
    assert_eq!(text("id"), format!("{base}archive/1"));
}

/// The third edition's sources are shown on each term page ("Sources", and `citation` in its
/// JSON-LD), never in the email; the glossary page describes each category.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn term_pages_cite_their_sources_and_the_glossary_describes_its_categories() {
    let s = Sandbox::new();
    let (base, stop, handle) = start(&s, &[], Arc::new(herald::clock::SystemClock)).await;
    let http = client();
    let (glossary, _) = herald::files::load_glossary(&s.path("glossary"));
    let term = glossary.find("transformer").unwrap();
    assert!(!term.sources.is_empty(), "the bundled term has sources");
    let (status, page, _) = get(&http, &format!("{base}glossary/transformer")).await;
    assert_eq!(status, 200);
    assert!(page.contains("<h2>Sources</h2>"), "{page}");
    for source in &term.sources {
        assert!(
            page.contains(&format!("href=\"{}\"", source.url)),
            "{} on the page",
            source.url
        );
    }
    let defined: serde_json::Value = serde_json::from_str(json_ld(&page)).unwrap();
    let citations = defined["citation"].as_array().unwrap();
    assert_eq!(citations.len(), term.sources.len());
    assert_eq!(citations[0]["name"], term.sources[0].title.as_str());
    assert_eq!(citations[0]["url"], term.sources[0].url.as_str());

    let (status, index, _) = get(&http, &format!("{base}glossary")).await;
    assert_eq!(status, 200);
    let description = glossary
        .category_description(&term.category)
        .expect("categories.toml describes every category");
    let start: String = description.chars().take(40).collect();
    assert!(index.contains(&start), "{description} on the glossary page");

    // Not in the email: the issue's text part has no source URL.
    let preview = s.herald(&["preview", "--term", "transformer", "--out", "preview"]);
    assert_eq!(preview.code, 0, "{preview:?}");
    let text = std::fs::read_to_string(s.path("preview/issue.txt")).unwrap();
    assert!(!text.contains(&term.sources[0].url), "{text}");
    stop.cancel();
    handle.await.unwrap();
}
